// procdump_test's C++ caller: ProcDump's header used from C++ (its own test driver is C++), so the
// declarations must give C linkage and bool must be the same type on both sides.
#include <cerrno>

#include "ProcDumpLib.h"

extern "C" int cxx_write_dump(pid_t pid, const char* path, int mask, int overwrite, int* err) {
  char* error = nullptr;
  errno = 0;
  const int rc = pdWriteDump(pid, path, mask, overwrite != 0, &error);
  *err = errno;
  pdFreeError(error);
  return rc;
}
