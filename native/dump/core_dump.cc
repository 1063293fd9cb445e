#include "dump/core_dump.h"

#include <elf.h>
#include <signal.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "core/error.h"
#include "dump/arch.h"
#include "dump/elf_writer.h"
#include "dump/memory_map.h"
#include "dump/output_file.h"
#include "dump/ptrace_session.h"
#include "dump/snapshot.h"

namespace tripdump::dump {

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kAuto:
      return "auto";
    case Mode::kStop:
      return "stop";
    case Mode::kSnapshot:
      return "snapshot";
  }
  return "?";
}

namespace {

constexpr size_t kChunk = 4u << 20;
// MADV_DONTFORK memory is copied out of the stopped target in snapshot mode; above this much populated
// memory, stop mode is cheaper than holding it all in memory.
constexpr uint64_t kParentCopyCap = 256ull << 20;

uint32_t segment_flags(const Vma& v) {
  return (v.read ? PF_R : 0) | (v.write ? PF_W : 0) | (v.exec ? PF_X : 0);
}

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

std::vector<Vma> read_maps(int pid) {
  // /proc/PID/maps, unlike smaps, does not walk page tables: cheap enough to read while the target waits.
  return parse_smaps(read_whole_file("/proc/" + std::to_string(pid) + "/maps", pid));
}

// Kills and reaps the snapshot child however the dump ends, using the session's still-stopped threads for
// the wait4 injection when it holds any (a second seize of them would fail).
struct ChildReaper {
  SnapshotChild& child;
  PtraceSession& session;
  const std::function<void(pid_t)>& reaped;  // Options::snapshot_child
  double pause_ms = 0;
  ~ChildReaper() { finish(); }
  void finish() noexcept {
    if (!child) return;
    pause_ms += child.release(session.holds_threads() ? &session : nullptr);
    if (reaped) reaped(0);
  }
};

// Overlaps reading target memory (this thread) with writing the file (one writer thread): the page cache
// write is the slower half, so reading the next chunk while the previous one is written hides most of the
// read time. Buffers rotate through a small ring; errors from the writer are rethrown to the reader.
class WritePipeline {
 public:
  struct Piece {
    size_t at, len;   // within the buffer
    uint64_t offset;  // in the file
  };
  static constexpr int kBuffers = 3;

  explicit WritePipeline(OutputFile& out) : out_(out) {
    for (auto& b : bufs_) b.reset(new uint8_t[kChunk]);
    writer_ = std::thread([this] { run(); });
  }
  ~WritePipeline() { close(); }

  // A free buffer for the reader (blocks while all are queued for writing), or nullptr as soon as `cancel`
  // is set: the writer may be held up by the disk for a long while.
  uint8_t* acquire(const std::atomic<bool>* cancel) {
    std::unique_lock lk(mu_);
    while (!cv_.wait_for(lk, std::chrono::milliseconds(1), [&] { return queued_ < kBuffers || error_; }))
      if (cancel && cancel->load(std::memory_order_relaxed)) return nullptr;
    rethrow_locked();
    return bufs_[(head_ + queued_) % kBuffers].get();
  }
  // Queues the buffer returned by the last acquire() with the pieces to write from it.
  void submit(std::vector<Piece> pieces) {
    std::lock_guard lk(mu_);
    jobs_[(head_ + queued_) % kBuffers] = std::move(pieces);
    queued_++;
    cv_.notify_all();
  }
  // Waits until everything queued is written; rethrows a write error.
  void drain() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return queued_ == 0 || error_; });
    rethrow_locked();
  }
  void close() noexcept {
    {
      std::lock_guard lk(mu_);
      if (!writer_.joinable()) return;
      stop_ = true;
      cv_.notify_all();
    }
    writer_.join();
  }

 private:
  void rethrow_locked() {
    if (error_) std::rethrow_exception(error_);
  }
  void run() {
    for (;;) {
      std::vector<Piece> job;
      uint8_t* buf;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [&] { return queued_ > 0 || stop_; });
        // close() without drain() means the dump failed or was cancelled: drop what is queued.
        if (stop_ || error_) return;
        job = std::move(jobs_[head_]);
        buf = bufs_[head_].get();
      }
      try {
        for (const Piece& p : job) out_.write_sparse(buf + p.at, p.len, p.offset);
      } catch (...) {
        std::lock_guard lk(mu_);
        error_ = std::current_exception();
        cv_.notify_all();
        return;
      }
      std::lock_guard lk(mu_);
      head_ = (head_ + 1) % kBuffers;
      queued_--;
      cv_.notify_all();
    }
  }

  OutputFile& out_;
  std::unique_ptr<uint8_t[]> bufs_[kBuffers];
  std::vector<Piece> jobs_[kBuffers];
  int head_ = 0, queued_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread writer_;
};

// Reads [start, start+len) of `v` into buf, each run of pages the way pagemap says suits it. Pages never
// populated are not read (they are zeros) and are left out of the returned pieces, so they stay holes.
// Returns the unreadable byte count.
size_t read_region(MemoryReader& reader, Pagemap& pagemap, const Vma& v, uint64_t start, size_t len,
                   uint8_t* buf, uint64_t file_offset, std::vector<WritePipeline::Piece>& pieces,
                   std::vector<PageRead>& how) {
  // [vdso], [vvar] and [vsyscall] have no ordinary page-table entries: /proc/PID/mem knows them.
  if (v.path.starts_with("[v")) {
    pieces.push_back({0, len, file_offset});
    return reader.read(start, buf, len);
  }
  const size_t ps = page_size();
  const size_t pages = len / ps;
  pagemap.classify(start, pages, pagemap_holes_valid(v), how);
  size_t bad = 0;
  for (size_t p = 0; p < pages;) {
    size_t q = p + 1;
    while (q < pages && how[q] == how[p]) q++;
    const size_t at = p * ps, n = (q - p) * ps;
    if (how[p] != PageRead::kHole) {
      bad += reader.read(start + at, buf + at, n, how[p]);
      // Adjacent runs are one write.
      if (!pieces.empty() && pieces.back().at + pieces.back().len == at)
        pieces.back().len += n;
      else
        pieces.push_back({at, n, file_offset + at});
    }
    p = q;
  }
  return bad;
}

// Memory for copies of the target's pages, mapped with MAP_POPULATE and reused: faulting pages in one
// by one cost ~13 µs each on a VM here. On such a VM (shadow paging) even a populated page costs ~10 µs
// the first time a copy writes it through this process's own mapping, so the copy made during the pause
// reuses the pages a rehearsal wrote just before (see write_core).
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() {
    if (base_) ::munmap(base_, cap_);
  }
  // At least n bytes: the same memory as last time when it is large enough, else a new, larger mapping.
  uint8_t* get(size_t n) {
    if (n <= cap_) return base_;
    if (base_) ::munmap(base_, cap_);
    base_ = nullptr;
    const size_t ps = page_size();
    const size_t cap = (n + n / 4 + (1u << 20) + ps - 1) / ps * ps;  // room for what changes meanwhile
    void* mem =
        ::mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) throw SysError(errno, "mmap", {}, 0, "buffer for MADV_DONTFORK memory");
    base_ = static_cast<uint8_t*>(mem);
    cap_ = cap;
    return base_;
  }

 private:
  uint8_t* base_ = nullptr;
  size_t cap_ = 0;
};

// MADV_DONTFORK memory copied out of the stopped target: the snapshot child lacks those mappings. Only
// the pages pagemap says were ever populated are copied (the rest read as zeros): V8 marks its whole heap
// DONTFORK, reservations included (over 500 MiB of address space in an idle Node), of which a few MiB
// hold anything.
class ParentCopy {
 public:
  struct Run {
    uint64_t at;  // offset in its mapping
    size_t len;
    std::vector<PageRead> how;  // per page: how to read it (never kHole)
    const uint8_t* bytes = nullptr;
  };

  // Adds the populated runs of mapping `map` (`v`) to the plan.
  void plan(Pagemap& pagemap, size_t map, const Vma& v) {
    if (runs_.size() <= map) runs_.resize(map + 1);
    const size_t ps = page_size();
    std::vector<PageRead> how;
    for (uint64_t pos = 0; pos < v.size(); pos += kChunk) {
      const size_t pages = static_cast<size_t>(std::min<uint64_t>(kChunk, v.size() - pos)) / ps;
      pagemap.classify(v.start + pos, pages, pagemap_holes_valid(v), how);
      for (size_t p = 0; p < pages;) {
        size_t q = p;
        while (q < pages && how[q] != PageRead::kHole) q++;
        if (q > p) {
          runs_[map].push_back({pos + p * ps, (q - p) * ps, {how.begin() + p, how.begin() + q}});
          size_ += (q - p) * ps;
        }
        p = q + 1;
      }
    }
  }
  uint64_t size() const { return size_; }
  // Copies every planned run into `arena` (which must outlive this). Unreadable bytes stay zeros.
  void copy(MemoryReader& reader, const std::vector<Vma>& maps, Arena& arena) {
    if (size_ == 0) return;
    uint8_t* at = arena.get(size_);
    const size_t ps = page_size();
    for (size_t m = 0; m < runs_.size(); m++) {
      for (Run& run : runs_[m]) {
        for (size_t a = 0; a < run.how.size();) {
          size_t b = a + 1;
          while (b < run.how.size() && run.how[b] == run.how[a]) b++;
          reader.read(maps[m].start + run.at + a * ps, at + a * ps, (b - a) * ps, run.how[a]);
          a = b;
        }
        run.bytes = at;
        at += run.len;
      }
    }
  }
  const std::vector<Run>& runs(size_t map) const {
    static const std::vector<Run> none;
    return map < runs_.size() ? runs_[map] : none;
  }

 private:
  std::vector<std::vector<Run>> runs_;  // by mapping
  uint64_t size_ = 0;
};

}  // namespace

namespace {

// A rehearsal of the copy the stopped target will wait for (see ParentCopy), made while it still runs.
// This process is new, and on a VM with shadow paging every page it touches costs ~10 µs the first time
// (the same 6 MiB of a Node target's V8 heap read in 10.5 ms the first time, 0.9 ms after): copying the
// DONTFORK memory now, into the buffer the real copy reuses, makes the copy during the pause one of warm
// pages. Wherever that cost does not exist this only reads a few MiB twice.
// Returns the mappings as they were (smaps).
std::vector<Vma> rehearse(int pid, Arena& arena) {
  std::vector<Vma> now = read_smaps(pid);
  ParentCopy rehearsal;
  std::unique_ptr<Pagemap> pagemap;
  for (size_t i = 0; i < now.size(); i++) {
    if (!now[i].vm_dontcopy) continue;
    if (!pagemap) pagemap = std::make_unique<Pagemap>(pid);
    rehearsal.plan(*pagemap, i, now[i]);
  }
  if (rehearsal.size() > kParentCopyCap) return now;
  MemoryReader reader(pid);
  rehearsal.copy(reader, now, arena);
  return now;
}

// Whether a DONTFORK mapping can be left out of the copy without asking pagemap: inaccessible now, and
// inaccessible and empty (no resident or swapped page) with the same bounds just before the stop. Nothing
// can have written to it between the two without changing its protection (V8's reservations, over 500 MiB
// that pagemap took ~1 ms of the pause to walk, are such).
bool empty_reservation(const Vma& v, const std::vector<Vma>& before) {
  if (v.read || v.write || v.exec) return false;
  for (const Vma& b : before)
    if (b.start == v.start && b.end == v.end)
      return !b.read && !b.write && !b.exec && b.rss_kb == 0 && b.swap_kb == 0;
  return false;
}

Result write_core(int pid, const std::string& path, const Options& opts, PtraceSession* borrowed) {
  Result res;
  res.path = path;
  // Set once the target is held (session) and once the snapshot child exists: what a cancel must let go of
  // before it reports back (see abandon below).
  PtraceSession* held = nullptr;
  SnapshotChild* copy = nullptr;
  bool abandoned = false;
  // A cancelled dump lets the target go first and says so (opts.abandoned), then cleans up while it
  // unwinds: the caller need not wait for the writer, the file's release or the child's teardown (tens of
  // milliseconds each at 1 GiB) to know that the target runs and no file will appear.
  auto abandon = [&] {
    if (abandoned) return;
    abandoned = true;
    if (copy) copy->kill_now();
    if (held && !held->borrowed()) held->detach_all();
    if (opts.abandoned) opts.abandoned();
  };
  auto check_cancel = [&] {
    if (opts.cancel && opts.cancel->load(std::memory_order_relaxed)) {
      abandon();
      throw SysError(ECANCELED, "write_core_dump", path, pid);
    }
  };
  if (pid <= 0) throw SysError(ESRCH, "ptrace", "", pid);
  // A thread id names its whole process: dump the thread group, main thread first.
  if (const long tgid = status_field(pid, "Tgid"); tgid > 0 && tgid != pid) pid = static_cast<int>(tgid);
  // Created before the target is touched: a bad path (EEXIST, ENOENT, EACCES) costs the target nothing.
  OutputFile out(path, opts.overwrite, pid);
  check_cancel();

  Mode mode = opts.mode;
  if (borrowed) {
    if (mode == Mode::kSnapshot)
      res.warnings.push_back("snapshot mode is not available while the threads are held; used stop mode");
    mode = Mode::kStop;
  }
  if (mode != Mode::kStop) {
    const long seccomp = status_field(pid, "Seccomp");
    std::string why;
    if (!arch::snapshot_supported())
      why = "snapshot mode is not implemented for this architecture";
    else if (seccomp > 0)  // an injected clone may be fatal under a seccomp filter (or strict mode)
      why = "target runs under seccomp (mode " + std::to_string(seccomp) + ")";
    if (!why.empty() && mode == Mode::kSnapshot) res.warnings.push_back(why + "; used stop mode");
    mode = why.empty() ? Mode::kSnapshot : Mode::kStop;
  }

  // Read before the stop where possible: auxv does not change after exec, coredump_filter hardly ever.
  // A target that cannot be read (gone, not permitted) fails below instead, where it is stopped, with the
  // error callers know (ptrace's).
  std::optional<uint32_t> early_filter;
  std::optional<ProcessInfo> early_info;
  std::vector<Vma> before;  // the mappings just before the stop (snapshot mode)
  std::optional<std::string> early_auxv;
  Arena arena;             // holds the copy of MADV_DONTFORK memory (snapshot mode)
  ParentCopy parent_copy;  // where dontfork[i]
  try {
    early_filter = opts.filter ? *opts.filter : read_coredump_filter(pid);
    early_auxv = read_whole_file("/proc/" + std::to_string(pid) + "/auxv", pid);
    if (mode == Mode::kSnapshot) early_info = read_process_info(pid, 'R');
    if (mode == Mode::kSnapshot && !borrowed) before = rehearse(pid, arena);
  } catch (const SysError&) {
  }
  check_cancel();

  std::optional<PtraceSession> own;
  // Snapshot mode captures the registers' rest while the clone runs (see below).
  PtraceSession& session = borrowed ? *borrowed
                                    : own.emplace(pid, opts.cancel,
                                                  mode == Mode::kSnapshot ? PtraceSession::Capture::kGeneral
                                                                          : PtraceSession::Capture::kAll);
  held = &session;
  // The pause, phase by phase (Result::pause_phases): each mark closes the phase that ran since the last.
  auto last = session.captured_at();
  auto phase = [&](const char* name) {
    const auto now = std::chrono::steady_clock::now();
    res.pause_phases.push_back({name, std::chrono::duration<double, std::milli>(now - last).count()});
    last = now;
  };
  if (!borrowed) {
    const double stopping = session.stopping_ms();
    res.pause_phases.push_back({"stop", stopping});
    res.pause_phases.push_back({"registers", session.capturing_ms()});
  } else {
    last = std::chrono::steady_clock::now();  // the owner stopped the threads: its pause is its own
  }
  if (mode == Mode::kSnapshot && session.was_job_stopped()) {
    // It is not running anyway, so stopping it costs nothing, and a stop-mode dump keeps its group stop.
    if (opts.mode == Mode::kSnapshot) res.warnings.push_back("target is job-control stopped; used stop mode");
    mode = Mode::kStop;
  }
  auto& threads = session.threads();
  const uint32_t filter = early_filter  ? *early_filter
                          : opts.filter ? *opts.filter
                                        : read_coredump_filter(pid);
  const std::string auxv =
      early_auxv ? *early_auxv : read_whole_file("/proc/" + std::to_string(pid) + "/auxv", pid);
  ProcessInfo info = early_info ? *early_info : read_process_info(pid, session.state_before_stop());
  info.state = session.state_before_stop();
  // What a core needs of every stopped thread: the register sets not captured yet and /proc's view of
  // each. In snapshot mode this runs while the injected clone copies the page tables, one thread per call
  // so that the clone's child is taken in hand as soon as it exists (see PtraceSession::inject_syscall).
  info.threads.clear();
  auto capture_one = [&] {
    if (info.threads.size() == threads.size()) return false;
    ThreadState& t = threads[info.threads.size()];
    session.capture_rest(t);
    ProcessInfo one;
    read_thread_info(pid, {t}, one);
    info.threads.push_back(one.threads.at(0));
    return info.threads.size() < threads.size();
  };
  auto capture_threads = [&] {
    while (capture_one()) {
    }
  };
  if (mode != Mode::kSnapshot) capture_threads();

  // The mappings as of the stop. Stop mode reads smaps directly. Snapshot mode keeps the pause short: only
  // maps (no page-table walk) while stopped; flags and page counts come from the child's smaps later.
  std::vector<Vma> maps;
  SnapshotChild child;
  copy = &child;
  ChildReaper reaper{child, session, opts.snapshot_child};
  std::vector<bool> dontfork;
  if (mode == Mode::kSnapshot) {
    maps = read_maps(pid);
    phase("inspect");
    check_cancel();
    std::string why;
    child = SnapshotChild::create(session, why, capture_one, opts.snapshot_child);
    capture_threads();  // what the clone left to do, or all of it when no clone could run
    phase("clone");
    if (!child) {
      if (opts.snapshot_child) opts.snapshot_child(0);  // none, or let go already
      res.warnings.push_back("snapshot mode unavailable: " + why + "; used stop mode");
      mode = Mode::kStop;
    } else {
      // MADV_DONTFORK memory is missing from the child: whatever the parent has but the child lacks.
      std::set<uint64_t> in_child;
      for (const Vma& v : read_maps(child.pid())) in_child.insert(v.start);
      dontfork.assign(maps.size(), false);
      std::unique_ptr<Pagemap> parent_pagemap;
      for (size_t i = 0; i < maps.size(); i++) {
        if (in_child.count(maps[i].start) || maps[i].path.starts_with("[v")) continue;
        dontfork[i] = true;
        if (empty_reservation(maps[i], before)) continue;
        if (!parent_pagemap) parent_pagemap = std::make_unique<Pagemap>(pid);
        parent_copy.plan(*parent_pagemap, i, maps[i]);
      }
      if (parent_copy.size() > kParentCopyCap) {
        res.warnings.push_back("MADV_DONTFORK memory (" + std::to_string(parent_copy.size() >> 20) +
                               " MiB populated) is too large to copy; used stop mode");
        dontfork.clear();
        reaper.finish();
        phase("dontfork");
        mode = Mode::kStop;
      } else {
        // Copy it now, while the target is still stopped.
        MemoryReader parent_reader(pid);
        parent_copy.copy(parent_reader, maps, arena);
        phase("dontfork");
        session.detach_all();
        phase("resume");
      }
    }
  }
  check_cancel();
  const int source = mode == Mode::kSnapshot ? child.pid() : pid;
  if (mode == Mode::kStop) {
    maps = read_smaps(pid);
    phase("inspect");
  } else {
    // Attributes from the child, whose mappings are copies of the parent's as of the stop; the DONTFORK
    // ones from the (now running) parent, matched by address.
    std::vector<Vma> child_smaps = read_smaps(source);
    std::vector<Vma> parent_smaps;
    if (std::count(dontfork.begin(), dontfork.end(), true)) parent_smaps = read_smaps(pid);
    for (size_t i = 0; i < maps.size(); i++) {
      const auto& from = dontfork[i] ? parent_smaps : child_smaps;
      bool found = false;
      for (const Vma& s : from) {
        if (s.start == maps[i].start && s.end == maps[i].end) {
          maps[i] = s;
          found = true;
          break;
        }
      }
      // Not found: it changed after we let the target go; assume it was written to (holes cover the rest).
      if (!found) maps[i].anonymous_kb = 1;
      if (dontfork[i]) maps[i].vm_dontcopy = true;
      if (maps[i].vm_wipeonfork && !dontfork[i])
        res.warnings.push_back("MADV_WIPEONFORK memory at " + hex(maps[i].start) +
                               " reads as zeros in snapshot mode");
    }
  }
  check_cancel();  // smaps walks the page tables: tens of milliseconds at 1 GiB
  res.mode_used = mode;
  res.threads = static_cast<int>(threads.size());
  const std::string notes = build_notes(threads, info, auxv, maps);

  // Decide each mapping's size.
  MemoryReader reader(source);
  std::vector<uint64_t> filesz(maps.size());
  for (size_t i = 0; i < maps.size(); i++) {
    DumpChoice c = vma_dump_choice(maps[i], filter);
    if (c.maybe_elf_header) {
      uint8_t magic[SELFMAG] = {};
      if (i < dontfork.size() && dontfork[i]) {
        const auto& runs = parent_copy.runs(i);
        if (!runs.empty() && runs[0].at == 0) std::memcpy(magic, runs[0].bytes, SELFMAG);
      } else {
        reader.read(maps[i].start, magic, sizeof magic);
      }
      c.size = std::memcmp(magic, ELFMAG, SELFMAG) == 0 ? page_size() : 0;
    }
    filesz[i] = c.size;
  }

  // Layout: headers, notes (4-aligned), then page-aligned data in address order.
  const uint64_t ps = page_size();
  const uint64_t note_offset = headers_size(maps.size());
  uint64_t offset = (note_offset + notes.size() + ps - 1) / ps * ps;
  std::vector<LoadSegment> loads(maps.size());
  uint64_t data_total = 0;
  for (size_t i = 0; i < maps.size(); i++) {
    loads[i] = {maps[i].start, maps[i].size(), filesz[i], offset, segment_flags(maps[i])};
    offset += filesz[i];
    data_total += filesz[i];
    (filesz[i] ? res.mappings_written : res.mappings_skipped)++;
  }
  const uint64_t shdr_offset = offset;
  const bool extnum = needs_extended_numbering(maps.size());
  const uint64_t file_size = shdr_offset + (extnum ? sizeof(Elf64_Shdr) : 0);

  out.write_at(build_headers(note_offset, notes.size(), loads, shdr_offset).data(), note_offset, 0);
  out.write_at(notes.data(), notes.size(), note_offset);
  if (extnum) out.write_at(build_extnum_shdr(maps.size()).data(), sizeof(Elf64_Shdr), shdr_offset);

  // Segment data from the child (snapshot) or the stopped target.
  {
    WritePipeline pipe(out);
    Pagemap pagemap(source);
    std::vector<PageRead> how;
    uint64_t done = 0, unreadable = 0;
    for (size_t i = 0; i < maps.size(); i++) {
      if (!filesz[i]) continue;
      if (i < dontfork.size() && dontfork[i]) {
        pipe.drain();
        for (const auto& run : parent_copy.runs(i))
          if (run.at < filesz[i])
            out.write_sparse(run.bytes, std::min<uint64_t>(run.len, filesz[i] - run.at),
                             loads[i].offset + run.at);
        done += filesz[i];
        if (opts.progress) opts.progress(done, data_total);
        continue;
      }
      for (uint64_t pos = 0; pos < filesz[i]; pos += kChunk) {
        check_cancel();
        const size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, filesz[i] - pos));
        uint8_t* buf = pipe.acquire(opts.cancel);
        if (!buf) check_cancel();
        std::vector<WritePipeline::Piece> pieces;
        const size_t bad = read_region(reader, pagemap, maps[i], maps[i].start + pos, len, buf,
                                       loads[i].offset + pos, pieces, how);
        // The vsyscall page is execute-only by default: zeros, as the kernel writes them, without a warning.
        if (maps[i].path != "[vsyscall]") unreadable += bad;
        pipe.submit(std::move(pieces));
        done += len;
        if (opts.progress) opts.progress(done, data_total);
      }
    }
    pipe.drain();
    if (unreadable)
      res.warnings.push_back(std::to_string(unreadable) +
                             " bytes of memory could not be read (written as zeros)");
  }
  out.set_size(file_size);

  // Let the target go before the rename: nothing after this needs it stopped.
  if (mode == Mode::kSnapshot) {
    const double first = session.paused_ms();
    reaper.finish();
    res.pause_ms = first + reaper.pause_ms;
    res.pause_phases.push_back({"reap", reaper.pause_ms});
    if (!child.warning().empty()) res.warnings.push_back(child.warning());
  } else {
    phase("write");
    session.detach_all();
    phase("resume");
    res.pause_ms = session.paused_ms();
  }
  out.commit();
  res.bytes_written = file_size;
  res.bytes_on_disk = out.bytes_on_disk();
  return res;
}

}  // namespace

Result write_core_dump(int pid, const std::string& path, const Options& opts) {
  return write_core(pid, path, opts, nullptr);
}

Result write_core_dump(PtraceSession& session, const std::string& path, const Options& opts) {
  return write_core(session.pid(), path, opts, &session);
}

}  // namespace tripdump::dump
