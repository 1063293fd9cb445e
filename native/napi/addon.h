// Per-environment state of the addon and the registration functions of each *_wrap.cc.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

namespace tripdump {
class ProcessTable;
namespace dump {
struct Result;
}
}  // namespace tripdump

namespace tripdump::napi {

struct AddonData {
  Napi::FunctionReference sampler_ctor;
  // Tables still open in this environment: the cleanup hook closes them so a worker thread or process
  // teardown releases every kept fd even when JS never called close().
  std::vector<std::weak_ptr<ProcessTable>> tables;
};

AddonData& addon_data(Napi::Env env);

Napi::Object init(Napi::Env env, Napi::Object exports);
void init_sampler(Napi::Env env, Napi::Object exports);
void init_dump(Napi::Env env, Napi::Object exports);
void init_signal(Napi::Env env, Napi::Object exports);
void init_inspector(Napi::Env env, Napi::Object exports);
void init_output_file(Napi::Env env, Napi::Object exports);
void init_peer(Napi::Env env, Napi::Object exports);

// The JS CoreDumpResult of a dump (shared by writeCoreDump and watchSignals' 'dumped' event).
Napi::Object dump_result_object(Napi::Env env, const dump::Result& r);

}  // namespace tripdump::napi
