#include "dump/signal_watch.h"

#include <dirent.h>
#include <poll.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>

#include "core/error.h"
#include "dump/memory_map.h"
#include "dump/ptrace_session.h"

namespace tripdump::dump {

namespace {

bool is_stop_signal(int sig) {
  return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

constexpr int kSpinUs = 50;

double now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

long task_tracer(int pid, pid_t tid) {
  try {
    const std::string s =
        read_whole_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status", pid);
    const size_t p = s.find("\nTracerPid:");
    return p == std::string::npos ? -1 : std::strtol(s.c_str() + p + 11, nullptr, 10);
  } catch (const SysError&) {
    return -1;
  }
}

std::vector<pid_t> list_tasks(int pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/task";
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(path.c_str()), ::closedir);
  if (!d) throw SysError(errno == ENOENT ? ESRCH : errno, "opendir", path, pid);
  std::vector<pid_t> out;
  while (dirent* e = ::readdir(d.get()))
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') out.push_back(static_cast<pid_t>(std::atol(e->d_name)));
  return out;
}

}  // namespace

SignalWatch::SignalWatch(int pid, uint64_t watched) : pid_(pid), watched_(watched) {
  if (pid <= 0) throw SysError(ESRCH, "ptrace", "", pid);
  if (const long tgid = status_field(pid, "Tgid"); tgid > 0 && tgid != pid) pid_ = static_cast<int>(tgid);
  if (proc_state(pid_) == '?') throw SysError(ESRCH, "ptrace", "", pid_, "no such process");
  // Ptrace stops are announced to the tracer with SIGCHLD unless it is ignored or has SA_NOCLDSTOP (as an
  // inherited handler may have): the default disposition, blocked, read through a signalfd.
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  ::sigaction(SIGCHLD, &sa, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  sigchld_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigchld_) throw_errno("signalfd", "", pid_);

  const long opts = PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC;
  // Tasks whose exit is under way: never seized, not looked at again.
  std::set<pid_t> exiting;
  auto seize = [&](pid_t tid) {
    if (::ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(opts)) == 0) {
      threads_.try_emplace(tid);
      return;
    }
    const int e = errno;
    const long tracer = task_tracer(pid_, tid);
    // Already ours: a clone of a thread seized a moment ago was attached automatically.
    if (tracer == ::getpid()) {
      threads_.try_emplace(tid);
      return;
    }
    // The kernel refuses to seize a task whose exit is under way (EPERM once exit_state is set). A thread
    // exiting is skipped. So is a zombie main thread while other threads remain: it called pthread_exit
    // (they are seized), or the whole process is exiting (they are skipped too, and none is left). A main
    // thread gone, or a zombie alone, means the process exited while we were attaching: not a permission
    // problem.
    const char st = proc_state(pid_, tid);
    const bool ended = e == ESRCH || st == '?' || st == 'Z' || st == 'X';
    if (tid != pid_ && (ended || tracer < 0)) {
      exiting.insert(tid);
      return;
    }
    if (tid == pid_ && st == 'Z' && status_field(pid_, "Threads") > 1) {
      exiting.insert(tid);
      return;
    }
    if (ended) throw SysError(ESRCH, "ptrace", "", pid_, "the process exited");
    if (tid == pid_ && e == EPERM && tracer > 0)
      throw SysError(EPERM, "ptrace", "", pid_, "already traced by pid " + std::to_string(tracer));
    throw SysError(e, "ptrace", "", pid_, "PTRACE_SEIZE of thread " + std::to_string(tid));
  };
  try {
    seize(pid_);
    // Seizing does not stop anything, so threads keep being created while we list them. A thread created
    // by a seized thread is attached by the kernel; the others show up in the next listing. Done when a
    // listing finds only known threads.
    for (bool found = true; found;) {
      found = false;
      for (pid_t tid : list_tasks(pid_)) {
        if (threads_.count(tid) || exiting.count(tid)) continue;
        found = true;
        seize(tid);
      }
    }
    if (threads_.empty()) throw SysError(ESRCH, "ptrace", "", pid_, "the process exited");
  } catch (...) {
    detach_all();
    throw;
  }
}

void SignalWatch::read_signalfd() {
  signalfd_siginfo si[16];
  for (;;) {
    const ssize_t n = ::read(sigchld_.get(), si, sizeof si);
    if (n <= 0) return;
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof si[0]; i++)
      if (si[i].ssi_signo != SIGCHLD) terminate_ = true;
  }
}

SignalWatch::~SignalWatch() {
  detach_all();
}

int SignalWatch::drain(bool holding) {
  int handled = 0;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(-1, &status, __WALL | WNOHANG);
    if (r > 0) {
      handle(r, status, holding);
      handled++;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    return handled;  // 0: nothing more now; ECHILD: nothing traced any more
  }
}

void SignalWatch::handle(pid_t tid, int status, bool holding) {
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    threads_.erase(tid);
    std::erase(queue_, tid);
    // The leader's exit is reported once the whole thread group is gone, with the group's exit status.
    // With the main thread not seized (a zombie after pthread_exit), the last thread's end is the
    // process's: a group exit gives every thread the group's status.
    if (tid == pid_ || threads_.empty()) {
      exited_ = true;
      exit_status_ = status;
    }
    return;
  }
  if (!WIFSTOPPED(status)) return;
  // try_emplace: a new thread's first stop may be reaped before its creator's clone event.
  Thread& t = threads_.try_emplace(tid).first->second;
  t.stopped = true;
  const int sig = WSTOPSIG(status), event = status >> 16;
  unsigned long msg = 0;
  switch (event) {
    case 0:  // signal-delivery stop (with PTRACE_SEIZE, group stops are PTRACE_EVENT_STOP)
      t.held = sig;
      if (watched(sig)) {
        queue_.push_back(tid);
        return;  // held until served
      }
      break;
    case PTRACE_EVENT_CLONE:
      if (::ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &msg) == 0)
        threads_.try_emplace(static_cast<pid_t>(msg));
      t.event_sig = SIGTRAP;
      break;
    case PTRACE_EVENT_EXEC:
      // Every other thread is gone; the one that called execve now has the leader's id.
      if (::ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &msg) == 0 && static_cast<pid_t>(msg) != tid) {
        threads_.erase(static_cast<pid_t>(msg));
        std::erase(queue_, static_cast<pid_t>(msg));
      }
      t.event_sig = SIGTRAP;
      break;
    case PTRACE_EVENT_STOP:
      // SIGTRAP: our interrupt, a new thread's first stop, or the end of a group stop (SIGCONT) while
      // listening. A stop signal: the thread entered a group stop, which PTRACE_LISTEN keeps.
      t.event_sig = sig;
      t.listen = is_stop_signal(sig);
      break;
    default:
      t.event_sig = sig;
      break;
  }
  if (!holding) resume(tid, t);
}

void SignalWatch::resume(pid_t tid, Thread& t) {
  if (t.listen)
    ::ptrace(PTRACE_LISTEN, tid, nullptr, nullptr);
  else
    ::ptrace(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(t.held)));
  // ESRCH: it was killed meanwhile; its exit is reported later.
  t = Thread{};
}

void SignalWatch::resume_all() {
  for (auto& [tid, t] : threads_)
    if (t.stopped) resume(tid, t);
}

void SignalWatch::stop_all(int timeout_ms) {
  for (auto& [tid, t] : threads_)
    if (!t.stopped) ::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    read_signalfd();
    drain(true);
    if (exited_ ||
        std::all_of(threads_.begin(), threads_.end(), [](const auto& e) { return e.second.stopped; }))
      return;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    // A thread in uninterruptible sleep stops only when it leaves it: go on without it rather than hang.
    if (left.count() <= 0) return;
    pollfd p{sigchld_.get(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
}

void SignalWatch::serve_held(SignalWatchHandler& handler, bool& stop) {
  stop_all(2000);
  while (!queue_.empty() && !exited_ && !stop) {
    const pid_t tid = queue_.front();
    queue_.erase(queue_.begin());
    auto it = threads_.find(tid);
    if (it == threads_.end() || !it->second.stopped || !it->second.held) continue;
    SignalStop s;
    s.signo = it->second.held;
    s.tid = tid;
    s.time_ms = now_ms();
    ::ptrace(PTRACE_GETSIGINFO, tid, nullptr, &s.info);
    if (std::optional<DumpRequest> req = handler.on_signal(s, stop)) dump(*req, tid, handler);
  }
  // Ending the watch: detach_all() hands the held signals back instead.
  if (!stop) resume_all();
}

void SignalWatch::dump(const DumpRequest& req, pid_t receiver, SignalWatchHandler& handler) {
  // The receiving thread first, as the kernel writes the thread that got the fatal signal first: gdb then
  // reports the signal and selects that thread. Then the leader, then the rest.
  std::vector<pid_t> order{receiver};
  if (receiver != pid_) order.push_back(pid_);
  for (const auto& [tid, t] : threads_)
    if (tid != receiver && tid != pid_) order.push_back(tid);
  std::vector<ThreadState> states;
  int missing = 0;
  for (pid_t tid : order) {
    auto it = threads_.find(tid);
    if (it == threads_.end()) continue;
    if (!it->second.stopped) {
      missing++;
      continue;
    }
    ThreadState s;
    s.tid = tid;
    s.pending_signal = it->second.held;
    s.event_stop = !it->second.held;
    s.stop_signal = it->second.held ? it->second.held : it->second.event_sig;
    states.push_back(std::move(s));
  }
  try {
    PtraceSession session(pid_, std::move(states), PtraceSession::Borrowed{});
    Result r = write_core_dump(session, req.path, req.options);
    if (missing)
      r.warnings.push_back(
          std::to_string(missing) +
          " thread(s) did not stop in time (uninterruptible sleep?) and are not in the core");
    handler.on_dumped(r);
  } catch (const SysError& e) {
    handler.on_dump_error(e);
  } catch (const std::exception& e) {
    handler.on_dump_error(SysError(EIO, "write_core_dump", req.path, pid_, e.what()));
  }
}

SignalWatch::Exit SignalWatch::run(SignalWatchHandler& handler, int input_fd) {
  pollfd fds[2] = {{sigchld_.get(), POLLIN, 0}, {input_fd, POLLIN, 0}};
  bool stop = false;
  while (!stop && !terminate_) {
    // The signalfd first, then every status: a stop reported after the drain leaves SIGCHLD pending, so
    // poll() cannot sleep through it.
    read_signalfd();
    if (drain(false) > 0 && queue_.empty() && !exited_) {
      // A signal just passed through: in a storm the next stop comes within microseconds, sooner than
      // poll() would wake us for it. Look again for a short while before sleeping.
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinUs);
      while (drain(false) == 0 && queue_.empty() && !exited_ && std::chrono::steady_clock::now() < until) {
      }
      continue;
    }
    if (terminate_) break;
    if (!queue_.empty()) {
      serve_held(handler, stop);
      continue;
    }
    if (exited_) break;
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll", "", pid_);
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) stop = handler.on_input();
  }
  detach_all();
  return {exited_, exit_status_};
}

void SignalWatch::detach_all() noexcept {
  if (threads_.empty()) return;
  try {
    if (!exited_) stop_all(1000);
  } catch (...) {
  }
  for (auto& [tid, t] : threads_) {
    // A thread held at a signal-delivery stop gets its signal back; one in a group stop stays stopped
    // (the kernel re-enters the group stop on detach). One that never stopped cannot be detached now; the
    // kernel detaches it when this process exits.
    if (t.stopped)
      ::ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(static_cast<uintptr_t>(t.held)));
  }
  threads_.clear();
  queue_.clear();
}

}  // namespace tripdump::dump
