// watchSignals' native half. The watch (dump/signal_watch.h) runs in a forked watcher process (see
// lib/worker_process.h for why not a thread of Node), attached synchronously so watchSignals can throw a
// typed error for a missing pid, EPERM or a target already traced. Watcher and Node talk over a
// SOCK_SEQPACKET socket pair: events up (one message each), answers and stop down. A relay std::thread
// turns events into onEvent calls through a ThreadSafeFunction and settles `done` when the watcher ends.
// If Node dies, the watcher gets SIGTERM (PR_SET_PDEATHSIG) and ends the watch as stop() would.
#include <napi.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>

#include "core/fd.h"
#include "dump/signal_watch.h"
#include "lib/worker_process.h"
#include "napi/addon.h"
#include "napi/errors.h"

namespace tripdump::napi {

using lib::fork_worker;
using lib::SharedError;
using lib::SharedResult;

namespace {

// Watcher -> Node.
struct EventMsg {
  enum : int { kAttached, kSignal, kDumped, kDumpError, kExit, kStopped, kFatal } type;
  int signo, tid, status;
  double time;
  char path[4096];
  SharedResult result;  // kDumped
  SharedError error;    // kDumpError, kFatal
};

// Node -> watcher.
struct AnswerMsg {
  enum : int { kSkip, kDump, kStop } kind;
  int mode;
  bool has_filter, overwrite;
  uint32_t filter;
  char path[4096];
};

void copy_path(char* dst, const std::string& s) {
  const size_t n = std::min<size_t>(4095, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = 0;
}

bool send_msg(int fd, const void* m, size_t len) {
  for (;;) {
    if (::send(fd, m, len, MSG_NOSIGNAL) == static_cast<ssize_t>(len)) return true;
    if (errno != EINTR) return false;
  }
}

// Runs in the watcher process: forwards events to `fd` and waits there for answers.
class Relay : public dump::SignalWatchHandler {
 public:
  explicit Relay(int fd) : fd_(fd), msg_(std::make_unique<EventMsg>()) {}

  void send(int type) {
    msg_->type = static_cast<decltype(msg_->type)>(type);
    send_msg(fd_, msg_.get(), sizeof *msg_);
  }
  EventMsg& msg() { return *msg_; }

  std::optional<dump::DumpRequest> on_signal(const dump::SignalStop& s, bool& stop) override {
    msg_->signo = s.signo;
    msg_->tid = s.tid;
    msg_->time = s.time_ms;
    send(EventMsg::kSignal);
    // Every thread of the target waits for this answer: block for it (a stop counts as one).
    AnswerMsg a{};
    for (;;) {
      const ssize_t n = ::recv(fd_, &a, sizeof a, 0);
      if (n == sizeof a) break;
      if (n < 0 && errno == EINTR) continue;
      stop = true;  // Node is gone or the channel broke: let go of the target
      return std::nullopt;
    }
    if (a.kind == AnswerMsg::kStop) stop = true;
    if (a.kind != AnswerMsg::kDump) return std::nullopt;
    a.path[sizeof a.path - 1] = 0;
    dump::DumpRequest req;
    req.path = a.path;
    req.options.mode = static_cast<dump::Mode>(a.mode);
    if (a.has_filter) req.options.filter = a.filter;
    req.options.overwrite = a.overwrite;
    copy_path(msg_->path, req.path);
    return req;
  }
  void on_dumped(const dump::Result& r) override {
    msg_->result.store(r);
    send(EventMsg::kDumped);
  }
  void on_dump_error(const SysError& e) override {
    msg_->error.store(e);
    send(EventMsg::kDumpError);
  }
  bool on_input() override {
    AnswerMsg a{};
    const ssize_t n = ::recv(fd_, &a, sizeof a, MSG_DONTWAIT);
    if (n < 0) return errno != EAGAIN && errno != EINTR;
    // EOF (Node closed its end) or stop; an answer nobody asked for is ignored.
    return n == 0 || a.kind == AnswerMsg::kStop;
  }

 private:
  int fd_;
  std::unique_ptr<EventMsg> msg_;  // 23 KB: not on the stack of every call
};

void watcher(int fd, int pid, uint64_t mask) {
  Relay relay(fd);
  try {
    dump::SignalWatch watch(pid, mask);
    relay.send(EventMsg::kAttached);
    const dump::SignalWatch::Exit e = watch.run(relay, fd);
    relay.msg().status = e.status;
    relay.send(e.exited ? EventMsg::kExit : EventMsg::kStopped);
  } catch (const SysError& e) {
    relay.msg().error.store(e);
    relay.send(EventMsg::kFatal);
  } catch (const std::exception& e) {
    relay.msg().error.store(e);
    relay.send(EventMsg::kFatal);
  }
}

// The Node end of the socket: shared by the relay thread and the answer()/stop() closures, which may
// outlive the watch (their sends then just fail).
struct Channel {
  Fd sock;
  pid_t watcher = 0;
};

struct WatchJob {
  std::shared_ptr<Channel> channel;
  int pid = 0;
  std::thread thread;
  Napi::ThreadSafeFunction tsfn;
  Napi::Promise::Deferred deferred;
  Napi::FunctionReference on_event;
  explicit WatchJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

Napi::Object event_object(Napi::Env env, const EventMsg& m) {
  Napi::Object o = Napi::Object::New(env);
  switch (m.type) {
    case EventMsg::kAttached:
      o.Set("type", "attached");
      break;
    case EventMsg::kSignal:
      o.Set("type", "signal");
      o.Set("signo", m.signo);
      o.Set("tid", m.tid);
      o.Set("time", m.time);
      break;
    case EventMsg::kDumped:
      o.Set("type", "dumped");
      o.Set("result", dump_result_object(env, m.result.load(m.path)));
      break;
    case EventMsg::kDumpError:
      o.Set("type", "dump-error");
      try {
        m.error.rethrow();
      } catch (const SysError& e) {
        o.Set("error", to_js_error(env, e).Value());
      } catch (const std::exception& e) {
        o.Set("error", Napi::Error::New(env, e.what()).Value());
      }
      break;
    default:  // kExit
      o.Set("type", "exit");
      if (WIFSIGNALED(m.status)) {
        o.Set("status", 128 + WTERMSIG(m.status));
        o.Set("signal", WTERMSIG(m.status));
      } else {
        o.Set("status", WEXITSTATUS(m.status));
        o.Set("signal", env.Null());
      }
  }
  return o;
}

void emit(WatchJob* job, std::unique_ptr<EventMsg> m) {
  EventMsg* raw = m.release();
  job->tsfn.BlockingCall(raw, [job](Napi::Env env, Napi::Function, EventMsg* data) {
    std::unique_ptr<EventMsg> hold(data);
    try {
      job->on_event.Call({event_object(env, *data)});
    } catch (const Napi::Error& e) {
      e.ThrowAsJavaScriptException();  // reported as an uncaught exception, as for any callback
    }
  });
}

// The relay thread: events up until the watcher ends, then settles `done`.
void relay_events(WatchJob* job) {
  const int fd = job->channel->sock.get();
  const pid_t child = job->channel->watcher;
  auto first = std::make_unique<EventMsg>();
  first->type = EventMsg::kAttached;
  emit(job, std::move(first));
  bool ended = false;  // kExit or kStopped seen: a clean end
  std::unique_ptr<SysError> fatal;
  std::string failure;
  int status = 0;
  bool reaped = false;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, 200);
    if (r > 0) {
      auto m = std::make_unique<EventMsg>();
      const ssize_t n = ::recv(fd, m.get(), sizeof *m, MSG_DONTWAIT);
      if (n == sizeof *m) {
        if (m->type == EventMsg::kStopped) {
          ended = true;
        } else if (m->type == EventMsg::kFatal) {
          try {
            m->error.rethrow();
          } catch (const SysError& e) {
            fatal = std::make_unique<SysError>(e);
          } catch (const std::exception& e) {
            failure = e.what();
          }
        } else {
          ended = ended || m->type == EventMsg::kExit;
          emit(job, std::move(m));
        }
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      break;  // EOF: the watcher is gone
    }
    // A copy of the watcher's end held by another forked process would delay EOF: check the pid too.
    if (::waitpid(child, &status, WNOHANG) == child) {
      reaped = true;
      // Read what it sent before it exited.
      pollfd q{fd, POLLIN, 0};
      if (::poll(&q, 1, 0) > 0) continue;
      break;
    }
  }
  if (!reaped)
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
  if (!ended && !fatal && failure.empty())
    fatal = std::make_unique<SysError>(
        ECHILD, "watchSignals", "", job->pid,
        WIFSIGNALED(status) ? "the watcher process died of signal " + std::to_string(WTERMSIG(status))
                            : "the watcher process exited with " + std::to_string(WEXITSTATUS(status)));
  job->tsfn.BlockingCall(
      [job, fatal = std::shared_ptr<SysError>(std::move(fatal)), failure](Napi::Env env, Napi::Function) {
        if (fatal)
          job->deferred.Reject(to_js_error(env, *fatal).Value());
        else if (!failure.empty())
          job->deferred.Reject(Napi::Error::New(env, failure).Value());
        else
          job->deferred.Resolve(env.Undefined());
      });
  job->tsfn.Release();
}

bool send_answer(const Channel& c, const AnswerMsg& a) {
  return send_msg(c.sock.get(), &a, sizeof a);
}

// watchSignals(pid, signals, onEvent) -> {answer(a), stop(), done}
Napi::Value watch_signals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int pid = info[0].As<Napi::Number>().Int32Value();
  Napi::Array list = info[1].As<Napi::Array>();
  uint64_t mask = 0;
  for (uint32_t i = 0; i < list.Length(); i++) {
    const int sig = list.Get(i).As<Napi::Number>().Int32Value();
    if (sig < 1 || sig > 64 || sig == SIGKILL || sig == SIGSTOP)
      throw Napi::RangeError::New(env, "cannot watch signal " + std::to_string(sig));
    mask |= 1ull << (sig - 1);
  }
  Napi::Function on_event = info[2].As<Napi::Function>();

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    throw to_js_error(env, SysError(errno, "socketpair", "", pid));
  auto channel = std::make_shared<Channel>();
  channel->sock.reset(sv[0]);
  Fd theirs(sv[1]);
  const int their_fd = theirs.get();
  pid_t child = 0;
  // Death signal SIGTERM, not SIGKILL: the watch ends on it cleanly and hands back a held signal, which
  // the kernel's own detach (tracer killed) would lose.
  guarded(env, [&] { child = fork_worker([&] { watcher(their_fd, pid, mask); }, their_fd, SIGTERM); });
  theirs.reset();
  channel->watcher = child;

  // Attaching takes milliseconds: wait for it here so every failure is a synchronous, typed throw.
  auto first = std::make_unique<EventMsg>();
  pollfd p{channel->sock.get(), POLLIN, 0};
  ssize_t n = -1;
  if (::poll(&p, 1, 10000) > 0) n = ::recv(channel->sock.get(), first.get(), sizeof *first, 0);
  if (n != sizeof *first || first->type != EventMsg::kAttached) {
    ::kill(child, SIGKILL);  // detaches anything it seized
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
    if (n == sizeof *first && first->type == EventMsg::kFatal) {
      guarded(env, [&] { first->error.rethrow(); });
    }
    throw to_js_error(env, SysError(n < 0 ? ETIMEDOUT : ECHILD, "watchSignals", "", pid,
                                    "the watcher process did not attach"));
  }

  auto* job = new WatchJob(env);
  job->channel = channel;
  job->pid = pid;
  job->on_event = Napi::Persistent(on_event);
  job->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "tripdump:signals", 0, 1, job,
                                            [](Napi::Env, WatchJob* j) {
                                              if (j->thread.joinable()) j->thread.join();
                                              delete j;
                                            });
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("done", job->deferred.Promise());
  handle.Set("answer", Napi::Function::New(env, [channel](const Napi::CallbackInfo& ci) {
               AnswerMsg a{};
               a.kind = AnswerMsg::kSkip;
               if (ci[0].IsObject()) {
                 Napi::Object o = ci[0].As<Napi::Object>();
                 a.kind = AnswerMsg::kDump;
                 copy_path(a.path, o.Get("path").As<Napi::String>().Utf8Value());
                 const std::string mode = o.Get("mode").ToString().Utf8Value();
                 a.mode = static_cast<int>(mode == "stop"       ? dump::Mode::kStop
                                           : mode == "snapshot" ? dump::Mode::kSnapshot
                                                                : dump::Mode::kAuto);
                 if (o.Get("filter").IsNumber()) {
                   a.has_filter = true;
                   a.filter = o.Get("filter").As<Napi::Number>().Uint32Value();
                 }
                 a.overwrite = o.Get("overwrite").ToBoolean().Value();
               }
               send_answer(*channel, a);  // fails only once the watch has ended: nothing to answer then
               return ci.Env().Undefined();
             }));
  handle.Set("stop", Napi::Function::New(env, [channel](const Napi::CallbackInfo& ci) {
               AnswerMsg a{};
               a.kind = AnswerMsg::kStop;
               send_answer(*channel, a);
               return ci.Env().Undefined();
             }));
  job->thread = std::thread(relay_events, job);
  return handle;
}

}  // namespace

void init_signal(Napi::Env env, Napi::Object exports) {
  exports.Set("watchSignals", Napi::Function::New(env, watch_signals, "watchSignals"));
}

}  // namespace tripdump::napi
