// writeCoreDump's native half. Each job gets a dedicated std::thread, which forks a dumper process
// (napi/worker_process.h says why a process) that does the ptrace work and writes the file, sharing one
// page with the thread: cancel flag, progress, result. Progress and the result reach JS through a
// ThreadSafeFunction.
// Cancelling sets the flag in that page directly from JS. The dumper lets the target go at once, says so
// (`abandoned`, and a byte on a pipe that wakes the thread), and only then cleans up: the promise rejects
// without waiting for the writer's last write, the unlinked file's release or the snapshot child's memory
// teardown (each tens of milliseconds at 1 GiB). The dumper finishes that clean-up on its own, reaping
// the child from the target even if tripdump exits meanwhile, and the thread reaps the dumper.
#include <fcntl.h>
#include <napi.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include "core/fd.h"
#include "dump/core_dump.h"
#include "napi/addon.h"
#include "napi/errors.h"
#include "napi/worker_process.h"

namespace tripdump::napi {

namespace {

using Clock = std::chrono::steady_clock;

// The page shared between the job's thread and its dumper process.
struct Shared {
  std::atomic<bool> cancel;
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

struct DumpJob {
  int pid = 0;
  std::string path;
  dump::Options options;
  // Mapped before the dumper is forked; cancel() writes into it from the JS thread.
  std::shared_ptr<SharedPage<Shared>> shared;
  std::thread thread;
  // The promise is settled and the thread only waits for the dumper to finish its clean-up: the
  // finalizer detaches the thread instead of joining it, and the thread no longer touches the job.
  bool background = false;
  Napi::ThreadSafeFunction tsfn;
  Napi::Promise::Deferred deferred;
  Napi::FunctionReference on_progress;
  dump::Result result;
  std::unique_ptr<SysError> error;
  std::string failure;  // anything that is not a SysError (bad_alloc...)
  std::string syscall_name;

  explicit DumpJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

struct Progress {
  uint64_t done, total;
};

// Runs in the dumper process. `wake`: the write end of the pipe the job's thread waits on.
void dumper(Shared* sh, int wake, int pid, const std::string& path, dump::Options options) {
  // The thread may stop reading the pipe as soon as it sees `abandoned`: a late write must not kill us.
  ::signal(SIGPIPE, SIG_IGN);
  options.cancel = &sh->cancel;
  options.abandoned = [sh, wake] {
    // From here on the clean-up must finish even if tripdump exits: no death signal (the child is still
    // to be reaped from the target; if we died now it would stay there as a zombie).
    ::prctl(PR_SET_PDEATHSIG, 0);
    sh->abandoned.store(true);
    [[maybe_unused]] const ssize_t n = ::write(wake, "a", 1);
  };
  options.progress = [sh](uint64_t done, uint64_t total) {
    sh->total.store(total, std::memory_order_relaxed);
    sh->done.store(done, std::memory_order_relaxed);
  };
  try {
    sh->result.store(dump::write_core_dump(pid, path, options));
    sh->state.store(Shared::kOk);
  } catch (const SysError& e) {
    sh->error.store(e);
    sh->state.store(Shared::kError);
  } catch (const std::exception& e) {
    sh->error.store(e);
    sh->state.store(Shared::kError);
  }
}

// A dumper that died without a word (killed, crashed) leaves no file where O_TMPFILE works; elsewhere the
// writer's fallback temporary file, .<base>.tmp-<its pid>-<random> beside the final file, is removed here.
void remove_temp_files(const std::string& path, pid_t dumper_pid) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const std::string prefix = "." + p.filename().string() + ".tmp-" + std::to_string(dumper_pid) + "-";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(p.has_parent_path() ? p.parent_path() : ".", ec))
    if (entry.path().filename().string().rfind(prefix, 0) == 0) fs::remove(entry.path(), ec);
}

// Forks the dumper and follows it: progress up until it exits. Returns the dumper's pid when it has
// abandoned a cancelled dump and is still cleaning up (the caller rejects with ECANCELED and reaps it
// later), else 0.
pid_t run_in_dumper(DumpJob* job, const std::function<void(uint64_t, uint64_t)>& progress) {
  Shared* sh = job->shared->get();
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC) < 0) throw SysError(errno, "pipe2", {}, job->pid);
  Fd wake_read(wake[0]), wake_write(wake[1]);
  const pid_t child =
      fork_worker([&] { dumper(sh, wake_write.get(), job->pid, job->path, job->options); }, wake_write.get());
  wake_write.reset();  // the dumper's exit closes the last write end: the poll below wakes for it too
  int status = 0;
  uint64_t last_done = UINT64_MAX;
  for (;;) {
    const pid_t r = waitpid(child, &status, WNOHANG);
    if (r == child) break;
    if (r < 0 && errno != EINTR) throw SysError(errno, "waitpid", {}, child);
    if (sh->abandoned.load()) {
      // A named temporary file (where O_TMPFILE is missing) is gone once this returns; an O_TMPFILE one
      // never had a name.
      remove_temp_files(job->path, child);
      return child;
    }
    const uint64_t done = sh->done.load(std::memory_order_relaxed);
    if (progress && done != last_done && sh->total.load(std::memory_order_relaxed)) {
      last_done = done;
      progress(done, sh->total.load(std::memory_order_relaxed));
    }
    // Woken by `abandoned` or the dumper's exit; every 5 ms otherwise, for progress.
    pollfd p{wake_read.get(), POLLIN, 0};
    if (::poll(&p, 1, 5) > 0 && (p.revents & POLLIN)) {
      char drain[16];
      [[maybe_unused]] const ssize_t n = ::read(wake_read.get(), drain, sizeof drain);
    } else if (p.revents & POLLHUP) {
      // Exited: waitpid reaps it at the top. Until then the hang-up would wake poll at once: wait there.
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
  }
  if (progress && sh->state.load() == Shared::kOk && sh->done.load() != last_done)
    progress(sh->done.load(), sh->total.load());
  switch (sh->state.load()) {
    case Shared::kOk:
      job->result = sh->result.load(job->path);
      return 0;
    case Shared::kError:
      sh->error.rethrow(job->syscall_name);
    default:
      remove_temp_files(job->path, child);
      throw SysError(ECHILD, "dump", job->path, job->pid,
                     WIFSIGNALED(status)
                         ? "the dumper process died of signal " + std::to_string(WTERMSIG(status))
                         : "the dumper process exited with " + std::to_string(WEXITSTATUS(status)));
  }
}

}  // namespace

Napi::Object dump_result_object(Napi::Env env, const dump::Result& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", r.path);
  o.Set("bytesWritten", static_cast<double>(r.bytes_written));
  o.Set("bytesOnDisk", static_cast<double>(r.bytes_on_disk));
  o.Set("threads", r.threads);
  o.Set("mappingsWritten", r.mappings_written);
  o.Set("mappingsSkipped", r.mappings_skipped);
  o.Set("pauseMs", r.pause_ms);
  Napi::Array phases = Napi::Array::New(env, r.pause_phases.size());
  for (uint32_t i = 0; i < r.pause_phases.size(); ++i) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("phase", r.pause_phases[i].name);
    p.Set("ms", r.pause_phases[i].ms);
    phases.Set(i, p);
  }
  o.Set("pausePhases", phases);
  o.Set("mode", dump::mode_name(r.mode_used));
  Napi::Array w = Napi::Array::New(env, r.warnings.size());
  for (uint32_t i = 0; i < r.warnings.size(); ++i) w.Set(i, r.warnings[i]);
  o.Set("warnings", w);
  return o;
}

namespace {

void run(DumpJob* job) {
  pid_t cleaning = 0;
  Clock::time_point last{};
  std::function<void(uint64_t, uint64_t)> progress;
  if (!job->on_progress.IsEmpty()) {
    progress = [job, &last](uint64_t done, uint64_t total) {
      // At most every 50 ms (and the last one): a progress bar needs no more, and JS calls are not free.
      const auto now = Clock::now();
      if (done != total && now - last < std::chrono::milliseconds(50)) return;
      last = now;
      auto* p = new Progress{done, total};
      if (job->tsfn.NonBlockingCall(p, [job](Napi::Env env, Napi::Function, Progress* data) {
            std::unique_ptr<Progress> hold(data);
            job->on_progress.Call({Napi::Number::New(env, static_cast<double>(data->done)),
                                   Napi::Number::New(env, static_cast<double>(data->total))});
          }) != napi_ok)
        delete p;
    };
  }
  try {
    cleaning = run_in_dumper(job, progress);
    if (cleaning) throw SysError(ECANCELED, "write_core_dump", job->path, job->pid);
  } catch (const SysError& e) {
    job->error = std::make_unique<SysError>(e);
  } catch (const std::exception& e) {
    job->failure = e.what();
  }
  job->tsfn.BlockingCall([job](Napi::Env env, Napi::Function) {
    if (job->error)
      job->deferred.Reject(to_js_error(env, *job->error).Value());
    else if (!job->failure.empty())
      job->deferred.Reject(Napi::Error::New(env, job->failure).Value());
    else
      job->deferred.Resolve(dump_result_object(env, job->result));
  });
  if (!cleaning) {
    job->tsfn.Release();
    return;
  }
  // The promise is settled; the dumper still cleans up. Nothing here keeps the event loop (or tripdump's
  // exit) waiting for it: the job is handed to the finalizer, and only the dumper is waited for.
  const std::shared_ptr<SharedPage<Shared>> keep = job->shared;  // unmapped when the dumper is done
  job->background = true;
  job->tsfn.Release();  // the finalizer may run now (detaching this thread): `job` is not touched again
  while (::waitpid(cleaning, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// writeCoreDump(pid, path, {mode, filter, overwrite}, onProgress?) -> {promise, cancel()}
Napi::Value write_core_dump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<SharedPage<Shared>> page;
  guarded(env, [&] { page = std::make_shared<SharedPage<Shared>>(); });
  auto* job = new DumpJob(env);
  job->shared = page;
  job->pid = info[0].As<Napi::Number>().Int32Value();
  job->path = info[1].As<Napi::String>().Utf8Value();
  Napi::Object o = info[2].As<Napi::Object>();
  const std::string mode = o.Get("mode").As<Napi::String>().Utf8Value();
  job->options.mode = mode == "stop"       ? dump::Mode::kStop
                      : mode == "snapshot" ? dump::Mode::kSnapshot
                                           : dump::Mode::kAuto;
  if (o.Get("filter").IsNumber()) job->options.filter = o.Get("filter").As<Napi::Number>().Uint32Value();
  job->options.overwrite = o.Get("overwrite").ToBoolean().Value();
  if (info[3].IsFunction()) job->on_progress = Napi::Persistent(info[3].As<Napi::Function>());

  // The finalizer runs on the JS thread after the worker's Release(): join it there, then free the job.
  job->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "tripdump:dump", 0, 1, job,
                                            [](Napi::Env, DumpJob* j) {
                                              if (j->background)
                                                j->thread.detach();
                                              else if (j->thread.joinable())
                                                j->thread.join();
                                              delete j;
                                            });
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", job->deferred.Promise());
  std::shared_ptr<SharedPage<Shared>> shared = job->shared;
  handle.Set("cancel", Napi::Function::New(env, [shared](const Napi::CallbackInfo& ci) {
               (*shared)->cancel.store(true);
               return ci.Env().Undefined();
             }));
  job->thread = std::thread(run, job);
  return handle;
}

}  // namespace

void init_dump(Napi::Env env, Napi::Object exports) {
  exports.Set("writeCoreDump", Napi::Function::New(env, write_core_dump, "writeCoreDump"));
}

}  // namespace tripdump::napi
