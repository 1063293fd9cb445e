// Tests of the core writer (native/dump) against a real target (test/fixtures/dump_target.c): the cores
// are checked with gdb, eu-stack, lldb (when installed) and readelf, and byte-for-byte against the
// fixture's known memory. Every process started here is killed by pid.
#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "dump/core_dump.h"
#include "dump/elf_writer.h"
#include "dump/memory_map.h"
#include "dump/ptrace_session.h"
#include "lib/dumper.h"
#include "test/harness.h"
#include "test/tmp_dir.h"

extern char** environ;

namespace tripdump::dump {
namespace {

using Clock = std::chrono::steady_clock;

std::string root_dir() {
  // The Makefile compiles with absolute paths, so __FILE__ locates the checkout; otherwise assume the
  // Makefile's working directory, native/test.
  const std::string f = __FILE__;
  const size_t at = f.rfind("/native/test/");
  if (!f.empty() && f[0] == '/' && at != std::string::npos) return f.substr(0, at);
  char buf[4096];
  return ::realpath("../..", buf) ? std::string(buf) : std::string("../..");
}

std::string fixture_binary() {
  static std::string bin;
  if (!bin.empty()) return bin;
  const std::string root = root_dir();
  const std::string src = root + "/test/fixtures/dump_target.c";
  const std::string out = root + "/build/fixtures/dump_target";
  struct stat s, o;
  auto ns = [](const struct stat& st) { return st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec; };
  if (::stat(out.c_str(), &o) != 0 || (::stat(src.c_str(), &s) == 0 && ns(s) >= ns(o))) {
    // Built under a temporary name and renamed: a concurrent test run (vitest's global setup builds the
    // same path) never sees a half-written binary, and running targets keep their own inode.
    const std::string tmp = out + ".tmp-" + std::to_string(::getpid());
    const std::string cmd = "mkdir -p '" + root + "/build/fixtures' && cc -O0 -g -pthread -o '" + tmp +
                            "' '" + src + "' && mv -f '" + tmp + "' '" + out + "'";
    if (std::system(cmd.c_str()) != 0) return {};
  }
  bin = out;
  return bin;
}

struct CmdResult {
  int status = -1;
  std::string out;
};

CmdResult run(const std::string& cmd) {
  CmdResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  r.status = ::pclose(p);
  return r;
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) n++;
  return n;
}

// A running fixture: spawned with pipes on stdin/stdout, killed and reaped by pid when destroyed.
class Target {
 public:
  explicit Target(std::vector<std::string> args = {}) {
    const std::string bin = fixture_binary();
    REQUIRE(!bin.empty());
    int in[2], outp[2];
    REQUIRE(::pipe2(in, O_CLOEXEC) == 0 && ::pipe2(outp, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    std::vector<char*> argv{const_cast<char*>(bin.c_str())};
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, bin.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(outp[1]);
    to_ = in[1];
    from_ = outp[0];
    REQUIRE(rc == 0);
    for (;;) {
      std::string line = read_line(20000);
      REQUIRE(!line.empty());
      if (line == "ready") break;
      std::istringstream s(line);
      std::string key, a, b;
      s >> key >> a >> b;
      values_[key] = {std::strtoull(a.c_str(), nullptr, 16), std::strtoull(b.c_str(), nullptr, 10)};
    }
  }
  ~Target() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(to_);
    ::close(from_);
  }
  int pid() const { return pid_; }
  uint64_t addr(const std::string& k) { return values_[k].first; }
  uint64_t size(const std::string& k) { return values_[k].second; }

  // Proves the target runs and that its main thread's read(2), interrupted by the dump, was restarted.
  bool ping(char c = 'x') {
    if (::write(to_, &c, 1) != 1) return false;
    std::string line = read_line(5000);
    if (line.rfind(std::string("pong ") + c, 0) == 0) return true;
    std::printf("    target said: %s\n", line.c_str());
    return false;
  }
  std::string read_line(int timeout_ms) {
    const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      if (Clock::now() > end) return {};
      pollfd p{from_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char b[512];
      ssize_t n = ::read(from_, b, sizeof b);
      if (n <= 0) return {};
      buf_.append(b, static_cast<size_t>(n));
    }
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  std::string buf_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> values_;
};

using test::TmpDir;

std::string slurp(const std::string& path) {
  try {
    return read_whole_file(path, 0);
  } catch (const SysError&) {
    return {};
  }
}

char state_of(int pid) {
  std::string s = slurp("/proc/" + std::to_string(pid) + "/status");
  size_t p = s.find("State:");
  return p == std::string::npos ? '?' : s[s.find_first_not_of(" \t", p + 6)];
}

long tracer_of(int pid) {
  std::string s = slurp("/proc/" + std::to_string(pid) + "/status");
  size_t p = s.find("TracerPid:");
  return p == std::string::npos ? -1 : std::strtol(s.c_str() + p + 10, nullptr, 10);
}

// The target runs untraced, with no snapshot child left behind.
void check_running(Target& t) {
  CHECK(state_of(t.pid()) != 'T');
  CHECK(state_of(t.pid()) != 't');
  CHECK_EQ(tracer_of(t.pid()), 0L);
  std::string children;
  const std::string task = "/proc/" + std::to_string(t.pid()) + "/task/";
  if (DIR* d = ::opendir(task.c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') children += slurp(task + e->d_name + "/children");
    ::closedir(d);
  }
  CHECK_EQ(children, std::string());
  CHECK(t.ping());
}

// Minimal core reader for the byte checks.
struct Core {
  std::string data;
  std::vector<Elf64_Phdr> phdrs;
  explicit Core(const std::string& path) : data(slurp(path)) {
    if (data.size() < sizeof(Elf64_Ehdr)) return;
    Elf64_Ehdr eh;
    std::memcpy(&eh, data.data(), sizeof eh);
    for (int i = 0; i < eh.e_phnum; i++) {
      Elf64_Phdr ph;
      std::memcpy(&ph, data.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
      phdrs.push_back(ph);
    }
  }
  // Bytes at vaddr from the PT_LOAD covering it (zeros beyond p_filesz), or "" when not covered.
  std::string at(uint64_t vaddr, size_t len) const {
    for (const auto& ph : phdrs) {
      if (ph.p_type != PT_LOAD || vaddr < ph.p_vaddr || vaddr + len > ph.p_vaddr + ph.p_memsz) continue;
      if (vaddr + len > ph.p_vaddr + ph.p_filesz) return {};
      return data.substr(ph.p_offset + (vaddr - ph.p_vaddr), len);
    }
    return {};
  }
  bool has_data_for(uint64_t start, uint64_t len) const {
    for (const auto& ph : phdrs)
      if (ph.p_type == PT_LOAD && ph.p_filesz && start < ph.p_vaddr + ph.p_filesz && ph.p_vaddr < start + len)
        return true;
    return false;
  }
};

uint8_t pattern_byte(size_t i) {
  return static_cast<uint8_t>((i * 131u) ^ (i >> 12) ^ 0x5a);
}

const char* kTools = "env -u DEBUGINFOD_URLS ";

void check_core_with_debuggers(const std::string& core, Target& t, const Result& r) {
  // The executable the target really runs, even if build/fixtures was rebuilt meanwhile.
  const std::string bin = "/proc/" + std::to_string(t.pid()) + "/exe";
  const CmdResult gdb =
      run(std::string(kTools) + "gdb -batch -nx -iex 'set debuginfod enabled off' -ex 'info threads' " +
          "-ex 'thread apply all bt' -ex 'p/x marker' '" + bin + "' '" + core + "'");
  for (const char* fn : {"parked_alpha", "parked_beta", "parked_gamma", "main"}) {
    if (gdb.out.find(std::string(" ") + fn + " (") == std::string::npos) {
      ::tripdump::test::fail(__FILE__, __LINE__, std::string("gdb backtrace lacks ") + fn + "\n" + gdb.out);
    }
  }
  CHECK(gdb.out.find("= 0x7d0c0ffee") != std::string::npos);
  CHECK_EQ(count(gdb.out, "\nThread "), static_cast<size_t>(r.threads));

  if (HAVE_TOOL("eu-stack", "elfutils")) {
    const CmdResult eu = run(std::string(kTools) + "eu-stack --core '" + core + "' -e '" + bin + "'");
    CHECK_EQ(count(eu.out, "TID "), static_cast<size_t>(r.threads));
    for (const char* fn : {"parked_alpha", "parked_beta", "parked_gamma", "main"}) {
      if (eu.out.find(fn) == std::string::npos)
        ::tripdump::test::fail(__FILE__, __LINE__, std::string("eu-stack lacks ") + fn + "\n" + eu.out);
    }
    CHECK(eu.out.find("rror") == std::string::npos);
  }

  if (HAVE_TOOL("lldb", "lldb")) {
    const CmdResult lldb =
        run("lldb --no-lldbinit -b -c '" + core + "' '" + bin + "' -o 'thread backtrace all' </dev/null");
    for (const char* fn : {"parked_alpha", "parked_beta", "parked_gamma", "main"}) {
      if (lldb.out.find(std::string("`") + fn) == std::string::npos)
        ::tripdump::test::fail(__FILE__, __LINE__, std::string("lldb lacks ") + fn + "\n" + lldb.out);
    }
  }

  const CmdResult notes = run("readelf -n '" + core + "'");
  for (const char* n :
       {"NT_PRSTATUS", "NT_PRPSINFO", "NT_SIGINFO", "NT_AUXV", "NT_FILE", "NT_FPREGSET", "NT_X86_XSTATE"})
    CHECK(notes.out.find(n) != std::string::npos);
  CHECK(notes.out.find("0x00000150\tNT_PRSTATUS") != std::string::npos);
  CHECK(notes.out.find("0x00000088\tNT_PRPSINFO") != std::string::npos);
  CHECK_EQ(count(notes.out, "NT_PRSTATUS"), static_cast<size_t>(r.threads));
  // binutils' readelf cannot decode a 64-bit NT_FILE in every build; elfutils can.
  if (HAVE_TOOL("eu-readelf", "elfutils")) {
    const CmdResult eu_notes = run("eu-readelf -n '" + core + "'");
    CHECK(eu_notes.out.find("CORE                 336  PRSTATUS") != std::string::npos);
    CHECK(eu_notes.out.find("CORE                 136  PRPSINFO") != std::string::npos);
    CHECK(eu_notes.out.find("build/fixtures/dump_target") != std::string::npos);  // NT_FILE names the binary
  }
}

void check_core_bytes(const std::string& path, Target& t) {
  Core core(path);
  REQUIRE(!core.phdrs.empty());
  CHECK_EQ(core.phdrs[0].p_type, static_cast<Elf64_Word>(PT_NOTE));
  CHECK_EQ(core.phdrs[0].p_align, static_cast<Elf64_Xword>(4));
  uint64_t last = 0;
  for (size_t i = 1; i < core.phdrs.size(); i++) {
    CHECK(core.phdrs[i].p_type == PT_LOAD);
    CHECK(core.phdrs[i].p_vaddr >= last);
    CHECK_EQ(core.phdrs[i].p_offset % 4096, 0ul);
    last = core.phdrs[i].p_vaddr;
  }
  const std::string pat = core.at(t.addr("pattern"), t.size("pattern"));
  REQUIRE(pat.size() == t.size("pattern"));
  size_t bad = 0;
  for (size_t i = 0; i < pat.size(); i++) bad += static_cast<uint8_t>(pat[i]) != pattern_byte(i);
  CHECK_EQ(bad, 0ul);
  const std::string df = core.at(t.addr("dontfork"), t.size("dontfork"));
  REQUIRE(df.size() == t.size("dontfork"));
  bad = 0;
  for (size_t i = 0; i < df.size(); i++) bad += static_cast<uint8_t>(df[i]) != 0xa0 + i % 7;
  CHECK_EQ(bad, 0ul);
  CHECK(!core.has_data_for(t.addr("dontdump"), t.size("dontdump")));
  const std::string m = core.at(t.addr("marker"), 8);
  REQUIRE(m.size() == 8);
  uint64_t marker;
  std::memcpy(&marker, m.data(), 8);
  CHECK_EQ(marker, 0x7d0c0ffeeull);
}

void full_check(Mode mode, Mode expect) {
  Target t;
  TmpDir d;
  const std::string path = d.path + "/core";
  Options o;
  o.mode = mode;
  uint64_t last_done = 0, total = 0;
  o.progress = [&](uint64_t done, uint64_t tot) {
    CHECK(done >= last_done);
    last_done = done;
    total = tot;
  };
  Result r = write_core_dump(t.pid(), path, o);
  for (const auto& w : r.warnings) std::printf("    warning: %s\n", w.c_str());
  std::printf("    %s: %d threads, %d/%d mappings, %llu bytes (%llu on disk), pause %.2f ms\n",
              mode_name(r.mode_used), r.threads, r.mappings_written, r.mappings_skipped,
              (unsigned long long)r.bytes_written, (unsigned long long)r.bytes_on_disk, r.pause_ms);
  CHECK(r.mode_used == expect);
  CHECK_EQ(r.threads, 4);
  CHECK_EQ(last_done, total);
  CHECK(r.pause_ms > 0);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK_EQ(st.st_mode & 07777, 0600u);
  CHECK_EQ(static_cast<uint64_t>(st.st_size), r.bytes_written);
  CHECK_EQ(d.entries().size(), 1ul);  // no temporary file left
  check_running(t);
  check_core_bytes(path, t);
  check_core_with_debuggers(path, t, r);
  check_running(t);
}

// Runs write_core_dump and returns the SysError it throws (errno 0 if none).
SysError dump_error(int pid, const std::string& path, Options o = {}) {
  try {
    write_core_dump(pid, path, o);
  } catch (const SysError& e) {
    return e;
  }
  return SysError(0, "none");
}

}  // namespace

TEST(dump_smaps_parse_and_choice) {
  const char* text =
      "55d000000000-55d000001000 r--p 00000000 fe:01 1234                       /usr/bin/x\n"
      "Size:                  4 kB\nRss:                   4 kB\nAnonymous:             0 kB\n"
      "VmFlags: rd mr mw me \n"
      "55d000001000-55d000003000 rw-p 00001000 fe:01 1234                       /usr/bin/x\n"
      "Anonymous:             4 kB\nVmFlags: rd wr mr mw me ac \n"
      "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 \nAnonymous:          1024 kB\nVmFlags: rd wr dd \n"
      "7f0000100000-7f0000200000 rw-s 00000000 00:01 77                         /dev/zero (deleted)\n"
      "VmFlags: rd wr sh mr mw me ms \n"
      "7f0000200000-7f0000300000 rw-s 00000000 fe:01 78                         /data/file with space\n"
      "VmFlags: rd wr sh mr mw me ms \n"
      "7f0000300000-7f0000400000 rw-p 00000000 00:00 0 \nAnonymous:             0 kB\nVmFlags: rd wr \n"
      "7f0000400000-7f0000500000 rw-p 00000000 00:00 0 \nAnonymous:             8 kB\nVmFlags: rd wr io \n"
      "7ffd00000000-7ffd00002000 r--p 00000000 00:00 0                          [vvar]\n"
      "7ffd00002000-7ffd00004000 r-xp 00000000 00:00 0                          [vdso]\n";
  auto v = parse_smaps(text);
  REQUIRE(v.size() == 9);
  CHECK_EQ(v[4].path, std::string("/data/file with space"));
  CHECK(v[4].vm_shared && v[2].vm_dontdump && v[6].vm_io);
  CHECK_EQ(v[1].anonymous_kb, 4ul);
  const uint32_t f = kDefaultFilter;
  auto c0 = vma_dump_choice(v[0], f);
  CHECK(c0.maybe_elf_header);
  CHECK_EQ(vma_dump_choice(v[1], f).size, v[1].size());  // written-to private file mapping
  CHECK_EQ(vma_dump_choice(v[2], f).size, 0ul);          // MADV_DONTDUMP
  CHECK_EQ(vma_dump_choice(v[3], f).size, v[3].size());  // shared anonymous (bit 1)
  CHECK_EQ(vma_dump_choice(v[4], f).size, 0ul);          // shared file needs bit 3
  CHECK_EQ(vma_dump_choice(v[4], f | kMappedShared).size, v[4].size());
  CHECK_EQ(vma_dump_choice(v[5], f).size, 0ul);          // never written anonymous memory
  CHECK_EQ(vma_dump_choice(v[6], f).size, 0ul);          // VM_IO
  CHECK_EQ(vma_dump_choice(v[7], f).size, 0ul);          // [vvar]
  CHECK_EQ(vma_dump_choice(v[8], 0).size, v[8].size());  // [vdso] always
  CHECK_EQ(vma_dump_choice(v[0], f & ~kElfHeaders).size, 0ul);
  CHECK_EQ(vma_dump_choice(v[0], f | kMappedPrivate).size, v[0].size());
  CHECK(pagemap_holes_valid(v[5]) && !pagemap_holes_valid(v[1]) && !pagemap_holes_valid(v[3]));
}

TEST(dump_note_layout) {
  NoteWriter w;
  w.add(1, "CORE", "abcdef", 6);
  // 12-byte header, "CORE\0" padded to 8, 6 bytes padded to 8.
  CHECK_EQ(w.bytes().size(), 28ul);
  ProcessInfo info;
  info.pid = 10;
  info.comm = "comm";
  ThreadState t;
  t.tid = 10;
  CHECK_EQ(prstatus_note_desc(t, info, 0, SIGSTOP).size(), 336ul);
  CHECK_EQ(prpsinfo_note_desc(info).size(), 136ul);
  std::vector<Vma> maps(2);
  maps[0].start = 0x1000;
  maps[0].end = 0x3000;
  maps[0].offset = 0x2000;
  maps[0].path = "/bin/x";
  const std::string f = file_note_desc(maps);
  CHECK_EQ(f.size(), 5 * 8 + 7ul);
  CHECK_EQ(headers_size(3), 64ul + 4 * 56);
}

TEST(dump_stop_mode) {
  full_check(Mode::kStop, Mode::kStop);
}
TEST(dump_snapshot_mode) {
  full_check(Mode::kSnapshot, Mode::kSnapshot);
}
TEST(dump_auto_mode) {
  full_check(Mode::kAuto, Mode::kSnapshot);
}

TEST(dump_threads_appearing) {
  for (Mode mode : {Mode::kStop, Mode::kSnapshot}) {
    Target t({"--spawn"});
    TmpDir d;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    Options o;
    o.mode = mode;
    Result r = write_core_dump(t.pid(), d.path + "/core", o);
    std::printf("    %s: %d threads\n", mode_name(r.mode_used), r.threads);
    CHECK(r.threads >= 5);
    const CmdResult gdb = run(std::string(kTools) +
                              "gdb -batch -nx -iex 'set debuginfod enabled off' -ex 'thread apply all bt' '" +
                              "/proc/" + std::to_string(t.pid()) + "/exe' '" + d.path + "/core'");
    CHECK_EQ(count(gdb.out, "\nThread "), static_cast<size_t>(r.threads));
    CHECK(gdb.out.find("parked_gamma") != std::string::npos);
    check_running(t);
  }
}

TEST(dump_cancel) {
  for (Mode mode : {Mode::kStop, Mode::kSnapshot}) {
    Target t({"--touch", "512"});
    TmpDir d;
    std::atomic<bool> cancel{false};
    Options o;
    o.mode = mode;
    o.cancel = &cancel;
    std::thread canceller([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      cancel = true;
    });
    const auto t0 = Clock::now();
    SysError e = dump_error(t.pid(), d.path + "/core", o);
    canceller.join();
    std::printf("    %s: cancelled after %.1f ms\n", mode_name(mode),
                std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    CHECK_EQ(e.err(), ECANCELED);
    CHECK(d.entries().empty());
    check_running(t);
  }
}

TEST(dump_dead_pid) {
  pid_t pid;
  char arg0[] = "true";
  char* argv[] = {arg0, nullptr};
  REQUIRE(::posix_spawnp(&pid, "true", nullptr, nullptr, argv, environ) == 0);
  ::waitpid(pid, nullptr, 0);
  TmpDir d;
  SysError e = dump_error(pid, d.path + "/core");
  CHECK_EQ(e.err(), ESRCH);
  CHECK_EQ(std::string(e.syscall()), std::string("ptrace"));
  CHECK_EQ(e.pid(), pid);
  CHECK(d.entries().empty());
}

TEST(dump_exists_and_overwrite) {
  Target t;
  TmpDir d;
  const std::string path = d.path + "/core";
  run("echo keep > '" + path + "'");
  SysError e = dump_error(t.pid(), path);
  CHECK_EQ(e.err(), EEXIST);
  CHECK_EQ(e.path(), path);
  CHECK_EQ(slurp(path), std::string("keep\n"));
  CHECK_EQ(d.entries().size(), 1ul);
  Options o;
  o.overwrite = true;
  o.mode = Mode::kStop;
  Result r = write_core_dump(t.pid(), path, o);
  CHECK(slurp(path).substr(0, 4) ==
        "\x7f"
        "ELF");
  CHECK_EQ(d.entries().size(), 1ul);
  check_running(t);
}

// While the dump is being written its file has no name at all (O_TMPFILE): a writer killed at any point
// leaves nothing behind. Committing never follows a symlink at the final name, and overwrite goes through a
// temporary name that does not outlive the commit.
TEST(dump_file_is_unnamed_until_commit) {
  Target t;
  TmpDir d;
  Options o;
  o.mode = Mode::kStop;
  size_t seen = 0, calls = 0;
  o.progress = [&](uint64_t, uint64_t) {
    calls++;
    seen += d.entries().size();
  };
  write_core_dump(t.pid(), d.path + "/core", o);
  CHECK(calls > 0);
  CHECK_EQ(seen, 0ul);
  CHECK(d.entries() == std::vector<std::string>{"core"});
  struct stat st;
  REQUIRE(::stat((d.path + "/core").c_str(), &st) == 0);
  CHECK_EQ(st.st_mode & 07777, 0600u);

  // A dangling symlink at the final name: EEXIST, and nothing is created where it points.
  const std::string link = d.path + "/link", victim = d.path + "/victim";
  REQUIRE(::symlink(victim.c_str(), link.c_str()) == 0);
  o.progress = nullptr;
  CHECK_EQ(dump_error(t.pid(), link, o).err(), EEXIST);
  CHECK(::access(victim.c_str(), F_OK) != 0);
  // Overwrite never replaces a symlink either (output_file_test.cc has the other path rules).
  o.overwrite = true;
  CHECK_EQ(dump_error(t.pid(), link, o).err(), ELOOP);
  REQUIRE(::lstat(link.c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  CHECK(::access(victim.c_str(), F_OK) != 0);
  std::vector<std::string> names = d.entries();
  std::sort(names.begin(), names.end());
  CHECK(names == (std::vector<std::string>{"core", "link"}));
  check_running(t);
}

TEST(dump_missing_directory) {
  Target t;
  SysError e = dump_error(t.pid(), "/nonexistent-tripdump-dir/sub/core");
  CHECK_EQ(e.err(), ENOENT);
  // The error names the folder that is missing, not the file that could not be created in it.
  CHECK_EQ(e.path(), std::string("/nonexistent-tripdump-dir/sub"));
  check_running(t);
}

TEST(dump_already_traced) {
  Target t;
  TmpDir d;
  std::atomic<int> stage{0};
  std::atomic<long> tracer_tid{0};
  // Another tracer: a thread of ours that seizes the target (ptrace links belong to the seizing thread).
  std::thread tracer([&] {
    tracer_tid = ::gettid();
    if (::ptrace(PTRACE_SEIZE, t.pid(), nullptr, nullptr) != 0) {
      stage = -1;
      return;
    }
    stage = 1;
    while (stage == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ::ptrace(PTRACE_INTERRUPT, t.pid(), nullptr, nullptr);
    int status;
    ::waitpid(t.pid(), &status, __WALL);
    ::ptrace(PTRACE_DETACH, t.pid(), nullptr, nullptr);
  });
  while (stage == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(stage == 1);
  SysError e = dump_error(t.pid(), d.path + "/core");
  stage = 2;
  tracer.join();
  CHECK_EQ(e.err(), EPERM);
  CHECK_EQ(std::string(e.syscall()), std::string("ptrace"));
  CHECK(e.detail().find(std::to_string(tracer_tid.load())) != std::string::npos);
  CHECK(d.entries().empty());
  check_running(t);
}

TEST(dump_job_stopped_target) {
  Target t;
  TmpDir d;
  ::kill(t.pid(), SIGSTOP);
  for (int i = 0; i < 200 && state_of(t.pid()) != 'T'; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(state_of(t.pid()) == 'T');
  Result r = write_core_dump(t.pid(), d.path + "/core", {});
  CHECK(r.mode_used == Mode::kStop);
  CHECK_EQ(state_of(t.pid()), 'T');  // back in its group stop when the dump returns
  CHECK_EQ(tracer_of(t.pid()), 0L);
  ::kill(t.pid(), SIGCONT);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  check_running(t);
}

TEST(dump_pending_signal_survives) {
  for (Mode mode : {Mode::kStop, Mode::kSnapshot}) {
    Target t({"--block-usr2"});
    TmpDir d;
    ::kill(t.pid(), SIGUSR2);
    auto pending = [&] {
      std::string s = slurp("/proc/" + std::to_string(t.pid()) + "/status");
      size_t p = s.find("ShdPnd:");
      return p == std::string::npos ? 0ull : std::strtoull(s.c_str() + p + 7, nullptr, 16);
    };
    const unsigned long long bit = 1ull << (SIGUSR2 - 1);
    REQUIRE(pending() & bit);
    Options o;
    o.mode = mode;
    write_core_dump(t.pid(), d.path + "/core", o);
    CHECK(pending() & bit);
    check_running(t);
  }
}

TEST(dump_enospc) {
  Target t;
  TmpDir d;
  const std::string mnt = d.path + "/small";
  ::mkdir(mnt.c_str(), 0700);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) {
    SKIP(std::string("cannot mount tmpfs (") + std::strerror(errno) + "): needs root");
    return;
  }
  for (Mode mode : {Mode::kStop, Mode::kSnapshot}) {
    Options o;
    o.mode = mode;
    SysError e = dump_error(t.pid(), mnt + "/core", o);
    CHECK_EQ(e.err(), ENOSPC);
    CHECK_EQ(e.path(), mnt + "/core");
    CHECK_EQ(e.pid(), t.pid());
    CHECK(run("ls -A '" + mnt + "'").out.empty());
    check_running(t);
  }
  ::umount(mnt.c_str());
}

#if defined(__x86_64__)
// Injects getpid() into every thread (each stopped in a different blocking syscall: read, nanosleep, poll)
// and detaches: each must get the right answer and then go back to its interrupted syscall as if nothing
// happened (the fixture prints an error line otherwise, which the ping below would see).
TEST(dump_injection_restarts_every_syscall_kind) {
  Target t;
  for (int round = 0; round < 3; round++) {
    {
      PtraceSession s(t.pid(), nullptr);
      REQUIRE(s.threads().size() == 4);
      for (auto& th : s.threads()) {
        REQUIRE(arch::stopped_syscall(th.regs) >= 0);
        const long r = s.inject_syscall(th, th.regs.rip - 2, SYS_getpid, {}, nullptr);
        CHECK_EQ(r, static_cast<long>(t.pid()));
        // Registers are back exactly as captured.
        arch::GpRegs now{};
        iovec iov{&now, sizeof now};
        REQUIRE(::ptrace(PTRACE_GETREGSET, th.tid, reinterpret_cast<void*>(NT_PRSTATUS), &iov) == 0);
        CHECK(std::memcmp(&now, &th.regs, sizeof now) == 0);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    check_running(t);
  }
}

// An injected clone hands its child over the moment the clone event is seen, with the parent still in that
// event stop (its clone not yet returned), however much work `meanwhile` still has: the pieces are
// interleaved with looking for the event. Until the tracer has marked the child PTRACE_O_EXITKILL, its
// death would let the child run on as a copy of the target, so nothing may hold that up.
TEST(dump_injected_clone_hands_over_its_child_at_once) {
  Target t({"--touch", "256"});
  PtraceSession s(t.pid(), nullptr);
  size_t index = 0;
  uint64_t insn = 0;
  REQUIRE(s.pick_injection_point(index, insn));
  ThreadState& th = s.threads()[index];
  constexpr int kPieces = 100000;  // 1 ms each: 100 s of work if it were all done before the clone's end
  int pieces = 0, pieces_at_clone = -1;
  char parent_state = '?';
  pid_t child = 0;
  const auto start = Clock::now();
  const long r = s.inject_syscall(
      th, insn, arch::nr_clone(), {CLONE_FILES, 0, 0, 0, 0},
      [&](pid_t c) {
        child = c;
        pieces_at_clone = pieces;
        parent_state = proc_state(t.pid(), th.tid);
      },
      [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return ++pieces < kPieces;
      });
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  std::printf("    clone of 256 MiB: %.1f ms, %d pieces of meanwhile, on_clone after %d\n", ms, pieces,
              pieces_at_clone);
  REQUIRE(child > 0);
  CHECK_EQ(r, static_cast<long>(child));
  CHECK_EQ(parent_state, 't');
  CHECK(pieces_at_clone >= 0);
  CHECK(pieces < kPieces);
  // The child is ours to end: killed, then reaped from the target (exit signal 0: only __WALL sees it).
  ::kill(child, SIGKILL);
  int status = 0;
  while (wait_stop(child, status, t.pid(), 5000)) {
  }
  CHECK_EQ(s.inject_syscall(th, insn, arch::nr_wait4(), {static_cast<uint64_t>(child), 0, __WALL, 0}, {}),
           static_cast<long>(child));
  s.detach_all();
  check_running(t);
}
#endif

// Every thread busy in user space: no thread sits after a syscall instruction, so the clone must be run
// from one found in the vDSO; the spinning threads must carry on exactly where they were.
TEST(dump_snapshot_with_spinning_threads) {
  Target t({"--spin"});
  TmpDir d;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  Options o;
  o.mode = Mode::kSnapshot;
  Result r = write_core_dump(t.pid(), d.path + "/core", o);
  for (const auto& w : r.warnings) std::printf("    warning: %s\n", w.c_str());
  CHECK(r.mode_used == Mode::kSnapshot);
  CHECK_EQ(r.threads, 2);
  const CmdResult gdb = run(std::string(kTools) +
                            "gdb -batch -nx -iex 'set debuginfod enabled off' -ex 'thread apply all bt' '" +
                            "/proc/" + std::to_string(t.pid()) + "/exe' '" + d.path + "/core'");
  // Both threads in spinning_delta (gdb also prints the current frame once when it loads the core).
  CHECK(count(gdb.out, " spinning_delta (") >= 2);
  CHECK(gdb.out.find(" spin_main (") != std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_EQ(state_of(t.pid()), 'R');
  CHECK_EQ(tracer_of(t.pid()), 0L);
  // Still spinning: its CPU time keeps growing.
  auto cpu = [&] {
    std::string s = slurp("/proc/" + std::to_string(t.pid()) + "/stat");
    std::istringstream in(s.substr(s.rfind(')') + 2));
    std::string f;
    uint64_t ut = 0;
    for (int i = 0; i < 12 && in >> f; i++) ut = std::strtoull(f.c_str(), nullptr, 10);
    return ut;
  };
  const uint64_t before = cpu();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(cpu() > before);
}

// coredump_filter from the options: 0 keeps only what the kernel always dumps (the vDSO).
TEST(dump_filter_option) {
  Target t;
  TmpDir d;
  Options o;
  o.mode = Mode::kStop;
  o.filter = 0;
  Result r = write_core_dump(t.pid(), d.path + "/core", o);
  Core core(d.path + "/core");
  CHECK(!core.has_data_for(t.addr("pattern"), t.size("pattern")));
  CHECK(r.mappings_written <= 2);  // [vdso] and [vsyscall], always dumped
  o.filter = kDefaultFilter | kMappedPrivate;
  o.overwrite = true;
  Result all = write_core_dump(t.pid(), d.path + "/core", o);
  Core full(d.path + "/core");
  CHECK(full.has_data_for(t.addr("file"), 4096));  // the private file mapping, whole
  CHECK(all.mappings_written > r.mappings_written);
  check_running(t);
}

TEST(dump_extended_numbering) {
  // More than 65534 segments: e_phnum = PN_XNUM and the real count in section header 0.
  std::vector<LoadSegment> loads(70000);
  const std::string h = build_headers(0, 0, loads, 12345);
  Elf64_Ehdr eh;
  std::memcpy(&eh, h.data(), sizeof eh);
  CHECK_EQ(eh.e_phnum, static_cast<Elf64_Half>(PN_XNUM));
  CHECK_EQ(eh.e_shoff, 12345ul);
  CHECK_EQ(eh.e_shnum, 1);
  CHECK_EQ(h.size(), headers_size(loads.size()));
  Elf64_Shdr sh;
  const std::string s = build_extnum_shdr(loads.size());
  std::memcpy(&sh, s.data(), sizeof sh);
  CHECK_EQ(sh.sh_info, 70001u);
}

TEST(dump_seccomp_falls_back_to_stop) {
  Target t({"--seccomp"});
  TmpDir d;
  Options o;
  o.mode = Mode::kSnapshot;
  Result r = write_core_dump(t.pid(), d.path + "/core", o);
  CHECK(r.mode_used == Mode::kStop);
  REQUIRE(!r.warnings.empty());
  CHECK(r.warnings[0].find("seccomp") != std::string::npos);
  Result a = write_core_dump(t.pid(), d.path + "/core2", {});
  CHECK(a.mode_used == Mode::kStop);
  check_running(t);
}

// clone() failing with EAGAIN (pids.max reached) must fall back to stop mode, not fail the dump.
TEST(dump_clone_failure_falls_back_to_stop) {
  Target t;
  TmpDir d;
  const std::string cg = "/sys/fs/cgroup/pids/tripdump-dump-test-" + std::to_string(::getpid());
  if (::mkdir(cg.c_str(), 0755) != 0) {
    SKIP(std::string("cannot create a pids cgroup (") + std::strerror(errno) +
         "): needs root and cgroup v1's pids controller");
    return;
  }
  struct Cleanup {
    std::string cg;
    int pid;
    ~Cleanup() {
      run("echo " + std::to_string(pid) + " > /sys/fs/cgroup/pids/cgroup.procs");
      ::rmdir(cg.c_str());
    }
  } cleanup{cg, t.pid()};
  run("echo " + std::to_string(t.pid()) + " > " + cg + "/cgroup.procs");
  run("cat " + cg + "/pids.current > " + cg + "/pids.max");
  Options o;
  o.mode = Mode::kSnapshot;
  Result r = write_core_dump(t.pid(), d.path + "/core", o);
  for (const auto& w : r.warnings) std::printf("    warning: %s\n", w.c_str());
  CHECK(r.mode_used == Mode::kStop);
  REQUIRE(!r.warnings.empty());
  CHECK(r.warnings[0].find("EAGAIN") != std::string::npos);
  check_running(t);
}

// A dumper without the right to trace the target gets EPERM (capabilities and uids are per thread, so one
// thread of ours can drop them).
TEST(dump_not_permitted) {
  Target t;
  TmpDir d;
  ::chmod(d.path.c_str(), 0777);
  int err = 0;
  std::string syscall;
  std::thread unprivileged([&] {
    if (::syscall(SYS_setresuid, 65534, 65534, 65534) != 0) return;
    SysError e = dump_error(t.pid(), d.path + "/core");
    err = e.err();
    syscall = e.syscall();
  });
  unprivileged.join();
  CHECK_EQ(err, EPERM);
  CHECK_EQ(syscall, std::string("ptrace"));
  CHECK(d.entries().empty());
  check_running(t);
}

// Signals arriving while the threads are being seized, stopped and injected into: every dump succeeds,
// the handler keeps running afterwards, and the target is left running.
TEST(dump_under_signal_storm) {
  Target t({"--signals"});
  TmpDir d;
  std::atomic<bool> stop{false};
  std::thread storm([&] {
    while (!stop) {
      ::kill(t.pid(), SIGUSR1);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  int ok = 0;
  for (int i = 0; i < 6; i++) {
    Options o;
    o.mode = i % 2 ? Mode::kSnapshot : Mode::kStop;
    o.overwrite = true;
    try {
      Result r = write_core_dump(t.pid(), d.path + "/core", o);
      ok += r.threads == 4;
    } catch (const SysError& e) {
      ::tripdump::test::fail(__FILE__, __LINE__, e.what());
    }
  }
  stop = true;
  storm.join();
  CHECK_EQ(ok, 6);
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  check_running(t);
}

// The pid of the dumper process once the dump is past the pause: the snapshot child exists, traced by
// the dumper's dump thread. 0 if none appears in 20 s.
pid_t dumper_holding_child(Target& t) {
  const std::string task = "/proc/" + std::to_string(t.pid()) + "/task/";
  for (const auto end = Clock::now() + std::chrono::seconds(20); Clock::now() < end;) {
    std::string children;
    if (DIR* d = ::opendir(task.c_str())) {
      while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') children += slurp(task + e->d_name + "/children");
      ::closedir(d);
    }
    std::istringstream s(children);
    for (int child; s >> child;)
      if (const long tracer = tracer_of(child); tracer > 0)
        return static_cast<pid_t>(status_field(tracer, "Tgid"));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return 0;
}

bool gone(pid_t pid) {
  const char s = state_of(pid);
  return s == '?' || s == 'Z';
}

// A caller that dies mid-dump (SIGKILL) takes no snapshot child with it into the target's keeping: its
// dumper hears of it by its death signal and cancels, killing the child and reaping it from the target.
TEST(dumper_cancels_when_its_caller_dies) {
  Target t({"--touch", "256"});
  TmpDir d;
  const pid_t caller = ::fork();
  REQUIRE(caller >= 0);
  if (caller == 0) {
    Options o;
    o.mode = Mode::kSnapshot;
    try {
      lib::dump_in_process(t.pid(), d.path + "/core", o);
    } catch (...) {
    }
    ::_exit(0);
  }
  const pid_t dumper = dumper_holding_child(t);
  ::kill(caller, SIGKILL);
  ::waitpid(caller, nullptr, 0);
  REQUIRE(dumper > 0);
  const auto end = Clock::now() + std::chrono::seconds(20);
  while (!gone(dumper) && Clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(gone(dumper));
  check_running(t);
  CHECK(d.entries().empty());
}

// A dumper SIGKILLed on its own (the OOM killer's choice) leaves its snapshot child in the target; the
// caller, living on, kills and reaps it before it reports the dumper's death. The kill comes once the
// target runs again: one during the injected clone itself would also leave the injecting thread's system
// call returning the child's pid (lib/dumper.h), which nothing can undo, and the target's ping would say so.
TEST(dumper_killed_alone_leaves_no_child) {
  Target t({"--touch", "256"});
  TmpDir d;
  int err = 0;
  std::thread caller([&] {
    Options o;
    o.mode = Mode::kSnapshot;
    try {
      lib::dump_in_process(t.pid(), d.path + "/core", o);
    } catch (const SysError& e) {
      err = e.err();
    }
  });
  const pid_t dumper = dumper_holding_child(t);
  for (const auto end = Clock::now() + std::chrono::seconds(20);
       tracer_of(t.pid()) > 0 && Clock::now() < end;)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  if (dumper > 0) ::kill(dumper, SIGKILL);
  caller.join();
  REQUIRE(dumper > 0);
  CHECK_EQ(err, ECHILD);
  check_running(t);
  CHECK(d.entries().empty());
}

// Measurement only (TRIPDUMP_DUMP_BENCH=1): 1 GiB of touched memory, both modes and gcore.
TEST(dump_bench_1gib) {
  if (!std::getenv("TRIPDUMP_DUMP_BENCH")) return;
  Target t({"--touch", "1024"});
  TmpDir d;
  for (Mode mode : {Mode::kStop, Mode::kSnapshot}) {
    Options o;
    o.mode = mode;
    const auto t0 = Clock::now();
    Result r = write_core_dump(t.pid(), d.path + "/core-" + mode_name(mode), o);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    std::printf("    tripdump %-8s elapsed %7.1f ms  pause %7.2f ms  size %llu MiB  on disk %llu MiB\n",
                mode_name(mode), ms, r.pause_ms, (unsigned long long)(r.bytes_written >> 20),
                (unsigned long long)(r.bytes_on_disk >> 20));
    ::unlink((d.path + "/core-" + mode_name(mode)).c_str());
    CHECK(t.ping());
  }
  if (HAVE_TOOL("gcore", "gdb")) {
    const auto t0 = Clock::now();
    run("gcore -o '" + d.path + "/gcore' " + std::to_string(t.pid()) + " >/dev/null");
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    const CmdResult du = run("du -m '" + d.path + "/gcore." + std::to_string(t.pid()) + "' | cut -f1");
    std::printf("    gcore             elapsed %7.1f ms  (target stopped throughout)  on disk %s", ms,
                du.out.c_str());
  }
}

}  // namespace tripdump::dump
