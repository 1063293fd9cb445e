// peerCredentials(fd) -> {pid, uid, gid}: SO_PEERCRED of a connected Unix socket (core/peer_cred.h). Node's
// net module does not expose it; the .NET client checks a diagnostics socket's listener with it.
#include <napi.h>

#include "core/peer_cred.h"
#include "napi/addon.h"
#include "napi/errors.h"

namespace tripdump::napi {

namespace {

Napi::Value peer_credentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = info[0].As<Napi::Number>().Int32Value();
  return guarded(env, [&] {
    const PeerCred c = tripdump::peer_credentials(fd);
    Napi::Object o = Napi::Object::New(env);
    o.Set("pid", c.pid);
    o.Set("uid", c.uid);
    o.Set("gid", c.gid);
    return o;
  });
}

}  // namespace

void init_peer(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCredentials", Napi::Function::New(env, peer_credentials, "peerCredentials"));
}

}  // namespace tripdump::napi
