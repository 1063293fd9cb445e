// libtripdump's C ABI over the dumper process (lib/dumper.h): its own functions (lib/tripdump.h) and
// ProcDump 3.x's library functions (lib/procdump/ProcDumpLib.h), both through write_core below, so a dump
// asked for either way is the same dump. Only these four symbols are exported (the library is built with
// -fvisibility=hidden and lib/libtripdump.map).
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "lib/dumper.h"
#include "lib/procdump/ProcDumpLib.h"
#include "lib/tripdump.h"

namespace {

int fail(char** error, int err, const std::string& message) {
  if (error) *error = ::strdup(message.c_str());
  return err;
}

// The dump itself, once `api` (the exported function's name, which starts every message) has checked its
// arguments. Returns 0 or an errno value, with *error set as tripdump.h says.
int write_core(const char* api, pid_t pid, const std::string& path, const tripdump::dump::Options& options,
               char** error) {
  try {
    tripdump::lib::dump_in_process(pid, path, options);
    return 0;
  } catch (const tripdump::SysError& e) {
    return fail(error, e.err() ? e.err() : EIO,
                std::string(api) + ": " + e.what() + " [pid " + std::to_string(pid) + "]");
  } catch (const std::bad_alloc&) {
    return fail(error, ENOMEM, std::string(api) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(error, EIO, std::string(api) + ": " + e.what());
  }
}

// ProcDump's file name: the path it is given with ".<pid>" appended. ProcDump splits the path with
// dirname/basename and joins them with a '/', so trailing slashes go ("dir/" names "dir.<pid>", not a file
// inside dir) and "/" alone gives "/.<pid>".
std::string procdump_file_name(const char* path, pid_t pid) {
  std::string name(path);
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  if (name == "/") name.clear();
  return name + "." + std::to_string(pid);
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
  return write_core("tripdump_write_core", pid, path, options, error);
}

extern "C" __attribute__((visibility("default"))) void tripdump_free_error(char* error) {
  std::free(error);
}

extern "C" __attribute__((visibility("default"))) int pdWriteDump(pid_t processId, const char* dumpPath,
                                                                  int dumpMask, bool bOverwrite,
                                                                  char** error) {
  if (error) *error = nullptr;
  int err;
  if (processId <= 0)
    err = fail(error, EINVAL,
               "pdWriteDump: Invalid argument: processId must be a process id above 0, got " +
                   std::to_string(processId));
  else if (!dumpPath || !*dumpPath)
    err = fail(error, EINVAL, "pdWriteDump: Invalid argument: dumpPath is NULL or empty");
  else if (dumpMask < PD_DUMP_MASK_DEFAULT)
    err = fail(error, EINVAL,
               "pdWriteDump: Invalid core dump mask specified: dumpMask must be PD_DUMP_MASK_DEFAULT (-1) "
               "or a coredump_filter mask, got " +
                   std::to_string(dumpMask));
  else {
    tripdump::dump::Options options;
    // ProcDump writes the mask to the target's coredump_filter, where the kernel keeps bits 0-8 and
    // ignores the rest: the same bits are used here, for this dump only.
    if (dumpMask != PD_DUMP_MASK_DEFAULT)
      options.filter = static_cast<uint32_t>(dumpMask) & TRIPDUMP_FILTER_MAX;
    options.overwrite = bOverwrite;
    err = write_core("pdWriteDump", processId, procdump_file_name(dumpPath, processId), options, error);
  }
  if (err == 0) return 0;
  // ProcDump returns -1 whatever failed; errno says what, as for a system call.
  errno = err;
  return -1;
}

extern "C" __attribute__((visibility("default"))) void pdFreeError(char* error) {
  std::free(error);
}
