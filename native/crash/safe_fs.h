// File-system helpers that never follow a symlink anywhere in a path and create files atomically.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "core/fd.h"

namespace tripdump::crash {

// openat2(RESOLVE_NO_SYMLINKS): fails with ELOOP when any component is a symlink. Throws SysError.
Fd open_nofollow(int dirfd, const std::string& path, int flags, mode_t mode = 0);

// Opens a directory that only root (or the caller) can write to; throws SysError (EPERM + detail)
// when a user could plant or swap entries in it.
Fd open_private_dir(const std::string& path);

// An unnamed file in `dirfd` (O_TMPFILE, mode 0600), or an O_EXCL|O_NOFOLLOW dot-file where O_TMPFILE
// is not supported. link() gives it its final name only once it is complete.
class NewFile {
 public:
  NewFile(int dirfd, std::string dir_path);
  int fd() const { return fd_.get(); }
  // Links the file as base+ext, or base-1+ext, base-2+ext... when taken (a planted symlink included:
  // linkat never follows the new name). Returns the base actually used. Throws SysError.
  std::string link(const std::string& base, const std::string& ext);
  // Links under exactly base+ext; false when the name is taken.
  bool link_exact(const std::string& base, const std::string& ext);
  ~NewFile();
  NewFile(const NewFile&) = delete;
  NewFile& operator=(const NewFile&) = delete;

 private:
  bool try_link(const std::string& name);
  int dirfd_;
  std::string dir_path_;
  Fd fd_;
  std::string tmp_name_;  // only for the fallback
  bool linked_ = false;
};

bool write_all(int fd, const void* data, size_t size);
bool pwrite_all(int fd, const void* data, size_t size, uint64_t offset);
// Reads a whole small file below dirfd (no symlinks followed at the last component); empty on error.
std::string read_small(int dirfd, const char* name, size_t cap = 1 << 20);

}  // namespace tripdump::crash
