// Splits one loop over n independent items across the calling thread and a few helper threads of its own
// (docs/design.md §4 "Sampling": a sweep of thousands of processes is thousands of independent preads, and
// the kernel's text generation, not our parsing, is most of each one).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tripdump {

class WorkerPool {
 public:
  // `threads` counts the caller: 1 means no helpers. Helpers start on the first loop big enough to share.
  explicit WorkerPool(size_t threads) : helpers_(threads > 1 ? threads - 1 : 0) {}
  ~WorkerPool() { stop(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Calls fn(i) once for every i in [0, n), in chunks claimed by whichever thread is free, and returns
  // when all calls have returned; rethrows the first exception one threw. One caller at a time.
  void for_each(size_t n, const std::function<void(size_t)>& fn);
  // Ends the helper threads (a later for_each starts them again).
  void stop();

  // Items per claim: 16 processes are 0.1-0.3 ms of preads, long against a claim and short enough that
  // the threads finish within a fraction of that of each other. Claims start at multiples of it, which
  // ColumnBlock's row alignment relies on.
  static constexpr size_t kChunk = 16;
  // Fewer items stay on the caller: waking a helper costs ~0.1 ms on a VM.
  static constexpr size_t kMinShared = 128;

 private:
  void helper_main();
  void drain();

  const size_t helpers_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  uint64_t round_ = 0;
  bool open_ = false;   // the current round still takes helpers
  size_t working_ = 0;  // helpers inside the current round
  bool stopping_ = false;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t n_ = 0;
  std::atomic<size_t> next_{0};
  std::exception_ptr error_;
};

}  // namespace tripdump
