#include "core/worker_pool.h"

#include <sched.h>

#include <algorithm>
#include <system_error>
#include <utility>

namespace tripdump {

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
      try {
        for (size_t i = 0; i < helpers_; ++i) threads_.emplace_back([this] { helper_main(); });
      } catch (const std::system_error&) {
        // Out of threads (RLIMIT_NPROC, threads-max): those that started share the loop, or none do.
      }
    }
    fn_ = &fn;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
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
  // Helpers take only CPU time nobody else wants: any other task, the event loop's included, preempts a
  // SCHED_IDLE thread at once. The caller alone still finishes the loop when the host is saturated; a
  // helper then holds up the end of a sweep by at most the chunk it has claimed.
  sched_param none{};
  sched_setscheduler(0, SCHED_IDLE, &none);  // best effort: on refusal it is a normal thread
  uint64_t seen = 0;
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || round_ != seen; });
    if (stopping_) return;
    seen = round_;
    if (!open_) continue;
    ++working_;
    lock.unlock();
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
