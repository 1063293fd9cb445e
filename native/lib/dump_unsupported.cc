// Built instead of native/dump on CPU architectures the core writer has no port for yet (binding.gyp:
// everything but x64). The sampler and the crash handler work there; every dump entry point — the addon's
// writeCoreDump and watchSignals, libtripdump's tripdump_write_core and pdWriteDump — fails with ENOTSUP
// saying so, through the same error path as any other failure.
#include <sys/utsname.h>

#include <string>

#include "core/error.h"
#include "dump/core_dump.h"
#include "dump/signal_watch.h"

namespace tripdump::dump {

namespace {

[[noreturn]] void unsupported(const char* what, int pid) {
  struct utsname u {};
  ::uname(&u);
  throw SysError(ENOTSUP, what, {}, pid,
                 std::string("core dumps are not supported on ") + u.machine +
                     " yet: tripdump's core writer has an x86_64 port only");
}

}  // namespace

Result write_core_dump(int pid, const std::string&, const Options&) {
  unsupported("dump", pid);
}

pid_t reap_snapshot_left_behind(int, pid_t, unsigned long long) {
  return 0;
}

const char* mode_name(Mode m) {
  return m == Mode::kStop ? "stop" : m == Mode::kSnapshot ? "snapshot" : "auto";
}

SignalWatch::SignalWatch(int pid, uint64_t watched) : pid_(pid), watched_(watched) {
  unsupported("watchSignals", pid);
}

SignalWatch::~SignalWatch() = default;

SignalWatch::Exit SignalWatch::run(SignalWatchHandler&, int) {
  unsupported("watchSignals", pid_);
}

}  // namespace tripdump::dump
