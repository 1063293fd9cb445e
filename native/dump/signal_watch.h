// Signal interception for the `-sig` trigger (docs/design.md §10): every thread of the target is
// PTRACE_SEIZEd (new threads followed with PTRACE_O_TRACECLONE), so each signal it receives stops the
// receiving thread at its signal-delivery stop. An unwatched signal is passed on at once (PTRACE_CONT with
// it). A watched one stops every other thread, asks the handler whether to dump (the core is written from
// those stopped threads, the receiving thread's real siginfo included), then resumes all and re-delivers the
// signal with its original siginfo (PTRACE_CONT with the same signo keeps it): the handler runs, a fatal
// signal kills. Group stops use PTRACE_LISTEN, so SIGSTOP/SIGCONT keep working. Ending the watch detaches
// every thread and hands back any signal still held, so nothing is lost and nothing stays stopped. SIGTERM or
// SIGHUP to the watching thread's process ends the watch the same way (they are blocked and read from
// the same signalfd as SIGCHLD). If the watching process is SIGKILLed, the kernel detaches the threads,
// but a signal held at that moment is lost (measured on 6.18): hence no SIGKILL as death signal.
//
// All ptrace requests come from the thread that constructed the watch, and that thread's process must not
// have other children it cares about: run() reaps any child with waitpid(-1).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/fd.h"
#include "dump/core_dump.h"

namespace tripdump::dump {

struct SignalStop {
  int signo = 0;
  pid_t tid = 0;
  double time_ms = 0;  // CLOCK_REALTIME, ms since the epoch, when the stop was seen
  siginfo_t info{};
};

struct DumpRequest {
  std::string path;
  Options options;
};

class SignalWatchHandler {
 public:
  virtual ~SignalWatchHandler() = default;
  // A watched signal is held and every thread is stopped: return where to dump, or nullopt to let the
  // signal go on without one. Setting `stop` ends the watch once the signal has been re-delivered.
  virtual std::optional<DumpRequest> on_signal(const SignalStop& s, bool& stop) = 0;
  virtual void on_dumped(const Result& r) = 0;
  virtual void on_dump_error(const SysError& e) = 0;
  // The `input_fd` given to run() is readable: return true to end the watch.
  virtual bool on_input() = 0;
};

class SignalWatch {
 public:
  // Seizes every thread of `pid` (a thread id names its process). `watched` has bit (signo - 1) set for
  // each watched signal. Throws SysError: ESRCH no such process, EPERM not permitted or already traced
  // (the detail names the tracer).
  SignalWatch(int pid, uint64_t watched);
  ~SignalWatch();
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

  struct Exit {
    bool exited = false;  // false: the watch was ended by the handler
    int status = 0;       // wait status of the target when it exited
  };
  // Handles ptrace events until the target exits or the handler ends the watch. On return every thread
  // has been detached (or is gone).
  Exit run(SignalWatchHandler& handler, int input_fd);

  int pid() const { return pid_; }
  size_t threads() const { return threads_.size(); }

 private:
  struct Thread {
    bool stopped = false;  // in a ptrace stop we have not resumed yet
    bool listen = false;   // that stop is a group stop: resume with PTRACE_LISTEN
    int event_sig = 0;     // WSTOPSIG of a PTRACE_EVENT_STOP (SIGTRAP, or the group stop's signal)
    int held = 0;          // signal taken at a signal-delivery stop, re-delivered on resume
  };
  bool watched(int sig) const { return sig > 0 && sig <= 64 && (watched_ >> (sig - 1)) & 1; }
  // Reaps every status available now.
  int drain(bool holding);  // returns how many statuses it handled
  void handle(pid_t tid, int status, bool holding);
  // Interrupts every running thread and waits (up to `timeout_ms`) until each is in a ptrace stop.
  void stop_all(int timeout_ms);
  void resume(pid_t tid, Thread& t);
  void resume_all();
  void serve_held(SignalWatchHandler& handler, bool& stop);
  void dump(const DumpRequest& req, pid_t receiver, SignalWatchHandler& handler);
  void detach_all() noexcept;
  // Empties the signalfd; notes a SIGTERM/SIGHUP in terminate_.
  void read_signalfd();

  int pid_;
  uint64_t watched_;
  Fd sigchld_;  // signalfd for SIGCHLD (ptrace stops and exits of the threads), SIGTERM and SIGHUP
  std::unordered_map<pid_t, Thread> threads_;
  std::vector<pid_t> queue_;  // threads held at a watched signal, in arrival order
  bool terminate_ = false;
  bool exited_ = false;
  int exit_status_ = 0;
};

}  // namespace tripdump::dump
