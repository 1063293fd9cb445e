// Turns the core's SysError into a JS Error carrying Node's fields (code, errno, syscall, path) plus pid;
// src/errors.ts maps those to typed classes.
#pragma once

#include <napi.h>

#include "core/error.h"

namespace tripdump::napi {

Napi::Error to_js_error(Napi::Env env, const SysError& e);

// Runs fn, rethrowing a SysError as a JS error (with NAPI_CPP_EXCEPTIONS, Napi::Error propagates).
template <typename Fn>
auto guarded(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const SysError& e) {
    throw to_js_error(env, e);
  }
}

}  // namespace tripdump::napi
