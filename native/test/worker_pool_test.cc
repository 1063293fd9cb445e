// WorkerPool: every item exactly once, shared across threads, errors carried back to the caller, and the
// helpers at idle priority.
#include "core/worker_pool.h"

#include <sched.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "harness.h"

using namespace tripdump;

namespace {
// Slow enough that a helper is surely awake before the caller runs out of items.
void busy_item() {
  std::this_thread::sleep_for(std::chrono::microseconds(200));
}
}  // namespace

TEST(worker_pool_each_item_once) {
  for (size_t threads : {1, 2, 4}) {
    WorkerPool pool(threads);
    for (size_t n : {0, 1, 127, 128, 129, 1000, 4097}) {
      std::vector<std::atomic<int>> seen(n);
      pool.for_each(n, [&](size_t i) { seen[i].fetch_add(1); });
      size_t once = 0;
      for (auto& s : seen) once += s.load() == 1;
      CHECK_EQ(once, n);
    }
  }
}

TEST(worker_pool_shares_big_loops_only) {
  WorkerPool pool(2);
  std::mutex mu;
  std::set<std::thread::id> ids;
  auto record = [&](size_t) {
    busy_item();
    std::lock_guard lock(mu);
    ids.insert(std::this_thread::get_id());
  };
  pool.for_each(WorkerPool::kMinShared - 1, record);
  CHECK_EQ(ids.size(), size_t{1});  // below the threshold the caller does it all
  CHECK(ids.count(std::this_thread::get_id()) == 1);
  ids.clear();
  pool.for_each(1000, record);
  CHECK_EQ(ids.size(), size_t{2});
}

TEST(worker_pool_rethrows_and_stays_usable) {
  WorkerPool pool(3);
  std::atomic<size_t> calls{0};
  bool thrown = false;
  try {
    pool.for_each(2000, [&](size_t i) {
      calls.fetch_add(1);
      if (i == 700) throw std::runtime_error("item 700");
    });
  } catch (const std::runtime_error& e) {
    thrown = std::string(e.what()) == "item 700";
  }
  CHECK(thrown);
  CHECK(calls.load() < 2000);  // the others stop at their next claim
  std::atomic<size_t> again{0};
  pool.for_each(2000, [&](size_t) { again.fetch_add(1); });
  CHECK_EQ(again.load(), size_t{2000});
  pool.stop();
  pool.for_each(2000, [&](size_t) { again.fetch_add(1); });  // threads start again
  CHECK_EQ(again.load(), size_t{4000});
}

TEST(worker_pool_helpers_use_idle_cpu_only) {
  WorkerPool pool(2);
  std::mutex mu;
  std::map<std::thread::id, int> policy;
  pool.for_each(600, [&](size_t) {
    busy_item();
    const int p = sched_getscheduler(0);
    std::lock_guard lock(mu);
    policy[std::this_thread::get_id()] = p;
  });
  REQUIRE(policy.size() == 2);
  for (const auto& [id, p] : policy) CHECK_EQ(p, id == std::this_thread::get_id() ? SCHED_OTHER : SCHED_IDLE);
}
