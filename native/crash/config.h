// The handler's configuration: a small root-owned key=value file (default /etc/tripdump/crash.conf).
// The kernel limits core_pattern to 127 bytes, too short to carry a directory, limits and a socket path
// next to the handler's own path and eleven specifiers, so the pattern only names the file.
#pragma once

#include <cstdint>
#include <string>

namespace tripdump::crash {

inline constexpr const char* kDefaultConfig = "/etc/tripdump/crash.conf";

struct Config {
  std::string dir = "/var/lib/tripdump/crashes";
  std::string socket = "/run/tripdump/crash.sock";
  uint64_t max_use = 0;            // bytes on disk for all captures together; 0 = no limit
  uint64_t keep_free = 0;          // bytes the file system must keep free
  unsigned keep_free_percent = 0;  // same, as a share of the file system's size
  unsigned stall_timeout = 30;     // seconds without data from the kernel before giving up
};

// Reads `path` without following symlinks. The file must be a regular file owned by root (or by the
// caller, when not root) and writable by nobody else: the handler runs as root for every crash.
// Throws SysError; `detail` explains a refused owner or mode.
Config load_config(const std::string& path);

// Parses "123", "10K", "5M", "2G", "1T" (powers of 1024). Returns false on anything else.
bool parse_size(const std::string& text, uint64_t& out);

}  // namespace tripdump::crash
