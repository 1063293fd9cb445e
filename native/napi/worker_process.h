// The worker processes behind writeCoreDump and watchSignals. Why a process and not a thread of Node: a
// tracer's ptrace stops are reported to its whole thread group, and libuv's SIGCHLD handler waitpid()s
// every child Node spawned and takes any status as an exit; tracing a child of this very process from a
// thread would let libuv steal the stops (a dump times out, a signal is never seen) and tell JS the child
// exited. A worker is a separate thread group that dies with the thread that forked it (PR_SET_PDEATHSIG;
// the kernel then detaches its tracees) and talks to it through a shared page (and, for the watcher, a
// socket).
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <new>
#include <string>

#include "core/error.h"
#include "dump/core_dump.h"

namespace tripdump::napi {

// A SysError (or any other failure's message) carried across the process boundary.
struct SharedError {
  int err, pid;
  bool failure;  // not a SysError: `detail` holds what()
  char syscall[64], path[4096], detail[2048];
  void store(const SysError& e) noexcept;
  void store(const std::exception& e) noexcept;
  // Throws what was stored. SysError keeps a const char* syscall: `keep` holds the string it points to.
  [[noreturn]] void rethrow(std::string& keep) const;
};

// A dump::Result carried across the process boundary.
struct SharedResult {
  uint64_t bytes_written, bytes_on_disk;
  int threads, mappings_written, mappings_skipped, mode_used;
  double pause_ms;
  struct Phase {
    char name[16];
    double ms;
  } phases[16];
  int phase_count;
  char warnings[16384];  // NUL-separated, ends with an empty string
  void store(const dump::Result& r) noexcept;
  dump::Result load(const std::string& path) const;
};

// One anonymous shared mapping holding a T, mapped before fork so parent and worker see the same bytes.
// T's atomics must be lock-free to work across processes.
template <typename T>
class SharedPage {
 public:
  SharedPage() {
    void* mem = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw SysError(errno, "mmap");
    p_ = new (mem) T{};
  }
  ~SharedPage() { ::munmap(p_, sizeof(T)); }
  SharedPage(const SharedPage&) = delete;
  SharedPage& operator=(const SharedPage&) = delete;
  T* get() const { return p_; }
  T* operator->() const { return p_; }

 private:
  T* p_;
};

// Forks a worker that runs `body` and then _exit(0)s (no atexit handlers or static destructors: they
// belong to Node). In the worker: PR_SET_PDEATHSIG `death_signal` tied to the calling thread (SIGKILL, or
// a signal the worker handles to let go of its tracees cleanly), SIGINT/SIGQUIT
// ignored (Ctrl-C reaches the whole process group; the parent ends the worker cleanly instead), and every
// inherited fd above 2 closed except `keep_fd`, so it holds none of Node's sockets or pipes open.
// Returns the worker's pid; throws SysError when fork fails.
pid_t fork_worker(const std::function<void()>& body, int keep_fd = -1, int death_signal = SIGKILL);

}  // namespace tripdump::napi
