#include "crash/safe_fs.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <random>

#include "core/error.h"

namespace tripdump::crash {

Fd open_nofollow(int dirfd, const std::string& path, int flags, mode_t mode) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  // /proc magic links are symlinks too, so RESOLVE_NO_SYMLINKS also refuses them.
  how.resolve = RESOLVE_NO_SYMLINKS;
  long fd;
  do fd = ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno("openat2", path);
  return Fd(static_cast<int>(fd));
}

Fd open_private_dir(const std::string& path) {
  Fd fd = open_nofollow(AT_FDCWD, path, O_RDONLY | O_DIRECTORY);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) throw_errno("fstat", path);
  const uid_t me = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != me)
    throw SysError(EPERM, "fstat", path, 0, "directory is owned by uid " + std::to_string(st.st_uid));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    throw SysError(EPERM, "fstat", path, 0, "directory is writable by group or others");
  return fd;
}

NewFile::NewFile(int dirfd, std::string dir_path) : dirfd_(dirfd), dir_path_(std::move(dir_path)) {
  int fd = ::openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR) throw_errno("openat", dir_path_ + " (O_TMPFILE)");
  if (fd < 0) {
    std::random_device rd;
    for (int i = 0; i < 16 && fd < 0; i++) {
      char name[64];
      std::snprintf(name, sizeof name, ".tmp-%d-%08x", static_cast<int>(::getpid()), rd());
      fd = ::openat(dirfd, name, O_CREAT | O_EXCL | O_NOFOLLOW | O_RDWR | O_CLOEXEC, 0600);
      if (fd >= 0)
        tmp_name_ = name;
      else if (errno != EEXIST)
        throw_errno("openat", dir_path_ + "/" + name);
    }
    if (fd < 0) throw SysError(EEXIST, "openat", dir_path_);
  }
  fd_.reset(fd);
  // The umask can only take bits away; make the mode exactly 0600.
  if (::fchmod(fd, 0600) < 0) throw_errno("fchmod", dir_path_);
}

NewFile::~NewFile() {
  if (!linked_ && !tmp_name_.empty()) ::unlinkat(dirfd_, tmp_name_.c_str(), 0);
}

bool NewFile::try_link(const std::string& name) {
  int r;
  if (!tmp_name_.empty()) {
    r = static_cast<int>(
        ::syscall(SYS_renameat2, dirfd_, tmp_name_.c_str(), dirfd_, name.c_str(), RENAME_NOREPLACE));
  } else {
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; a non-root caller goes through the /proc link instead,
    // which names this open file (AT_SYMLINK_FOLLOW resolves the magic link, not a user's symlink).
    r = ::linkat(fd_.get(), "", dirfd_, name.c_str(), AT_EMPTY_PATH);
    if (r < 0 && (errno == ENOENT || errno == EPERM)) {
      char proc[64];
      std::snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd_.get());
      r = ::linkat(AT_FDCWD, proc, dirfd_, name.c_str(), AT_SYMLINK_FOLLOW);
    }
  }
  if (r == 0) {
    linked_ = true;
    tmp_name_.clear();
    return true;
  }
  if (errno == EEXIST) return false;
  throw_errno(tmp_name_.empty() ? "linkat" : "renameat2", dir_path_ + "/" + name);
}

bool NewFile::link_exact(const std::string& base, const std::string& ext) {
  return try_link(base + ext);
}

std::string NewFile::link(const std::string& base, const std::string& ext) {
  if (try_link(base + ext)) return base;
  for (int i = 1; i < 1000; i++) {
    std::string b = base + "-" + std::to_string(i);
    if (try_link(b + ext)) return b;
  }
  throw SysError(EEXIST, "linkat", dir_path_ + "/" + base + ext);
}

bool write_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool pwrite_all(int fd, const void* data, size_t size, uint64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (size) {
    ssize_t n = ::pwrite(fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

std::string read_small(int dirfd, const char* name, size_t cap) {
  int fd = ::openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return {};
  Fd owner(fd);
  std::string out;
  char buf[4096];
  while (out.size() < cap) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  if (out.size() > cap) out.resize(cap);
  return out;
}

}  // namespace tripdump::crash
