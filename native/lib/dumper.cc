#include "lib/dumper.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

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
  std::atomic<uint64_t> done, total;
  enum : int { kRunning, kOk, kError };
  std::atomic<int> state;
  SharedResult result;  // kOk
  SharedError error;    // kError
};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free,
              "atomics shared across processes must be lock-free");

struct Job {
  Shared* sh;
  int pid;
  const std::string* path;
  dump::Options options;
  int wake;  // write end of the pipe the calling thread polls
  // Between the dumper's two threads (run_dumper says why): the dump thread writes 'a' when it abandons
  // a cancelled dump and 'f' when it ends; the main thread clears its death signal on 'a' and says so.
  int to_main = -1;
  std::atomic<bool> released{false};
};

// Runs in the dumper process, on a thread of its own.
void* dumper(void* arg) {
  auto* job = static_cast<Job*>(arg);
  Shared* sh = job->sh;
  const int wake = job->wake;
  job->options.abandoned = [job, sh, wake] {
    // From here on the clean-up must finish even if the caller exits: no death signal (a snapshot child
    // is still to be reaped from the target; if we died now it would stay there as a zombie). The death
    // signal is the main thread's (a thread's own setting): it clears it, and only then is the caller told.
    [[maybe_unused]] const ssize_t a = ::write(job->to_main, "a", 1);
    while (!job->released.load()) ::usleep(50);
    sh->abandoned.store(true);
    [[maybe_unused]] const ssize_t n = ::write(wake, "a", 1);
  };
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

// The dump runs on a thread with a stack of its own size (the forked main thread has the caller's, which
// may be small). The main thread keeps the death signal fork_worker set (it is per thread: the new one has
// none) and drops it when the dump thread abandons a cancelled dump.
void run_dumper(Job& job) {
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
    const ssize_t n = ::read(from_dump.get(), &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (c == 'a') {
      ::prctl(PR_SET_PDEATHSIG, 0);
      job.released.store(true);
    }
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

}  // namespace

dump::Result dump_in_process(int pid, const std::string& path, const dump::Options& options,
                             const std::atomic<bool>* cancel,
                             const std::function<void(uint64_t, uint64_t)>& progress, pid_t* cleaning) {
  SharedPage<Shared> sh;
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC) < 0) throw SysError(errno, "pipe2", {}, pid);
  Fd wake_read(wake[0]), wake_write(wake[1]);
  Job job{sh.get(), pid, &path, options, wake_write.get()};
  job.options.cancel = cancel;  // shared memory: the dumper reads the caller's flag itself
  job.options.progress = nullptr;
  job.options.abandoned = nullptr;
  const pid_t child = fork_worker(
      [&] {
        // The caller may stop reading the pipe once it sees `abandoned`: a late write must not kill us.
        ::signal(SIGPIPE, SIG_IGN);
        try {
          run_dumper(job);
        } catch (const SysError& e) {
          sh->error.store(e);
          sh->state.store(Shared::kError);
        }
      },
      wake_write.get());
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
    default:
      remove_temp_files(path, child);
      throw SysError(ECHILD, "dump", path, pid,
                     reaped_elsewhere ? "the dumper process ended and was reaped by another waiter"
                     : WIFSIGNALED(status)
                         ? "the dumper process died of signal " + std::to_string(WTERMSIG(status))
                         : "the dumper process exited with " + std::to_string(WEXITSTATUS(status)));
  }
}

}  // namespace tripdump::lib
