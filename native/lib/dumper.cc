#include "lib/dumper.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>

#include "core/error.h"
#include "core/fd.h"
#include "lib/worker_process.h"

namespace tripdump::lib {

namespace {

// The page shared between the calling thread and its dumper process.
struct Shared {
  // Set by the dumper once a cancelled dump has let the target go; its clean-up goes on.
  std::atomic<bool> abandoned;
  // The cancel flag when the caller gives none: the dumper still needs one to set when told to stop.
  std::atomic<bool> cancel;
  // The snapshot child while it exists (Options::snapshot_child): reap_orphan's if the dumper dies.
  std::atomic<pid_t> snapshot_child;
  std::atomic<uint64_t> done, total;
  enum : int { kRunning, kOk, kError };
  std::atomic<int> state;
  SharedResult result;  // kOk
  SharedError error;    // kError
};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free &&
                  std::atomic<pid_t>::is_always_lock_free,
              "atomics shared across processes must be lock-free");

struct Job {
  Shared* sh;
  int pid;
  const std::string* path;
  dump::Options options;
  std::atomic<bool>* cancel;  // what options.cancel reads; the dumper sets it when told to stop
  int wake;                   // write end of the pipe the calling thread polls
  int to_main = -1;           // the dump thread writes 'f' here when it ends
};

// Runs in the dumper process, on a thread of its own.
void* dumper(void* arg) {
  auto* job = static_cast<Job*>(arg);
  Shared* sh = job->sh;
  const int wake = job->wake;
  job->options.abandoned = [sh, wake] {
    sh->abandoned.store(true);
    [[maybe_unused]] const ssize_t n = ::write(wake, "a", 1);
  };
  job->options.snapshot_child = [sh](pid_t copy) { sh->snapshot_child.store(copy); };
  job->options.progress = [sh](uint64_t done, uint64_t total) {
    sh->total.store(total, std::memory_order_relaxed);
    sh->done.store(done, std::memory_order_relaxed);
  };
  try {
    sh->result.store(dump::write_core_dump(job->pid, *job->path, job->options));
    sh->state.store(Shared::kOk);
  } catch (const SysError& e) {
    sh->error.store(e);
    sh->state.store(Shared::kError);
  } catch (const std::exception& e) {
    sh->error.store(e);
    sh->state.store(Shared::kError);
  }
  [[maybe_unused]] const ssize_t f = ::write(job->to_main, "f", 1);
  return nullptr;
}

constexpr size_t kDumperStack = 8 << 20;

// What ends the dumper other than SIGKILL. Each is taken as a cancel: the dump lets the target go, kills
// and reaps the snapshot child, removes its file, and the dumper exits. SIGTERM is its death signal (the
// calling thread ended: tripdump exited on a second Ctrl-C, was SIGKILLed, OOM-killed) and what a service
// manager sends on stop; SIGHUP a hang-up.
constexpr int kStopSignals[] = {SIGTERM, SIGHUP};

// The dump runs on a thread with a stack of its own size (the forked main thread has the caller's, which
// may be small). The main thread waits for it and turns a stop signal into a cancel: both block the stop
// signals (the dump thread inherits the mask), which the main thread reads from a signalfd.
void run_dumper(Job& job) {
  sigset_t stop;
  sigemptyset(&stop);
  for (int sig : kStopSignals) sigaddset(&stop, sig);
  // One that came before this was fatal: nothing was touched yet.
  ::pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  Fd signals(::signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals) throw SysError(errno, "signalfd", *job.path, job.pid);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) throw SysError(errno, "pipe2", *job.path, job.pid);
  Fd from_dump(fds[0]), to_main(fds[1]);
  job.to_main = to_main.get();
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kDumperStack);
  pthread_t t;
  const int err = pthread_create(&t, &attr, dumper, &job);
  pthread_attr_destroy(&attr);
  if (err) throw SysError(err, "pthread_create", *job.path, job.pid);
  for (char c = 0; c != 'f';) {
    pollfd p[2] = {{from_dump.get(), POLLIN, 0}, {signals.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) continue;  // EINTR
    if (p[1].revents & POLLIN) {
      signalfd_siginfo si[4];
      if (::read(signals.get(), si, sizeof si) > 0) job.cancel->store(true);
    }
    if (p[0].revents & (POLLIN | POLLHUP) && ::read(from_dump.get(), &c, 1) <= 0) break;
  }
  pthread_join(t, nullptr);
}

// A dumper that died without a word (killed, crashed) leaves no file where O_TMPFILE works; elsewhere the
// writer's fallback temporary file, .tripdump-<its pid>-<random>.tmp beside the final file, is removed here.
void remove_temp_files(const std::string& path, pid_t dumper_pid) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const std::string prefix = ".tripdump-" + std::to_string(dumper_pid) + "-";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(p.has_parent_path() ? p.parent_path() : ".", ec))
    if (entry.path().filename().string().rfind(prefix, 0) == 0) fs::remove(entry.path(), ec);
}

// A dumper SIGKILLed on its own (the OOM killer's choice, kill -9 of its pid) may leave its snapshot child
// in the target. A worker of its own (ptrace, see worker_process.h) kills and reaps it.
void reap_left_behind(int pid, pid_t announced, unsigned long long since) {
  const pid_t w = fork_worker([&] { dump::reap_snapshot_left_behind(pid, announced, since); });
  while (::waitpid(w, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

dump::Result dump_in_process(int pid, const std::string& path, const dump::Options& options,
                             std::atomic<bool>* cancel,
                             const std::function<void(uint64_t, uint64_t)>& progress, pid_t* cleaning) {
  SharedPage<Shared> sh;
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC) < 0) throw SysError(errno, "pipe2", {}, pid);
  Fd wake_read(wake[0]), wake_write(wake[1]);
  // Shared memory either way: the dumper reads the caller's flag itself, or one of its own to set.
  Job job{sh.get(), pid, &path, options, cancel ? cancel : &sh->cancel, wake_write.get()};
  job.options.cancel = job.cancel;
  job.options.progress = nullptr;
  job.options.abandoned = nullptr;
  // When the dumper starts, in /proc's starttime units: no snapshot child of its can be older.
  timespec boot{};
  ::clock_gettime(CLOCK_BOOTTIME, &boot);
  const unsigned long long since = (static_cast<unsigned long long>(boot.tv_sec) * 1000000000ull +
                                    static_cast<unsigned long long>(boot.tv_nsec)) *
                                   static_cast<unsigned long long>(::sysconf(_SC_CLK_TCK)) / 1000000000ull;
  const pid_t child = fork_worker(
      [&] {
        // The caller may stop reading the pipe once it sees `abandoned`: a late write must not kill us.
        ::signal(SIGPIPE, SIG_IGN);
        // A process group of its own: a kill of tripdump's group (kill -KILL -PGID, a shell's job control,
        // Ctrl-Z) reaches tripdump only, and the dumper hears of it by its death signal, in time to let go
        // of the target cleanly. Only a SIGKILL of the dumper itself can stop it half-way (lib/dumper.h).
        ::setpgid(0, 0);
        // A background group: a terminal read or (with `stty tostop`) write would stop it mid-dump.
        ::signal(SIGTTIN, SIG_IGN);
        ::signal(SIGTTOU, SIG_IGN);
        try {
          run_dumper(job);
        } catch (const SysError& e) {
          sh->error.store(e);
          sh->state.store(Shared::kError);
        }
      },
      wake_write.get(), SIGTERM);
  wake_write.reset();  // the dumper's exit closes the last write end: the poll below wakes for it too
  int status = 0;
  bool reaped_elsewhere = false;
  uint64_t last_done = UINT64_MAX;
  for (;;) {
    const pid_t r = ::waitpid(child, &status, WNOHANG);
    if (r == child) break;
    // Only an exited child can be reaped: whoever did it, the dumper is done and its page says how.
    if (r < 0 && errno == ECHILD) {
      reaped_elsewhere = true;
      break;
    }
    if (r < 0 && errno != EINTR) throw SysError(errno, "waitpid", {}, child);
    if (cleaning && sh->abandoned.load()) {
      // A named temporary file (where O_TMPFILE is missing) is gone once this returns; an O_TMPFILE one
      // never had a name.
      remove_temp_files(path, child);
      *cleaning = child;
      throw SysError(ECANCELED, "write_core_dump", path, pid);
    }
    const uint64_t done = sh->done.load(std::memory_order_relaxed);
    if (progress && done != last_done && sh->total.load(std::memory_order_relaxed)) {
      last_done = done;
      progress(done, sh->total.load(std::memory_order_relaxed));
    }
    // Woken by `abandoned` or the dumper's exit (the pipe hangs up); every 5 ms otherwise, for progress.
    pollfd p{wake_read.get(), POLLIN, 0};
    if (::poll(&p, 1, 5) > 0 && (p.revents & POLLIN)) {
      char drain[16];
      [[maybe_unused]] const ssize_t n = ::read(wake_read.get(), drain, sizeof drain);
    } else if (p.revents & POLLHUP) {
      // Exited: until it is reaped the hang-up would wake poll at once, so wait for it here.
      const pid_t w = [&] {
        pid_t x;
        while ((x = ::waitpid(child, &status, 0)) < 0 && errno == EINTR) {
        }
        return x;
      }();
      reaped_elsewhere = w < 0 && errno == ECHILD;
      break;
    }
  }
  if (progress && sh->state.load() == Shared::kOk && sh->done.load() != last_done)
    progress(sh->done.load(), sh->total.load());
  switch (sh->state.load()) {
    case Shared::kOk:
      return sh->result.load(path);
    case Shared::kError:
      sh->error.rethrow();
    default: {
      remove_temp_files(path, child);
      // Its snapshot child, announced or not (it may have been killed in the clone's own moment).
      if (options.mode != dump::Mode::kStop) reap_left_behind(pid, sh->snapshot_child.load(), since);
      throw SysError(ECHILD, "dump", path, pid,
                     reaped_elsewhere ? "the dumper process ended and was reaped by another waiter"
                     : WIFSIGNALED(status)
                         ? "the dumper process died of signal " + std::to_string(WTERMSIG(status))
                         : "the dumper process exited with " + std::to_string(WEXITSTATUS(status)));
    }
  }
}

}  // namespace tripdump::lib
