// The worker processes behind every dump (the addon's writeCoreDump, libtripdump's tripdump_write_core)
// and the addon's watchSignals. N-API-free: the addon and the C library share it. Why a process and not a
// thread of the caller: a tracer's ptrace stops are reported to its whole thread group, and any thread of
// the caller that waits for its own children with waitpid(-1) — libuv's SIGCHLD handler in Node, a
// program's reaper loop or SIGCHLD handler — would steal the stops (a dump times out, a signal is never
// seen) and take a traced child of the caller for exited. A worker is a separate thread group that hears
// of the end of the thread that forked it (PR_SET_PDEATHSIG: a signal it handles by letting go of its
// tracees cleanly, or SIGKILL, after which the kernel detaches them) and talks to it through a shared page
// (and, for the watcher, a socket).
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

namespace tripdump::lib {

// A SysError (or any other failure's message) carried across the process boundary.
struct SharedError {
  int err, pid;
  bool failure;  // not a SysError: `detail` holds what()
  char syscall[64], path[4096], detail[2048];
  void store(const SysError& e) noexcept;
  void store(const std::exception& e) noexcept;
  // Throws what was stored. SysError keeps a const char* syscall: the name is interned for the process's
  // lifetime (there are a few dozen syscall names).
  [[noreturn]] void rethrow() const;
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
// belong to the caller). In the worker: PR_SET_PDEATHSIG `death_signal` tied to the calling thread (SIGKILL,
// or a signal the worker handles to let go of its tracees cleanly), SIGINT/SIGQUIT ignored (Ctrl-C reaches
// the whole process group; the parent ends the worker cleanly instead), and every inherited fd above 2 closed
// except `keep_fd`, so it holds none of the caller's sockets or pipes open. Returns the worker's pid; throws
// SysError when fork fails.
pid_t fork_worker(const std::function<void()>& body, int keep_fd = -1, int death_signal = SIGKILL);

}  // namespace tripdump::lib
