// Linked into the prebuilt addon and libtripdump only (binding.gyp, TRIPDUMP_PREBUILD=1), where libstdc++
// is linked in statically so they do not need the host's libstdc++ to be as new as the build machine's.
// That libstdc++.a was built against glibc 2.36 and its std::random_device (which tripdump never uses,
// but which comes with every std::string exception) calls arc4random, new in glibc 2.36: this hidden
// definition resolves that reference inside the binary, so the prebuilds load on glibc 2.34 and 2.35 too.
#include <sys/random.h>
#include <unistd.h>

#include <cstdint>

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random() {
  uint32_t r = 0;
  while (::getrandom(&r, sizeof r, 0) != sizeof r) {
  }
  return r;
}
