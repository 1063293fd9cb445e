// A small self-written test harness for the native core (docs/design.md §17): TEST registers a case, CHECK
// and CHECK_EQ record a failure and carry on, REQUIRE stops the case. main.cc runs them all.
#pragma once

#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace tripdump::test {

struct Case {
  const char* name;
  std::function<void()> fn;
};
std::vector<Case>& registry();
void fail(const char* file, int line, const std::string& what);
struct Abort {};  // thrown by REQUIRE to end the current case

// A check that needs something this machine lacks (a tool, root, a kernel feature) is skipped with a
// printed reason. With TRIPDUMP_NO_SKIP=1 (CI, where everything is installed) a skip is a failure.
void skip(const char* file, int line, const std::string& why);
// Whether a command is on PATH; when it is not, the check that needs it is skipped (see skip) with the
// Debian package that provides it.
bool have_tool(const char* file, int line, const char* tool, const char* package);

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

template <typename A, typename B>
std::string describe(const A& a, const B& b) {
  std::ostringstream s;
  s << "left: " << a << ", right: " << b;
  return s.str();
}

}  // namespace tripdump::test

#define TD_CAT2(a, b) a##b
#define TD_CAT(a, b) TD_CAT2(a, b)
#define TEST(name)                                                                   \
  static void TD_CAT(test_, name)();                                                 \
  static ::tripdump::test::Registrar TD_CAT(reg_, name)(#name, TD_CAT(test_, name)); \
  static void TD_CAT(test_, name)()
#define CHECK(cond) ((cond) ? (void)0 : ::tripdump::test::fail(__FILE__, __LINE__, "CHECK(" #cond ")"))
#define CHECK_EQ(a, b)                                                                              \
  do {                                                                                              \
    const auto& td_a = (a);                                                                         \
    const auto& td_b = (b);                                                                         \
    if (!(td_a == td_b))                                                                            \
      ::tripdump::test::fail(__FILE__, __LINE__,                                                    \
                             "CHECK_EQ(" #a ", " #b ") " + ::tripdump::test::describe(td_a, td_b)); \
  } while (0)
#define SKIP(why) ::tripdump::test::skip(__FILE__, __LINE__, why)
#define HAVE_TOOL(tool, package) ::tripdump::test::have_tool(__FILE__, __LINE__, tool, package)
#define REQUIRE(cond)                                                   \
  do {                                                                  \
    if (!(cond)) {                                                      \
      ::tripdump::test::fail(__FILE__, __LINE__, "REQUIRE(" #cond ")"); \
      throw ::tripdump::test::Abort{};                                  \
    }                                                                   \
  } while (0)
