{
  # Three products from one native tree: the Node addon (tripdump.node), the crash handler executable the
  # kernel runs (tripdump-crash-handler), and the core writer as a C library (libtripdump.so, native/lib).
  # The addon and the library share one static library of the N-API-free code. scripts/prebuild.mjs builds
  # the same targets with TRIPDUMP_PREBUILD=1 for the prebuilds shipped in the npm package: libstdc++ linked
  # in (with native/lib/prebuild_compat.cc; libgcc_s stays shared: its static unwinder needs glibc 2.35),
  # the handler fully static, so they need only glibc 2.34 or later of that architecture.
  "target_defaults": {
    "include_dirs": ["native"],
    "cflags!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++1y"],
    "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-fexceptions", "-O2"],
    "conditions": [
      ["'<!(node -p \"process.env.TRIPDUMP_WERROR || ''\")'=='1'", { "cflags_cc": ["-Werror"] }],
      ["'<!(node -p \"process.env.TRIPDUMP_PREBUILD || ''\")'=='1'", { "ldflags": ["-static-libstdc++"] }]
    ]
  },
  "targets": [
    {
      # The core writer and the dumper process, without N-API: linked into the addon and libtripdump.
      "target_name": "tripdump_native",
      "type": "static_library",
      "cflags_cc": ["-fPIC", "-fvisibility=hidden"],
      "sources": [
        "native/core/error.cc",
        "native/core/fd_budget.cc",
        "native/core/proc_file.cc",
        "native/core/parsers.cc",
        "native/core/process_table.cc",
        "native/core/worker_pool.cc",
        "native/core/system_stats.cc",
        "native/core/peer_cred.cc",
        # Architecture-neutral parts of native/dump: every output file (the addon's OutputFile) and the
        # page size it needs.
        "native/dump/memory_map.cc",
        "native/dump/output_file.cc",
        "native/inspector/guard.cc",
        "native/inspector/json_string.cc",
        "native/inspector/listeners.cc",
        "native/inspector/netns.cc",
        "native/lib/dumper.cc",
        "native/lib/worker_process.cc"
      ],
      "conditions": [
        [
          "target_arch=='x64'",
          {
            "sources": [
              "native/dump/core_dump.cc",
              "native/dump/elf_writer.cc",
              "native/dump/ptrace_session.cc",
              "native/dump/signal_watch.cc",
              "native/dump/snapshot.cc",
              "native/dump/arch/x86_64.cc"
            ]
          },
          { "sources": ["native/lib/dump_unsupported.cc"] }
        ]
      ]
    },
    {
      "target_name": "tripdump",
      "dependencies": ["tripdump_native"],
      "sources": [
        "native/napi/addon.cc",
        "native/napi/dump_wrap.cc",
        "native/napi/sampler_wrap.cc",
        "native/napi/errors.cc",
        "native/napi/inspector_wrap.cc",
        "native/napi/output_file_wrap.cc",
        "native/napi/peer_wrap.cc",
        "native/napi/signal_wrap.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "conditions": [
        ["'<!(node -p \"process.env.TRIPDUMP_PREBUILD || ''\")'=='1'", { "sources": ["native/lib/prebuild_compat.cc"] }]
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-fvisibility=hidden"]
    },
    {
      "target_name": "tripdump-crash-handler",
      "type": "executable",
      "sources": [
        "native/core/error.cc",
        "native/crash/capture.cc",
        "native/crash/config.cc",
        "native/crash/handler_main.cc",
        "native/crash/json.cc",
        "native/crash/protocol.cc",
        "native/crash/safe_fs.cc",
        "native/crash/store.cc"
      ],
      # Static in prebuilds: the kernel starts it for every crash, with no loader work to do, and it runs
      # whatever the host's libc (musl included).
      "conditions": [["'<!(node -p \"process.env.TRIPDUMP_PREBUILD || ''\")'=='1'", { "ldflags": ["-static"] }]]
    },
    {
      # libtripdump.so: the C APIs of native/lib/tripdump.h and native/lib/procdump/ProcDumpLib.h (ProcDump
      # 3.x's); only their functions are exported (native/lib/libtripdump.map).
      "target_name": "libtripdump",
      "product_name": "tripdump",
      "product_prefix": "lib",
      "type": "shared_library",
      "product_dir": "<(PRODUCT_DIR)",
      "dependencies": ["tripdump_native"],
      "sources": ["native/lib/c_api.cc"],
      "conditions": [
        ["'<!(node -p \"process.env.TRIPDUMP_PREBUILD || ''\")'=='1'", { "sources": ["native/lib/prebuild_compat.cc"] }]
      ],
      "cflags_cc": ["-fvisibility=hidden"],
      "ldflags": [
        "-Wl,-soname,libtripdump.so",
        "-Wl,--no-undefined",
        "-Wl,--version-script=<(module_root_dir)/native/lib/libtripdump.map",
        "-pthread"
      ]
    }
  ]
}
