// Parsers for the /proc files the sampler reads. Pure functions over the raw bytes of one read: no I/O,
// no allocation, no exceptions, so they run on the sampling hot path and under sanitizers in unit tests.
// Every parser takes hostile input (truncated files, a comm holding ") (", huge numbers, missing keys)
// and returns false rather than reading out of bounds or inventing a value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tripdump {

// Longest comm /proc/PID/stat can print: task comm is 16 bytes, but workqueue workers get their
// workqueue's description appended (kworker/u8:1-events_unbound), up to 64.
inline constexpr size_t kCommMax = 64;

// /proc/PID/stat and /proc/PID/task/TID/stat.
struct StatFields {
  int pid = 0;
  char comm[kCommMax] = {};  // NUL-terminated, truncated to kCommMax - 1 bytes
  size_t comm_len = 0;
  char state = '?';
  int ppid = 0;
  int pgrp = 0;     // -1 while the process is being reaped (state X)
  int session = 0;  // likewise
  uint64_t minflt = 0;
  uint64_t majflt = 0;
  uint64_t utime = 0;  // clock ticks
  uint64_t stime = 0;  // clock ticks
  int64_t priority = 0;
  int64_t nice = 0;
  int64_t num_threads = 0;
  uint64_t starttime = 0;  // clock ticks since boot
  uint64_t vsize = 0;      // bytes
  int64_t rss = 0;         // pages
  int processor = -1;
};
// comm is everything between the first '(' and the LAST ')' in the file (comm may itself hold ')').
bool parse_stat(std::string_view text, StatFields& out);

// /proc/PID/statm: sizes in pages.
struct StatmFields {
  uint64_t size = 0, resident = 0, shared = 0, text = 0, lib = 0, data = 0, dt = 0;
};
bool parse_statm(std::string_view text, StatmFields& out);

// /proc/PID/status: the keys the sampler uses. Keys absent from the file (kernel threads have no Vm*
// lines) leave their `has_` bit clear: such values are unavailable, never 0.
struct StatusFields {
  enum Has : uint32_t {
    kRssAnon = 1u << 0,
    kRssFile = 1u << 1,
    kRssShmem = 1u << 2,
    kVmSwap = 1u << 3,
    kVmHWM = 1u << 4,
    kUid = 1u << 5,
    kGid = 1u << 6,
    kTracerPid = 1u << 7,
    kSeccomp = 1u << 8,
    kThreads = 1u << 9,
    kTgid = 1u << 10,
    kSeccompFilters = 1u << 11,
    kSigQ = 1u << 12,
  };
  uint32_t has = 0;
  uint64_t rss_anon = 0, rss_file = 0, rss_shmem = 0, vm_swap = 0, vm_hwm = 0;  // bytes ("kB" lines x1024)
  uint32_t uid[4] = {};                                                         // real, effective, saved, fs
  uint32_t gid[4] = {};
  int tracer_pid = 0;
  int seccomp = 0;          // 0 disabled, 1 strict, 2 filter
  int seccomp_filters = 0;  // "Seccomp_filters:" (5.9+)
  int64_t threads = 0;
  int tgid = 0;
};
bool parse_status(std::string_view text, StatusFields& out);

// /proc/PID/io.
struct IoFields {
  uint64_t rchar = 0, wchar = 0, syscr = 0, syscw = 0, read_bytes = 0, write_bytes = 0,
           cancelled_write_bytes = 0;
};
bool parse_io(std::string_view text, IoFields& out);

// /proc/stat: the aggregate "cpu" line, per-CPU count, btime, and the process counters.
struct CpuTimes {
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0, guest = 0,
           guest_nice = 0;
  // guest time is already included in user/nice by the kernel.
  uint64_t total() const { return user + nice + system + idle + iowait + irq + softirq + steal; }
  uint64_t idle_all() const { return idle + iowait; }
};
struct ProcStat {
  CpuTimes cpu;
  int cpus = 0;        // number of "cpuN" lines
  uint64_t btime = 0;  // boot time, seconds since the epoch
  uint64_t ctxt = 0, processes = 0;
  uint64_t procs_running = 0, procs_blocked = 0;
};
bool parse_proc_stat(std::string_view text, ProcStat& out);

// /proc/meminfo, in bytes. Missing keys leave 0 and clear their has_ bit.
struct MemInfo {
  enum Has : uint32_t {
    kTotal = 1,
    kFree = 2,
    kAvailable = 4,
    kBuffers = 8,
    kCached = 16,
    kSwapTotal = 32,
    kSwapFree = 64
  };
  uint32_t has = 0;
  uint64_t total = 0, free = 0, available = 0, buffers = 0, cached = 0, swap_total = 0, swap_free = 0;
};
bool parse_meminfo(std::string_view text, MemInfo& out);

// /proc/loadavg: "0.00 0.01 0.05 1/123 4567".
struct LoadAvg {
  double load1 = 0, load5 = 0, load15 = 0;
  uint64_t running = 0, total = 0;
  int last_pid = 0;
};
bool parse_loadavg(std::string_view text, LoadAvg& out);

}  // namespace tripdump
