#include "core/system_stats.h"

#include <cmath>

#include "core/error.h"

namespace tripdump {

namespace {
void open_or_throw(ProcFile& f, const char* path) {
  if (int err = f.open(path)) throw SysError(err, "open", path);
}
// One kept host file: read it and parse it into `out`, or throw naming the file.
template <typename T>
T read_parsed(ProcFile& f, const char* path, bool (*parse)(std::string_view, T&)) {
  if (int err = f.read()) throw SysError(err, "read", path);
  T out;
  if (!parse(f.data(), out)) throw SysError(EINVAL, "parse", path);
  return out;
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
  const ProcStat ps = read_parsed(stat_, "/proc/stat", parse_proc_stat);
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

  const MemInfo mi = read_parsed(meminfo_, "/proc/meminfo", parse_meminfo);
  h.mem_total = mi.total;
  h.mem_free = mi.free;
  h.mem_available = mi.available;
  h.has_available = mi.has & MemInfo::kAvailable;
  h.swap_total = mi.swap_total;
  h.swap_free = mi.swap_free;

  const LoadAvg la = read_parsed(loadavg_, "/proc/loadavg", parse_loadavg);
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
  const ProcStat ps = read_parsed(f, "/proc/stat", parse_proc_stat);
  if (ps.btime == 0) throw SysError(EINVAL, "parse", "/proc/stat", 0, "no btime line");
  return ps.btime;
}

}  // namespace tripdump
