// The Sampler's native half: a ProcessTable behind an ObjectWrap. Sweeps hand JS an external ArrayBuffer
// over the table's column block, so nothing is copied; sampleAsync and sampleUntil sweep on the sampler's
// own thread.
#include <napi.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "core/fd_budget.h"
#include "core/process_table.h"
#include "napi/addon.h"
#include "napi/errors.h"

namespace tripdump::napi {

namespace {

// (pid, startTime) pairs as one Float64Array: the first sweep over 10,000 processes reports 10,000 new
// rows, and making an object for each here would hold the event loop for milliseconds. JS makes the
// objects when (and if) they are read.
Napi::Float64Array identities(Napi::Env env, const std::vector<Identity>& ids) {
  Napi::Float64Array a = Napi::Float64Array::New(env, ids.size() * 2);
  for (size_t i = 0; i < ids.size(); ++i) {
    a[i * 2] = ids[i].pid;
    a[i * 2 + 1] = ids[i].start_time_ms;
  }
  return a;
}

Napi::Object host_object(Napi::Env env, const HostSample& h) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("cpuPercent", h.cpu_percent);
  o.Set("cpus", h.cpus);
  o.Set("memTotalBytes", static_cast<double>(h.mem_total));
  o.Set("memAvailableBytes", h.has_available
                                 ? Napi::Value(Napi::Number::New(env, static_cast<double>(h.mem_available)))
                                 : env.Null());
  o.Set("memFreeBytes", static_cast<double>(h.mem_free));
  o.Set("swapTotalBytes", static_cast<double>(h.swap_total));
  o.Set("swapFreeBytes", static_cast<double>(h.swap_free));
  o.Set("load1", h.load1);
  o.Set("load5", h.load5);
  o.Set("load15", h.load15);
  o.Set("runnable", static_cast<double>(h.runnable));
  o.Set("processes", static_cast<double>(h.processes));
  return o;
}

bool flag(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

// The thread a sampler's async sweeps run on: its own, not the libuv pool (whose four threads also serve
// fs and dns), started on the first sampleAsync() and niced to +10. A sweep of 10,000 processes keeps a core
// busy for ~70 ms; on a small host the event loop's thread would otherwise wait behind it for a core, and
// a higher nice value lets the scheduler run the event loop first whenever both want the same CPU.
class SweepThread {
 public:
  ~SweepThread() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  void post(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
      if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    }
    cv_.notify_one();
  }

 private:
  void run() {
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()),
                10);  // best effort: a refusal changes nothing else
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stop_ with nothing left to do
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

// The pacing of sampleUntil(): when the last sweep started, and a sticky "wake up" from the JS thread.
class Gate {
 public:
  using Clock = std::chrono::steady_clock;
  // Sleeps until `at`; false when woken instead (the flag is consumed).
  bool sleep_until(Clock::time_point at) {
    std::unique_lock lock(mu_);
    if (cv_.wait_until(lock, at, [this] { return woken_; })) {
      woken_ = false;
      return false;
    }
    return true;
  }
  void wake() {
    {
      std::lock_guard lock(mu_);
      woken_ = true;
    }
    cv_.notify_all();
  }
  Clock::time_point last_sweep;  // used by the sweep thread only

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
};

class SamplerWrap : public Napi::ObjectWrap<SamplerWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(
        env, "NativeSampler",
        {InstanceMethod<&SamplerWrap::watch>("watch"), InstanceMethod<&SamplerWrap::unwatch>("unwatch"),
         InstanceMethod<&SamplerWrap::sample>("sample"),
         InstanceMethod<&SamplerWrap::sample_async>("sampleAsync"),
         InstanceMethod<&SamplerWrap::sample_until>("sampleUntil"),
         InstanceMethod<&SamplerWrap::watch_async>("watchAsync"), InstanceMethod<&SamplerWrap::wake>("wake"),
         InstanceMethod<&SamplerWrap::close>("close"), InstanceAccessor<&SamplerWrap::size>("size")});
  }

  // new NativeSampler({fields: mask, all, children, threads, host, keep, sweepThreads})
  explicit SamplerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SamplerWrap>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    TableOptions opts;
    opts.fields = o.Get("fields").As<Napi::Number>().Uint32Value();
    opts.all = flag(o, "all");
    opts.follow.children = flag(o, "children");
    opts.follow.threads = flag(o, "threads");
    opts.host = flag(o, "host");
    if (o.Get("keep").IsNumber())
      opts.keep = std::max<size_t>(2, o.Get("keep").As<Napi::Number>().Uint32Value());
    if (o.Get("sweepThreads").IsNumber())
      opts.workers = std::max<size_t>(1, o.Get("sweepThreads").As<Napi::Number>().Uint32Value());
    table_ = guarded(env, [&] { return std::make_shared<ProcessTable>(opts); });
    cache_.resize(std::max<size_t>(2, opts.keep));
    addon_data(env).tables.push_back(table_);
  }

  ~SamplerWrap() override {
    if (table_) table_->close();
    gate_->wake();
  }

  // The JS object handed back for a sweep: columns over the block, plus the sweep's small facts.
  Napi::Object result_object(Napi::Env env, SweepResult& r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("buffer", buffer_for(env, r.block));
    o.Set("capacity", static_cast<double>(r.block->capacity));
    o.Set("rows", static_cast<double>(r.rows));
    o.Set("generation", static_cast<double>(r.generation));
    o.Set("time", r.time_ms);
    o.Set("durationMs", r.duration_ms);
    o.Set("started", identities(env, r.started));
    o.Set("exited", identities(env, r.exited));
    if (r.has_host) o.Set("host", host_object(env, r.host));
    return o;
  }

 private:
  // One external ArrayBuffer per block, cached for the blocks a table rotates through. The
  // finalizer holds a reference to the block, so JS views stay valid after the table grows past it.
  Napi::ArrayBuffer buffer_for(Napi::Env env, const std::shared_ptr<ColumnBlock>& block) {
    for (auto& c : cache_)
      if (c.block == block.get() && !c.ref.IsEmpty()) return c.ref.Value();
    auto* hold = new std::shared_ptr<ColumnBlock>(block);
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
        env, block->data.get(), block->bytes,
        [](Napi::Env, void*, std::shared_ptr<ColumnBlock>* h) { delete h; }, hold);
    Cached& slot = cache_[next_slot_];
    next_slot_ = (next_slot_ + 1) % cache_.size();
    slot.block = block.get();
    slot.ref = Napi::Persistent(ab);
    return ab;
  }

  static WatchOptions watch_options(const Napi::Value& v) {
    WatchOptions w;
    if (v.IsObject()) {
      w.children = flag(v.As<Napi::Object>(), "children");
      w.threads = flag(v.As<Napi::Object>(), "threads");
    }
    return w;
  }

  Napi::Value watch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int pid = info[0].As<Napi::Number>().Int32Value();
    const WatchOptions w = watch_options(info[1]);
    const Identity id = guarded(env, [&] { return table_->watch(pid, w); });
    Napi::Object o = Napi::Object::New(env);
    o.Set("pid", id.pid);
    o.Set("startTime", id.start_time_ms);
    return o;
  }

  Napi::Value unwatch(const Napi::CallbackInfo& info) {
    table_->unwatch(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  }

  Napi::Value sample(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SweepResult r = guarded(env, [&] { return table_->sweep(); });
    return result_object(env, r);
  }

  Napi::Value sample_async(const Napi::CallbackInfo& info) {
    return on_sweeper<SweepResult>(
        info.Env(), "tripdump:sample", [table = table_](SweepResult& r) { r = table->sweep(); },
        [this](Napi::Env env, SweepResult& r) -> Napi::Value { return result_object(env, r); });
  }
  Napi::Value sample_until(const Napi::CallbackInfo& info);
  Napi::Value watch_async(const Napi::CallbackInfo& info);

  // Every async method here: `work` fills a T on the sampler's thread, `settle` makes the promise's value
  // of it on the JS thread; a SysError from `work` rejects the promise instead. The job holds a reference
  // to this wrapper (and so to its buffer cache) until it has settled.
  template <typename T>
  Napi::Value on_sweeper(Napi::Env env, const char* name, std::function<void(T&)> work,
                         std::function<Napi::Value(Napi::Env, T&)> settle) {
    struct Job {
      Napi::Promise::Deferred deferred;
      Napi::ObjectReference wrap_ref;
      Napi::ThreadSafeFunction tsfn;
      std::function<void(T&)> work;
      std::function<Napi::Value(Napi::Env, T&)> settle;
      T result{};
      std::unique_ptr<SysError> error;
    };
    auto* job = new Job{Napi::Promise::Deferred::New(env),
                        Napi::Persistent(Value()),
                        {},
                        std::move(work),
                        std::move(settle),
                        {},
                        {}};
    job->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), name, 0, 1, job,
                                              [](Napi::Env, Job* j) { delete j; });
    sweeper_.post([job] {
      try {
        job->work(job->result);
      } catch (const SysError& e) {
        job->error = std::make_unique<SysError>(e);
      }
      job->tsfn.BlockingCall([job](Napi::Env env, Napi::Function) {
        Napi::HandleScope scope(env);
        if (job->error)
          job->deferred.Reject(to_js_error(env, *job->error).Value());
        else
          job->deferred.Resolve(job->settle(env, job->result));
      });
      job->tsfn.Release();
    });
    return job->deferred.Promise();
  }

  // Ends a sampleUntil() wait now, or the next one at once if none is waiting.
  Napi::Value wake(const Napi::CallbackInfo& info) {
    gate_->wake();
    return info.Env().Undefined();
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    table_->close();
    gate_->wake();
    return info.Env().Undefined();
  }

  Napi::Value size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(table_->size()));
  }

  struct Cached {
    ColumnBlock* block = nullptr;
    Napi::Reference<Napi::ArrayBuffer> ref;
  };
  std::shared_ptr<ProcessTable> table_;
  std::shared_ptr<Gate> gate_ = std::make_shared<Gate>();
  // Declared after table_: destroyed first, so its thread is joined while the table still exists. No job
  // can be pending by then (each one holds a reference to this wrapper).
  SweepThread sweeper_;
  std::vector<Cached> cache_;
  size_t next_slot_ = 0;
};

// sampleUntil(intervalMs, waitMs, conditions: Float64Array of (pid, field, above, threshold), maxBatch):
// sweeps on the sampler's thread every interval, keeping the latest `maxBatch` results, until a sweep has
// news for JS (a row started or exited, a wake condition is met, the deadline has passed) or JS wakes it.
// An idle monitor's event loop then sleeps instead of judging every poll.
Napi::Value SamplerWrap::sample_until(const Napi::CallbackInfo& info) {
  using Clock = Gate::Clock;
  const auto interval = std::chrono::microseconds(
      static_cast<int64_t>(std::max(0.0, info[0].As<Napi::Number>().DoubleValue()) * 1000));
  const double wait_ms = info[1].As<Napi::Number>().DoubleValue();
  // A negative or infinite wait has no deadline.
  const Clock::time_point deadline =
      wait_ms >= 0 && std::isfinite(wait_ms)
          ? Clock::now() + std::chrono::microseconds(static_cast<int64_t>(wait_ms * 1000))
          : Clock::time_point::max();
  std::vector<WakeCondition> conditions;
  const Napi::Float64Array c = info[2].As<Napi::Float64Array>();
  for (size_t i = 0; i + 3 < c.ElementLength(); i += 4)
    conditions.push_back({static_cast<int>(c[i]), static_cast<int>(c[i + 1]), c[i + 2] != 0, c[i + 3]});
  const size_t max_batch = std::max<uint32_t>(1, info[3].As<Napi::Number>().Uint32Value());

  using Batch = std::deque<SweepResult>;
  return on_sweeper<Batch>(
      info.Env(), "tripdump:sampleUntil",
      [table = table_, gate = gate_, interval, deadline, max_batch, conditions](Batch& results) {
        for (;;) {
          const Clock::time_point next =
              gate->last_sweep == Clock::time_point{} ? Clock::now() : gate->last_sweep + interval;
          if (!gate->sleep_until(next)) return;
          gate->last_sweep = Clock::now();
          results.push_back(table->sweep());
          if (results.size() > max_batch) results.pop_front();
          const SweepResult& r = results.back();
          if (!r.started.empty() || !r.exited.empty() || Clock::now() >= deadline ||
              table->any_met(conditions))
            return;
        }
      },
      [this](Napi::Env env, Batch& results) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, results.size());
        for (uint32_t i = 0; i < results.size(); ++i) out.Set(i, result_object(env, results[i]));
        return out;
      });
}

// watchAsync(pids: Int32Array, options) → Promise<{ ids: Float64Array of (pid, startTime) pairs with NaN
// where the watch failed, errors: [index, Error] pairs }>: opening 10,000 processes' files takes ~250 ms,
// which on the JS thread would be one long stall.
Napi::Value SamplerWrap::watch_async(const Napi::CallbackInfo& info) {
  const Napi::Int32Array a = info[0].As<Napi::Int32Array>();
  struct Watched {
    std::vector<Identity> ids;
    std::vector<std::pair<uint32_t, SysError>> errors;
  };
  return on_sweeper<Watched>(
      info.Env(), "tripdump:watch",
      [table = table_, pids = std::vector<int>(a.Data(), a.Data() + a.ElementLength()),
       options = watch_options(info[1])](Watched& w) {
        w.ids.reserve(pids.size());
        for (uint32_t i = 0; i < pids.size(); ++i) {
          try {
            w.ids.push_back(table->watch(pids[i], options));
          } catch (const SysError& e) {
            w.ids.push_back({pids[i], NAN});
            w.errors.emplace_back(i, e);
          }
        }
      },
      [](Napi::Env env, Watched& w) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("ids", identities(env, w.ids));
        Napi::Array errors = Napi::Array::New(env, w.errors.size() * 2);
        for (uint32_t i = 0; i < w.errors.size(); ++i) {
          errors.Set(i * 2, w.errors[i].first);
          errors.Set(i * 2 + 1, to_js_error(env, w.errors[i].second).Value());
        }
        out.Set("errors", errors);
        return out;
      });
}

Napi::Value layout(const Napi::CallbackInfo& info) {
  const size_t cap = static_cast<size_t>(info[0].As<Napi::Number>().Int64Value());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("bytes", static_cast<double>(ColumnBlock::bytes_for(cap)));
  o.Set("comm", static_cast<double>(ColumnBlock::comm_offset(cap)));
  o.Set("changed", static_cast<double>(ColumnBlock::changed_offset(cap)));
  o.Set("unavailable", static_cast<double>(ColumnBlock::unavailable_offset(cap)));
  o.Set("flags", static_cast<double>(ColumnBlock::flags_offset(cap)));
  return o;
}

}  // namespace

void init_sampler(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = SamplerWrap::define(env);
  addon_data(env).sampler_ctor = Napi::Persistent(ctor);
  exports.Set("NativeSampler", ctor);
  Napi::Array names = Napi::Array::New(env, kFieldCount);
  for (int i = 0; i < kFieldCount; ++i) names.Set(static_cast<uint32_t>(i), kFieldNames[i]);
  exports.Set("fieldNames", names);
  exports.Set("commMax", static_cast<double>(kCommMax));
  exports.Set("layout", Napi::Function::New(env, layout, "layout"));
  exports.Set("fdBudget", Napi::Function::New(
                              env,
                              // fdBudget(limit?): reads the budget; with a limit, caps it (tests, embedders).
                              [](const Napi::CallbackInfo& info) {
                                if (info[0].IsNumber())
                                  FdBudget::instance().set_limit(
                                      static_cast<size_t>(info[0].As<Napi::Number>().Int64Value()));
                                Napi::Object o = Napi::Object::New(info.Env());
                                o.Set("limit", static_cast<double>(FdBudget::instance().limit()));
                                o.Set("inUse", static_cast<double>(FdBudget::instance().in_use()));
                                return o;
                              },
                              "fdBudget"));
}

}  // namespace tripdump::napi
