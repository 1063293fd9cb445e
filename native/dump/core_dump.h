// gdb-free ELF core writer for a live process (docs/design.md §5, §6). Plain C++; the N-API glue wraps it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace tripdump::dump {

enum class Mode {
  kAuto,      // snapshot where supported (x86_64, no seccomp filter, target not job-stopped), else stop
  kStop,      // every thread stays stopped while the memory is written
  kSnapshot,  // fork snapshot: the target runs again after a short stop; falls back to stop with a warning
};

struct Options {
  Mode mode = Mode::kAuto;
  std::optional<uint32_t> filter;             // coredump_filter mask; default the target's own
  const std::atomic<bool>* cancel = nullptr;  // checked between chunks: ECANCELED, nothing left behind
  std::function<void(uint64_t done, uint64_t total)> progress;  // bytes of segment data; dump thread
  // Called once when a cancelled dump has let the target go (threads detached, snapshot child killed) and
  // before the slow part of the clean-up (the writer's last write, closing the unlinked file, the child's
  // memory being torn down and its reaping), which then runs on before write_core_dump throws ECANCELED.
  std::function<void()> abandoned;
  // Snapshot mode: called with the child's pid the moment the clone reports it, and with 0 once it is
  // reaped (or was let go unused), so that a process that outlives this one can end and reap it if this
  // one is SIGKILLed in between (lib/dumper.cc).
  std::function<void(pid_t child)> snapshot_child;
  bool overwrite = false;  // else EEXIST when `path` exists
};

// One stretch of the target's pause, in the order they happen.
struct PausePhase {
  // "stop" (seize and interrupt every thread, wait until each has stopped and the thread list is
  // stable), "registers" (each thread's register sets, signal mask and siginfo), "inspect" (auxv,
  // coredump_filter, status, maps), "clone" (the injected clone until the child's first stop), "dontfork"
  // (copying MADV_DONTFORK memory out of the target), "resume" (detaching every thread), "write" (stop
  // mode: the memory written while the target waits), "reap" (the second, short stop that reaps the
  // snapshot child with an injected wait4).
  std::string name;
  double ms;
};

struct Result {
  std::string path;
  uint64_t bytes_written = 0;  // apparent size of the core file
  uint64_t bytes_on_disk = 0;  // allocated blocks (holes excluded)
  int threads = 0;
  int mappings_written = 0;  // PT_LOADs with data
  int mappings_skipped = 0;  // PT_LOADs with p_filesz 0 (filtered, DONTDUMP, I/O, vvar)
  double pause_ms = 0;       // time the target's threads were stopped (both stops in snapshot mode)
  std::vector<PausePhase> pause_phases;  // where pause_ms went
  Mode mode_used = Mode::kStop;
  std::vector<std::string> warnings;
};

// Writes a core of process `pid` to `path`. Throws SysError (errno, syscall, path, pid): ESRCH target gone,
// EPERM not permitted or already traced (detail names the tracer), EEXIST, ENOENT, ENOSPC, ECANCELED...
// On any failure no file is left and the target runs (or stays job-stopped, if it was).
// Must be called on a dedicated thread that lives for the whole job: ptrace requests come from it.
Result write_core_dump(int pid, const std::string& path, const Options& opts);

class PtraceSession;
// The same, from a session whose threads the caller already holds stopped (PtraceSession::Borrowed), e.g.
// at a signal-delivery stop: they stay stopped when it returns. Always stop mode (a snapshot would have to
// resume threads the caller owns); asking for snapshot mode adds a warning.
Result write_core_dump(PtraceSession& session, const std::string& path, const Options& opts);

const char* mode_name(Mode m);

// The snapshot child a dumper SIGKILLed on its own may leave in `target` (a pid or any of its threads; its
// pid as the dumper announced it, or 0: then found by what the clone made it, a child of the target started
// at or after `since`, in clock ticks since boot): killed and reaped from inside the target. Returns its pid,
// or 0 when there was none. Architectures without the core writer have no snapshot mode, so nothing to reap.
pid_t reap_snapshot_left_behind(int target, pid_t announced, unsigned long long since);

}  // namespace tripdump::dump
