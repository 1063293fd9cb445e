{
  "targets": [
    {
      "target_name": "tripdump",
      "sources": [
        "native/core/error.cc",
        "native/core/fd_budget.cc",
        "native/core/proc_file.cc",
        "native/core/parsers.cc",
        "native/core/process_table.cc",
        "native/core/worker_pool.cc",
        "native/core/system_stats.cc",
        "native/dump/core_dump.cc",
        "native/dump/elf_writer.cc",
        "native/dump/memory_map.cc",
        "native/dump/output_file.cc",
        "native/dump/ptrace_session.cc",
        "native/dump/signal_watch.cc",
        "native/dump/snapshot.cc",
        "native/dump/arch/x86_64.cc",
        "native/inspector/guard.cc",
        "native/inspector/json_string.cc",
        "native/inspector/listeners.cc",
        "native/inspector/netns.cc",
        "native/napi/addon.cc",
        "native/napi/dump_wrap.cc",
        "native/napi/sampler_wrap.cc",
        "native/napi/errors.cc",
        "native/napi/inspector_wrap.cc",
        "native/napi/output_file_wrap.cc",
        "native/napi/signal_wrap.cc",
        "native/napi/worker_process.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++1y"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-fvisibility=hidden", "-fexceptions", "-O2"],
      "conditions": [
        ["'<!(node -p \"process.env.TRIPDUMP_WERROR || ''\")'=='1'", { "cflags_cc": ["-Werror"] }]
      ]
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
      "include_dirs": ["native"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++1y"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-fexceptions", "-O2"],
      "conditions": [
        ["'<!(node -p \"process.env.TRIPDUMP_WERROR || ''\")'=='1'", { "cflags_cc": ["-Werror"] }]
      ]
    }
  ]
}
