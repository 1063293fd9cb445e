// Host-wide figures from /proc/stat, /proc/meminfo and /proc/loadavg, read through kept fds.
#pragma once

#include <cstdint>

#include "core/parsers.h"
#include "core/proc_file.h"

namespace tripdump {

struct HostSample {
  double cpu_percent = 0;  // busy share of all CPUs since the previous sample, 0..100; NaN on the first
  int cpus = 0;
  uint64_t mem_total = 0, mem_available = 0, mem_free = 0, swap_total = 0, swap_free = 0;  // bytes
  bool has_available = false;
  double load1 = 0, load5 = 0, load15 = 0;
  uint64_t runnable = 0, processes = 0;
  uint64_t btime = 0;
};

class SystemStats {
 public:
  // Throws SysError when a file cannot be opened or parsed.
  void open();
  bool is_open() const { return stat_.is_open(); }
  HostSample sample();
  void close();

 private:
  ProcFile stat_, meminfo_, loadavg_;
  CpuTimes prev_{};
  bool have_prev_ = false;
};

// Boot time in seconds since the epoch (btime in /proc/stat). Throws SysError.
uint64_t boot_time();

}  // namespace tripdump
