// Stops every thread of a process with PTRACE_SEIZE + PTRACE_INTERRUPT and captures what a core needs
// (registers, FP/XSTATE, siginfo, signal mask). RAII: the destructor detaches every thread it still holds,
// re-delivering a signal it intercepted, and the kernel puts a job-control-stopped process back into its
// group stop. Every ptrace request must come from the thread that created the session.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dump/arch.h"

namespace tripdump::dump {

struct RegsetData {
  uint32_t note_type;
  const char* note_name;
  std::string bytes;
};

struct ThreadState {
  pid_t tid = 0;
  bool attached = false;
  // How it stopped: an interrupt/group stop (PTRACE_EVENT_STOP) or a signal-delivery stop, in which case
  // `pending_signal` is re-delivered when the thread is detached.
  bool event_stop = false;
  int stop_signal = 0;
  int pending_signal = 0;
  arch::GpRegs regs{};
  std::vector<RegsetData> extra;
  siginfo_t siginfo{};
  bool real_siginfo = false;  // siginfo describes a real signal, not our interrupt
  uint64_t sigmask = 0;
  bool captured = false;  // all of the above, not only regs
};

class PtraceSession {
 public:
  // What the constructor captures of each thread: everything a core needs, or only the general registers
  // (enough to choose a thread and inject a system call into it), capture_rest() getting the rest later,
  // e.g. while an injected clone runs.
  enum class Capture { kAll, kGeneral };
  // Seizes and stops every thread (rescanning /proc/PID/task until two passes find nothing new), then
  // captures the registers of each. The main thread is first. Throws SysError; on throw all are detached.
  PtraceSession(int pid, const std::atomic<bool>* cancel, Capture what = Capture::kAll);
  // The register sets, signal mask and siginfo not captured yet, of every thread or of one. Idempotent.
  void capture_rest();
  void capture_rest(ThreadState& t);
  // Stops a single thread of `pid` that can take an injected system call (used to reap the snapshot
  // child), another than the main thread where possible: the other threads keep running.
  struct OneThread {};
  PtraceSession(int pid, OneThread);
  // Borrows threads the caller has already seized and stopped (each in a ptrace stop, described by its
  // tid, event_stop, stop_signal and pending_signal) and captures their registers; the first is written
  // first in the core. The caller keeps ownership: detach_all() and the destructor leave them stopped and
  // attached, and the caller resumes them (re-delivering pending_signal itself).
  struct Borrowed {};
  PtraceSession(int pid, std::vector<ThreadState> stopped, Borrowed);
  ~PtraceSession();
  PtraceSession(const PtraceSession&) = delete;
  PtraceSession& operator=(const PtraceSession&) = delete;

  int pid() const { return pid_; }
  std::vector<ThreadState>& threads() { return threads_; }
  bool was_job_stopped() const { return job_stopped_; }
  // "State:" letter of the process before it was stopped ('S', 'R', 'T', ...).
  char state_before_stop() const { return initial_state_; }
  bool borrowed() const { return borrowed_; }
  bool holds_threads() const {
    for (const auto& t : threads_)
      if (t.attached) return true;
    return false;
  }
  // Detaches every thread; the target runs again, or, if it was job-control stopped, is back in its
  // group stop when this returns. Safe to call twice.
  void detach_all() noexcept;
  // Milliseconds the threads have been stopped so far (until detach_all()).
  double paused_ms() const;
  // Of which: until every thread had stopped (seizing, interrupting, rescanning the thread list); the
  // constructor spent the rest of its time capturing registers.
  double stopping_ms() const;
  // Then capturing the registers took this long; the constructor returned at captured_at().
  double capturing_ms() const {
    return std::chrono::duration<double, std::milli>(captured_ - all_stopped_).count();
  }
  std::chrono::steady_clock::time_point captured_at() const { return captured_; }

  // Runs system call `nr` inside stopped thread `t` at syscall instruction `insn`, with all signals
  // blocked, then restores its registers and signal mask exactly. When `on_clone` is set, the call is a
  // clone whose child is auto-attached (PTRACE_O_TRACECLONE): on_clone gets its pid the moment the clone
  // event is seen, with `t` still held in that event stop, and must not throw. `meanwhile`, if set, is
  // work for the time the system call runs, one piece per call (it returns whether more remains): it may
  // use the other, stopped threads, not `t`; between pieces `t` is polled, so the clone's child is handed
  // to on_clone within one piece of its creation. Whatever remains is the caller's to finish. Returns the
  // syscall's result (negative errno on failure). Throws SysError when ptrace itself fails.
  long inject_syscall(ThreadState& t, uint64_t insn, long nr, const std::vector<uint64_t>& args,
                      const std::function<void(pid_t)>& on_clone,
                      const std::function<bool()>& meanwhile = {});

  // Finds the address of a syscall instruction usable for injection and the thread to run it in:
  // preferably a thread stopped in a syscall (its rip-2), else any syscall instruction in an executable
  // mapping. Returns false when no thread can take an injection safely.
  bool pick_injection_point(size_t& thread_index, uint64_t& insn);

  // Reads target memory (process_vm_readv, then /proc/PID/mem); returns bytes read.
  size_t read_memory(uint64_t addr, void* buf, size_t len);

 private:
  void stop_all(const std::atomic<bool>* cancel);
  void collect_stop(ThreadState& t, const std::atomic<bool>* cancel);
  bool injectable(const ThreadState& t) const;
  void capture_general(ThreadState& t);
  bool seize_one(pid_t tid);
  void detach_one(ThreadState& t) noexcept;
  void await_group_stop(const std::vector<pid_t>& tids) const noexcept;

  int pid_;
  bool job_stopped_ = false;
  char initial_state_ = 'R';
  std::vector<ThreadState> threads_;
  std::chrono::steady_clock::time_point stop_start_{}, stop_end_{}, all_stopped_{}, captured_{};
  bool stopped_ = false;
  bool borrowed_ = false;
};

// Waits for a ptrace stop (or exit) of `tid` only, never reaping other children of this process.
// Returns false if the thread exited (status holds the wait status). Throws ETIMEDOUT after `timeout_ms`.
// It polls, yielding first, then sleeping up to `max_sleep_us` at a time.
bool wait_stop(pid_t tid, int& status, int pid_for_errors, int timeout_ms = 10000,
               const std::atomic<bool>* cancel = nullptr, long max_sleep_us = 1000);

// "State:" letter from /proc/PID/status (or task status), '?' when unreadable.
char proc_state(int pid, int tid = 0);
// A numeric field of /proc/PID/status such as "TracerPid" or "Seccomp"; -1 when missing.
long status_field(int pid, const char* name);

}  // namespace tripdump::dump
