// Fork-snapshot mode (design §3a): a clone(CLONE_FILES, exit signal 0) injected into one stopped thread of
// the target gives a copy-on-write image of its memory in a child that never runs. The target is
// resumed and the core's memory is read from the child at leisure; registers come from the stopped threads.
// RAII: the destructor SIGKILLs the child and reaps it by injecting wait4() into the target, so no zombie
// or runaway copy is left behind.
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
  static SnapshotChild create(PtraceSession& session, std::string& why,
                              const std::function<void()>& meanwhile = {});

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
