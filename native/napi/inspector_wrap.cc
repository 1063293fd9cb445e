// The native half of reaching a Node target's inspector (src/runtimes/node/): its listening sockets, a
// TCP connect from inside its network namespace, and the guard process (inspector/guard.h) that closes
// the inspector when tripdump cannot.
#include <arpa/inet.h>
#include <fcntl.h>
#include <napi.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "core/fd.h"
#include "inspector/guard.h"
#include "inspector/listeners.h"
#include "inspector/netns.h"
#include "lib/worker_process.h"
#include "napi/addon.h"
#include "napi/errors.h"

namespace tripdump::napi {

namespace {

// tcpListeners(pid, all) -> [{address, port, v6, inode}]: the process's own listeners, or (all) every
// listener in its network namespace.
Napi::Value tcp_listeners(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int pid = info[0].As<Napi::Number>().Int32Value();
  const bool all = info[1].ToBoolean().Value();
  return guarded(env, [&] {
    const auto list = all ? inspector::namespace_listeners(pid) : inspector::process_listeners(pid);
    Napi::Array out = Napi::Array::New(env, list.size());
    for (uint32_t i = 0; i < list.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("address", list[i].host());
      o.Set("port", list[i].port);
      o.Set("v6", list[i].v6);
      o.Set("inode", static_cast<double>(list[i].inode));
      out.Set(i, o);
    }
    return out;
  });
}

// otherNetns(pid) -> whether the process is in another network namespace than ours.
Napi::Value other_netns(const Napi::CallbackInfo& info) {
  const int pid = info[0].As<Napi::Number>().Int32Value();
  return guarded(info.Env(), [&] { return Napi::Boolean::New(info.Env(), inspector::other_netns(pid)); });
}

inspector::TcpEndpoint endpoint(Napi::Env env, const std::string& address, int port) {
  inspector::TcpEndpoint to;
  to.v6 = address.find(':') != std::string::npos;
  if (::inet_pton(to.v6 ? AF_INET6 : AF_INET, address.c_str(), to.addr.data()) != 1 || port <= 0 ||
      port > 65535)
    throw Napi::TypeError::New(env,
                               "not a numeric address and port: " + address + " " + std::to_string(port));
  to.port = static_cast<uint16_t>(port);
  return to;
}

// connectTcp(pid, address, port, timeoutMs) -> fd of a connected socket, made from inside pid's network
// namespace. The caller owns the fd (net.Socket({fd}) takes it over).
Napi::Value connect_tcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int pid = info[0].As<Napi::Number>().Int32Value();
  const auto to =
      endpoint(env, info[1].As<Napi::String>().Utf8Value(), info[2].As<Napi::Number>().Int32Value());
  const int timeout = info[3].As<Napi::Number>().Int32Value();
  return guarded(env,
                 [&] { return Napi::Number::New(env, inspector::connect_tcp(pid, to, timeout).release()); });
}

// startInspectorGuard({pid, startTicks, openTimeoutMs, lateWatchMs, probeMessage, closeMessage}) -> fd
// Starts the guard (it opens the inspector at once) and returns tripdump's end of its control socket, a
// stream of lines; EOF on it means the guard has exited. The guard does not die with tripdump: that is the
// point. It is a grandchild, reparented to init (or the nearest subreaper) as soon as the intermediate
// process exits, which is at once: whoever reaps it, tripdump has no child to wait for (a waiting thread
// would have to be joined when Node exits, and the guard may outlive tripdump on purpose).
Napi::Value start_inspector_guard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  inspector::GuardOptions options;
  options.pid = o.Get("pid").As<Napi::Number>().Int32Value();
  options.start_ticks = static_cast<uint64_t>(o.Get("startTicks").As<Napi::Number>().DoubleValue());
  options.open_timeout_ms = o.Get("openTimeoutMs").As<Napi::Number>().Int32Value();
  options.late_watch_ms = o.Get("lateWatchMs").As<Napi::Number>().Int32Value();
  options.probe_message = o.Get("probeMessage").As<Napi::String>().Utf8Value();
  options.close_message = o.Get("closeMessage").As<Napi::String>().Utf8Value();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    throw to_js_error(env, SysError(errno, "socketpair"));
  Fd ours(sv[0]), theirs(sv[1]);
  const pid_t middle = guarded(env, [&] {
    return lib::fork_worker(
        [&] {
          const pid_t guard = ::fork();
          if (guard < 0) ::_exit(errno);
          if (guard == 0) {
            // The guard may outlive tripdump, on purpose: it must not hold tripdump's stdin, stdout and
            // stderr open (whoever reads tripdump's output to its end, `tripdump node stack PID | less`, a
            // shell's $(...), would wait for the guard). It speaks on the control socket only.
            const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
            if (null < 0) ::_exit(errno);
            for (int fd = 0; fd <= 2; fd++)
              if (::dup2(null, fd) < 0) ::_exit(errno);
            if (null > 2) ::close(null);
            inspector::run_guard(theirs.get(), options);
            ::_exit(0);
          }
        },
        theirs.get(), 0);
  });
  theirs.reset();
  int status = 0;
  while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw to_js_error(env, SysError(WIFEXITED(status) ? WEXITSTATUS(status) : ECHILD, "fork", {}, options.pid,
                                    "the inspector guard could not be started"));
  return Napi::Number::New(env, ours.release());
}

}  // namespace

void init_inspector(Napi::Env env, Napi::Object exports) {
  exports.Set("tcpListeners", Napi::Function::New(env, tcp_listeners, "tcpListeners"));
  exports.Set("otherNetns", Napi::Function::New(env, other_netns, "otherNetns"));
  exports.Set("connectTcp", Napi::Function::New(env, connect_tcp, "connectTcp"));
  exports.Set("startInspectorGuard", Napi::Function::New(env, start_inspector_guard, "startInspectorGuard"));
}

}  // namespace tripdump::napi
