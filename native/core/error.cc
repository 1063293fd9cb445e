#include "core/error.h"

#include <cstring>

namespace tripdump {

std::string SysError::errno_text(int err) {
  char buf[128];
  // GNU strerror_r returns the message pointer (which may not be buf).
  return strerror_r(err, buf, sizeof buf);
}

const char* SysError::errno_name(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "E?";
}

void throw_errno(const char* syscall, std::string path, int pid) {
  throw SysError(errno, syscall, std::move(path), pid);
}

}  // namespace tripdump
