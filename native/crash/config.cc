#include "crash/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "core/error.h"
#include "crash/safe_fs.h"

namespace tripdump::crash {

bool parse_size(const std::string& text, uint64_t& out) {
  if (text.empty() || text[0] < '0' || text[0] > '9') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (errno) return false;
  unsigned shift = 0;
  std::string unit(end);
  if (unit == "" || unit == "B")
    shift = 0;
  else if (unit == "K" || unit == "KiB")
    shift = 10;
  else if (unit == "M" || unit == "MiB")
    shift = 20;
  else if (unit == "G" || unit == "GiB")
    shift = 30;
  else if (unit == "T" || unit == "TiB")
    shift = 40;
  else
    return false;
  if (shift && v > (~0ULL >> shift)) return false;
  out = static_cast<uint64_t>(v) << shift;
  return true;
}

Config load_config(const std::string& path) {
  Fd fd = open_nofollow(AT_FDCWD, path, O_RDONLY);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) throw_errno("fstat", path);
  if (!S_ISREG(st.st_mode)) throw SysError(EINVAL, "fstat", path, 0, "not a regular file");
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    throw SysError(EPERM, "fstat", path, 0, "owned by uid " + std::to_string(st.st_uid));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    throw SysError(EPERM, "fstat", path, 0, "writable by group or others");
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("read", path);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 65536) throw SysError(EFBIG, "read", path);
  }
  Config c;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    uint64_t n = 0;
    // Unknown keys are ignored so that a newer tripdump's file still works with an older handler.
    if (key == "dir" && !value.empty() && value[0] == '/')
      c.dir = value;
    else if (key == "socket" && (value.empty() || value[0] == '/'))
      c.socket = value;
    else if (key == "max_use" && parse_size(value, n))
      c.max_use = n;
    else if (key == "keep_free" && parse_size(value, n))
      c.keep_free = n;
    else if (key == "keep_free_percent" && parse_size(value, n) && n <= 100)
      c.keep_free_percent = static_cast<unsigned>(n);
    else if (key == "stall_timeout" && parse_size(value, n) && n > 0 && n < 86400)
      c.stall_timeout = static_cast<unsigned>(n);
  }
  return c;
}

}  // namespace tripdump::crash
