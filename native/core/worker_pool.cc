#include "core/worker_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace tripdump {

namespace {
int own_nice() {
  errno = 0;
  const int n = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  return errno ? 0 : n;
}
}  // namespace

void WorkerPool::drain() {
  try {
    for (;;) {
      const size_t begin = next_.fetch_add(kChunk, std::memory_order_relaxed);
      if (begin >= n_) return;
      const size_t end = std::min(n_, begin + kChunk);
      for (size_t i = begin; i < end; ++i) (*fn_)(i);
    }
  } catch (...) {
    std::lock_guard lock(mu_);
    if (!error_) error_ = std::current_exception();
    next_.store(n_, std::memory_order_relaxed);  // the others stop at their next claim
  }
}

void WorkerPool::for_each(size_t n, const std::function<void(size_t)>& fn) {
  if (helpers_ == 0 || n < kMinShared) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (threads_.empty()) {
      stopping_ = false;
      for (size_t i = 0; i < helpers_; ++i) threads_.emplace_back([this] { helper_main(); });
    }
    fn_ = &fn;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    // Helpers run at the caller's priority: the sampler's thread is niced so the event loop goes first.
    nice_ = own_nice();
    ++round_;
    open_ = true;
  }
  wake_.notify_all();
  drain();
  std::exception_ptr error;
  {
    std::unique_lock lock(mu_);
    // A helper that has not woken by now finds the round closed and goes back to sleep: on a busy host the
    // caller never waits for a helper to be scheduled, only for chunks a helper has already claimed.
    open_ = false;
    idle_.wait(lock, [this] { return working_ == 0; });
    fn_ = nullptr;
    error = std::exchange(error_, nullptr);
  }
  if (error) std::rethrow_exception(error);
}

void WorkerPool::helper_main() {
  int applied = own_nice();
  uint64_t seen = 0;
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || round_ != seen; });
    if (stopping_) return;
    seen = round_;
    if (!open_) continue;
    ++working_;
    const int want = nice_;
    lock.unlock();
    if (want != applied) {
      // Best effort: lowering it again needs CAP_SYS_NICE; not asked twice either way.
      setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), want);
      applied = want;
    }
    drain();
    lock.lock();
    if (--working_ == 0) idle_.notify_one();
  }
}

void WorkerPool::stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    threads.swap(threads_);
  }
  wake_.notify_all();
  for (auto& t : threads) t.join();
}

}  // namespace tripdump
