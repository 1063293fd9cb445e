#include "lib/worker_process.h"

#include <linux/close_range.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>

namespace tripdump::lib {

namespace {

void copy_str(char* dst, size_t cap, const std::string& s) {
  const size_t n = std::min(cap - 1, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = 0;
}

void close_from(unsigned first, unsigned last) {
  if (first > last) return;
  if (::syscall(SYS_close_range, first, last, 0) == 0) return;
  // Kernels before 5.9: the slow way, bounded by the fd limit.
  const long max = ::sysconf(_SC_OPEN_MAX);
  for (long fd = first; fd <= std::min<long>(last, max > 0 ? max : 65536); fd++)
    ::close(static_cast<int>(fd));
}

}  // namespace

void SharedError::store(const SysError& e) noexcept {
  err = e.err();
  pid = e.pid();
  failure = false;
  copy_str(syscall, sizeof syscall, e.syscall());
  copy_str(path, sizeof path, e.path());
  copy_str(detail, sizeof detail, e.detail());
}

void SharedError::store(const std::exception& e) noexcept {
  failure = true;
  copy_str(detail, sizeof detail, e.what());
}

void SharedError::rethrow() const {
  if (failure) throw std::runtime_error(detail);
  static std::mutex mutex;
  static std::set<std::string> names;
  const char* name;
  {
    std::lock_guard lock(mutex);
    name = names.insert(syscall).first->c_str();
  }
  throw SysError(err, name, path, pid, detail);
}

void SharedResult::store(const dump::Result& r) noexcept {
  bytes_written = r.bytes_written;
  bytes_on_disk = r.bytes_on_disk;
  threads = r.threads;
  mappings_written = r.mappings_written;
  mappings_skipped = r.mappings_skipped;
  mode_used = static_cast<int>(r.mode_used);
  pause_ms = r.pause_ms;
  phase_count = static_cast<int>(std::min(r.pause_phases.size(), std::size(phases)));
  for (int i = 0; i < phase_count; i++) {
    copy_str(phases[i].name, sizeof phases[i].name, r.pause_phases[i].name);
    phases[i].ms = r.pause_phases[i].ms;
  }
  size_t at = 0;
  for (const auto& w : r.warnings) {
    if (at + w.size() + 2 > sizeof warnings) break;
    std::memcpy(warnings + at, w.c_str(), w.size() + 1);
    at += w.size() + 1;
  }
  warnings[at] = 0;
}

dump::Result SharedResult::load(const std::string& path) const {
  dump::Result r;
  r.path = path;
  r.bytes_written = bytes_written;
  r.bytes_on_disk = bytes_on_disk;
  r.threads = threads;
  r.mappings_written = mappings_written;
  r.mappings_skipped = mappings_skipped;
  r.mode_used = static_cast<dump::Mode>(mode_used);
  r.pause_ms = pause_ms;
  for (int i = 0; i < phase_count; i++) r.pause_phases.push_back({phases[i].name, phases[i].ms});
  for (const char* w = warnings; *w; w += std::strlen(w) + 1) r.warnings.emplace_back(w);
  return r;
}

pid_t fork_worker(const std::function<void()>& body, int keep_fd, int death_signal) {
  const pid_t parent = ::getpid();
  // The child inherits the caller's signal handlers (in Node, libuv's: its SIGCHLD handler writes to
  // libuv's signal pipe, which the child closes below, and aborts on the failed write; elsewhere perhaps a
  // reaper that would waitpid(-1) away our tracee's stops) — and a tracer gets a SIGCHLD for every ptrace
  // stop. So signals stay blocked across fork until the child has reset every handler.
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t child = ::fork();
  if (child != 0) {
    const int err = errno;
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (child < 0) throw SysError(err, "fork");
    return child;
  }
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);  // EINVAL for SIGKILL/SIGSTOP: fine
  ::signal(SIGINT, SIG_IGN);  // Ctrl-C reaches the whole process group: the parent cancels us cleanly
  ::signal(SIGQUIT, SIG_IGN);
  ::prctl(PR_SET_PDEATHSIG, death_signal);
  if (::getppid() != parent) ::_exit(1);  // the forking thread died before prctl took effect
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (keep_fd > 2) {
    close_from(3, static_cast<unsigned>(keep_fd) - 1);
    close_from(static_cast<unsigned>(keep_fd) + 1, UINT_MAX);
  } else {
    close_from(3, UINT_MAX);
  }
  try {
    body();
  } catch (...) {
    ::_exit(1);
  }
  ::_exit(0);
}

}  // namespace tripdump::lib
