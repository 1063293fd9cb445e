#include "core/fd_budget.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

namespace tripdump {

namespace {
// fds left for the host program and for open/read/close fallbacks.
constexpr size_t kReserve = 512;
constexpr int kLowRange = 1024;
}  // namespace

FdBudget::FdBudget() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    // Raising soft to hard is what long-running agents do anyway; it never lowers anything.
    if (rl.rlim_cur < rl.rlim_max) {
      rlimit raised = rl;
      raised.rlim_cur = rl.rlim_max;
      if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
    }
  }
  const size_t soft = rl.rlim_cur == RLIM_INFINITY ? size_t{1} << 20 : static_cast<size_t>(rl.rlim_cur);
  limit_ = soft > 2 * kReserve ? soft - kReserve : soft / 2;
  floor_ = soft > 4 * kLowRange ? kLowRange : 0;
}

FdBudget& FdBudget::instance() {
  static FdBudget budget;
  return budget;
}

bool FdBudget::try_acquire() noexcept {
  size_t cur = in_use_.load(std::memory_order_relaxed);
  do {
    if (cur >= limit_) return false;
  } while (!in_use_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return true;
}

void FdBudget::release() noexcept {
  in_use_.fetch_sub(1, std::memory_order_relaxed);
}

int FdBudget::move_high(int fd) const noexcept {
  if (floor_ == 0 || fd >= floor_) return fd;
  const int high = fcntl(fd, F_DUPFD_CLOEXEC, floor_);
  if (high < 0) return fd;
  close(fd);
  return high;
}

}  // namespace tripdump
