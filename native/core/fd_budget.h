// Process-wide budget of kept-open /proc fds (docs/design.md §4 "fd budget"). The sampler keeps one fd per
// file per process; past the budget it falls back to open/read/close so it never starves the host program.
#pragma once

#include <atomic>
#include <cstddef>

namespace tripdump {

class FdBudget {
 public:
  static FdBudget& instance();

  // Takes one slot; false when the budget is spent (the caller then reads by path each time).
  bool try_acquire() noexcept;
  void release() noexcept;
  size_t in_use() const noexcept { return in_use_.load(std::memory_order_relaxed); }
  size_t limit() const noexcept { return limit_; }

  // Moves fd above the low range (programs that still use select() need fds < 1024 for themselves)
  // with F_DUPFD_CLOEXEC, closing the original. Returns the fd to keep (the original if it cannot move).
  int move_high(int fd) const noexcept;

  // Tests and embedders can cap the budget below what RLIMIT_NOFILE allows.
  void set_limit(size_t limit) noexcept { limit_ = limit; }

 private:
  FdBudget();
  std::atomic<size_t> in_use_{0};
  size_t limit_ = 0;
  int floor_ = 0;  // lowest fd number kept fds are moved to
};

}  // namespace tripdump
