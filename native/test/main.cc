#include <cstdio>
#include <cstring>
#include <exception>

#include "test/harness.h"

namespace tripdump::test {

std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

static int g_failures = 0;

void fail(const char* file, int line, const std::string& what) {
  ++g_failures;
  std::fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, what.c_str());
}

}  // namespace tripdump::test

// Usage: native-test [FILTER] — runs the cases whose name contains FILTER.
int main(int argc, char** argv) {
  using namespace tripdump::test;
  int passed = 0, failed = 0;
  for (const auto& c : registry()) {
    if (argc > 1 && !std::strstr(c.name, argv[1])) continue;
    const int before = g_failures;
    try {
      c.fn();
    } catch (const Abort&) {
    } catch (const std::exception& e) {
      fail(c.name, 0, std::string("uncaught exception: ") + e.what());
    }
    if (g_failures == before) {
      ++passed;
    } else {
      ++failed;
      std::fprintf(stderr, "FAILED %s\n", c.name);
    }
  }
  std::printf("native: %d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
