// writeCoreDump's native half. Each job gets a dedicated std::thread, which runs the dump in a dumper
// process (lib/dumper.h; lib/worker_process.h says why a process) and follows it: cancel flag down,
// progress and the result up. Progress and the result reach JS through a ThreadSafeFunction.
// A cancelled dump rejects as soon as the dumper has let the target go; the dumper's clean-up goes on, and
// this thread reaps it without keeping the event loop (or tripdump's exit) waiting.
#include <napi.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "dump/core_dump.h"
#include "lib/dumper.h"
#include "lib/worker_process.h"
#include "napi/addon.h"
#include "napi/errors.h"

namespace tripdump::napi {

namespace {

using Clock = std::chrono::steady_clock;

struct DumpJob {
  int pid = 0;
  std::string path;
  dump::Options options;
  // Shared with the dumper process, which reads it: cancel() from JS reaches the dump directly.
  std::shared_ptr<lib::SharedPage<std::atomic<bool>>> cancel;
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

  explicit DumpJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

struct Progress {
  uint64_t done, total;
};

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
    job->result =
        lib::dump_in_process(job->pid, job->path, job->options, job->cancel->get(), progress, &cleaning);
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
  job->background = true;
  job->tsfn.Release();  // the finalizer may run now (detaching this thread): `job` is not touched again
  while (::waitpid(cleaning, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// writeCoreDump(pid, path, {mode, filter, overwrite}, onProgress?) -> {promise, cancel()}
Napi::Value write_core_dump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<lib::SharedPage<std::atomic<bool>>> cancel_page;
  guarded(env, [&] { cancel_page = std::make_shared<lib::SharedPage<std::atomic<bool>>>(); });
  auto* job = new DumpJob(env);
  job->cancel = cancel_page;
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
  std::shared_ptr<lib::SharedPage<std::atomic<bool>>> cancel = job->cancel;
  handle.Set("cancel", Napi::Function::New(env, [cancel](const Napi::CallbackInfo& ci) {
               (*cancel)->store(true);
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
