#include "dump/snapshot.h"

#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <iterator>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"
#include "dump/memory_map.h"

namespace tripdump::dump {

SnapshotChild::SnapshotChild(SnapshotChild&& o) noexcept
    : target_(o.target_), child_(std::exchange(o.child_, 0)), warning_(std::move(o.warning_)) {}

SnapshotChild& SnapshotChild::operator=(SnapshotChild&& o) noexcept {
  if (this != &o) {
    release();
    target_ = o.target_;
    child_ = std::exchange(o.child_, 0);
    warning_ = std::move(o.warning_);
  }
  return *this;
}

SnapshotChild SnapshotChild::create(PtraceSession& session, std::string& why,
                                    const std::function<bool()>& meanwhile,
                                    const std::function<void(pid_t)>& created) {
  size_t index = 0;
  uint64_t insn = 0;
  if (!session.pick_injection_point(index, insn)) {
    why = "no thread can safely run an injected clone (all in signal/group stops or temporary-mask syscalls)";
    return {};
  }
  ThreadState& t = session.threads()[index];
  session.capture_rest(t);  // before its registers and mask are borrowed
  SnapshotChild out;
  out.target_ = session.pid();
  // The child is auto-attached (PTRACE_O_TRACECLONE) and on its way to a PTRACE_EVENT_STOP when the clone
  // event reports it; the parent waits in that event until this returns. Its pid lands in `out` at once, so
  // if anything below fails the destructor kills it rather than leaving a stopped copy of the target
  // behind. Then, before anything else, PTRACE_O_EXITKILL on it alone (it needs the child in its stop): if
  // we die, the copy dies too instead of running as a second instance of the target, and the target
  // itself is never killed. A child that cannot be held so is not used.
  bool held = false;
  std::string not_held;
  auto hold = [&](pid_t child) noexcept {
    out.child_ = child;
    try {
      if (created) created(child);
      int status = 0;
      if (!wait_stop(child, status, session.pid(), 10000, nullptr, 50))
        not_held = "snapshot child exited before its first stop";
      else if (::ptrace(PTRACE_SETOPTIONS, child, nullptr, reinterpret_cast<void*>(PTRACE_O_EXITKILL)) < 0)
        not_held =
            std::string("PTRACE_SETOPTIONS on the snapshot child failed: ") + SysError::errno_name(errno);
      else
        held = true;
    } catch (const SysError& e) {
      not_held = std::string("snapshot child did not stop: ") + e.what();
    }
  };
  // CLONE_FILES: the child shares the fd table, so it holds no extra references to the target's files
  // (a socket the target closes really closes). Exit signal 0: no SIGCHLD reaches the target. Not
  // CLONE_VM (no copy), not CLONE_VFORK (the parent would wait), not CLONE_PARENT (EINVAL for PID 1s).
  const long r =
      session.inject_syscall(t, insn, arch::nr_clone(), {CLONE_FILES, 0, 0, 0, 0}, hold, meanwhile);
  if (r < 0 || out.child_ <= 0) {
    why = std::string("injected clone failed: ") + SysError::errno_name(static_cast<int>(-r));
    return out;
  }
  if (!held) {
    why = not_held;
    out.release(&session);
  }
  return out;
}

namespace {

// The child an injected clone made in `target` since `since` that nobody announced (reap_left_behind).
pid_t unannounced_child(int target, unsigned long long since) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(target) + "/task", ec)) {
    std::istringstream children;
    try {
      children.str(read_whole_file(task.path().string() + "/children", target));
    } catch (const SysError&) {
      continue;  // the thread ended
    }
    for (pid_t child; children >> child;) {
      try {
        const std::string stat = read_whole_file("/proc/" + std::to_string(child) + "/stat", child);
        std::istringstream fields(stat.substr(stat.rfind(')') + 2));
        std::vector<std::string> f{std::istream_iterator<std::string>(fields), {}};
        // Fields from 3 (state) on: starttime is field 22, exit_signal field 38.
        if (f.size() < 36 || std::stoull(f[22 - 3]) < since || f[38 - 3] != "0") continue;
        const std::string status = read_whole_file("/proc/" + std::to_string(child) + "/status", child);
        const size_t at = status.find("\nSigBlk:");
        if (at == std::string::npos) continue;
        const uint64_t blocked = std::strtoull(status.c_str() + at + 8, nullptr, 16);
        // SIGKILL and SIGSTOP cannot be blocked: every other signal is.
        if ((blocked | 1ull << (SIGKILL - 1) | 1ull << (SIGSTOP - 1)) == ~0ull) return child;
      } catch (const std::exception&) {
        // gone meanwhile, or not a stat line we can read
      }
    }
  }
  return 0;
}

}  // namespace

pid_t SnapshotChild::reap_left_behind(int target, pid_t announced, unsigned long long since) {
  PtraceSession session(target, nullptr, PtraceSession::Capture::kGeneral);
  const pid_t child = announced ? announced : unannounced_child(target, since);
  // Its pid cannot have been reused unless the target reaped it: the zombie pins it until then.
  if (!child || status_field(child, "Tgid") != child || status_field(child, "PPid") != target) return 0;
  SnapshotChild left;
  left.target_ = target;
  left.child_ = child;
  left.release(&session);
  return child;
}

pid_t reap_snapshot_left_behind(int target, pid_t announced, unsigned long long since) {
  // The caller may name a thread of the target: the clone is a child of its thread group.
  const long tgid = status_field(target, "Tgid");
  return SnapshotChild::reap_left_behind(tgid > 0 ? static_cast<int>(tgid) : target, announced, since);
}

namespace {

// The child's death tears down its copy of the page tables: tens of milliseconds of kernel work at 1 GiB,
// which no one waits for but the reaping. At the lowest priority it leaves the CPUs to the target (and,
// after a cancel, to tripdump's own exit). Only a caller allowed to renice it can (same user, or root).
void kill_quietly(pid_t child) noexcept {
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(child), 19);
  ::kill(child, SIGKILL);
}

}  // namespace

void SnapshotChild::kill_now() const noexcept {
  if (child_ > 0) kill_quietly(child_);
}

double SnapshotChild::release(PtraceSession* session) noexcept {
  if (child_ <= 0) return 0;
  const pid_t child = std::exchange(child_, 0);
  kill_quietly(child);
  // As its tracer we see its death first; only after that can the real parent (the target) reap it.
  try {
    int status = 0;
    while (wait_stop(child, status, target_, 5000)) {
    }
  } catch (const SysError&) {
  }
  double pause = 0;
  try {
    // Reap the zombie from inside the target: wait4(child, NULL, __WALL, NULL). __WALL because a child
    // with exit signal 0 is a "clone" child that plain waits ignore.
    const std::vector<uint64_t> args{static_cast<uint64_t>(child), 0, static_cast<uint64_t>(__WALL), 0};
    size_t index = 0;
    uint64_t insn = 0;
    long r = 0;
    if (session && !session->threads().empty() && session->pick_injection_point(index, insn)) {
      r = session->inject_syscall(session->threads()[index], insn, arch::nr_wait4(), args, {});
    } else {
      PtraceSession one(target_, PtraceSession::OneThread{});
      if (!one.pick_injection_point(index, insn))
        throw SysError(ESRCH, "ptrace", "", target_, "no injection point");
      r = one.inject_syscall(one.threads()[index], insn, arch::nr_wait4(), args, {});
      one.detach_all();
      pause = one.paused_ms();
    }
    if (r != child && r != -ECHILD)
      warning_ =
          "could not reap snapshot child " + std::to_string(child) + ": wait4 returned " + std::to_string(r);
  } catch (const std::exception& e) {
    warning_ = "could not reap snapshot child " + std::to_string(child) + ": " + e.what();
  }
  return pause;
}

}  // namespace tripdump::dump
