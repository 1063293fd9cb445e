#include "napi/errors.h"

namespace tripdump::napi {

Napi::Error to_js_error(Napi::Env env, const SysError& e) {
  Napi::Error err = Napi::Error::New(env, e.what());
  Napi::Object o = err.Value();
  o.Set("code", SysError::errno_name(e.err()));
  o.Set("errno", -e.err());  // negative, as Node's own SystemError
  o.Set("syscall", e.syscall());
  if (!e.path().empty()) o.Set("path", e.path());
  if (e.pid() > 0) o.Set("pid", e.pid());
  if (!e.detail().empty()) o.Set("detail", e.detail());
  return err;
}

}  // namespace tripdump::napi
