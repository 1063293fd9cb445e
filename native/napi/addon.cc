#include "napi/addon.h"

#include "core/process_table.h"

namespace tripdump::napi {

AddonData& addon_data(Napi::Env env) {
  return *env.GetInstanceData<AddonData>();
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  env.AddCleanupHook([data] {
    for (auto& weak : data->tables)
      if (auto t = weak.lock()) t->close();
  });
  init_sampler(env, exports);
  init_dump(env, exports);
  init_signal(env, exports);
  init_inspector(env, exports);
  init_output_file(env, exports);
  init_peer(env, exports);
  return exports;
}

}  // namespace tripdump::napi

// NODE_API_MODULE wants a plain identifier.
static Napi::Object tripdump_init(Napi::Env env, Napi::Object exports) {
  return tripdump::napi::init(env, exports);
}
NODE_API_MODULE(tripdump, tripdump_init)
