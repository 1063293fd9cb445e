#include "dump/ptrace_session.h"

#include <dirent.h>
#include <elf.h>
#include <sched.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <set>

#include "core/error.h"
#include "dump/memory_map.h"

namespace tripdump::dump {

namespace {

std::string status_path(int pid, int tid) {
  return tid ? "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status"
             : "/proc/" + std::to_string(pid) + "/status";
}

std::vector<pid_t> list_tasks(int pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/task";
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(path.c_str()), ::closedir);
  if (!d) {
    if (errno == ENOENT) throw SysError(ESRCH, "opendir", path, pid);
    throw_errno("opendir", path, pid);
  }
  std::vector<pid_t> out;
  while (dirent* e = ::readdir(d.get())) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    out.push_back(static_cast<pid_t>(std::atol(e->d_name)));
  }
  return out;
}

void sleep_us(long us) {
  timespec ts{us / 1000000, (us % 1000000) * 1000};
  ::nanosleep(&ts, nullptr);
}

}  // namespace

char proc_state(int pid, int tid) {
  try {
    std::string s = read_whole_file(status_path(pid, tid), pid);
    size_t p = s.find("\nState:");
    if (p == std::string::npos) return '?';
    p = s.find_first_not_of(" \t", p + 7);
    return p == std::string::npos ? '?' : s[p];
  } catch (const SysError&) {
    return '?';
  }
}

long status_field(int pid, const char* name) {
  try {
    std::string s = read_whole_file(status_path(pid, 0), pid);
    const std::string key = std::string("\n") + name + ":";
    size_t p = s.find(key);
    if (p == std::string::npos) return -1;
    return std::strtol(s.c_str() + p + key.size(), nullptr, 10);
  } catch (const SysError&) {
    return -1;
  }
}

bool wait_stop(pid_t tid, int& status, int pid_for_errors, int timeout_ms, const std::atomic<bool>* cancel,
               long max_sleep_us) {
  // Polling with WNOHANG instead of a blocking waitpid: a thread stuck in uninterruptible sleep must not hang
  // the dump forever, and the cancel flag must be honoured. Stops usually arrive within microseconds.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (int spin = 0;; spin++) {
    pid_t r = ::waitpid(tid, &status, __WALL | WNOHANG);
    if (r == tid) return WIFSTOPPED(status);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("waitpid", "", pid_for_errors);
    }
    if (cancel && cancel->load(std::memory_order_relaxed))
      throw SysError(ECANCELED, "waitpid", "", pid_for_errors);
    if (std::chrono::steady_clock::now() > deadline)
      throw SysError(ETIMEDOUT, "waitpid", "", pid_for_errors,
                     "thread " + std::to_string(tid) + " did not stop (uninterruptible sleep?)");
    if (spin < 64)
      ::sched_yield();
    else
      sleep_us(std::min(max_sleep_us, 10L << std::min(spin - 64, 7)));
  }
}

PtraceSession::PtraceSession(int pid, const std::atomic<bool>* cancel, Capture what) : pid_(pid) {
  if (pid <= 0) throw SysError(ESRCH, "ptrace", "", pid);
  try {
    stop_all(cancel);
    all_stopped_ = std::chrono::steady_clock::now();
    for (auto& t : threads_) {
      capture_general(t);
      if (what == Capture::kAll) capture_rest(t);
    }
    captured_ = std::chrono::steady_clock::now();
  } catch (...) {
    detach_all();
    throw;
  }
}

PtraceSession::PtraceSession(int pid, OneThread) : pid_(pid) {
  stop_start_ = std::chrono::steady_clock::now();
  stopped_ = true;
  try {
    // Another thread than the main one where there is one: a Node target's event loop (or any main
    // thread with work to do) then never stops for this. Only the general registers are needed to inject.
    std::vector<pid_t> tasks = list_tasks(pid_);
    std::stable_partition(tasks.begin(), tasks.end(), [&](pid_t t) { return t != pid_; });
    for (pid_t tid : tasks) {
      if (!seize_one(tid)) continue;
      ThreadState& t = threads_.back();
      collect_stop(t, nullptr);
      if (t.attached) {
        capture_general(t);
        if (injectable(t)) return;
      }
      detach_one(t);
      threads_.pop_back();
    }
    throw SysError(ESRCH, "ptrace", "", pid_, "no thread can take an injected system call");
  } catch (...) {
    detach_all();
    throw;
  }
}

PtraceSession::PtraceSession(int pid, std::vector<ThreadState> stopped, Borrowed)
    : pid_(pid), threads_(std::move(stopped)), borrowed_(true) {
  stop_start_ = std::chrono::steady_clock::now();
  stopped_ = true;
  for (auto& t : threads_) {
    t.attached = true;
    capture_general(t);
    capture_rest(t);
  }
}

PtraceSession::~PtraceSession() {
  detach_all();
}

void PtraceSession::collect_stop(ThreadState& t, const std::atomic<bool>* cancel) {
  int status = 0;
  if (!wait_stop(t.tid, status, pid_, 10000, cancel)) {
    t.attached = false;  // exited: the kernel dropped the ptrace link
    if (t.tid == pid_ && (WIFEXITED(status) || WIFSIGNALED(status)) && proc_state(pid_) == '?')
      throw SysError(ESRCH, "waitpid", "", pid_);
    return;
  }
  const int event = status >> 16;
  t.stop_signal = WSTOPSIG(status);
  if (event == PTRACE_EVENT_STOP) {
    t.event_stop = true;
  } else {
    // A signal-delivery stop that won the race against our interrupt: the signal is dequeued now, so
    // it must be handed back when detaching or it would be lost.
    t.pending_signal = t.stop_signal;
  }
}

bool PtraceSession::injectable(const ThreadState& t) const {
  // Only threads in an interrupt stop: a group stop or a signal-delivery stop has its own pending work.
  return t.attached && t.event_stop && t.stop_signal == SIGTRAP && !t.pending_signal &&
         !arch::in_temp_sigmask_syscall(t.regs);
}

bool PtraceSession::seize_one(pid_t tid) {
  if (::ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) < 0) {
    const int e = errno;
    const char st = proc_state(pid_, tid);
    if (tid != pid_ && (e == ESRCH || st == '?' || st == 'Z' || st == 'X')) return false;  // thread exited
    if (tid == pid_ && e == EPERM) {
      const long tracer = status_field(pid_, "TracerPid");
      if (tracer > 0)
        throw SysError(EPERM, "ptrace", "", pid_, "already traced by pid " + std::to_string(tracer));
      // A zombie main thread (it called pthread_exit) cannot be seized; the other threads still can.
      if (st == 'Z') return false;
    }
    if (e == ESRCH && st == '?') throw SysError(ESRCH, "ptrace", "", pid_);
    throw SysError(e, "ptrace", "", pid_, "PTRACE_SEIZE of thread " + std::to_string(tid));
  }
  ThreadState t;
  t.tid = tid;
  t.attached = true;
  threads_.push_back(std::move(t));
  if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) < 0 && errno != ESRCH)
    throw SysError(errno, "ptrace", "", pid_, "PTRACE_INTERRUPT");
  return true;
}

void PtraceSession::stop_all(const std::atomic<bool>* cancel) {
  const char state = proc_state(pid_);
  if (state == '?') throw SysError(ESRCH, "ptrace", "", pid_, "no such process");
  job_stopped_ = state == 'T';
  initial_state_ = state;
  stop_start_ = std::chrono::steady_clock::now();
  stopped_ = true;
  std::set<pid_t> known;
  // A thread that was running when listed may create another before it stops, so keep listing until two
  // consecutive passes, made after every known thread has stopped, find nothing new.
  seize_one(pid_);  // the main thread first: it is the first thread of the core
  known.insert(pid_);
  // Every thread is interrupted before any is waited for, so their ways to a stop overlap (on a busy host
  // each can wait a while for a CPU).
  for (pid_t tid : list_tasks(pid_))
    if (known.insert(tid).second) seize_one(tid);
  int quiet_passes = 0;
  size_t waited = 0;
  while (true) {
    for (; waited < threads_.size(); waited++) collect_stop(threads_[waited], cancel);
    if (quiet_passes >= 2) break;
    if (cancel && cancel->load(std::memory_order_relaxed)) throw SysError(ECANCELED, "ptrace", "", pid_);
    bool found = false;
    for (pid_t tid : list_tasks(pid_)) {
      if (!known.insert(tid).second) continue;
      found = true;
      seize_one(tid);
    }
    quiet_passes = found ? 0 : quiet_passes + 1;
  }
  threads_.erase(
      std::remove_if(threads_.begin(), threads_.end(), [](const ThreadState& t) { return !t.attached; }),
      threads_.end());
  if (threads_.empty()) throw SysError(ESRCH, "ptrace", "", pid_);
}

void PtraceSession::capture_general(ThreadState& t) {
  iovec iov{&t.regs, sizeof t.regs};
  if (::ptrace(PTRACE_GETREGSET, t.tid, reinterpret_cast<void*>(NT_PRSTATUS), &iov) < 0)
    throw SysError(errno, "ptrace", "", pid_, "PTRACE_GETREGSET NT_PRSTATUS");
}

void PtraceSession::capture_rest() {
  for (auto& t : threads_)
    if (t.attached) capture_rest(t);
}

void PtraceSession::capture_rest(ThreadState& t) {
  if (t.captured) return;
  t.captured = true;
  std::string buf;
  for (const auto& spec : arch::extra_regsets()) {
    buf.assign(spec.max_size, '\0');
    iovec v{buf.data(), buf.size()};
    // A regset the CPU lacks (ENODEV/EINVAL) is simply not written, as the kernel does.
    if (::ptrace(PTRACE_GETREGSET, t.tid, reinterpret_cast<void*>(static_cast<uintptr_t>(spec.note_type)),
                 &v) < 0)
      continue;
    t.extra.push_back({spec.note_type, spec.note_name, buf.substr(0, v.iov_len)});
  }
  if (::ptrace(PTRACE_GETSIGMASK, t.tid, reinterpret_cast<void*>(sizeof t.sigmask), &t.sigmask) < 0)
    t.sigmask = 0;
  if (t.pending_signal && ::ptrace(PTRACE_GETSIGINFO, t.tid, nullptr, &t.siginfo) == 0) {
    t.real_siginfo = true;
  } else {
    // Our interrupt (or a group stop) has no signal of its own; describe it as a stop sent by us, which
    // is what it is. gdb shows it as "terminated with signal SIGSTOP".
    std::memset(&t.siginfo, 0, sizeof t.siginfo);
    t.siginfo.si_signo = t.event_stop && t.stop_signal != SIGTRAP ? t.stop_signal : SIGSTOP;
    t.siginfo.si_code = SI_USER;
    t.siginfo.si_pid = ::getpid();
    t.siginfo.si_uid = ::getuid();
  }
}

void PtraceSession::detach_one(ThreadState& t) noexcept {
  if (!t.attached) return;
  t.attached = false;
  if (borrowed_) return;  // the owner resumes them
  if (::ptrace(PTRACE_DETACH, t.tid, nullptr,
               reinterpret_cast<void*>(static_cast<uintptr_t>(t.pending_signal))) == 0)
    return;
  if (errno != ESRCH || ::kill(t.tid, 0) < 0) return;  // gone
  // ESRCH while alive means it is not in a ptrace stop (e.g. an injected step was cut short): stop it
  // again so it can be detached, otherwise it would stay traced by us until we exit.
  try {
    int status = 0;
    ::ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
    if (wait_stop(t.tid, status, pid_, 2000))
      ::ptrace(PTRACE_DETACH, t.tid, nullptr,
               reinterpret_cast<void*>(static_cast<uintptr_t>(t.pending_signal)));
  } catch (...) {
  }
}

void PtraceSession::detach_all() noexcept {
  std::vector<pid_t> released;
  // The main thread last: a thread let go wakes and may take this CPU at once, and the main thread is the
  // one with work to do (a Node target's event loop ran for 1-5 ms before the other six were detached).
  // The others are mostly idle and go back to sleep.
  for (size_t i = 1; i <= threads_.size(); i++) {
    ThreadState& t = threads_[i % threads_.size()];  // 1, 2, ... n-1, then 0 (the main thread)
    if (t.attached && !borrowed_) released.push_back(t.tid);
    detach_one(t);
  }
  if (stopped_) {
    stop_end_ = std::chrono::steady_clock::now();
    stopped_ = false;
  }
  if (job_stopped_) await_group_stop(released);
}

void PtraceSession::await_group_stop(const std::vector<pid_t>& tids) const noexcept {
  // Detaching a thread of a job-stopped process wakes it so that it re-enters the group stop itself
  // (traced -> running -> stopped, with no user code in between). On a busy host that can take a
  // scheduler tick or more, so a caller looking right after the dump would see the process running.
  // Wait until each thread is stopped again: the dump returns with the process as it was found. A
  // thread that is sleeping (or gone) was continued by a SIGCONT meanwhile; one still running after a
  // second is left to the scheduler rather than holding up the caller.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (pid_t tid : tids) {
    for (int spin = 0; proc_state(pid_, tid) == 'R'; spin++) {
      if (std::chrono::steady_clock::now() > deadline) return;
      if (spin < 16)
        ::sched_yield();
      else
        sleep_us(500);
    }
  }
}

double PtraceSession::paused_ms() const {
  if (stop_start_ == std::chrono::steady_clock::time_point{}) return 0;
  const auto end = stopped_ ? std::chrono::steady_clock::now() : stop_end_;
  return std::chrono::duration<double, std::milli>(end - stop_start_).count();
}

double PtraceSession::stopping_ms() const {
  if (all_stopped_ == std::chrono::steady_clock::time_point{}) return 0;
  return std::chrono::duration<double, std::milli>(all_stopped_ - stop_start_).count();
}

size_t PtraceSession::read_memory(uint64_t addr, void* buf, size_t len) {
  MemoryReader r(pid_);
  return len - r.read(addr, buf, len);
}

bool PtraceSession::pick_injection_point(size_t& index, uint64_t& insn) {
  auto usable = [this](const ThreadState& t) { return injectable(t); };
  for (size_t i = 0; i < threads_.size(); i++) {
    const ThreadState& t = threads_[i];
    if (!usable(t) || arch::stopped_syscall(t.regs) < 0) continue;
    uint8_t b[arch::kSyscallInsnLen];
    const uint64_t at = arch::pc(t.regs) - arch::kSyscallInsnLen;
    if (read_memory(at, b, sizeof b) == sizeof b && arch::is_syscall_insn(b)) {
      index = i;
      insn = at;
      return true;
    }
  }
  for (size_t i = 0; i < threads_.size(); i++) {
    if (!usable(threads_[i])) continue;
    // No thread sits right after a syscall instruction: find one in the vDSO (several fallback paths
    // use one), else in any executable mapping.
    std::vector<Vma> maps = parse_smaps(read_whole_file("/proc/" + std::to_string(pid_) + "/maps", pid_));
    std::stable_partition(maps.begin(), maps.end(), [](const Vma& v) { return v.path == "[vdso]"; });
    for (const Vma& v : maps) {
      if (!v.exec || !v.read || v.path == "[vsyscall]") continue;
      const size_t len = std::min<uint64_t>(v.size(), 1u << 20);
      std::vector<uint8_t> code(len);
      if (read_memory(v.start, code.data(), len) != len) continue;
      for (size_t k = 0; k + arch::kSyscallInsnLen <= len; k++) {
        if (arch::is_syscall_insn(&code[k])) {
          index = i;
          insn = v.start + k;
          return true;
        }
      }
    }
    return false;
  }
  return false;
}

namespace {

// Restores a thread's registers, signal mask and options when an injection ends, however it ends.
struct InjectionGuard {
  pid_t tid;
  arch::GpRegs regs;
  uint64_t mask;
  bool armed = true;
  ~InjectionGuard() {
    if (!armed) return;
    iovec iov{&regs, sizeof regs};
    ::ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_PRSTATUS), &iov);
    ::ptrace(PTRACE_SETSIGMASK, tid, reinterpret_cast<void*>(sizeof mask), &mask);
    ::ptrace(PTRACE_SETOPTIONS, tid, nullptr, nullptr);
  }
};

}  // namespace

long PtraceSession::inject_syscall(ThreadState& t, uint64_t insn, long nr, const std::vector<uint64_t>& args,
                                   const std::function<void(pid_t)>& on_clone,
                                   const std::function<bool()>& meanwhile) {
  auto fail = [&](const char* what) { throw SysError(errno, "ptrace", "", pid_, what); };
  arch::GpRegs saved{};
  iovec iov{&saved, sizeof saved};
  if (::ptrace(PTRACE_GETREGSET, t.tid, reinterpret_cast<void*>(NT_PRSTATUS), &iov) < 0)
    fail("PTRACE_GETREGSET");
  uint64_t mask = 0;
  if (::ptrace(PTRACE_GETSIGMASK, t.tid, reinterpret_cast<void*>(sizeof mask), &mask) < 0)
    fail("PTRACE_GETSIGMASK");
  InjectionGuard guard{t.tid, saved, mask};

  // Blocked signals keep handlers from running on our registers and keep clone from failing with
  // -ERESTARTNOINTR when a signal arrives meanwhile; they stay pending and are delivered after detach.
  uint64_t all = ~0ull;
  if (::ptrace(PTRACE_SETSIGMASK, t.tid, reinterpret_cast<void*>(sizeof all), &all) < 0)
    fail("PTRACE_SETSIGMASK");
  // Not PTRACE_O_EXITKILL, which the child would inherit (ptrace_init_task copies the parent's ptrace
  // flags) but which would also kill the target if we died during the call: on_clone sets it on the child.
  long opts = PTRACE_O_TRACESYSGOOD | (on_clone ? PTRACE_O_TRACECLONE : 0);
  if (::ptrace(PTRACE_SETOPTIONS, t.tid, nullptr, reinterpret_cast<void*>(opts)) < 0)
    fail("PTRACE_SETOPTIONS");
  arch::GpRegs regs = saved;
  arch::setup_syscall(regs, insn, nr, args);
  iovec set{&regs, sizeof regs};
  if (::ptrace(PTRACE_SETREGSET, t.tid, reinterpret_cast<void*>(NT_PRSTATUS), &set) < 0)
    fail("PTRACE_SETREGSET");

  // Step: syscall entry, [clone event], syscall exit. SIGSTOP (not blockable) may interrupt: keep it for
  // re-delivery at detach and go on. (Not one PTRACE_SINGLESTEP over the instruction, which saves a stop:
  // it ends in a SIGTRAP signal-delivery stop, and if tripdump died before detaching, the kernel would
  // deliver that SIGTRAP and kill the target. A syscall-exit stop carries no signal.)
  // Until the child is handed to on_clone it runs on only as long as we live: if we died now, the kernel
  // would detach it and it would run on as a second copy of the target. So the stop that reports it is
  // looked for often: between the pieces of `meanwhile`, and then every 50 us at most.
  const long max_sleep_us = on_clone ? 50 : 1000;
  bool exited_syscall = false, entered = false, more = static_cast<bool>(meanwhile);
  std::exception_ptr failed;  // what meanwhile or on_clone threw: rethrown once the thread is restored
  while (!exited_syscall) {
    if (::ptrace(PTRACE_SYSCALL, t.tid, nullptr, nullptr) < 0) fail("PTRACE_SYSCALL");
    int status = 0;
    bool seen = false, stopped = false;
    for (const bool running = entered; running && more;) {
      const pid_t r = ::waitpid(t.tid, &status, __WALL | WNOHANG);
      if (r == t.tid) {
        seen = true;
        stopped = WIFSTOPPED(status);
        break;
      }
      if (r < 0 && errno != EINTR) fail("waitpid");
      try {
        more = meanwhile();
      } catch (...) {
        failed = std::current_exception();
        more = false;
      }
    }
    if (!seen) stopped = wait_stop(t.tid, status, pid_, 10000, nullptr, max_sleep_us);
    if (!stopped) {
      t.attached = false;
      guard.armed = false;
      throw SysError(ESRCH, "ptrace", "", pid_, "thread exited during injection");
    }
    const int sig = WSTOPSIG(status), event = status >> 16;
    if (sig == (SIGTRAP | 0x80)) {
      if (entered) exited_syscall = true;
      entered = true;
    } else if (event == PTRACE_EVENT_CLONE && on_clone) {
      unsigned long msg = 0;
      if (::ptrace(PTRACE_GETEVENTMSG, t.tid, nullptr, &msg) < 0) fail("PTRACE_GETEVENTMSG");
      try {
        on_clone(static_cast<pid_t>(msg));
      } catch (...) {
        if (!failed) failed = std::current_exception();
      }
    } else if (event == 0 && !t.pending_signal) {
      t.pending_signal = sig;
    }
  }
  arch::GpRegs after{};
  iovec got{&after, sizeof after};
  if (::ptrace(PTRACE_GETREGSET, t.tid, reinterpret_cast<void*>(NT_PRSTATUS), &got) < 0)
    fail("PTRACE_GETREGSET");
  if (failed) std::rethrow_exception(failed);
  // The guard restores the saved registers at this syscall-exit stop. On detach the kernel runs its
  // signal/restart path, which restarts the interrupted syscall exactly as it would have.
  return arch::syscall_result(after);
}

}  // namespace tripdump::dump
