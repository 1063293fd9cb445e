#include "dump/core_dump.h"

#include <elf.h>
#include <signal.h>

#include <cstring>
#include <memory>

#include "core/error.h"
#include "dump/arch.h"
#include "dump/elf_writer.h"
#include "dump/memory_map.h"
#include "dump/output_file.h"
#include "dump/ptrace_session.h"
#include "dump/snapshot.h"

namespace tripdump::dump {

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kAuto:
      return "auto";
    case Mode::kStop:
      return "stop";
    case Mode::kSnapshot:
      return "snapshot";
  }
  return "?";
}

namespace {

constexpr size_t kChunk = 4u << 20;
// MADV_DONTFORK/WIPEONFORK memory is copied out of the stopped target in snapshot mode; above this much,
// stop mode is cheaper than holding it all in memory.
constexpr uint64_t kParentCopyCap = 256ull << 20;

uint32_t segment_flags(const Vma& v) {
  return (v.read ? PF_R : 0) | (v.write ? PF_W : 0) | (v.exec ? PF_X : 0);
}

// Kills and reaps the snapshot child however the dump ends, using the session's still-stopped threads for
// the wait4 injection when it holds any (a second seize of them would fail).
struct ChildReaper {
  SnapshotChild& child;
  PtraceSession& session;
  double pause_ms = 0;
  ~ChildReaper() { finish(); }
  void finish() noexcept {
    if (child) pause_ms += child.release(session.holds_threads() ? &session : nullptr);
  }
};

}  // namespace

Result write_core_dump(int pid, const std::string& path, const Options& opts) {
  Result res;
  res.path = path;
  auto check_cancel = [&] {
    if (opts.cancel && opts.cancel->load(std::memory_order_relaxed))
      throw SysError(ECANCELED, "write_core_dump", path, pid);
  };
  if (pid <= 0) throw SysError(ESRCH, "ptrace", "", pid);
  // Created before the target is touched: a bad path (EEXIST, ENOENT, EACCES) costs the target nothing.
  OutputFile out(path, opts.overwrite, pid);
  check_cancel();

  Mode mode = opts.mode;
  const long seccomp = status_field(pid, "Seccomp");
  if (mode != Mode::kStop) {
    std::string why;
    if (!arch::snapshot_supported())
      why = "snapshot mode is not implemented for this architecture";
    else if (seccomp != 0)
      // An injected clone may be fatal under a seccomp filter (or strict mode).
      why = "target runs under seccomp (mode " + std::to_string(seccomp) + ")";
    if (!why.empty()) {
      if (mode == Mode::kSnapshot) res.warnings.push_back(why + "; used stop mode");
      mode = Mode::kStop;
    } else {
      mode = Mode::kSnapshot;
    }
  }

  PtraceSession session(pid, opts.cancel);
  if (mode == Mode::kSnapshot && session.was_job_stopped()) {
    // It is not running anyway, so stopping it costs nothing, and a stop-mode dump keeps its group stop.
    if (opts.mode == Mode::kSnapshot) res.warnings.push_back("target is job-control stopped; used stop mode");
    mode = Mode::kStop;
  }
  auto& threads = session.threads();
  const uint32_t filter = opts.filter ? *opts.filter : read_coredump_filter(pid);
  std::vector<Vma> maps = read_smaps(pid);
  const std::string auxv = read_whole_file("/proc/" + std::to_string(pid) + "/auxv", pid);
  const ProcessInfo info = read_process_info(pid, threads);
  const std::string notes = build_notes(threads, info, auxv, maps);

  // Decide each mapping's size (read while stopped: the ELF-header probe needs the mapping's first bytes).
  MemoryReader parent_reader(pid);
  std::vector<uint64_t> filesz(maps.size());
  for (size_t i = 0; i < maps.size(); i++) {
    DumpChoice c = vma_dump_choice(maps[i], filter);
    if (c.maybe_elf_header) {
      uint8_t magic[SELFMAG] = {};
      parent_reader.read(maps[i].start, magic, sizeof magic);
      c.size = std::memcmp(magic, ELFMAG, SELFMAG) == 0 ? page_size() : 0;
    }
    filesz[i] = c.size;
  }

  // Layout: headers, notes (4-aligned), then page-aligned data in address order.
  const uint64_t ps = page_size();
  const uint64_t note_offset = headers_size(maps.size());
  uint64_t offset = (note_offset + notes.size() + ps - 1) / ps * ps;
  std::vector<LoadSegment> loads(maps.size());
  uint64_t data_total = 0;
  for (size_t i = 0; i < maps.size(); i++) {
    loads[i] = {maps[i].start, maps[i].size(), filesz[i], offset, segment_flags(maps[i])};
    offset += filesz[i];
    data_total += filesz[i];
    (filesz[i] ? res.mappings_written : res.mappings_skipped)++;
  }
  const uint64_t shdr_offset = offset;
  const uint64_t file_size = shdr_offset + (needs_extended_numbering(maps.size()) ? sizeof(Elf64_Shdr) : 0);

  // Snapshot: copy what a fork child will not have, then clone and let the target go.
  SnapshotChild child;
  ChildReaper reaper{child, session};
  std::vector<std::unique_ptr<uint8_t[]>> parent_copy(maps.size());
  if (mode == Mode::kSnapshot) {
    uint64_t need = 0;
    for (size_t i = 0; i < maps.size(); i++)
      if (filesz[i] && (maps[i].vm_dontcopy || maps[i].vm_wipeonfork)) need += filesz[i];
    if (need > kParentCopyCap) {
      res.warnings.push_back("MADV_DONTFORK/WIPEONFORK memory (" + std::to_string(need >> 20) +
                             " MiB) is too large to copy; used stop mode");
      mode = Mode::kStop;
    }
  }
  if (mode == Mode::kSnapshot) {
    for (size_t i = 0; i < maps.size(); i++) {
      if (!filesz[i] || !(maps[i].vm_dontcopy || maps[i].vm_wipeonfork)) continue;
      // A fork child lacks MADV_DONTFORK memory and sees MADV_WIPEONFORK memory as zeros: read it from the
      // stopped target instead.
      parent_copy[i].reset(new uint8_t[filesz[i]]);
      parent_reader.read(maps[i].start, parent_copy[i].get(), filesz[i]);
    }
    check_cancel();
    std::string why;
    child = SnapshotChild::create(session, why);
    if (!child) {
      res.warnings.push_back("snapshot mode unavailable: " + why + "; used stop mode");
      mode = Mode::kStop;
    } else {
      session.detach_all();
    }
  }
  res.mode_used = mode;
  res.threads = static_cast<int>(threads.size());

  // Write headers and notes, then every segment's data from the child (snapshot) or the target (stop).
  const int source = mode == Mode::kSnapshot ? child.pid() : pid;
  out.write_at(build_headers(note_offset, notes.size(), loads, shdr_offset).data(), note_offset, 0);
  out.write_at(notes.data(), notes.size(), note_offset);
  if (needs_extended_numbering(maps.size()))
    out.write_at(build_extnum_shdr(maps.size()).data(), sizeof(Elf64_Shdr), shdr_offset);

  MemoryReader reader(source);
  std::unique_ptr<Pagemap> pagemap;
  std::unique_ptr<uint8_t[]> buf(new uint8_t[kChunk]);
  std::vector<uint8_t> populated;
  uint64_t done = 0, unreadable = 0;
  for (size_t i = 0; i < maps.size(); i++) {
    const Vma& v = maps[i];
    if (!filesz[i]) continue;
    if (parent_copy[i]) {
      out.write_sparse(parent_copy[i].get(), filesz[i], loads[i].offset);
      done += filesz[i];
      continue;
    }
    const bool use_pagemap = pagemap_holes_valid(v);
    if (use_pagemap && !pagemap) pagemap = std::make_unique<Pagemap>(source);
    for (uint64_t pos = 0; pos < filesz[i]; pos += kChunk) {
      check_cancel();
      const size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, filesz[i] - pos));
      if (!use_pagemap) {
        size_t bad = reader.read(v.start + pos, buf.get(), len);
        if (v.path != "[vsyscall]") unreadable += bad;  // execute-only by default: zeros, as the kernel
        out.write_sparse(buf.get(), len, loads[i].offset + pos);
      } else {
        // Pages never populated (neither present nor swapped) read as zeros: leave them as holes without
        // reading, so untouched reservations cost nothing.
        const size_t pages = len / ps;
        pagemap->populated(v.start + pos, pages, populated);
        for (size_t p = 0; p < pages;) {
          if (!populated[p]) {
            p++;
            continue;
          }
          size_t q = p;
          while (q < pages && populated[q]) q++;
          const size_t at = p * ps, n = (q - p) * ps;
          unreadable += reader.read(v.start + pos + at, buf.get() + at, n);
          out.write_sparse(buf.get() + at, n, loads[i].offset + pos + at);
          p = q;
        }
      }
      done += len;
      if (opts.progress) opts.progress(done, data_total);
    }
  }
  if (unreadable)
    res.warnings.push_back(std::to_string(unreadable) + " bytes of memory could not be read (written as zeros)");
  out.set_size(file_size);

  // Let the target go before the rename: nothing after this needs it stopped.
  if (mode == Mode::kSnapshot) {
    const double first = session.paused_ms();
    reaper.finish();
    res.pause_ms = first + reaper.pause_ms;
    if (!child.warning().empty()) res.warnings.push_back(child.warning());
  } else {
    session.detach_all();
    res.pause_ms = session.paused_ms();
  }
  out.commit();
  res.bytes_written = file_size;
  res.bytes_on_disk = out.bytes_on_disk();
  return res;
}

}  // namespace tripdump::dump
