// The watched set of processes (and optionally their threads), sampled into columns (docs/design.md §4
// "Sampling"). One sweep reads every kept fd once, parses only what changed, and writes one row per
// live process into a column block the JS side reads in place.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/parsers.h"
#include "core/proc_file.h"
#include "core/system_stats.h"
#include "core/worker_pool.h"

namespace tripdump {

// The per-process fields, in column order. src/sampler/fields.ts lists the same names in the same order;
// the loader checks that they agree.
// clang-format off
#define TRIPDUMP_FIELDS(X) \
  X(pid, kStat) \
  X(tgid, kStat) \
  X(ppid, kStat) \
  X(pgid, kStat) \
  X(state, kStat) \
  X(comm, kStat) \
  X(startTime, kStat) \
  X(cpuPercent, kStat) \
  X(userTicks, kStat) \
  X(systemTicks, kStat) \
  X(rssBytes, kStat) \
  X(vmBytes, kStat) \
  X(minorFaults, kStat) \
  X(majorFaults, kStat) \
  X(threads, kStat) \
  X(sharedBytes, kStatm) \
  X(textBytes, kStatm) \
  X(dataBytes, kStatm) \
  X(rssAnonBytes, kStatus) \
  X(rssFileBytes, kStatus) \
  X(rssShmemBytes, kStatus) \
  X(swapBytes, kStatus) \
  X(hwmBytes, kStatus) \
  X(uid, kStatus) \
  X(readBytes, kIo) \
  X(writeBytes, kIo) \
  X(readChars, kIo) \
  X(writeChars, kIo) \
  X(fds, kFd) \
  X(sockets, kSocket)
// clang-format on

enum Source : int { kStat, kStatm, kStatus, kIo, kFd, kSocket, kSourceCount };

enum Field : int {
#define TRIPDUMP_FIELD_ENUM(name, src) f_##name,
  TRIPDUMP_FIELDS(TRIPDUMP_FIELD_ENUM)
#undef TRIPDUMP_FIELD_ENUM
      kFieldCount
};
static_assert(kFieldCount <= 32, "change and availability masks are 32-bit");

extern const char* const kFieldNames[kFieldCount];
extern const Source kFieldSource[kFieldCount];

// Row flags. kRowGone marks a row while a sweep compacts its block; no returned row has it.
enum RowFlag : uint32_t { kRowNew = 1, kRowThread = 2, kRowGone = 1u << 31 };

// One block of columns for `capacity` rows. Layout (byte offsets):
//   f64 column i (every field; for comm it holds the name's length)   i * capacity * 8
//   comm bytes, kCommMax per row                                       kFieldCount * capacity * 8
//   u32 changed mask, u32 unavailable mask, u32 flags                  after comm, capacity * 4 each
// Shared so the JS ArrayBuffer wrapping it keeps it alive after the table moves on to a bigger block.
// The data is cache-line aligned and the capacity a multiple of kRowAlign, so every run of kRowAlign rows
// starting at a multiple of it fills whole cache lines in every array: threads writing neighbouring runs
// never share a line.
struct ColumnBlock {
  static constexpr size_t kRowAlign = 16;
  static constexpr std::align_val_t kAlign{64};
  explicit ColumnBlock(size_t capacity);
  size_t capacity;
  size_t bytes;
  struct Free {
    void operator()(std::byte* p) const { ::operator delete[](p, kAlign); }
  };
  std::unique_ptr<std::byte[], Free> data;

  static size_t comm_offset(size_t cap) { return kFieldCount * cap * 8; }
  static size_t changed_offset(size_t cap) { return comm_offset(cap) + cap * kCommMax; }
  static size_t unavailable_offset(size_t cap) { return changed_offset(cap) + cap * 4; }
  static size_t flags_offset(size_t cap) { return unavailable_offset(cap) + cap * 4; }
  static size_t bytes_for(size_t cap) { return flags_offset(cap) + cap * 4; }

  double* column(int field) { return reinterpret_cast<double*>(data.get()) + field * capacity; }
  char* comm(size_t row) {
    return reinterpret_cast<char*>(data.get() + comm_offset(capacity)) + row * kCommMax;
  }
  uint32_t* changed() { return reinterpret_cast<uint32_t*>(data.get() + changed_offset(capacity)); }
  uint32_t* unavailable() { return reinterpret_cast<uint32_t*>(data.get() + unavailable_offset(capacity)); }
  uint32_t* flags() { return reinterpret_cast<uint32_t*>(data.get() + flags_offset(capacity)); }
};

struct Identity {
  int pid;
  double start_time_ms;  // epoch ms
};

struct SweepResult {
  std::shared_ptr<ColumnBlock> block;
  size_t rows = 0;
  uint64_t generation = 0;
  double time_ms = 0;      // epoch ms at the sweep's start
  double duration_ms = 0;  // how long the sweep took
  std::vector<Identity> started;
  std::vector<Identity> exited;
  bool has_host = false;
  HostSample host;
};

struct WatchOptions {
  bool children = false;
  bool threads = false;
};

struct TableOptions {
  uint32_t fields = 0;  // bit i: field i requested
  bool all = false;     // watch every process, discovered each sweep
  WatchOptions follow;  // defaults for discovered processes
  bool host = false;
  size_t keep = 2;     // column blocks in rotation: a sweep's block is rewritten `keep` sweeps later
  size_t workers = 1;  // threads a sweep of many processes is split across, the sweeping one included
};

// "Field `field` of process `pid` is at or above (below) `threshold`", judged on the latest sweep. A
// waiting caller is woken by the first sweep that meets one (see the N-API sampleUntil). field < 0: always
// met. An unavailable value meets nothing.
struct WakeCondition {
  int pid = 0;
  int field = -1;
  bool above = true;
  double threshold = 0;
};

class ProcessTable {
 public:
  explicit ProcessTable(const TableOptions& options);
  ~ProcessTable();
  ProcessTable(const ProcessTable&) = delete;
  ProcessTable& operator=(const ProcessTable&) = delete;

  // Opens the process's files now (so a missing pid fails here, with ESRCH/ENOENT) and queues it for the
  // next sweep. Callable from the JS thread while a sweep runs elsewhere. Throws SysError.
  Identity watch(int pid, const WatchOptions& options);
  void unwatch(int pid);

  // One sweep. Not reentrant: a second concurrent call throws SysError(EBUSY). Throws SysError(EBADF)
  // once closed.
  SweepResult sweep();

  // Whether the latest sweep meets any of `conditions`. Called between sweeps, on the sweeping thread.
  bool any_met(const std::vector<WakeCondition>& conditions) const;

  // Releases every fd. If a sweep is running, the release happens when it ends.
  void close();
  bool closed() const { return closed_.load(); }
  size_t size() const { return size_.load(std::memory_order_relaxed); }

  struct Entry;

 private:
  void apply_pending();
  void discover();
  void follow_threads(Entry& e);
  void sample_entry(Entry& e, int64_t now_ns);
  void write_row(Entry& e, ColumnBlock& b, size_t row) const;
  void move_row(ColumnBlock& b, size_t from, size_t to) const;
  bool adopt(std::unique_ptr<Entry> e);
  // Why open_entry() failed: errno (ESRCH for a process being reaped), the call and the file.
  struct OpenFailure {
    int err = 0;
    const char* syscall = "";
    std::string path;
  };
  std::unique_ptr<Entry> open_entry(int pid, int tgid, const WatchOptions& follow, OpenFailure& why);
  double start_ms(uint64_t ticks) const;
  void release();

  TableOptions options_;
  uint32_t sources_ = 0;  // bit per Source needed by the requested fields
  std::vector<int> field_list_;
  double hz_;
  double page_size_;
  double cpus_;
  double btime_ms_;

  std::vector<std::unique_ptr<Entry>> entries_;
  std::unordered_map<int, Entry*> by_pid_;  // pids and tids share one number space

  std::mutex pending_mu_;
  std::vector<std::unique_ptr<Entry>> pending_watch_;
  std::vector<int> pending_unwatch_;

  ProcDir proc_dir_;
  std::vector<int> listing_;      // sorted pids of the previous /proc listing
  bool follow_children_ = false;  // some entry follows children: the /proc listing is diffed each sweep
  bool follow_threads_ = false;   // some entry follows threads: task dirs are listed each sweep
  SystemStats host_;

  std::vector<std::shared_ptr<ColumnBlock>> blocks_;
  uint64_t generation_ = 0;
  std::vector<Identity> exited_;

  WorkerPool pool_;
  std::atomic<bool> busy_{false};
  std::atomic<bool> closed_{false};
  std::atomic<size_t> size_{0};
};

}  // namespace tripdump
