#include "dump/output_file.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "core/error.h"
#include "dump/memory_map.h"

namespace tripdump::dump {

namespace {

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Write-behind: a dump streams to disk instead of filling the page cache. Writeback of each 4 MiB starts as
// soon as it is written, and the dump waits for (and drops from the cache) whatever lies more than 64 MiB
// behind its write position. Reasons: a multi-GiB core written through the cache alone pushes the host
// past vm.dirty_ratio, and then every writer on the host, the just-resumed target included, is throttled;
// and it evicts the host's useful cache for a file that is read once, later. Measured on this kind of VM
// (bench/dump.ts): 1 GiB in 0.4-0.6 s and 4 GiB in 1.4-1.7 s, against 0.8-3.7 s and 8-12 s buffered,
// because fresh page-cache pages are the expensive part (the hypervisor backs them on first touch)
// and write-behind recycles the same 64 MiB.
constexpr uint64_t kKickBytes = 4u << 20;
constexpr uint64_t kWriteBehindBytes = 64u << 20;

bool all_zero(const uint8_t* p, size_t n) {
  // Word-wise scan; memcmp against the first word would touch every byte twice.
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  size_t words = n / 8;
  uint64_t acc = 0;
  for (size_t i = 0; i < words; i += 8) {
    size_t end = i + 8 < words ? i + 8 : words;
    for (size_t j = i; j < end; j++) acc |= w[j];
    if (acc) return false;
  }
  for (size_t i = words * 8; i < n; i++)
    if (p[i]) return false;
  return true;
}

}  // namespace

// The path rules every output of tripdump follows: an empty path or one ending in '/' names no file; an
// existing name is never replaced without overwrite, and with it only when it is a regular file (a symlink
// is not followed and not replaced, a folder, FIFO or device never becomes a core). Checked before the
// target is stopped, and again right before the final rename.
void OutputFile::check_final_name() const {
  struct stat st;
  if (::lstat(path_.c_str(), &st) < 0) {
    if (errno == ENOENT) return;
    throw_errno("lstat", path_, pid_);
  }
  if (!overwrite_) throw SysError(EEXIST, "open", path_, pid_);
  if (S_ISLNK(st.st_mode)) throw SysError(ELOOP, "open", path_, pid_, "a symbolic link is never replaced");
  if (S_ISDIR(st.st_mode)) throw SysError(EISDIR, "open", path_, pid_);
  if (!S_ISREG(st.st_mode)) throw SysError(EEXIST, "open", path_, pid_, "not a regular file: not replaced");
}

OutputFile::OutputFile(const std::string& path, bool overwrite, int pid)
    : path_(path), overwrite_(overwrite), pid_(pid) {
  if (path.empty()) throw SysError(EINVAL, "open", path, pid, "an empty path names no file");
  if (path.back() == '/') throw SysError(EISDIR, "open", path, pid, "a path ending in '/' is a folder");
  // Fail before the target is stopped when the final name is taken; commit() re-checks atomically.
  check_final_name();
  int fd = ::open(dir_of(path).c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    // Old file systems (and kernels) refuse O_TMPFILE with these; anything else is a real error (ENOENT...).
    if (errno != EOPNOTSUPP && errno != EISDIR) throw_errno("open", dir_of(path), pid);
    open_named_temp();
    return;
  }
  fd_.reset(fd);
  // The umask can only remove bits; make the mode exactly 0600 regardless.
  if (::fchmod(fd, 0600) < 0) throw_errno("fchmod", path, pid);
}

std::string OutputFile::unique_temp_name() const {
  // A short name of its own, not derived from the final one: a final name of NAME_MAX bytes still fits.
  std::random_device rd;
  char name[48];
  std::snprintf(name, sizeof name, ".tripdump-%d-%08x.tmp", static_cast<int>(::getpid()), rd());
  const std::string dir = dir_of(path_);
  return (dir == "/" ? "" : dir) + "/" + name;
}

void OutputFile::open_named_temp() {
  for (int attempt = 0; attempt < 16; attempt++) {
    tmp_path_ = unique_temp_name();
    int fd = ::open(tmp_path_.c_str(), O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_WRONLY, 0600);
    if (fd >= 0) {
      fd_.reset(fd);
      if (::fchmod(fd, 0600) < 0) {
        int e = errno;
        ::unlink(tmp_path_.c_str());
        throw SysError(e, "fchmod", path_, pid_);
      }
      return;
    }
    if (errno != EEXIST) throw_errno("open", path_, pid_);
  }
  tmp_path_.clear();
  throw SysError(EEXIST, "open", path_, pid_, "no free temporary name");
}

OutputFile::~OutputFile() {
  if (!committed_ && !tmp_path_.empty() && fd_) ::unlink(tmp_path_.c_str());
}

void OutputFile::write_at(const void* data, size_t len, uint64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::pwrite(fd_.get(), p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write", path_, pid_);
    }
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

uint64_t OutputFile::write_sparse(const uint8_t* data, size_t len, uint64_t offset) {
  const size_t ps = page_size();
  uint64_t written = 0;
  size_t i = 0;
  while (i < len) {
    // Skip a run of zero pages (they stay holes), then write the following run of non-zero pages at once.
    while (i < len && all_zero(data + i, std::min(ps, len - i))) i += std::min(ps, len - i);
    size_t j = i;
    while (j < len && !all_zero(data + j, std::min(ps, len - j))) j += std::min(ps, len - j);
    if (j > i) {
      write_at(data + i, j - i, offset + i);
      written += j - i;
    }
    i = j;
  }
  write_behind(offset + len);
  return written;
}

void OutputFile::write_behind(uint64_t end) {
  if (!write_behind_ || end < kicked_ + kKickBytes) return;
  auto sync_range = [&](uint64_t from, uint64_t to, unsigned flags) {
    if (::sync_file_range(fd_.get(), static_cast<off_t>(from), static_cast<off_t>(to - from), flags) == 0)
      return true;
    if (errno != ESPIPE && errno != EINVAL) throw_errno("sync_file_range", path_, pid_);
    write_behind_ = false;
    return false;
  };
  if (!sync_range(kicked_, end, SYNC_FILE_RANGE_WRITE)) return;
  kicked_ = end;
  if (end < dropped_ + kWriteBehindBytes + kKickBytes) return;
  const uint64_t upto = end - kWriteBehindBytes;
  if (!sync_range(dropped_, upto,
                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER))
    return;
  // Advisory: a failure only leaves the pages cached.
  ::posix_fadvise(fd_.get(), static_cast<off_t>(dropped_), static_cast<off_t>(upto - dropped_),
                  POSIX_FADV_DONTNEED);
  dropped_ = upto;
}

void OutputFile::set_size(uint64_t size) {
  if (::ftruncate(fd_.get(), static_cast<off_t>(size)) < 0) throw_errno("ftruncate", path_, pid_);
}

void OutputFile::commit() {
  if (tmp_path_.empty()) {
    // linkat() of /proc/self/fd/N (AT_SYMLINK_FOLLOW resolves the magic link to the open file) needs no
    // CAP_DAC_READ_SEARCH, unlike AT_EMPTY_PATH. It never replaces an existing entry.
    const std::string self = "/proc/self/fd/" + std::to_string(fd_.get());
    if (!overwrite_) {
      if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path_.c_str(), AT_SYMLINK_FOLLOW) < 0)
        throw_errno("linkat", path_, pid_);
      committed_ = true;
      return;
    }
    // Overwrite: a name of our own first, then rename() over the final name, which is atomic; a reader
    // never sees a missing or partial file.
    for (int attempt = 0;; attempt++) {
      tmp_path_ = unique_temp_name();
      if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, tmp_path_.c_str(), AT_SYMLINK_FOLLOW) == 0) break;
      const int e = errno;
      tmp_path_.clear();
      if (e != EEXIST || attempt == 15) throw SysError(e, "linkat", path_, pid_);
    }
    // From here the destructor removes the temporary name if rename() fails.
  }
  if (overwrite_) {
    check_final_name();
    if (::rename(tmp_path_.c_str(), path_.c_str()) < 0) throw_errno("rename", path_, pid_);
  } else if (::syscall(SYS_renameat2, AT_FDCWD, tmp_path_.c_str(), AT_FDCWD, path_.c_str(),
                       RENAME_NOREPLACE) < 0) {
    if (errno != EINVAL && errno != ENOSYS) throw_errno("renameat2", path_, pid_);
    // File systems without RENAME_NOREPLACE: link() never replaces either.
    if (::link(tmp_path_.c_str(), path_.c_str()) < 0) throw_errno("link", path_, pid_);
    ::unlink(tmp_path_.c_str());
  }
  committed_ = true;
}

uint64_t OutputFile::bytes_on_disk() const {
  struct stat st;
  if (::fstat(fd_.get(), &st) < 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

}  // namespace tripdump::dump
