// Fork-snapshot mode (docs/design.md §6): a clone(CLONE_FILES, exit signal 0) injected into one stopped
// thread of the target gives a copy-on-write image of its memory in a child that never runs. The target is
// resumed and the core's memory is read from the child at leisure; registers come from the stopped threads.
// RAII: the destructor SIGKILLs the child and reaps it by injecting wait4() into the target, so no zombie
// or runaway copy is left behind.
// If this process dies instead (SIGKILL), the kernel kills the child (PTRACE_O_EXITKILL, set the moment
// its first stop can be seen) but nothing reaps it: a zombie stays in the target, seen only by a wait with
// __WALL or __WCLONE. Dying between the clone and that moment leaves the child running as a copy of the
// target. That window, from the child's creation (sched_process_fork) to PTRACE_SETOPTIONS entering the
// kernel, measured with ftrace over 20 dumps of a 256 MiB target on 2 busy vCPUs (load 10): median
// 0.11 ms, p90 16 ms, max 17 ms (the tail is the child or this thread waiting for a CPU); it was median
// 1.8 ms, p90 15 ms while EXITKILL waited for the end of the clone. Callers avoid both by not dying
// uncleanly (lib/dumper.h), and a caller that outlives a dumper that did cleans up (reap_left_behind).
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "dump/ptrace_session.h"

namespace tripdump::dump {

class SnapshotChild {
 public:
  // Creates the child from `session` (all threads stopped). Returns an empty object with `why` set when
  // snapshot mode cannot be used here (no safe injection point, clone failed with ENOMEM/EAGAIN, ...);
  // throws SysError for ptrace failures.
  // `meanwhile`: work for the other threads while the clone runs (see PtraceSession::inject_syscall).
  // `created`: told the child's pid the moment the clone reports it, before anything else.
  static SnapshotChild create(PtraceSession& session, std::string& why,
                              const std::function<bool()>& meanwhile = {},
                              const std::function<void(pid_t)>& created = {});
  // Kills and reaps the child a dumper SIGKILLed mid-dump left in `target` (running, if it died before the
  // child was marked to die with it, else killed but unreaped): `announced` (Options::snapshot_child), or
  // when it had no time to say, a child created at or after `since` (clock ticks since boot, as /proc's
  // starttime) with exit signal 0 and every signal blocked, as no child a program forks itself is. Every
  // thread of the target is stopped first: a clone the dumper left running is over by then. Returns the
  // child's pid, 0 when there was none.
  static pid_t reap_left_behind(int target, pid_t announced, unsigned long long since);

  SnapshotChild() = default;
  SnapshotChild(SnapshotChild&& o) noexcept;
  SnapshotChild& operator=(SnapshotChild&& o) noexcept;
  SnapshotChild(const SnapshotChild&) = delete;
  ~SnapshotChild() { release(); }

  explicit operator bool() const { return child_ > 0; }
  pid_t pid() const { return child_; }
  // SIGKILLs the child now (its memory is torn down while the caller goes on); release() still waits for
  // its death and reaps it.
  void kill_now() const noexcept;
  // Kills and reaps the child. `session` still holding the target's threads is used for the wait4
  // injection, otherwise one thread is stopped briefly. Returns the pause it caused in ms.
  double release(PtraceSession* session = nullptr) noexcept;
  const std::string& warning() const { return warning_; }

 private:
  int target_ = 0;
  pid_t child_ = 0;
  std::string warning_;
};

}  // namespace tripdump::dump
