// One /proc file or directory of one process, read the way docs/design.md §4 prescribes: the fd is opened
// once and kept (within the FdBudget), each sample is one pread at offset 0 into a buffer that holds the
// whole file. Past the budget the same object reads by path (open/read/close) so callers never branch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/fd.h"

namespace tripdump {

class ProcFile {
 public:
  ProcFile() = default;
  ProcFile(ProcFile&&) noexcept = default;
  ProcFile& operator=(ProcFile&&) noexcept = default;
  ~ProcFile() { close(); }

  // Opens `path`; keeps the fd when the budget allows. Returns 0 or an errno (nothing is kept on error).
  int open(std::string path);
  // Reads the whole file. Returns 0 or an errno (ESRCH once the process is reaped, for a kept fd).
  int read();
  // The bytes of the last successful read. They live in the calling thread's read buffer: valid until
  // that thread reads any ProcFile again, so parse them right after read().
  std::string_view data() const { return data_; }
  // Whether the last read differs from the one before it (true for the first read): unchanged bytes
  // need no parsing.
  bool changed() const { return changed_; }
  bool is_open() const { return !path_.empty(); }
  bool kept() const { return static_cast<bool>(fd_); }
  void close();

 private:
  // Each read lands in one per-thread buffer, hot in cache across a sweep. Change is told by the length
  // and a keyed digest of the bytes (see digest()), not by a kept copy: comparing with a copy cost a
  // cache miss per line of it on every sample (5 % of a sweep) and ~2 KiB per process.
  std::string path_;
  Fd fd_;
  std::string_view data_;  // its size outlives the bytes: the length the next read is compared with
  uint64_t digest_ = 0;
  bool changed_ = true;
  bool have_prev_ = false;
};

// Digest of `bytes` under this process's random key, for change detection. Each step is a bijection of
// the state, so two inputs of the same length that differ in a single 8-byte word (a counter ticking)
// always get different digests; other changes collide with probability ~2^-64, and without the key a
// process cannot aim its comm at a stat line whose change would go unseen.
uint64_t digest(std::string_view bytes);

// A /proc directory (/proc/PID/fd, /proc/PID/task, /proc): kept O_DIRECTORY fd, entries listed with
// getdents64 from offset 0, and for fd directories a count from fstat's st_size where the kernel
// provides it (6.2+), probed once.
class ProcDir {
 public:
  ProcDir() = default;
  ProcDir(ProcDir&&) noexcept = default;
  ProcDir& operator=(ProcDir&&) noexcept = default;
  ~ProcDir() { close(); }

  int open(std::string path);
  bool is_open() const { return !path_.empty(); }
  void close();
  // Number of entries other than . and .. ; returns -errno on failure.
  long count();
  // Calls fn(name) for each entry other than . and .. ; returns 0 or an errno.
  template <typename Fn>
  int for_each(Fn&& fn);
  // readlinkat relative to this directory (fd-dir entries are links). Returns the length or -errno.
  long readlink(const char* name, char* buf, size_t cap);
  const std::string& path() const { return path_; }

 private:
  int with_fd(int (*op)(int fd, void* ctx), void* ctx);
  std::string path_;
  Fd fd_;
};

// Whether fstat(/proc/PID/fd).st_size is the fd count on this kernel (6.2+); probed once.
bool fd_dir_size_is_count();

// Lists one directory fd from offset 0, calling fn(name) for every entry but . and ..
int list_dir_fd(int fd, void (*fn)(const char* name, void* ctx), void* ctx);

template <typename Fn>
int ProcDir::for_each(Fn&& fn) {
  struct Ctx {
    Fn* fn;
  } ctx{&fn};
  return with_fd(
      [](int fd, void* c) {
        return list_dir_fd(
            fd, [](const char* name, void* cc) { (*static_cast<Ctx*>(cc)->fn)(name); }, c);
      },
      &ctx);
}

}  // namespace tripdump
