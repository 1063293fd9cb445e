#include "core/process_table.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <ctime>

#include "core/error.h"

namespace tripdump {

const char* const kFieldNames[kFieldCount] = {
#define TRIPDUMP_FIELD_NAME(name, src) #name,
    TRIPDUMP_FIELDS(TRIPDUMP_FIELD_NAME)
#undef TRIPDUMP_FIELD_NAME
};

const Source kFieldSource[kFieldCount] = {
#define TRIPDUMP_FIELD_SRC(name, src) src,
    TRIPDUMP_FIELDS(TRIPDUMP_FIELD_SRC)
#undef TRIPDUMP_FIELD_SRC
};

ColumnBlock::ColumnBlock(size_t cap)
    : capacity((cap + kRowAlign - 1) / kRowAlign * kRowAlign),
      bytes(bytes_for(capacity)),
      data(new (kAlign) std::byte[bytes]()) {}

static_assert(WorkerPool::kChunk % ColumnBlock::kRowAlign == 0, "a chunk's rows fill whole cache lines");

struct ProcessTable::Entry {
  int pid = 0;
  int tgid = 0;
  bool thread = false;
  bool exited = false;
  bool fresh = true;
  uint64_t start_ticks = 0;
  WatchOptions follow;
  ProcFile files[kIo + 1];  // stat, statm, status, io
  ProcDir fd_dir;
  ProcDir task_dir;
  uint32_t denied = 0;  // sources refused with EACCES/EPERM: their fields stay unavailable
  double v[kFieldCount];
  char comm[kCommMax] = {};
  uint32_t changed = 0;
  uint32_t unavailable = 0;
  uint64_t prev_ticks = 0;
  int64_t prev_ns = 0;
  bool have_prev = false;

  Entry() { std::fill(std::begin(v), std::end(v), NAN); }

  void set(int f, double x) {
    const uint32_t bit = 1u << f;
    // Bitwise equality so NaN -> NaN is "unchanged" and -0/+0 never flicker.
    if (std::bit_cast<uint64_t>(v[f]) != std::bit_cast<uint64_t>(x) || (unavailable & bit)) changed |= bit;
    v[f] = x;
    unavailable &= ~bit;
  }
  void set_unavailable(int f) {
    const uint32_t bit = 1u << f;
    if (!(unavailable & bit)) changed |= bit;
    unavailable |= bit;
    v[f] = NAN;
  }
};

namespace {

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

double real_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// A process that is gone: a kept fd says ESRCH; a path opened anew after the reap says ENOENT.
bool gone(int err) {
  return err == ESRCH || err == ENOENT;
}
bool denied(int err) {
  return err == EACCES || err == EPERM;
}

const char* const kSourceFile[] = {"stat", "statm", "status", "io"};

}  // namespace

ProcessTable::ProcessTable(const TableOptions& options) : options_(options), pool_(options.workers) {
  for (int f = 0; f < kFieldCount; ++f) {
    if (options_.fields & (1u << f)) {
      field_list_.push_back(f);
      sources_ |= 1u << kFieldSource[f];
    }
  }
  sources_ |= 1u << kStat;  // identity and exit detection always come from stat
  blocks_.resize(std::max<size_t>(2, options_.keep));
  hz_ = static_cast<double>(sysconf(_SC_CLK_TCK));
  page_size_ = static_cast<double>(sysconf(_SC_PAGESIZE));
  cpus_ = static_cast<double>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  btime_ms_ = static_cast<double>(boot_time()) * 1e3;
  if (options_.host) host_.open();
  if (options_.all) {
    if (int err = proc_dir_.open("/proc")) throw SysError(err, "open", "/proc");
  }
}

ProcessTable::~ProcessTable() {
  release();
}

double ProcessTable::start_ms(uint64_t ticks) const {
  return btime_ms_ + static_cast<double>(ticks) * 1e3 / hz_;
}

namespace {

void apply_stat(ProcessTable::Entry& e, const StatFields& s, double page_size, double start_ms) {
  e.set(f_pid, e.pid);
  e.set(f_tgid, e.tgid);
  e.set(f_ppid, s.ppid);
  e.set(f_pgid, s.pgrp);
  e.set(f_state, static_cast<unsigned char>(s.state));
  if (static_cast<double>(s.comm_len) != e.v[f_comm] || std::memcmp(e.comm, s.comm, s.comm_len) != 0) {
    std::memcpy(e.comm, s.comm, kCommMax);
    e.set(f_comm, static_cast<double>(s.comm_len));
  }
  e.set(f_startTime, start_ms);
  e.set(f_userTicks, static_cast<double>(s.utime));
  e.set(f_systemTicks, static_cast<double>(s.stime));
  e.set(f_rssBytes, static_cast<double>(s.rss) * page_size);
  e.set(f_vmBytes, static_cast<double>(s.vsize));
  e.set(f_minorFaults, static_cast<double>(s.minflt));
  e.set(f_majorFaults, static_cast<double>(s.majflt));
  e.set(f_threads, static_cast<double>(s.num_threads));
}

}  // namespace

std::unique_ptr<ProcessTable::Entry> ProcessTable::open_entry(int pid, int tgid, const WatchOptions& follow,
                                                              OpenFailure& why) {
  auto e = std::make_unique<Entry>();
  e->pid = pid;
  e->tgid = tgid;
  e->thread = pid != tgid;
  e->follow = e->thread ? WatchOptions{} : follow;
  const std::string base = e->thread ? "/proc/" + std::to_string(tgid) + "/task/" + std::to_string(pid)
                                     : "/proc/" + std::to_string(pid);
  const auto fail = [&](int err, const char* syscall, const char* file) {
    why = {err, syscall, base + "/" + file};
    return nullptr;
  };
  if (int err = e->files[kStat].open(base + "/stat")) return fail(err, "open", "stat");
  if (int err = e->files[kStat].read()) return fail(err, "read", "stat");
  StatFields s;
  if (!parse_stat(e->files[kStat].data(), s)) return fail(EINVAL, "parse", "stat");
  // State X: exit is over and the process is being reaped (pgrp and session read -1 by then). It has
  // gone as far as any caller can tell; its next read says ESRCH.
  if (s.state == 'X') return fail(ESRCH, "read", "stat");
  e->start_ticks = s.starttime;
  apply_stat(*e, s, page_size_, start_ms(s.starttime));
  for (int src = kStatm; src <= kIo; ++src) {
    if (!(sources_ & (1u << src))) continue;
    const int r = e->files[src].open(base + "/" + kSourceFile[src]);
    if (denied(r))
      e->denied |= 1u << src;
    else if (r)
      return fail(r, "open", kSourceFile[src]);
  }
  if (sources_ & ((1u << kFd) | (1u << kSocket))) {
    const int r = e->fd_dir.open(base + "/fd");
    if (denied(r))
      e->denied |= (1u << kFd) | (1u << kSocket);
    else if (r)
      return fail(r, "open", "fd");
  }
  if (e->follow.threads) {
    if (int err = e->task_dir.open(base + "/task")) return fail(err, "open", "task");
  }
  return e;
}

Identity ProcessTable::watch(int pid, const WatchOptions& options) {
  if (closed_) throw SysError(EBADF, "watch", {}, pid, "the sampler is closed");
  if (pid <= 0) throw SysError(EINVAL, "watch", {}, pid, "a pid is a positive integer");
  OpenFailure why;
  auto e = open_entry(pid, pid, options, why);
  if (!e) {
    // ENOENT on /proc/PID means there is no such process: report it the way the kernel would.
    throw SysError(gone(why.err) ? ESRCH : why.err, why.syscall, std::move(why.path), pid,
                   why.err == EINVAL ? "unexpected format" : "");
  }
  const Identity id{pid, start_ms(e->start_ticks)};
  std::lock_guard lock(pending_mu_);
  pending_watch_.push_back(std::move(e));
  return id;
}

void ProcessTable::unwatch(int pid) {
  std::lock_guard lock(pending_mu_);
  pending_unwatch_.push_back(pid);
}

bool ProcessTable::adopt(std::unique_ptr<Entry> e) {
  auto [it, inserted] = by_pid_.try_emplace(e->pid, e.get());
  if (!inserted) {
    Entry& old = *it->second;
    if (old.start_ticks == e->start_ticks && !old.exited) {
      // Watched twice: keep the sampled one, widen what it follows.
      old.follow.children |= e->follow.children;
      if (e->follow.threads && !old.follow.threads) {
        old.follow.threads = follow_threads_ = true;
        old.task_dir = std::move(e->task_dir);
      }
      return false;
    }
    // Same pid, new process: the old one is gone, whatever its kept fd has said so far.
    old.exited = true;
    it->second = e.get();
  }
  follow_threads_ |= e->follow.threads;
  if (e->follow.children) {
    follow_children_ = true;
    // Its children that exist already must be found too: the next listing treats every pid as new.
    listing_.clear();
  }
  entries_.push_back(std::move(e));
  return true;
}

void ProcessTable::apply_pending() {
  std::vector<std::unique_ptr<Entry>> watch;
  std::vector<int> unwatch;
  {
    std::lock_guard lock(pending_mu_);
    watch.swap(pending_watch_);
    unwatch.swap(pending_unwatch_);
  }
  for (auto& e : watch) adopt(std::move(e));
  if (unwatch.empty()) return;
  std::sort(unwatch.begin(), unwatch.end());
  auto dropped = [&](const std::unique_ptr<Entry>& e) {
    // Unwatching a process drops its thread rows too.
    return std::binary_search(unwatch.begin(), unwatch.end(), e->tgid) ||
           std::binary_search(unwatch.begin(), unwatch.end(), e->pid);
  };
  for (auto& e : entries_) {
    if (dropped(e)) {
      auto it = by_pid_.find(e->pid);
      if (it != by_pid_.end() && it->second == e.get()) by_pid_.erase(it);
    }
  }
  std::erase_if(entries_, dropped);
}

void ProcessTable::discover() {
  std::vector<int> now;
  now.reserve(listing_.size() + 64);
  const int err = proc_dir_.for_each([&now](const char* name) {
    int pid = 0;
    for (const char* p = name; *p; ++p) {
      if (*p < '0' || *p > '9') return;
      pid = pid * 10 + (*p - '0');
    }
    now.push_back(pid);
  });
  if (err) throw SysError(err, "getdents64", "/proc");
  std::sort(now.begin(), now.end());
  std::vector<int> fresh;
  std::set_difference(now.begin(), now.end(), listing_.begin(), listing_.end(), std::back_inserter(fresh));
  listing_.swap(now);

  if (options_.all) {
    for (int pid : fresh) {
      if (by_pid_.count(pid)) continue;
      OpenFailure why;
      if (auto e = open_entry(pid, pid, options_.follow, why)) adopt(std::move(e));
      // A process that vanished between the listing and the open was never ours to report.
    }
    return;
  }
  // Following children: a new pid is ours when its parent is a watched process that follows children.
  // Parents can be new in the same listing, so repeat until a pass adopts nothing.
  struct Candidate {
    int pid, ppid;
  };
  std::vector<Candidate> candidates;
  for (int pid : fresh) {
    if (by_pid_.count(pid)) continue;
    ProcFile f;
    StatFields s;
    if (f.open("/proc/" + std::to_string(pid) + "/stat") || f.read() || !parse_stat(f.data(), s)) continue;
    candidates.push_back({pid, s.ppid});
  }
  for (bool progress = true; progress && !candidates.empty();) {
    progress = false;
    std::erase_if(candidates, [&](const Candidate& c) {
      auto parent = by_pid_.find(c.ppid);
      if (parent == by_pid_.end() || parent->second->thread || !parent->second->follow.children) return false;
      OpenFailure why;
      if (auto e = open_entry(c.pid, c.pid, parent->second->follow, why)) progress |= adopt(std::move(e));
      return true;
    });
  }
}

void ProcessTable::follow_threads(Entry& e) {
  std::vector<int> tids;
  const int err = e.task_dir.for_each([&tids](const char* name) { tids.push_back(std::atoi(name)); });
  if (err) return;  // the process is going away; its own stat read will say so
  const int tgid = e.pid;
  for (int tid : tids) {
    if (tid == tgid || tid <= 0 || by_pid_.count(tid)) continue;
    OpenFailure why;
    if (auto t = open_entry(tid, tgid, {}, why)) adopt(std::move(t));
  }
}

void ProcessTable::sample_entry(Entry& e, int64_t now_ns) {
  if (e.fresh)
    e.changed = options_.fields;
  else
    e.changed = 0;

  ProcFile& stat = e.files[kStat];
  int err = stat.read();
  if (err) {
    if (gone(err)) {
      e.exited = true;
      return;
    }
    for (int f : field_list_)
      if (kFieldSource[f] == kStat && f != f_pid) e.set_unavailable(f);
    return;
  }
  if (stat.changed()) {
    StatFields s;
    // Read by path (over the fd budget), a pid can be reused between two sweeps: identity tells.
    // Being reaped (state X) is gone too: the next read would say ESRCH.
    if (!parse_stat(stat.data(), s) || s.starttime != e.start_ticks || s.state == 'X') {
      e.exited = true;
      return;
    }
    apply_stat(e, s, page_size_, start_ms(s.starttime));
  }
  const uint64_t ticks = static_cast<uint64_t>(e.v[f_userTicks] + e.v[f_systemTicks]);
  if (e.have_prev && now_ns > e.prev_ns) {
    const double dt = static_cast<double>(now_ns - e.prev_ns) / 1e9;
    const double used = ticks >= e.prev_ticks ? static_cast<double>(ticks - e.prev_ticks) / hz_ : 0.0;
    // Ticks are 10 ms: over a short interval one tick can look like many cores. No process uses more
    // cores than it has threads or the host has CPUs, so clamp to that.
    const double cores = std::min(std::max(e.v[f_threads], 1.0), cpus_);
    e.set(f_cpuPercent, std::min(100.0 * used / dt, 100.0 * cores));
  } else {
    e.set_unavailable(f_cpuPercent);
  }
  e.prev_ticks = ticks;
  e.prev_ns = now_ns;
  e.have_prev = true;

  for (int src = kStatm; src <= kIo; ++src) {
    if (!(sources_ & (1u << src))) continue;
    ProcFile& file = e.files[src];
    if (!(e.denied & (1u << src))) {
      err = file.read();
      if (gone(err)) {
        e.exited = true;
        return;
      }
      if (denied(err)) {
        e.denied |= 1u << src;
        file.close();  // permission will not come back for this process: stop paying for the fd
      } else if (!err && !file.changed()) {
        continue;
      } else if (!err) {
        const std::string_view text = file.data();
        if (src == kStatm) {
          StatmFields m;
          if (parse_statm(text, m)) {
            e.set(f_sharedBytes, static_cast<double>(m.shared) * page_size_);
            e.set(f_textBytes, static_cast<double>(m.text) * page_size_);
            e.set(f_dataBytes, static_cast<double>(m.data) * page_size_);
            continue;
          }
        } else if (src == kStatus) {
          StatusFields st;
          if (parse_status(text, st)) {
            auto opt = [&](int f, uint32_t has, uint64_t value) {
              if (st.has & has)
                e.set(f, static_cast<double>(value));
              else
                e.set_unavailable(f);  // kernel threads have no Vm*/Rss* lines
            };
            opt(f_rssAnonBytes, StatusFields::kRssAnon, st.rss_anon);
            opt(f_rssFileBytes, StatusFields::kRssFile, st.rss_file);
            opt(f_rssShmemBytes, StatusFields::kRssShmem, st.rss_shmem);
            opt(f_swapBytes, StatusFields::kVmSwap, st.vm_swap);
            opt(f_hwmBytes, StatusFields::kVmHWM, st.vm_hwm);
            opt(f_uid, StatusFields::kUid, st.uid[0]);
            continue;
          }
        } else {
          IoFields io;
          if (parse_io(text, io)) {
            e.set(f_readBytes, static_cast<double>(io.read_bytes));
            e.set(f_writeBytes, static_cast<double>(io.write_bytes));
            e.set(f_readChars, static_cast<double>(io.rchar));
            e.set(f_writeChars, static_cast<double>(io.wchar));
            continue;
          }
        }
      }
    }
    // Refused, failed or unparsable: these values are unavailable, never 0.
    for (int f : field_list_)
      if (kFieldSource[f] == src) e.set_unavailable(f);
  }

  if (sources_ & (1u << kFd)) {
    const long n = (e.denied & (1u << kFd)) ? -EACCES : e.fd_dir.count();
    if (n >= 0)
      e.set(f_fds, static_cast<double>(n));
    else
      e.set_unavailable(f_fds);
  }
  if (sources_ & (1u << kSocket)) {
    long sockets = 0;
    int serr = (e.denied & (1u << kSocket)) ? EACCES : 0;
    if (!serr) {
      serr = e.fd_dir.for_each([&](const char* name) {
        char link[64];
        const long len = e.fd_dir.readlink(name, link, sizeof link);
        // An fd closed between the listing and the readlink is simply not counted.
        if (len > 8 && std::memcmp(link, "socket:[", 8) == 0) ++sockets;
      });
    }
    if (!serr)
      e.set(f_sockets, static_cast<double>(sockets));
    else
      e.set_unavailable(f_sockets);
  }
}

void ProcessTable::write_row(Entry& e, ColumnBlock& b, size_t row) const {
  if (e.exited) {
    b.flags()[row] = kRowGone;
    return;
  }
  for (int f : field_list_) b.column(f)[row] = e.v[f];
  if (options_.fields & (1u << f_comm)) std::memcpy(b.comm(row), e.comm, kCommMax);
  b.changed()[row] = e.changed & options_.fields;
  b.unavailable()[row] = e.unavailable & options_.fields;
  b.flags()[row] = (e.fresh ? uint32_t{kRowNew} : 0u) | (e.thread ? uint32_t{kRowThread} : 0u);
  e.fresh = false;
}

void ProcessTable::move_row(ColumnBlock& b, size_t from, size_t to) const {
  for (int f : field_list_) b.column(f)[to] = b.column(f)[from];
  if (options_.fields & (1u << f_comm)) std::memcpy(b.comm(to), b.comm(from), kCommMax);
  b.changed()[to] = b.changed()[from];
  b.unavailable()[to] = b.unavailable()[from];
  b.flags()[to] = b.flags()[from];
}

SweepResult ProcessTable::sweep() {
  if (closed_) throw SysError(EBADF, "sample", {}, 0, "the sampler is closed");
  if (busy_.exchange(true)) throw SysError(EBUSY, "sample", {}, 0, "a sweep is already running");
  struct Done {
    ProcessTable* t;
    ~Done() {
      t->busy_ = false;
      if (t->closed_) t->release();
    }
  } done{this};

  SweepResult r;
  r.time_ms = real_ms();
  const int64_t t0 = mono_ns();
  apply_pending();
  if (options_.all || follow_children_) {
    if (!proc_dir_.is_open()) {
      if (int err = proc_dir_.open("/proc")) throw SysError(err, "open", "/proc");
    }
    discover();
  }
  // Thread discovery adopts rows (appended, so this pass reaches them too); sampling then touches nothing
  // but each row's own entry and can be shared out.
  if (follow_threads_) {
    for (size_t i = 0; i < entries_.size(); ++i) {
      Entry& e = *entries_[i];
      if (e.follow.threads && !e.exited) follow_threads(e);
    }
  }
  // Each row is written to the block by the thread that sampled it, while its entry is in that core's
  // cache; exited rows are then squeezed out in one pass that reads the flags, not the entries.
  auto& block = blocks_[generation_ % blocks_.size()];
  const size_t n = entries_.size();
  if (!block || block->capacity < n) block = std::make_shared<ColumnBlock>(std::max<size_t>(64, n + n / 2));
  ColumnBlock& b = *block;
  pool_.for_each(n, [this, &b](size_t i) {
    Entry& e = *entries_[i];
    if (!e.exited) sample_entry(e, mono_ns());  // exited here: replaced by a new process with the same pid
    write_row(e, b, i);
  });

  if (options_.host) {
    r.host = host_.sample();
    r.has_host = true;
  }

  const uint32_t* flags = b.flags();
  size_t row = 0;
  for (size_t i = 0; i < n; ++i) {
    if (flags[i] & kRowGone) {
      const Entry& e = *entries_[i];
      r.exited.push_back({e.pid, start_ms(e.start_ticks)});
      auto it = by_pid_.find(e.pid);
      if (it != by_pid_.end() && it->second == &e) by_pid_.erase(it);
      continue;  // destroyed when a live entry moves into its slot or the tail is cut
    }
    if (flags[i] & kRowNew) r.started.push_back({entries_[i]->pid, start_ms(entries_[i]->start_ticks)});
    if (row != i) {
      move_row(b, i, row);
      entries_[row] = std::move(entries_[i]);
    }
    ++row;
  }
  entries_.resize(row);
  r.rows = row;
  r.block = block;
  r.generation = generation_++;
  size_.store(row, std::memory_order_relaxed);
  r.duration_ms = static_cast<double>(mono_ns() - t0) / 1e6;
  return r;
}

bool ProcessTable::any_met(const std::vector<WakeCondition>& conditions) const {
  for (const WakeCondition& c : conditions) {
    if (c.field < 0) return true;
    const auto it = by_pid_.find(c.pid);
    if (it == by_pid_.end() || c.field >= kFieldCount) continue;
    const Entry& e = *it->second;
    if (e.exited || (e.unavailable & (1u << c.field))) continue;
    const double v = e.v[c.field];
    if (c.above ? v >= c.threshold : v < c.threshold) return true;
  }
  return false;
}

void ProcessTable::close() {
  closed_ = true;
  // A running sweep releases everything itself when it ends (see Done in sweep()).
  if (!busy_.exchange(true)) {
    release();
    busy_ = false;
  }
}

void ProcessTable::release() {
  entries_.clear();
  by_pid_.clear();
  {
    std::lock_guard lock(pending_mu_);
    pending_watch_.clear();
    pending_unwatch_.clear();
  }
  proc_dir_.close();
  host_.close();
  pool_.stop();
  size_ = 0;
}

}  // namespace tripdump
