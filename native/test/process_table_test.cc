// The ProcessTable against real processes that come and go.
#include "core/process_table.h"

#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "core/error.h"
#include "test/harness.h"

using namespace tripdump;

namespace {

constexpr size_t kStack = 64 * 1024;
// About 1 in 150 exits was caught in the reaping window before it was handled: enough children that
// this test fails then.
constexpr int kChildren = 1000;

// A process that shares our memory (CLONE_VM: its exit has no address space to tear down, so it is as
// quick as a small program's, not an ASan process's) and exits when the pipe closes, so its exit starts
// right as the watching does. Raw system calls only: it runs on a stack of its own, outside the sanitizers.
__attribute__((no_sanitize("address", "undefined"))) int exit_when_told(void* arg) {
  const int* go = static_cast<const int*>(arg);
  char c;
  ::syscall(SYS_close, go[1]);
  ::syscall(SYS_read, go[0], &c, 1);
  ::syscall(SYS_exit, 0);
  return 0;
}

}  // namespace

// A watch() that races a process's exit must fail with ESRCH and nothing else, at whatever moment it
// lands: before the open (ENOENT on the path), between open and read (ESRCH from the read), or in the
// reaping window where stat still reads but says state X with pgrp -1 (which once came out as
// "open failed: EINVAL" and ended a monitor). Each child exits at once while a second thread reaps it;
// this thread keeps watching it until the table says it is gone. Every file a watch opens is asked for
// (statm, status, io, the fd directory), so each of their opens races the exit too. Then the sweeps
// drop every row: nothing lingers.
TEST(process_table_watch_racing_exits_fails_only_with_esrch) {
  TableOptions o;
  for (int f : {f_pid, f_pgid, f_comm, f_rssBytes, f_sharedBytes, f_rssAnonBytes, f_readBytes, f_fds})
    o.fields |= 1u << f;
  ProcessTable table(o);
  std::unique_ptr<char[]> stack(new char[kStack]);
  int watched = 0, gone = 0;
  std::map<std::string, int> other;
  for (int i = 0; i < kChildren; i++) {
    int go[2];
    REQUIRE(::pipe(go) == 0);
    const pid_t child = ::clone(exit_when_told, stack.get() + kStack, CLONE_VM | SIGCHLD, go);
    REQUIRE(child > 0);
    ::close(go[0]);
    std::thread reaper([child] {
      int status = 0;
      while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
      }
    });
    ::close(go[1]);
    for (;;) {
      try {
        table.watch(child, {});
        watched++;
      } catch (const SysError& e) {
        if (e.err() == ESRCH)
          gone++;
        else
          other[e.what()]++;
        break;
      }
    }
    reaper.join();
    if (i % 64 == 0) table.sweep();  // takes in the pending watches, drops the rows of exited children
  }
  for (const auto& [what, n] : other) test::fail(__FILE__, __LINE__, std::to_string(n) + "x " + what);
  CHECK_EQ(gone, kChildren);
  CHECK(watched > 0);
  table.sweep();
  const SweepResult r = table.sweep();
  CHECK_EQ(r.rows, size_t{0});
  CHECK_EQ(table.size(), size_t{0});
}
