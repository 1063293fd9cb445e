// libtripdump's C ABI (lib/tripdump.h) over the dumper process (lib/dumper.h). Only these two symbols
// are exported (the library is built with -fvisibility=hidden).
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "lib/dumper.h"
#include "lib/tripdump.h"

namespace {

int fail(char** error, int err, const std::string& message) {
  if (error) *error = ::strdup(message.c_str());
  return err;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int tripdump_write_core(pid_t pid, const char* path,
                                                                          int filter, unsigned flags,
                                                                          char** error) {
  if (error) *error = nullptr;
  if (pid <= 0)
    return fail(error, EINVAL,
                "tripdump_write_core: pid must be a process id above 0, got " + std::to_string(pid));
  if (!path || !*path) return fail(error, EINVAL, "tripdump_write_core: path is NULL or empty");
  if (filter < TRIPDUMP_FILTER_DEFAULT || filter > TRIPDUMP_FILTER_MAX)
    return fail(error, EINVAL,
                "tripdump_write_core: filter must be TRIPDUMP_FILTER_DEFAULT (-1) or 0..0x1ff, got " +
                    std::to_string(filter));
  if (flags & ~(TRIPDUMP_OVERWRITE | TRIPDUMP_STOP_MODE))
    return fail(error, EINVAL, "tripdump_write_core: unknown flags " + std::to_string(flags));
  tripdump::dump::Options options;
  options.mode = (flags & TRIPDUMP_STOP_MODE) ? tripdump::dump::Mode::kStop : tripdump::dump::Mode::kAuto;
  if (filter != TRIPDUMP_FILTER_DEFAULT) options.filter = static_cast<uint32_t>(filter);
  options.overwrite = flags & TRIPDUMP_OVERWRITE;
  try {
    tripdump::lib::dump_in_process(pid, path, options);
    return 0;
  } catch (const tripdump::SysError& e) {
    return fail(error, e.err() ? e.err() : EIO,
                std::string("tripdump_write_core: ") + e.what() + " [pid " + std::to_string(pid) + "]");
  } catch (const std::bad_alloc&) {
    return fail(error, ENOMEM, "tripdump_write_core: out of memory");
  } catch (const std::exception& e) {
    return fail(error, EIO, std::string("tripdump_write_core: ") + e.what());
  }
}

extern "C" __attribute__((visibility("default"))) void tripdump_free_error(char* error) {
  std::free(error);
}
