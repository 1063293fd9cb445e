// Error model of the native core (docs/design.md §8): every failure carries errno, the syscall that failed
// and, where known, the path and pid. The N-API glue turns this into a JS error with Node's field names.
#pragma once

#include <cerrno>
#include <exception>
#include <string>

namespace tripdump {

class SysError : public std::exception {
 public:
  SysError(int err, const char* syscall, std::string path = {}, int pid = 0, std::string detail = {})
      : err_(err), syscall_(syscall), path_(std::move(path)), pid_(pid), detail_(std::move(detail)) {
    what_ = std::string(syscall_) + (path_.empty() ? "" : " " + path_) + ": " + errno_text(err_);
    if (!detail_.empty()) what_ += " (" + detail_ + ")";
  }
  int err() const noexcept { return err_; }
  const char* syscall() const noexcept { return syscall_; }
  const std::string& path() const noexcept { return path_; }
  int pid() const noexcept { return pid_; }
  const std::string& detail() const noexcept { return detail_; }
  const char* what() const noexcept override { return what_.c_str(); }

  static std::string errno_text(int err);
  static const char* errno_name(int err);  // "ESRCH", "EACCES", ... ("E?" when unknown)

 private:
  int err_;
  const char* syscall_;
  std::string path_;
  int pid_;
  std::string detail_;
  std::string what_;
};

// Throws SysError(errno, syscall, path, pid). For `if (x < 0) throw_errno(...)` call sites.
[[noreturn]] void throw_errno(const char* syscall, std::string path = {}, int pid = 0);

}  // namespace tripdump
