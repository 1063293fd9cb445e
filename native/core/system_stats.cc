#include "core/system_stats.h"

#include <cmath>

#include "core/error.h"

namespace tripdump {

namespace {
void open_or_throw(ProcFile& f, const char* path) {
  if (int err = f.open(path)) throw SysError(err, "open", path);
}
void read_or_throw(ProcFile& f, const char* path) {
  if (int err = f.read()) throw SysError(err, "read", path);
}
}  // namespace

void SystemStats::open() {
  open_or_throw(stat_, "/proc/stat");
  open_or_throw(meminfo_, "/proc/meminfo");
  open_or_throw(loadavg_, "/proc/loadavg");
}

void SystemStats::close() {
  stat_.close();
  meminfo_.close();
  loadavg_.close();
  have_prev_ = false;
}

HostSample SystemStats::sample() {
  HostSample h;
  read_or_throw(stat_, "/proc/stat");
  ProcStat ps;
  if (!parse_proc_stat(stat_.data(), ps)) throw SysError(EINVAL, "parse", "/proc/stat");
  const uint64_t total = ps.cpu.total(), idle = ps.cpu.idle_all();
  if (have_prev_ && total > prev_.total()) {
    const double dt = static_cast<double>(total - prev_.total());
    const double didle = idle >= prev_.idle_all() ? static_cast<double>(idle - prev_.idle_all()) : 0.0;
    h.cpu_percent = 100.0 * (dt - didle) / dt;
  } else {
    h.cpu_percent = have_prev_ ? 0.0 : NAN;
  }
  prev_ = ps.cpu;
  have_prev_ = true;
  h.cpus = ps.cpus;
  h.btime = ps.btime;

  read_or_throw(meminfo_, "/proc/meminfo");
  MemInfo mi;
  if (!parse_meminfo(meminfo_.data(), mi)) throw SysError(EINVAL, "parse", "/proc/meminfo");
  h.mem_total = mi.total;
  h.mem_free = mi.free;
  h.mem_available = mi.available;
  h.has_available = mi.has & MemInfo::kAvailable;
  h.swap_total = mi.swap_total;
  h.swap_free = mi.swap_free;

  read_or_throw(loadavg_, "/proc/loadavg");
  LoadAvg la;
  if (!parse_loadavg(loadavg_.data(), la)) throw SysError(EINVAL, "parse", "/proc/loadavg");
  h.load1 = la.load1;
  h.load5 = la.load5;
  h.load15 = la.load15;
  h.runnable = la.running;
  h.processes = la.total;
  return h;
}

uint64_t boot_time() {
  ProcFile f;
  open_or_throw(f, "/proc/stat");
  read_or_throw(f, "/proc/stat");
  ProcStat ps;
  if (!parse_proc_stat(f.data(), ps) || ps.btime == 0) throw SysError(EINVAL, "parse", "/proc/stat");
  return ps.btime;
}

}  // namespace tripdump
