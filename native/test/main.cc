#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "test/harness.h"

namespace tripdump::test {

std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

static int g_failures = 0;
static int g_skips = 0;

void fail(const char* file, int line, const std::string& what) {
  ++g_failures;
  std::fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, what.c_str());
}

void skip(const char* file, int line, const std::string& why) {
  const char* strict = std::getenv("TRIPDUMP_NO_SKIP");
  if (strict && std::strcmp(strict, "1") == 0) {
    fail(file, line, "skipped where nothing may skip (TRIPDUMP_NO_SKIP=1): " + why);
    return;
  }
  ++g_skips;
  std::printf("    skipped (%s:%d): %s\n", file, line, why.c_str());
}

bool have_tool(const char* file, int line, const char* tool, const char* package) {
  const std::string cmd = std::string("command -v '") + tool + "' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) == 0) return true;
  skip(file, line, std::string(tool) + " is not installed (apt-get install " + package + ")");
  return false;
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
  std::printf("native: %d passed, %d failed, %d checks skipped\n", passed, failed, g_skips);
  return failed == 0 && passed > 0 ? 0 : 1;
}
