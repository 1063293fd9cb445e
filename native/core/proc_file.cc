#include "core/proc_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <memory>

#include "core/fd_budget.h"

namespace tripdump {

namespace {

// Opens with O_CLOEXEC and, when the budget grants a slot, moves the fd above the low range and keeps it.
int open_kept(const std::string& path, int flags, Fd& out) {
  if (!FdBudget::instance().try_acquire()) return 0;  // not kept: read by path
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    FdBudget::instance().release();
    return err;
  }
  out.reset(FdBudget::instance().move_high(fd));
  return 0;
}

void release_kept(Fd& fd) {
  if (fd) {
    fd.reset();
    FdBudget::instance().release();
  }
}
}  // namespace

int ProcFile::open(std::string path) {
  close();
  if (int err = open_kept(path, O_RDONLY, fd_)) return err;
  if (!fd_) {
    // Over budget: check the file exists now so callers see ESRCH/ENOENT/EACCES at open time either way.
    Fd probe(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!probe) return errno;
  }
  path_ = std::move(path);
  changed_ = true;
  have_prev_ = false;
  return 0;
}

void ProcFile::close() {
  release_kept(fd_);
  path_.clear();
}

namespace {

// Reads a whole file from offset 0 into the calling thread's scratch buffer, growing it until the file fits.
int read_whole(int fd, std::string_view& out) {
  thread_local std::unique_ptr<char[]> scratch;
  thread_local size_t cap = 0;
  if (cap == 0) {
    cap = 4096;
    scratch = std::make_unique<char[]>(cap);
  }
  for (;;) {
    const ssize_t n = ::pread(fd, scratch.get(), cap, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (static_cast<size_t>(n) < cap) {
      out = {scratch.get(), static_cast<size_t>(n)};
      return 0;
    }
    // A full buffer may be a truncated file: grow and read again from offset 0 (seq files regenerate).
    cap *= 2;
    scratch = std::make_unique<char[]>(cap);
  }
}

}  // namespace

int ProcFile::read() {
  if (path_.empty()) return EBADF;
  std::string_view got;
  int err;
  if (fd_) {
    err = read_whole(fd_.get(), got);
  } else {
    Fd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    err = fd ? read_whole(fd.get(), got) : errno;
  }
  if (err) return err;
  const uint64_t d = digest(got);
  changed_ = !have_prev_ || got.size() != data_.size() || d != digest_;
  data_ = got;
  digest_ = d;
  have_prev_ = true;
  return 0;
}

uint64_t digest(std::string_view bytes) {
  static const uint64_t key = [] {
    uint64_t k = 0;
    if (::getrandom(&k, sizeof k, 0) != sizeof k) k = static_cast<uint64_t>(::getpid()) * 0x9e3779b97f4a7c15u;
    return k;
  }();
  constexpr uint64_t kOdd = 0xff51afd7ed558ccdu;  // any odd multiplier keeps the step a bijection
  uint64_t h = key ^ bytes.size();
  const char* p = bytes.data();
  size_t n = bytes.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = std::rotl(h ^ w, 23) * kOdd;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = std::rotl(h ^ w, 23) * kOdd;
  }
  return h;
}

int ProcDir::open(std::string path) {
  close();
  if (int err = open_kept(path, O_RDONLY | O_DIRECTORY, fd_)) return err;
  if (!fd_) {
    Fd probe(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!probe) return errno;
  }
  path_ = std::move(path);
  return 0;
}

void ProcDir::close() {
  release_kept(fd_);
  path_.clear();
}

int ProcDir::with_fd(int (*op)(int fd, void* ctx), void* ctx) {
  if (path_.empty()) return EBADF;
  if (fd_) return op(fd_.get(), ctx);
  Fd fd(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno;
  return op(fd.get(), ctx);
}

long ProcDir::count() {
  long n = 0;
  if (fd_dir_size_is_count()) {
    struct Ctx {
      long* n;
    } ctx{&n};
    const int err = with_fd(
        [](int fd, void* c) {
          struct stat st {};
          if (::fstat(fd, &st) < 0) return errno;
          *static_cast<Ctx*>(c)->n = static_cast<long>(st.st_size);
          return 0;
        },
        &ctx);
    return err ? -err : n;
  }
  const int err = for_each([&n](const char*) { ++n; });
  return err ? -err : n;
}

long ProcDir::readlink(const char* name, char* buf, size_t cap) {
  struct Ctx {
    const char* name;
    char* buf;
    size_t cap;
    long len;
  } ctx{name, buf, cap, 0};
  const int err = with_fd(
      [](int fd, void* c) {
        auto* x = static_cast<Ctx*>(c);
        const ssize_t n = ::readlinkat(fd, x->name, x->buf, x->cap);
        if (n < 0) return errno;
        x->len = n;
        return 0;
      },
      &ctx);
  return err ? -err : ctx.len;
}

int list_dir_fd(int fd, void (*fn)(const char* name, void* ctx), void* ctx) {
  if (::lseek(fd, 0, SEEK_SET) < 0) return errno;
  alignas(8) char buf[32768];
  for (;;) {
    const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) return errno;
    if (n == 0) return 0;
    for (long off = 0; off < n;) {
      // struct linux_dirent64: d_ino (8), d_off (8), d_reclen (2), d_type (1), d_name
      unsigned short reclen;
      std::memcpy(&reclen, buf + off + 16, sizeof reclen);
      const char* name = buf + off + 19;
      if (!(name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))) fn(name, ctx);
      off += reclen;
    }
  }
}

bool fd_dir_size_is_count() {
  // On kernels before 6.2 st_size of /proc/PID/fd is 0; since then it is the number of open fds, which
  // for our own process is at least the three standard streams plus the directory fd itself.
  static const bool yes = [] {
    Fd fd(::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct stat st {};
    return fd && ::fstat(fd.get(), &st) == 0 && st.st_size > 0;
  }();
  return yes;
}

}  // namespace tripdump
