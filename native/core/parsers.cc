// Hand-written parsers for /proc text. They run once per process per sample, so they avoid everything
// that costs more than a pass over the bytes: no allocation, no exceptions, and no strtoul/strtod/sscanf
// (those consult the locale, accept a sign or leading blanks where /proc never has them, and saturate
// instead of telling us a number overflowed).
//
// Conventions shared by every parser here:
// - `out` is always overwritten: with the parsed values on success, with its defaults on failure, so a
//   caller that ignores the result still never sees a stale value from an earlier sample. status and
//   meminfo are the exception on failure: their has_ bits still mark the values that did parse cleanly.
// - A value counts only when the separator the kernel always prints after it is there: ' ' or '\n' in
//   stat, the line's '\n' in the line-based files. A read cut short (a full buffer, a hostile file) thus
//   loses values instead of turning "1234" into "12"; text whose last line has no '\n' returns false.
// - Keys in "Key: value" files may come in any order; the first occurrence of a duplicated key wins,
//   because that is what a reader scanning the real (duplicate-free) kernel format would have taken.
#include "core/parsers.h"

#include <cstdint>
#include <limits>

namespace tripdump {
namespace {

constexpr bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
constexpr bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

// A read position over the text; every accessor checks the end, so hostile input cannot walk off it.
struct Cursor {
  const char* p;
  const char* end;

  bool done() const { return p >= end; }
  char peek() const { return p < end ? *p : '\0'; }
  bool at(char c) const { return p < end && *p == c; }
  bool eat(char c) {
    if (!at(c)) return false;
    ++p;
    return true;
  }
  void skip_blanks() {
    while (p < end && is_blank(*p)) ++p;
  }
  // Skips to just after the next '\n' (or to the end).
  void next_line() {
    while (p < end && *p++ != '\n') {
    }
  }
};

// Unsigned decimal: at least one digit, no sign, fails on overflow instead of saturating.
bool parse_u64(Cursor& c, uint64_t& v) {
  if (c.done() || !is_digit(*c.p)) return false;
  uint64_t acc = 0;
  while (c.p < c.end && is_digit(*c.p)) {
    const uint64_t d = static_cast<uint64_t>(*c.p - '0');
    if (acc > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    acc = acc * 10 + d;
    ++c.p;
  }
  v = acc;
  return true;
}

// Signed decimal with an optional '-'; the magnitude may reach 2^63 for a negative value.
bool parse_i64(Cursor& c, int64_t& v) {
  const bool neg = c.eat('-');
  uint64_t mag = 0;
  if (!parse_u64(c, mag)) return false;
  constexpr uint64_t kMaxPos = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (neg) {
    if (mag > kMaxPos + 1) return false;
    // Written so that -2^63 never passes through a signed overflow.
    v = mag == kMaxPos + 1 ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(mag);
  } else {
    if (mag > kMaxPos) return false;
    v = static_cast<int64_t>(mag);
  }
  return true;
}

// Non-negative int: pids, counts and flags that the kernel never prints negative.
bool parse_nonneg_int(Cursor& c, int& v) {
  uint64_t w = 0;
  if (!parse_u64(c, w) || w > static_cast<uint64_t>(std::numeric_limits<int>::max())) return false;
  v = static_cast<int>(w);
  return true;
}

// A process group or session id: -1 is what the kernel prints once the process's signal struct is gone
// (do_task_stat starts from -1 and fills them in only under lock_task_sighand), i.e. while it is being
// reaped (state X). Other negatives never appear.
bool parse_group_id(Cursor& c, int& v) {
  if (c.eat('-')) {
    if (!c.eat('1') || is_digit(c.peek())) return false;
    v = -1;
    return true;
  }
  return parse_nonneg_int(c, v);
}

bool parse_u32(Cursor& c, uint32_t& v) {
  uint64_t w = 0;
  if (!parse_u64(c, w) || w > std::numeric_limits<uint32_t>::max()) return false;
  v = static_cast<uint32_t>(w);
  return true;
}

// ---- "Key: value" files (status, meminfo, io) -------------------------------------------------------

// Splits the line at the cursor into its key (before ':') and leaves the cursor on the value, blanks
// skipped. Lines without ':' yield an empty key so the caller skips them.
std::string_view take_key(Cursor& c) {
  const char* start = c.p;
  while (c.p < c.end && *c.p != ':' && *c.p != '\n') ++c.p;
  if (!c.at(':')) return {};
  std::string_view key(start, static_cast<size_t>(c.p - start));
  ++c.p;
  c.skip_blanks();
  return key;
}

// True when only blanks remain before the line's '\n'; the end of the text is not a line end (see top).
bool at_line_end(Cursor& c) {
  c.skip_blanks();
  return c.at('\n');
}

// The kernel ends every line of these files with '\n'; text that does not was cut short.
bool ends_cleanly(std::string_view text) {
  return !text.empty() && text.back() == '\n';
}

// "  1234 kB" → bytes. The unit is required: a value in any other unit must not be scaled by 1024.
bool parse_kb_value(Cursor& c, uint64_t& bytes) {
  uint64_t kb = 0;
  if (!parse_u64(c, kb) || kb > std::numeric_limits<uint64_t>::max() / 1024) return false;
  c.skip_blanks();
  if (!c.eat('k') || !c.eat('B') || !at_line_end(c)) return false;
  bytes = kb * 1024;
  return true;
}

bool parse_u64_line(Cursor& c, uint64_t& v) {
  uint64_t tmp = 0;
  if (!parse_u64(c, tmp) || !at_line_end(c)) return false;
  v = tmp;
  return true;
}

// "Uid:\t0\t0\t0\t0": real, effective, saved, filesystem.
bool parse_id_quad(Cursor& c, uint32_t* ids) {
  uint32_t tmp[4];
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (!is_blank(c.peek())) return false;
      c.skip_blanks();
    }
    if (!parse_u32(c, tmp[i])) return false;
  }
  if (!at_line_end(c)) return false;
  for (int i = 0; i < 4; ++i) ids[i] = tmp[i];
  return true;
}

// "SigQ:\t0/96365": queued / limit. The struct keeps only the bit; the shape is still checked so a
// garbled line is not reported as present.
bool parse_sigq(Cursor& c) {
  uint64_t queued = 0, limit = 0;
  return parse_u64(c, queued) && c.eat('/') && parse_u64(c, limit) && at_line_end(c);
}

}  // namespace

// ---- /proc/PID/stat ---------------------------------------------------------------------------------

bool parse_stat(std::string_view text, StatFields& out) {
  out = StatFields{};
  StatFields s;
  Cursor c{text.data(), text.data() + text.size()};

  if (!parse_nonneg_int(c, s.pid) || !c.eat(' ') || !c.eat('(')) return false;
  // Searching from the back is what makes a comm holding ") (" safe: nothing after comm holds ')'.
  const size_t close = text.rfind(')');
  const char* comm_begin = c.p;
  if (close == std::string_view::npos || text.data() + close < comm_begin) return false;
  const size_t full_len = static_cast<size_t>(text.data() + close - comm_begin);
  s.comm_len = full_len < kCommMax - 1 ? full_len : kCommMax - 1;
  for (size_t i = 0; i < s.comm_len; ++i) s.comm[i] = comm_begin[i];
  s.comm[s.comm_len] = '\0';
  c.p = text.data() + close + 1;

  if (!c.eat(' ')) return false;
  const char st = c.peek();
  if (!((st >= 'A' && st <= 'Z') || (st >= 'a' && st <= 'z'))) return false;
  s.state = st;
  ++c.p;

  // Fields 4.. of proc(5). A value is complete only when a separator follows it: the kernel always
  // prints more after rss, so "…vsize 12" at the end of the text is a cut, not an rss of 12.
  const auto sep = [&c] { return c.at(' ') || c.at('\n'); };
  const auto skip_field = [&c] {
    const char* start = c.p;
    while (c.p < c.end && *c.p != ' ' && *c.p != '\n') ++c.p;
    return c.p > start;
  };
  constexpr int kRssField = 24;
  constexpr int kProcessorField = 39;
  for (int field = 4; field <= kProcessorField; ++field) {
    if (!c.eat(' ')) {
      if (field <= kRssField) return false;
      break;
    }
    bool ok = true;
    int64_t i64 = 0;
    switch (field) {
      case 4:
        ok = parse_nonneg_int(c, s.ppid);
        break;
      case 5:
        ok = parse_group_id(c, s.pgrp);
        break;
      case 6:
        ok = parse_group_id(c, s.session);
        break;
      case 10:
        ok = parse_u64(c, s.minflt);
        break;
      case 12:
        ok = parse_u64(c, s.majflt);
        break;
      case 14:
        ok = parse_u64(c, s.utime);
        break;
      case 15:
        ok = parse_u64(c, s.stime);
        break;
      case 18:
        ok = parse_i64(c, s.priority);
        break;
      case 19:
        ok = parse_i64(c, s.nice);
        break;
      case 20:
        ok = parse_i64(c, s.num_threads);
        break;
      case 22:
        ok = parse_u64(c, s.starttime);
        break;
      case 23:
        ok = parse_u64(c, s.vsize);
        break;
      case 24:
        ok = parse_i64(c, s.rss);
        break;
      case kProcessorField:
        // A cut or missing processor stays -1 (unknown) rather than being invented.
        ok = parse_i64(c, i64) && i64 >= 0 && i64 <= std::numeric_limits<int>::max();
        if (ok && sep()) s.processor = static_cast<int>(i64);
        break;
      default:
        ok = skip_field();
        break;
    }
    if (!ok || !sep()) {
      if (field <= kRssField) return false;
      break;
    }
  }
  out = s;
  return true;
}

// ---- /proc/PID/statm --------------------------------------------------------------------------------

bool parse_statm(std::string_view text, StatmFields& out) {
  out = StatmFields{};
  StatmFields s;
  Cursor c{text.data(), text.data() + text.size()};
  uint64_t* const fields[] = {&s.size, &s.resident, &s.shared, &s.text, &s.lib, &s.data, &s.dt};
  bool first = true;
  for (uint64_t* f : fields) {
    if (!first && !c.eat(' ')) return false;
    first = false;
    if (!parse_u64(c, *f)) return false;
  }
  if (!c.at('\n')) return false;
  out = s;
  return true;
}

// ---- "Key:\tvalue" files (status, meminfo) -----------------------------------------------------------

// Scans the lines of a keyed file. For the first line of each key in `keys` (duplicates are ignored) calls
// parse(key, cursor), which parses the value and says whether it was well formed. Returns the bits of the
// keys whose values parsed; sets `malformed` when one did not.
template <typename Key, size_t N, typename Parse>
uint32_t scan_keyed_lines(std::string_view text, const Key (&keys)[N], Parse&& parse, bool& malformed) {
  uint32_t seen = 0, has = 0;
  Cursor c{text.data(), text.data() + text.size()};
  while (!c.done()) {
    const std::string_view key = take_key(c);
    for (const Key& k : keys) {
      if (key != k.name || (seen & k.bit)) continue;
      seen |= k.bit;
      if (parse(k, c))
        has |= k.bit;
      else
        malformed = true;
      break;
    }
    c.next_line();
  }
  return has;
}

// ---- /proc/PID/status -------------------------------------------------------------------------------

bool parse_status(std::string_view text, StatusFields& out) {
  out = StatusFields{};
  StatusFields s;
  enum class Kind { kKb, kIds, kInt, kCount, kSigQ };
  struct Key {
    std::string_view name;
    uint32_t bit;
    Kind kind;
    uint64_t* kb = nullptr;
    uint32_t* ids = nullptr;
    int* i = nullptr;
    int64_t* count = nullptr;
  };
  using S = StatusFields;
  const Key keys[] = {
      {"RssAnon", S::kRssAnon, Kind::kKb, &s.rss_anon},
      {"RssFile", S::kRssFile, Kind::kKb, &s.rss_file},
      {"RssShmem", S::kRssShmem, Kind::kKb, &s.rss_shmem},
      {"VmSwap", S::kVmSwap, Kind::kKb, &s.vm_swap},
      {"VmHWM", S::kVmHWM, Kind::kKb, &s.vm_hwm},
      {"Uid", S::kUid, Kind::kIds, nullptr, s.uid},
      {"Gid", S::kGid, Kind::kIds, nullptr, s.gid},
      {"TracerPid", S::kTracerPid, Kind::kInt, nullptr, nullptr, &s.tracer_pid},
      {"Seccomp", S::kSeccomp, Kind::kInt, nullptr, nullptr, &s.seccomp},
      {"Seccomp_filters", S::kSeccompFilters, Kind::kInt, nullptr, nullptr, &s.seccomp_filters},
      {"Threads", S::kThreads, Kind::kCount, nullptr, nullptr, nullptr, &s.threads},
      {"Tgid", S::kTgid, Kind::kInt, nullptr, nullptr, &s.tgid},
      {"SigQ", S::kSigQ, Kind::kSigQ},
  };
  bool malformed = false;
  // Each value is parsed whole into a temporary and stored only when the line checks out, so a rejected
  // line leaves its field at the default.
  s.has = scan_keyed_lines(
      text, keys,
      [](const Key& k, Cursor& c) {
        bool ok = false;
        switch (k.kind) {
          case Kind::kKb: {
            uint64_t v = 0;
            if ((ok = parse_kb_value(c, v))) *k.kb = v;
            break;
          }
          case Kind::kIds:
            ok = parse_id_quad(c, k.ids);
            break;
          case Kind::kInt: {
            int v = 0;
            if ((ok = parse_nonneg_int(c, v) && at_line_end(c))) *k.i = v;
            break;
          }
          case Kind::kCount: {
            uint64_t v = 0;
            ok = parse_u64(c, v) && at_line_end(c) &&
                 v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
            if (ok) *k.count = static_cast<int64_t>(v);
            break;
          }
          case Kind::kSigQ:
            ok = parse_sigq(c);
            break;
        }
        return ok;
      },
      malformed);
  out = s;
  // Every real status file has Uid and friends, even a kernel thread's: none at all means not a status.
  return !malformed && s.has != 0 && ends_cleanly(text);
}

// ---- /proc/PID/io -----------------------------------------------------------------------------------

bool parse_io(std::string_view text, IoFields& out) {
  out = IoFields{};
  IoFields s;
  struct Key {
    std::string_view name;
    uint64_t* value;
  };
  const Key keys[] = {{"rchar", &s.rchar},
                      {"wchar", &s.wchar},
                      {"syscr", &s.syscr},
                      {"syscw", &s.syscw},
                      {"read_bytes", &s.read_bytes},
                      {"write_bytes", &s.write_bytes},
                      {"cancelled_write_bytes", &s.cancelled_write_bytes}};
  constexpr uint32_t kAll = (1u << (sizeof keys / sizeof keys[0])) - 1;
  uint32_t seen = 0;
  Cursor c{text.data(), text.data() + text.size()};
  while (!c.done()) {
    const std::string_view key = take_key(c);
    for (uint32_t i = 0; i < sizeof keys / sizeof keys[0]; ++i) {
      if (key != keys[i].name || (seen & (1u << i))) continue;
      // IoFields has no per-key bits, so one bad value makes the whole file unusable.
      if (!parse_u64_line(c, *keys[i].value)) return false;
      seen |= 1u << i;
      break;
    }
    c.next_line();
  }
  if (seen != kAll || !ends_cleanly(text)) return false;
  out = s;
  return true;
}

// ---- /proc/stat -------------------------------------------------------------------------------------

bool parse_proc_stat(std::string_view text, ProcStat& out) {
  out = ProcStat{};
  ProcStat s;
  enum : uint32_t { kCpu = 1, kBtime = 2, kCtxt = 4, kProcesses = 8, kRunning = 16, kBlocked = 32 };
  constexpr uint32_t kAll = 63;
  uint32_t seen = 0;
  Cursor c{text.data(), text.data() + text.size()};
  while (!c.done()) {
    const char* start = c.p;
    while (c.p < c.end && *c.p != ' ' && *c.p != '\n') ++c.p;
    const std::string_view key(start, static_cast<size_t>(c.p - start));
    c.skip_blanks();
    if (key == "cpu") {
      if (!(seen & kCpu)) {
        uint64_t* const f[] = {&s.cpu.user, &s.cpu.nice,    &s.cpu.system, &s.cpu.idle,  &s.cpu.iowait,
                               &s.cpu.irq,  &s.cpu.softirq, &s.cpu.steal,  &s.cpu.guest, &s.cpu.guest_nice};
        bool first = true;
        for (uint64_t* v : f) {
          if (!first) {
            if (!is_blank(c.peek())) return false;
            c.skip_blanks();
          }
          first = false;
          if (!parse_u64(c, *v)) return false;
        }
        if (!at_line_end(c)) return false;
        seen |= kCpu;
      }
    } else if (key.size() > 3 && key.substr(0, 3) == "cpu" && is_digit(key[3])) {
      ++s.cpus;
    } else {
      struct Single {
        std::string_view name;
        uint32_t bit;
        uint64_t* value;
      };
      const Single singles[] = {{"btime", kBtime, &s.btime},
                                {"ctxt", kCtxt, &s.ctxt},
                                {"processes", kProcesses, &s.processes},
                                {"procs_running", kRunning, &s.procs_running},
                                {"procs_blocked", kBlocked, &s.procs_blocked}};
      for (const Single& one : singles) {
        if (key != one.name || (seen & one.bit)) continue;
        if (!parse_u64_line(c, *one.value)) return false;
        seen |= one.bit;
        break;
      }
    }
    // The intr line alone can be thousands of numbers long; it is skipped without looking at it.
    c.next_line();
  }
  if (seen != kAll || s.cpus == 0 || !ends_cleanly(text)) return false;
  out = s;
  return true;
}

// ---- /proc/meminfo ----------------------------------------------------------------------------------

bool parse_meminfo(std::string_view text, MemInfo& out) {
  out = MemInfo{};
  MemInfo s;
  struct Key {
    std::string_view name;
    uint32_t bit;
    uint64_t* value;
  };
  const Key keys[] = {{"MemTotal", MemInfo::kTotal, &s.total},
                      {"MemFree", MemInfo::kFree, &s.free},
                      {"MemAvailable", MemInfo::kAvailable, &s.available},
                      {"Buffers", MemInfo::kBuffers, &s.buffers},
                      {"Cached", MemInfo::kCached, &s.cached},
                      {"SwapTotal", MemInfo::kSwapTotal, &s.swap_total},
                      {"SwapFree", MemInfo::kSwapFree, &s.swap_free}};
  bool malformed = false;
  s.has = scan_keyed_lines(
      text, keys,
      [](const Key& k, Cursor& c) {
        uint64_t v = 0;
        if (!parse_kb_value(c, v)) return false;
        *k.value = v;
        return true;
      },
      malformed);
  // Like status: keys that failed stay unavailable, and the caller learns the file was not clean.
  out = s;
  return !malformed && s.has != 0 && ends_cleanly(text);
}

// ---- /proc/loadavg ----------------------------------------------------------------------------------

namespace {

// "12.34" → 12.34 without strtod. The integer and fraction digits are combined into one exact integer
// and divided once, so the result is the correctly rounded double, the same one strtod would give.
bool parse_fixed(Cursor& c, double& v) {
  uint64_t whole = 0;
  if (!parse_u64(c, whole)) return false;
  // Keeps whole * 10^frac_digits below 2^53, where doubles still hold every integer exactly.
  constexpr uint64_t kMaxWhole = 1'000'000'000;
  if (whole > kMaxWhole) return false;
  uint64_t num = whole;
  uint64_t den = 1;
  if (c.eat('.')) {
    int digits = 0;
    while (c.p < c.end && is_digit(*c.p)) {
      if (++digits > 6) return false;
      num = num * 10 + static_cast<uint64_t>(*c.p - '0');
      den *= 10;
      ++c.p;
    }
    if (digits == 0) return false;
  }
  v = static_cast<double>(num) / static_cast<double>(den);
  return true;
}

}  // namespace

bool parse_loadavg(std::string_view text, LoadAvg& out) {
  out = LoadAvg{};
  LoadAvg s;
  Cursor c{text.data(), text.data() + text.size()};
  if (!parse_fixed(c, s.load1) || !c.eat(' ') || !parse_fixed(c, s.load5) || !c.eat(' ') ||
      !parse_fixed(c, s.load15) || !c.eat(' ') || !parse_u64(c, s.running) || !c.eat('/') ||
      !parse_u64(c, s.total) || !c.eat(' ') || !parse_nonneg_int(c, s.last_pid) || !c.at('\n'))
    return false;
  out = s;
  return true;
}

}  // namespace tripdump
