#include "crash/capture.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>

#include "core/error.h"
#include "core/fd.h"
#include "crash/json.h"
#include "crash/safe_fs.h"
#include "crash/store.h"

namespace tripdump::crash {

namespace {

constexpr size_t kBlock = 4096;
constexpr size_t kChunk = 1 << 20;

struct Facts {
  bool read = false;
  std::string exe, cwd, cgroup, cmdline, error;
  std::vector<std::pair<std::string, std::string>> status;
};

std::string readlink_at(int dirfd, const char* name) {
  char buf[4096];
  ssize_t n = ::readlinkat(dirfd, name, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// The pidfd (%F) names the crashing process for sure; /proc/%P is only trusted when both agree. The
// process is held in the kernel's coredump path while we have not drained its core, so the pid cannot
// be reused before this returns (facts are read before draining for that reason).
Facts read_facts(const CrashFields& f) {
  Facts facts;
  if (f.pidfd >= 0) {
    std::string info = read_small(AT_FDCWD, ("/proc/self/fdinfo/" + std::to_string(f.pidfd)).c_str());
    size_t at = info.find("\nPid:\t");
    if (at == std::string::npos || std::strtoul(info.c_str() + at + 6, nullptr, 10) != f.pid) {
      facts.error = "pidfd does not match %P; /proc facts not read";
      return facts;
    }
  }
  Fd proc;
  try {
    proc = open_nofollow(AT_FDCWD, "/proc/" + std::to_string(f.pid), O_RDONLY | O_DIRECTORY);
  } catch (const SysError& e) {
    facts.error = e.what();
    return facts;
  }
  facts.read = true;
  facts.exe = readlink_at(proc.get(), "exe");
  facts.cwd = readlink_at(proc.get(), "cwd");
  facts.cmdline = read_small(proc.get(), "cmdline", 65536);
  facts.cgroup = read_small(proc.get(), "cgroup", 65536);
  while (!facts.cgroup.empty() && facts.cgroup.back() == '\n') facts.cgroup.pop_back();
  std::string status = read_small(proc.get(), "status");
  static const char* keys[] = {"Name",   "PPid",   "TracerPid", "Uid",   "Gid",    "NSpid",  "Threads",
                               "VmPeak", "VmSize", "VmHWM",     "VmRSS", "VmSwap", "Seccomp"};
  size_t pos = 0;
  while (pos < status.size()) {
    size_t nl = status.find('\n', pos);
    if (nl == std::string::npos) nl = status.size();
    std::string line = status.substr(pos, nl - pos);
    pos = nl + 1;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    for (const char* k : keys)
      if (key == k) {
        size_t v = line.find_first_not_of(" \t", colon + 1);
        facts.status.emplace_back(key, v == std::string::npos ? "" : line.substr(v));
      }
  }
  return facts;
}

bool all_zero(const unsigned char* p, size_t n) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t acc = 0;
  for (size_t i = 0; i < n / 8; i++) acc |= w[i];
  for (size_t i = n / 8 * 8; i < n; i++) acc |= p[i];
  return acc == 0;
}

struct Drained {
  uint64_t size = 0, allocated = 0;
  bool over_budget = false;
  int write_errno = 0, read_errno = 0;
};

// Reads everything from `in`; writes non-zero 4 KiB blocks of it to `out` (zero blocks stay holes).
// Stops storing (but keeps reading) once more than `budget` bytes would be allocated or a write fails.
Drained drain(int in, int out, uint64_t budget, unsigned stall_timeout) {
  Drained d;
  struct FreeDeleter {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  std::unique_ptr<unsigned char, FreeDeleter> buf(
      static_cast<unsigned char*>(std::aligned_alloc(kBlock, kChunk)));
  if (!buf) {
    d.write_errno = ENOMEM;
    out = -1;
  }
  unsigned char sink[65536];
  bool eof = false;
  while (!eof) {
    size_t fill = 0;
    unsigned char* dst = buf ? buf.get() : sink;
    size_t cap = buf ? kChunk : sizeof sink;
    while (fill < cap) {
      // A kernel that stops writing without closing the pipe would keep us (and, with core_pipe_limit,
      // the crashing process) waiting forever: SIGALRM's default action ends us instead.
      ::alarm(stall_timeout);
      ssize_t n = ::read(in, dst + fill, cap - fill);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) d.read_errno = errno;
      if (n <= 0) {
        eof = true;
        break;
      }
      fill += static_cast<size_t>(n);
    }
    ::alarm(0);
    if (out >= 0) {
      for (size_t i = 0; i < fill;) {
        size_t len = std::min(kBlock, fill - i);
        if (all_zero(dst + i, len)) {
          i += len;
          continue;
        }
        size_t j = i + len;
        while (j < fill) {
          size_t l = std::min(kBlock, fill - j);
          if (all_zero(dst + j, l)) break;
          j += l;
        }
        uint64_t run = j - i;
        if (d.allocated + run > budget) {
          d.over_budget = true;
        } else if (!pwrite_all(out, dst + i, run, d.size + i)) {
          d.write_errno = errno ? errno : EIO;
        }
        if (d.over_budget || d.write_errno) {
          // Give the space back now: the core will not be kept.
          if (::ftruncate(out, 0) < 0) {
          }
          out = -1;
          break;
        }
        d.allocated += run;
        i = j;
      }
    }
    d.size += fill;
  }
  if (out >= 0 && ::ftruncate(out, static_cast<off_t>(d.size)) < 0) d.write_errno = errno;
  return d;
}

std::string iso_time(uint64_t ns) {
  time_t s = static_cast<time_t>(ns / 1000000000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<unsigned>(ns / 1000000 % 1000));
  return buf;
}

std::string metadata_json(const CrashFields& f, const Facts& facts, const Notification& n, const Drained& d,
                          uint64_t start_ns, uint64_t done_ns) {
  Json j;
  j.begin_object();
  j.num("version", 1).str("id", n.id);
  j.num("pid", f.pid).num("nsPid", f.ns_pid).num("uid", f.uid).num("gid", f.gid).num("signal", f.signal);
  j.num("time", f.time).num("dumpable", f.dumpable).raw_str("rlimitCore", f.rlimit);
  j.raw_str("hostname", f.hostname).raw_str("comm", f.comm);
  j.str("mode", f.socket_mode ? "socket" : "pipe");
  if (facts.read) {
    j.raw_str("exe", facts.exe).raw_str("cwd", facts.cwd).raw_str("cgroup", facts.cgroup);
    j.begin_array("cmdline");
    std::string c = facts.cmdline;
    if (!c.empty() && c.back() == '\0') c.pop_back();
    for (size_t pos = 0; !facts.cmdline.empty() && pos <= c.size();) {
      size_t z = c.find('\0', pos);
      if (z == std::string::npos) z = c.size();
      j.str({}, c.substr(pos, z - pos));
      pos = z + 1;
    }
    j.end_array();
    if (!valid_utf8(facts.cmdline)) j.str("cmdlineHex", to_hex(facts.cmdline));
    j.begin_object("status");
    for (auto& [k, v] : facts.status) j.raw_str(k, v);
    j.end_object();
  } else {
    j.null("exe");
  }
  if (!facts.error.empty()) j.str("factsError", facts.error);
  if (n.flags & kCoreStored)
    j.str("coreFile", n.core_file);
  else
    j.null("coreFile");
  j.num("coreSize", d.size).num("coreAllocated", n.core_allocated);
  j.boolean("coreStored", n.flags & kCoreStored);
  if (!n.error.empty()) j.str("error", n.error);
  j.str("capturedAt", iso_time(done_ns)).num("captureMs", (done_ns - start_ns) / 1000000);
  j.end_object();
  return j.text() + "\n";
}

}  // namespace

uint64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

std::string safe_name(const std::string& comm) {
  std::string out;
  for (unsigned char c : comm) {
    if (out.size() >= 32) break;
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    out += alnum ? static_cast<char>(c) : '_';
  }
  return out.empty() ? "unknown" : out;
}

Notification capture(int in, const CrashFields& f, const Config& cfg, uint64_t start_ns) {
  Notification n;
  n.pid = f.pid, n.ns_pid = f.ns_pid, n.uid = f.uid, n.gid = f.gid, n.signal = f.signal;
  n.dumpable = f.dumpable, n.time = f.time, n.exe_name = f.comm, n.hostname = f.hostname;
  if (f.socket_mode) n.flags |= kSocketMode;
  Facts facts = read_facts(f);
  n.exe_path = facts.exe;
  std::string base = safe_name(f.comm) + "_" + std::to_string(f.pid) + "_" + std::to_string(f.time);

  Fd dirfd;
  std::unique_ptr<NewFile> core;
  uint64_t budget = UINT64_MAX;
  try {
    try {
      dirfd = open_private_dir(cfg.dir);
    } catch (const SysError& e) {
      if (e.err() != ENOENT) throw;
      // Only the last component is created; a missing parent means a wrong configuration.
      if (::mkdir(cfg.dir.c_str(), 0755) < 0 && errno != EEXIST) throw_errno("mkdir", cfg.dir);
      dirfd = open_private_dir(cfg.dir);
    }
    Usage u = usage(dirfd.get(), cfg, {});
    // Older captures may all be removed to make room for this one, so they count as available.
    if (cfg.max_use) budget = cfg.max_use;
    if (u.keep_free) {
      uint64_t room = u.avail + u.removable;
      budget = std::min(budget, room > u.keep_free ? room - u.keep_free : 0);
    }
    core = std::make_unique<NewFile>(dirfd.get(), cfg.dir);
  } catch (const SysError& e) {
    n.error = e.what();
  }

  Drained d = drain(in, core ? core->fd() : -1, budget, cfg.stall_timeout);
  uint64_t done_ns = now_ns();
  n.capture_ns = done_ns - start_ns;
  n.core_size = d.size;
  if (core && !d.over_budget && !d.write_errno && !d.read_errno && d.size > 0) {
    try {
      // Owned by the crashing user, who may read their own core; nobody else can (0600).
      if (::fchown(core->fd(), f.uid, f.gid) < 0 && ::geteuid() == 0) throw_errno("fchown", cfg.dir);
      struct stat st;
      if (::fstat(core->fd(), &st) == 0) n.core_allocated = static_cast<uint64_t>(st.st_blocks) * 512;
      n.id = core->link(base, ".core");
      n.core_file = cfg.dir + "/" + n.id + ".core";
      n.flags |= kCoreStored;
    } catch (const SysError& e) {
      n.error = e.what();
    }
  } else if (core) {
    if (d.over_budget)
      n.error = "core is larger than max-use/keep-free allow";
    else if (d.write_errno)
      n.error = std::string("write: ") + SysError::errno_text(d.write_errno);
    else if (d.read_errno)
      n.error = std::string("read: ") + SysError::errno_text(d.read_errno);
    else
      n.error = "empty core";
  }
  core.reset();
  if (!(n.flags & kCoreStored)) n.flags |= kCoreSkipped;

  if (dirfd) {
    try {
      if (n.id.empty()) n.id = base;
      NewFile meta(dirfd.get(), cfg.dir);
      std::string json = metadata_json(f, facts, n, d, start_ns, done_ns);
      if (!write_all(meta.fd(), json.data(), json.size())) throw_errno("write", cfg.dir);
      if (::fchown(meta.fd(), f.uid, f.gid) < 0 && ::geteuid() == 0) throw_errno("fchown", cfg.dir);
      // The core already took this id, so the name is free unless someone planted it: then the id moves.
      if (!meta.link_exact(n.id, ".json")) {
        if (n.flags & kCoreStored) throw SysError(EEXIST, "linkat", cfg.dir + "/" + n.id + ".json");
        n.id = meta.link(n.id, ".json");
      }
      n.metadata_file = cfg.dir + "/" + n.id + ".json";
      n.flags |= kMetadataStored;
    } catch (const SysError& e) {
      if (n.error.empty()) n.error = e.what();
    }
    enforce_limits(dirfd.get(), cfg, n.id);
  }
  return n;
}

}  // namespace tripdump::crash
