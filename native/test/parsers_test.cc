// Unit tests of native/core/parsers: real captures from this machine's /proc (fixtures/), live reads of
// this test process (whose truth we control: its pid, threads, thread names, bytes written), and hostile
// text. Expected values come from an independent, allocation-happy reference reader written here with
// the standard library, never from the parser under test.
#include "core/parsers.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test/harness.h"

using namespace tripdump;

namespace {

std::string read_fixture(const std::string& name) {
  std::ifstream in("fixtures/" + name, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// /proc files report size 0, so read until EOF like the sampler would.
std::string read_proc(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// One read into a caller's buffer, as the sampler does.
std::string_view read_into(const char* path, char* buf, size_t cap) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  const ssize_t n = ::pread(fd, buf, cap, 0);
  ::close(fd);
  return n > 0 ? std::string_view(buf, static_cast<size_t>(n)) : std::string_view();
}

// A heap block of exactly the text's size, so ASan reports any read past the end of the view (a view
// into a longer std::string would hide it).
struct Exact {
  std::unique_ptr<char[]> buf;
  size_t n;
  explicit Exact(std::string_view s) : buf(new char[s.size()]), n(s.size()) {
    if (n) std::memcpy(buf.get(), s.data(), n);
  }
  std::string_view view() const { return {buf.get(), n}; }
};

// ---- reference readers ----

struct RefStat {
  std::string pid, comm;
  std::vector<std::string> fields;  // fields[0] is proc(5) field 3 (state)
  const std::string& f(int proc5_index) const { return fields.at(static_cast<size_t>(proc5_index - 3)); }
};

RefStat ref_stat(const std::string& text) {
  RefStat r;
  const size_t open = text.find('(');
  const size_t close = text.rfind(')');
  r.pid = text.substr(0, open - 1);
  r.comm = text.substr(open + 1, close - open - 1);
  std::string rest = text.substr(close + 2);
  if (!rest.empty() && rest.back() == '\n') rest.pop_back();
  std::istringstream in(rest);
  for (std::string tok; std::getline(in, tok, ' ');) r.fields.push_back(tok);
  return r;
}

// Offset just past the end of proc(5) field `index` (>= 3), i.e. where its separator is.
size_t end_of_field(const std::string& text, int index) {
  size_t pos = text.rfind(')') + 1;  // the separator before field 3
  for (int f = 3; f <= index; ++f) {
    pos = text.find_first_of(" \n", pos + 1);
    if (pos == std::string::npos) return text.size();
  }
  return pos;
}

uint64_t u(const std::string& s) {
  return std::stoull(s);
}
int64_t i(const std::string& s) {
  return std::stoll(s);
}

void check_stat_matches_ref(const StatFields& s, const std::string& text) {
  const RefStat r = ref_stat(text);
  CHECK_EQ(s.pid, std::stoi(r.pid));
  CHECK_EQ(std::string(s.comm, s.comm_len), r.comm.substr(0, kCommMax - 1));
  CHECK_EQ(s.state, r.f(3).at(0));
  CHECK_EQ(s.ppid, std::stoi(r.f(4)));
  CHECK_EQ(s.pgrp, std::stoi(r.f(5)));
  CHECK_EQ(s.session, std::stoi(r.f(6)));
  CHECK_EQ(s.minflt, u(r.f(10)));
  CHECK_EQ(s.majflt, u(r.f(12)));
  CHECK_EQ(s.utime, u(r.f(14)));
  CHECK_EQ(s.stime, u(r.f(15)));
  CHECK_EQ(s.priority, i(r.f(18)));
  CHECK_EQ(s.nice, i(r.f(19)));
  CHECK_EQ(s.num_threads, i(r.f(20)));
  CHECK_EQ(s.starttime, u(r.f(22)));
  CHECK_EQ(s.vsize, u(r.f(23)));
  CHECK_EQ(s.rss, i(r.f(24)));
  CHECK_EQ(s.processor, std::stoi(r.f(39)));
}

// "Key:\tvalue" lines → key → trimmed value (first occurrence, as the parser takes it).
std::map<std::string, std::string> ref_keys(const std::string& text) {
  std::map<std::string, std::string> m;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    m.emplace(line.substr(0, colon), v);
  }
  return m;
}

uint64_t ref_kb(const std::map<std::string, std::string>& m, const char* key) {
  return std::stoull(m.at(key)) * 1024;
}

// Rebuilds a stat line with proc(5) field `index` (>= 3) replaced by `token`.
std::string with_field(const std::string& text, int index, const std::string& token) {
  RefStat r = ref_stat(text);
  r.fields.at(static_cast<size_t>(index - 3)) = token;
  std::string out = r.pid + " (" + r.comm + ")";
  for (const auto& f : r.fields) out += " " + f;
  return out + "\n";
}

std::string with_comm(const std::string& text, const std::string& comm) {
  return text.substr(0, text.find('(') + 1) + comm + text.substr(text.rfind(')'));
}

const char* const kStatCaptures[] = {"self.stat", "kthreadd.stat", "kworker.stat", "node.stat",
                                     "node-thread.stat"};

pid_t gettid_() {
  return static_cast<pid_t>(::syscall(SYS_gettid));
}

// Threads parked on a condition variable until the owner releases them; joined in the destructor so a
// failing REQUIRE never leaks a running thread into the next case.
class ParkedThreads {
 public:
  explicit ParkedThreads(int n, const char* name = nullptr) {
    for (int k = 0; k < n; ++k) {
      threads_.emplace_back([this, name] {
        if (name) pthread_setname_np(pthread_self(), name);
        std::unique_lock lock(mu_);
        tids_.push_back(gettid_());
        cv_.notify_all();
        cv_.wait(lock, [this] { return released_; });
      });
    }
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this, n] { return tids_.size() == static_cast<size_t>(n); });
  }
  ~ParkedThreads() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  std::vector<pid_t> tids() {
    std::lock_guard lock(mu_);
    return tids_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  std::vector<pid_t> tids_;
  std::vector<std::thread> threads_;
};

}  // namespace

// ===== stat ===========================================================================================

TEST(stat_real_captures_match_reference) {
  for (const char* name : kStatCaptures) {
    const std::string text = read_fixture(name);
    REQUIRE(!text.empty());
    StatFields s;
    const Exact e(text);
    CHECK(parse_stat(e.view(), s));
    check_stat_matches_ref(s, text);
  }
}

TEST(stat_kernel_thread_and_workqueue_names) {
  StatFields s;
  const std::string kthreadd = read_fixture("kthreadd.stat");
  REQUIRE(parse_stat(kthreadd, s));
  CHECK_EQ(s.pid, 2);
  CHECK_EQ(s.ppid, 0);
  CHECK_EQ(std::string(s.comm), std::string("kthreadd"));
  CHECK_EQ(s.rss, 0);
  // A workqueue worker's comm is longer than TASK_COMM_LEN: the reason kCommMax is 64.
  const std::string kworker = read_fixture("kworker.stat");
  REQUIRE(parse_stat(kworker, s));
  CHECK(s.comm_len > 15);
  CHECK_EQ(std::string(s.comm, s.comm_len), ref_stat(kworker).comm);
  CHECK_EQ(s.ppid, 2);
}

TEST(stat_thread_row_of_multithreaded_capture) {
  StatFields proc, thread;
  REQUIRE(parse_stat(read_fixture("node.stat"), proc));
  REQUIRE(parse_stat(read_fixture("node-thread.stat"), thread));
  CHECK(proc.num_threads > 1);
  CHECK(thread.pid != proc.pid);
  CHECK_EQ(thread.num_threads, proc.num_threads);  // a thread's stat reports its group's count
  CHECK_EQ(thread.ppid, proc.ppid);
  // exit_signal (field 38) is -1 for a thread: a negative skipped field right before processor.
  const RefStat ref = ref_stat(read_fixture("node-thread.stat"));
  CHECK_EQ(ref.f(38), std::string("-1"));
  CHECK(thread.processor >= 0);
}

TEST(stat_live_self) {
  const std::string text = read_proc("/proc/self/stat");
  StatFields s;
  REQUIRE(parse_stat(text, s));
  CHECK_EQ(s.pid, getpid());
  CHECK_EQ(s.ppid, getppid());
  CHECK_EQ(s.pgrp, getpgrp());
  CHECK_EQ(s.session, getsid(0));
  CHECK_EQ(s.state, 'R');  // it is running: it is reading its own stat
  CHECK(s.processor >= 0 && s.processor < get_nprocs_conf());
  check_stat_matches_ref(s, text);
}

TEST(stat_live_thread_count_follows_threads) {
  StatFields before;
  REQUIRE(parse_stat(read_proc("/proc/self/stat"), before));
  {
    ParkedThreads parked(3);
    StatFields during;
    REQUIRE(parse_stat(read_proc("/proc/self/stat"), during));
    CHECK_EQ(during.num_threads, before.num_threads + 3);
    StatusFields status;
    REQUIRE(parse_status(read_proc("/proc/self/status"), status));
    CHECK_EQ(status.threads, during.num_threads);
  }
  // A joined thread leaves the count a moment later: join returns when the thread has cleared its tid,
  // before the kernel releases it from the thread group.
  StatFields after;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  do {
    REQUIRE(parse_stat(read_proc("/proc/self/stat"), after));
    if (after.num_threads == before.num_threads) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  } while (std::chrono::steady_clock::now() < deadline);
  CHECK_EQ(after.num_threads, before.num_threads);
}

// The kernel itself prints these comms: thread names set with pthread_setname_np, read back through
// /proc/self/task/TID/stat.
TEST(stat_live_hostile_thread_names) {
  const char* const names[] = {"a) b (c", ") (", "x) S 1 2 3", "new\nline", "((((", "))))", " "};
  for (const char* name : names) {
    ParkedThreads parked(1, name);
    const pid_t tid = parked.tids().at(0);
    const std::string text = read_proc("/proc/self/task/" + std::to_string(tid) + "/stat");
    StatFields s;
    REQUIRE(parse_stat(text, s));
    CHECK_EQ(s.pid, tid);
    CHECK_EQ(std::string(s.comm, s.comm_len), std::string(name));
    CHECK_EQ(s.ppid, getppid());
    CHECK_EQ(s.pgrp, getpgrp());
    // The thread may still be on its way into the futex wait; the state after comm must become 'S'.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (s.state != 'S' && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      REQUIRE(parse_stat(read_proc("/proc/self/task/" + std::to_string(tid) + "/stat"), s));
    }
    CHECK_EQ(s.state, 'S');
  }
}

TEST(stat_hostile_comm_substitutions) {
  const std::string base = read_fixture("self.stat");
  StatFields ref;
  REQUIRE(parse_stat(base, ref));
  const std::string comms[] = {"", ")", ") (", "a) b (c", "x) R 1 2 3 4 5", "tab\there", "nl\nnl", "(", "))"};
  for (const std::string& comm : comms) {
    const std::string text = with_comm(base, comm);
    StatFields s;
    const Exact e(text);
    CHECK(parse_stat(e.view(), s));
    CHECK_EQ(std::string(s.comm, s.comm_len), comm);
    CHECK_EQ(s.ppid, ref.ppid);
    CHECK_EQ(s.pgrp, ref.pgrp);
    CHECK_EQ(s.rss, ref.rss);
    CHECK_EQ(s.processor, ref.processor);
  }
}

TEST(stat_long_comm_truncated) {
  const std::string base = read_fixture("self.stat");
  for (size_t len : {kCommMax - 2, kCommMax - 1, kCommMax, kCommMax + 1, size_t{200}}) {
    std::string comm;
    for (size_t k = 0; k < len; ++k) comm += static_cast<char>('a' + k % 26);
    StatFields s;
    REQUIRE(parse_stat(with_comm(base, comm), s));
    const size_t want = len < kCommMax - 1 ? len : kCommMax - 1;
    CHECK_EQ(s.comm_len, want);
    CHECK_EQ(std::string(s.comm, s.comm_len), comm.substr(0, want));
    CHECK_EQ(s.comm[s.comm_len], '\0');
    CHECK_EQ(s.pid, std::stoi(ref_stat(base).pid));
  }
}

// Every prefix of a real file: never reads past the end (Exact + ASan); fails while rss is incomplete;
// afterwards it reports exactly the full file's values, with processor either right or unknown.
TEST(stat_every_prefix) {
  for (const char* name : kStatCaptures) {
    const std::string text = read_fixture(name);
    REQUIRE(!text.empty());
    StatFields full;
    REQUIRE(parse_stat(text, full));
    const size_t rss_end = end_of_field(text, 24);
    const size_t processor_end = end_of_field(text, 39);
    for (size_t n = 0; n <= text.size(); ++n) {
      const Exact e(std::string_view(text).substr(0, n));
      StatFields s;
      const bool ok = parse_stat(e.view(), s);
      if (n <= rss_end) {
        if (ok)
          ::tripdump::test::fail(__FILE__, __LINE__, std::string(name) + " prefix " + std::to_string(n));
        CHECK_EQ(s.pid, 0);  // a failed parse leaves the defaults
        continue;
      }
      REQUIRE(ok);
      CHECK_EQ(s.rss, full.rss);
      CHECK_EQ(s.vsize, full.vsize);
      CHECK_EQ(s.starttime, full.starttime);
      CHECK_EQ(std::string(s.comm, s.comm_len), std::string(full.comm, full.comm_len));
      CHECK_EQ(s.processor, n > processor_end ? full.processor : -1);
    }
  }
}

TEST(stat_empty_and_garbage) {
  StatFields s;
  for (const char* t : {"", "\n", " ", "(", ")", "1", "1 ", "1 (", "1 ()", "1 () ", "1 () S", "abc (x) S 1",
                        "1 x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 6 7 8\n"}) {
    const Exact e(t);
    CHECK(!parse_stat(e.view(), s));
  }
}

TEST(stat_no_trailing_newline) {
  std::string text = read_fixture("self.stat");
  REQUIRE(text.back() == '\n');
  text.pop_back();
  StatFields s;
  const Exact e(text);
  REQUIRE(parse_stat(e.view(), s));
  check_stat_matches_ref(s, text + "\n");
}

TEST(stat_number_limits) {
  const std::string base = read_fixture("self.stat");
  StatFields s;
  // utime (14) is unsigned 64-bit: the maximum parses, one more overflows.
  REQUIRE(parse_stat(with_field(base, 14, "18446744073709551615"), s));
  CHECK_EQ(s.utime, UINT64_MAX);
  CHECK(!parse_stat(with_field(base, 14, "18446744073709551616"), s));
  CHECK(!parse_stat(with_field(base, 14, "99999999999999999999999999"), s));
  CHECK(!parse_stat(with_field(base, 23, "184467440737095516150"), s));  // vsize
  // rss (24) is signed 64-bit.
  REQUIRE(parse_stat(with_field(base, 24, "9223372036854775807"), s));
  CHECK_EQ(s.rss, INT64_MAX);
  CHECK(!parse_stat(with_field(base, 24, "9223372036854775808"), s));
  // ppid (4) is an int.
  REQUIRE(parse_stat(with_field(base, 4, "2147483647"), s));
  CHECK_EQ(s.ppid, 2147483647);
  CHECK(!parse_stat(with_field(base, 4, "2147483648"), s));
  // pid overflows before the comm.
  CHECK(!parse_stat("99999999999" + base.substr(base.find(' ')), s));
  // Leading zeros are still decimal.
  REQUIRE(parse_stat(with_field(base, 22, "000123"), s));
  CHECK_EQ(s.starttime, 123u);
}

TEST(stat_signs) {
  const std::string base = read_fixture("self.stat");
  StatFields s;
  for (int field : {4, 10, 12, 14, 15, 22, 23}) {  // never negative in proc(5)
    CHECK(!parse_stat(with_field(base, field, "-1"), s));
  }
  // pgrp and session are -1 while the process is being reaped (see stat_of_a_process_being_reaped), and
  // nothing else negative.
  for (int field : {5, 6}) {
    REQUIRE(parse_stat(with_field(base, field, "-1"), s));
    for (const char* v : {"-2", "-10", "-", "--1", "-1x"}) CHECK(!parse_stat(with_field(base, field, v), s));
  }
  CHECK(!parse_stat(with_field(base, 14, "+1"), s));
  CHECK(!parse_stat(with_field(base, 14, "1x"), s));
  CHECK(!parse_stat(with_field(base, 14, ""), s));  // two spaces in a row
  // nice and priority are signed (real-time priorities are negative).
  REQUIRE(parse_stat(with_field(with_field(base, 19, "-20"), 18, "-100"), s));
  CHECK_EQ(s.nice, -20);
  CHECK_EQ(s.priority, -100);
  REQUIRE(parse_stat(with_field(base, 24, "-9223372036854775808"), s));
  CHECK_EQ(s.rss, INT64_MIN);
  CHECK(!parse_stat(with_field(base, 24, "-9223372036854775809"), s));
  CHECK(!parse_stat(with_field(base, 24, "-"), s));
  // A negative processor is not a CPU: unknown, while the rest stays good.
  REQUIRE(parse_stat(with_field(base, 39, "-1"), s));
  CHECK_EQ(s.processor, -1);
  CHECK_EQ(s.rss, std::stoll(ref_stat(base).f(24)));
}

TEST(stat_bad_state) {
  const std::string base = read_fixture("self.stat");
  StatFields s;
  for (const char* st : {"5", "", "RR", "?"}) CHECK(!parse_stat(with_field(base, 3, st), s));
  for (const char* st : {"Z", "I", "t", "D"}) {
    REQUIRE(parse_stat(with_field(base, 3, st), s));
    CHECK_EQ(s.state, st[0]);
  }
}

// Captured from a process between release_task() and its last reference: state X, ppid 0, and pgrp and
// session -1 because its signal struct is gone (do_task_stat prints its initial -1). Refusing this line
// once made a monitor die with "open failed: EINVAL" under churn; it is a process being reaped.
TEST(stat_of_a_process_being_reaped) {
  StatFields s;
  REQUIRE(parse_stat(read_fixture("reaped.stat"), s));
  CHECK_EQ(s.state, 'X');
  CHECK_EQ(s.pgrp, -1);
  CHECK_EQ(s.session, -1);
  CHECK_EQ(s.ppid, 0);
  CHECK_EQ(s.starttime, 136793u);
}

TEST(stat_nul_bytes) {
  const std::string base = read_fixture("self.stat");
  StatFields ref, s;
  REQUIRE(parse_stat(base, ref));
  // Inside comm: kept verbatim, comm_len says where it really ends.
  const std::string comm("a\0b", 3);
  const std::string t1 = with_comm(base, comm);
  const Exact e1(t1);
  REQUIRE(parse_stat(e1.view(), s));
  CHECK_EQ(s.comm_len, 3u);
  CHECK_EQ(std::string(s.comm, s.comm_len), comm);
  CHECK_EQ(s.rss, ref.rss);
  // Inside a number we need: not a number.
  CHECK(!parse_stat(with_field(base, 14, std::string("1\0", 2)), s));
  CHECK(!parse_stat(with_field(base, 24, std::string("\0", 1)), s));
  // Inside a field we skip after rss: the fields we take are unaffected.
  REQUIRE(parse_stat(with_field(base, 30, std::string("\0\0", 2)), s));
  CHECK_EQ(s.rss, ref.rss);
  CHECK_EQ(s.processor, ref.processor);
}

TEST(stat_failure_resets_output) {
  StatFields s;
  REQUIRE(parse_stat(read_fixture("node.stat"), s));
  CHECK(s.pid != 0);
  CHECK(!parse_stat("42 (x) S 1", s));
  CHECK_EQ(s.pid, 0);
  CHECK_EQ(s.comm_len, 0u);
  CHECK_EQ(s.rss, 0);
  CHECK_EQ(s.processor, -1);
}

// ===== statm ==========================================================================================

TEST(statm_real_captures) {
  for (const char* name : {"self.statm", "node.statm", "kthreadd.statm"}) {
    const std::string text = read_fixture(name);
    REQUIRE(!text.empty());
    std::istringstream in(text);
    uint64_t want[7] = {};
    for (auto& w : want) in >> w;
    StatmFields m;
    const Exact e(text);
    REQUIRE(parse_statm(e.view(), m));
    const uint64_t got[7] = {m.size, m.resident, m.shared, m.text, m.lib, m.data, m.dt};
    for (int k = 0; k < 7; ++k) CHECK_EQ(got[k], want[k]);
  }
  StatmFields kthread;
  REQUIRE(parse_statm(read_fixture("kthreadd.statm"), kthread));
  CHECK_EQ(kthread.size, 0u);  // no mm: all zeros, and still a valid file
}

TEST(statm_live_matches_stat) {
  // stat's rss and statm's resident both add up the mm's per-CPU RSS counters, read approximately, so
  // they agree only roughly; vsize and size are the same total_vm. Both reads go into stack buffers so
  // no allocation (which may mmap) happens between them.
  char statm_buf[256], stat_buf[1024];
  const std::string_view statm_text = read_into("/proc/self/statm", statm_buf, sizeof statm_buf);
  const std::string_view stat_text = read_into("/proc/self/stat", stat_buf, sizeof stat_buf);
  StatmFields m;
  StatFields s;
  REQUIRE(parse_statm(statm_text, m));
  REQUIRE(parse_stat(stat_text, s));
  CHECK(m.resident > 0);
  const int64_t diff = static_cast<int64_t>(m.resident) - s.rss;
  const int64_t slack = std::max<int64_t>(256, s.rss / 10);
  if (diff > slack || -diff > slack)
    ::tripdump::test::fail(__FILE__, __LINE__,
                           "resident " + std::to_string(m.resident) + " vs rss " + std::to_string(s.rss));
  CHECK_EQ(m.size * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)), s.vsize);
}

TEST(statm_hostile) {
  StatmFields m;
  for (const char* t : {"", "\n", "1 2 3 4 5 6\n", "1 2 3 4 5 6 7", "1 2 3 4 5 6 7 8\n", "1  2 3 4 5 6 7\n",
                        "-1 2 3 4 5 6 7\n", "1 2 3 4 5 6 x\n", "18446744073709551616 2 3 4 5 6 7\n"}) {
    const Exact e(t);
    CHECK(!parse_statm(e.view(), m));
    CHECK_EQ(m.size, 0u);
  }
  REQUIRE(parse_statm("18446744073709551615 2 3 4 5 6 7\n", m));
  CHECK_EQ(m.size, UINT64_MAX);
  CHECK_EQ(m.dt, 7u);
  CHECK(!parse_statm(std::string("1 2 3\0 4 5 6 7\n", 15), m));
}

TEST(statm_every_prefix) {
  const std::string text = read_fixture("node.statm");
  for (size_t n = 0; n < text.size(); ++n) {  // every proper prefix lacks the final '\n'
    const Exact e(std::string_view(text).substr(0, n));
    StatmFields m;
    CHECK(!parse_statm(e.view(), m));
  }
}

// ===== status =========================================================================================

TEST(status_real_self_capture) {
  const std::string text = read_fixture("self.status");
  const auto ref = ref_keys(text);
  StatusFields s;
  const Exact e(text);
  REQUIRE(parse_status(e.view(), s));
  using S = StatusFields;
  const uint32_t all = S::kRssAnon | S::kRssFile | S::kRssShmem | S::kVmSwap | S::kVmHWM | S::kUid | S::kGid |
                       S::kTracerPid | S::kSeccomp | S::kThreads | S::kTgid | S::kSeccompFilters | S::kSigQ;
  CHECK_EQ(s.has, all);
  CHECK_EQ(s.rss_anon, ref_kb(ref, "RssAnon"));
  CHECK_EQ(s.rss_file, ref_kb(ref, "RssFile"));
  CHECK_EQ(s.rss_shmem, ref_kb(ref, "RssShmem"));
  CHECK_EQ(s.vm_swap, ref_kb(ref, "VmSwap"));
  CHECK_EQ(s.vm_hwm, ref_kb(ref, "VmHWM"));
  CHECK_EQ(s.tgid, std::stoi(ref.at("Tgid")));
  CHECK_EQ(s.threads, std::stoll(ref.at("Threads")));
  CHECK_EQ(s.tracer_pid, std::stoi(ref.at("TracerPid")));
  CHECK_EQ(s.seccomp, std::stoi(ref.at("Seccomp")));
  std::istringstream uid(ref.at("Uid")), gid(ref.at("Gid"));
  for (int k = 0; k < 4; ++k) {
    uint32_t a = 0, b = 0;
    uid >> a;
    gid >> b;
    CHECK_EQ(s.uid[k], a);
    CHECK_EQ(s.gid[k], b);
  }
}

TEST(status_kernel_thread_has_no_memory) {
  const std::string text = read_fixture("kthreadd.status");
  StatusFields s;
  REQUIRE(parse_status(text, s));
  using S = StatusFields;
  CHECK_EQ(s.has & (S::kRssAnon | S::kRssFile | S::kRssShmem | S::kVmSwap | S::kVmHWM), 0u);
  CHECK(s.has & S::kUid);
  CHECK(s.has & S::kThreads);
  CHECK_EQ(s.tgid, 2);
  CHECK_EQ(s.rss_anon, 0u);
}

TEST(status_multithreaded_capture_agrees_with_stat) {
  StatusFields status;
  StatFields stat;
  REQUIRE(parse_status(read_fixture("node.status"), status));
  REQUIRE(parse_stat(read_fixture("node.stat"), stat));
  CHECK(status.threads > 1);
  CHECK_EQ(status.threads, stat.num_threads);
  CHECK_EQ(status.tgid, stat.pid);
}

TEST(status_live_self) {
  StatusFields s;
  REQUIRE(parse_status(read_proc("/proc/self/status"), s));
  CHECK_EQ(s.tgid, getpid());
  CHECK_EQ(s.uid[0], getuid());
  CHECK_EQ(s.uid[1], geteuid());
  CHECK_EQ(s.gid[0], getgid());
  CHECK_EQ(s.tracer_pid, 0);
  // Touch 8 MiB of fresh anonymous memory: RssAnon must grow by at least most of it.
  constexpr size_t kBytes = 8u << 20;
  const uint64_t before = s.rss_anon;
  std::unique_ptr<char[]> block(new char[kBytes]);
  std::memset(block.get(), 0x5a, kBytes);
  REQUIRE(parse_status(read_proc("/proc/self/status"), s));
  CHECK(s.rss_anon >= before + kBytes / 2);
  CHECK(s.vm_hwm >= s.rss_anon);
  CHECK(block[kBytes - 1] == 0x5a);
}

TEST(status_any_order_and_unknown_keys) {
  const std::string text = read_fixture("self.status");
  StatusFields want;
  REQUIRE(parse_status(text, want));
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string reversed = "Bogus:\t12 kB\nNo colon here\n:\t5\n";
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) reversed += *it + "\n";
  StatusFields got;
  const Exact e(reversed);
  REQUIRE(parse_status(e.view(), got));
  CHECK_EQ(got.has, want.has);
  CHECK_EQ(got.rss_anon, want.rss_anon);
  CHECK_EQ(got.vm_hwm, want.vm_hwm);
  CHECK_EQ(got.threads, want.threads);
  CHECK_EQ(got.uid[3], want.uid[3]);
}

TEST(status_missing_and_duplicated_keys) {
  StatusFields s;
  REQUIRE(parse_status("Tgid:\t10\nThreads:\t3\n", s));
  CHECK_EQ(s.has, uint32_t{StatusFields::kTgid | StatusFields::kThreads});
  CHECK_EQ(s.tgid, 10);
  CHECK_EQ(s.rss_anon, 0u);
  // First occurrence wins.
  REQUIRE(parse_status("VmHWM:\t1 kB\nVmHWM:\t2 kB\nThreads:\t4\nThreads:\t5\n", s));
  CHECK_EQ(s.vm_hwm, 1024u);
  CHECK_EQ(s.threads, 4);
  // A key must match whole: prefixes and suffixes of known keys are other keys.
  REQUIRE(parse_status("Tgid:\t1\nThreads_x:\t9\nThread:\t9\nVmHWMx:\t9 kB\n", s));
  CHECK_EQ(s.has, uint32_t{StatusFields::kTgid});
  // Nothing we know: not a status file.
  CHECK(!parse_status("Name:\tx\n", s));
  CHECK(!parse_status("", s));
  CHECK_EQ(s.has, 0u);
}

TEST(status_malformed_values_are_unavailable) {
  using S = StatusFields;
  struct Case {
    const char* line;
    uint32_t bit;
  };
  const Case cases[] = {
      {"VmHWM:\t-1 kB\n", S::kVmHWM},
      {"VmHWM:\t12 MB\n", S::kVmHWM},
      {"VmHWM:\t12\n", S::kVmHWM},
      {"RssAnon:\t18446744073709551615 kB\n", S::kRssAnon},  // fits u64, not once scaled to bytes
      {"RssAnon:\t18014398509481984 kB\n", S::kRssAnon},     // 2^54 kB = 2^64 bytes
      {"RssFile:\t99999999999999999999 kB\n", S::kRssFile},
      {"Uid:\t0\t0\t0\n", S::kUid},
      {"Uid:\t0\t0\t0\t0\t0\n", S::kUid},
      {"Gid:\t0\t-1\t0\t0\n", S::kGid},
      {"Gid:\t0\t4294967296\t0\t0\n", S::kGid},
      {"TracerPid:\t-5\n", S::kTracerPid},
      {"Tgid:\t2147483648\n", S::kTgid},
      {"Threads:\tmany\n", S::kThreads},
      {"SigQ:\t0\n", S::kSigQ},
      {"Seccomp:\t\n", S::kSeccomp},
  };
  for (const Case& c : cases) {
    StatusFields s;
    const bool tgid_case = c.bit == S::kTgid;
    const std::string text = std::string(tgid_case ? "Threads:\t1\n" : "Tgid:\t7\n") + c.line;
    const Exact e(text);
    CHECK(!parse_status(e.view(), s));
    if (s.has & c.bit) ::tripdump::test::fail(__FILE__, __LINE__, std::string("bit set for ") + c.line);
    CHECK(s.has & (tgid_case ? S::kThreads : S::kTgid));  // the good line stays usable
  }
  StatusFields s;
  REQUIRE(parse_status("RssAnon:\t18014398509481983 kB\n", s));  // the largest that scales
  CHECK_EQ(s.rss_anon, 18014398509481983ull * 1024);
  REQUIRE(parse_status("Gid:\t1\t2\t3\t4294967295\n", s));
  CHECK_EQ(s.gid[3], 4294967295u);
}

TEST(status_no_trailing_newline_and_nul) {
  StatusFields s;
  // The cut last line is not trusted; the complete ones are.
  CHECK(!parse_status("Tgid:\t7\nThreads:\t12", s));
  CHECK_EQ(s.has, uint32_t{StatusFields::kTgid});
  CHECK_EQ(s.threads, 0);
  CHECK(!parse_status("Tgid:\t7\nName:\tx", s));
  CHECK(s.has & StatusFields::kTgid);
  const std::string nul_key("Thr\0ads:\t3\nTgid:\t7\n", 19);
  REQUIRE(parse_status(nul_key, s));
  CHECK_EQ(s.has, uint32_t{StatusFields::kTgid});
  const std::string nul_value("Threads:\t3\0\nTgid:\t7\n", 20);
  CHECK(!parse_status(nul_value, s));
  CHECK_EQ(s.has, uint32_t{StatusFields::kTgid});
}

TEST(status_every_prefix) {
  for (const char* name : {"self.status", "kthreadd.status", "node.status"}) {
    const std::string text = read_fixture(name);
    StatusFields full;
    REQUIRE(parse_status(text, full));
    for (size_t n = 0; n <= text.size(); ++n) {
      const Exact e(std::string_view(text).substr(0, n));
      StatusFields s;
      const bool ok = parse_status(e.view(), s);
      // A cut at a line boundary looks like a shorter, complete file; anywhere else it is refused.
      if (n > 0 && text[n - 1] != '\n') CHECK(!ok);
      // Whatever a prefix reports as present must be exactly what the whole file says.
      CHECK_EQ(s.has & ~full.has, 0u);
      if (s.has & StatusFields::kRssAnon) CHECK_EQ(s.rss_anon, full.rss_anon);
      if (s.has & StatusFields::kVmHWM) CHECK_EQ(s.vm_hwm, full.vm_hwm);
      if (s.has & StatusFields::kThreads) CHECK_EQ(s.threads, full.threads);
      if (s.has & StatusFields::kTgid) CHECK_EQ(s.tgid, full.tgid);
      if (s.has & StatusFields::kUid) CHECK_EQ(s.uid[3], full.uid[3]);
    }
  }
}

// ===== io =============================================================================================

TEST(io_real_captures) {
  for (const char* name : {"self.io", "node.io"}) {
    const std::string text = read_fixture(name);
    const auto ref = ref_keys(text);
    IoFields io;
    const Exact e(text);
    REQUIRE(parse_io(e.view(), io));
    CHECK_EQ(io.rchar, u(ref.at("rchar")));
    CHECK_EQ(io.wchar, u(ref.at("wchar")));
    CHECK_EQ(io.syscr, u(ref.at("syscr")));
    CHECK_EQ(io.syscw, u(ref.at("syscw")));
    CHECK_EQ(io.read_bytes, u(ref.at("read_bytes")));
    CHECK_EQ(io.write_bytes, u(ref.at("write_bytes")));
    CHECK_EQ(io.cancelled_write_bytes, u(ref.at("cancelled_write_bytes")));
  }
}

TEST(io_live_counts_our_writes) {
  IoFields before, after;
  REQUIRE(parse_io(read_proc("/proc/self/io"), before));
  const int fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  char buf[1000] = {};
  size_t written = 0;
  for (int k = 0; k < 7; ++k) written += static_cast<size_t>(::write(fd, buf, sizeof buf));
  ::close(fd);
  REQUIRE(parse_io(read_proc("/proc/self/io"), after));
  CHECK_EQ(written, 7000u);
  CHECK_EQ(after.wchar - before.wchar, uint64_t{written});
  CHECK_EQ(after.syscw - before.syscw, 7u);
  CHECK(after.rchar > before.rchar);  // reading /proc/self/io is itself a read
}

TEST(io_hostile) {
  const std::string good = read_fixture("self.io");
  IoFields io;
  // Every key is required: there is no per-key availability in IoFields.
  std::istringstream in(good);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 7);
  for (size_t drop = 0; drop < lines.size(); ++drop) {
    std::string t;
    for (size_t k = 0; k < lines.size(); ++k)
      if (k != drop) t += lines[k] + "\n";
    const Exact e(t);
    CHECK(!parse_io(e.view(), io));
  }
  CHECK(!parse_io("", io));
  CHECK(!parse_io(good.substr(0, good.size() - 1), io));  // no trailing newline: the last value may be cut
  CHECK(!parse_io("rchar: -1\n" + good, io));
  CHECK(!parse_io("rchar: 18446744073709551616\n" + good, io));
  // Duplicates: the first wins; unknown keys are ignored.
  REQUIRE(parse_io("rchar: 5\nfuture_key: 1\n" + good, io));
  CHECK_EQ(io.rchar, 5u);
  for (size_t n = 0; n < good.size(); ++n) {
    const Exact e(std::string_view(good).substr(0, n));
    CHECK(!parse_io(e.view(), io));
  }
}

// ===== /proc/stat =====================================================================================

TEST(proc_stat_real_capture) {
  const std::string text = read_fixture("proc.stat");
  ProcStat p;
  const Exact e(text);
  REQUIRE(parse_proc_stat(e.view(), p));
  std::istringstream in(text);
  std::string word;
  in >> word;
  REQUIRE(word == "cpu");
  uint64_t v[10];
  for (auto& x : v) in >> x;
  CHECK_EQ(p.cpu.user, v[0]);
  CHECK_EQ(p.cpu.idle, v[3]);
  CHECK_EQ(p.cpu.steal, v[7]);
  CHECK_EQ(p.cpu.guest_nice, v[9]);
  const auto ref = [&text](const std::string& key) {
    const size_t at = text.find("\n" + key + " ");
    return std::stoull(text.substr(at + key.size() + 2));
  };
  CHECK_EQ(p.btime, ref("btime"));
  CHECK_EQ(p.ctxt, ref("ctxt"));
  CHECK_EQ(p.processes, ref("processes"));
  CHECK_EQ(p.procs_running, ref("procs_running"));
  CHECK_EQ(p.procs_blocked, ref("procs_blocked"));
  int cpus = 0;
  for (size_t at = 0; (at = text.find("\ncpu", at)) != std::string::npos; ++at) ++cpus;
  CHECK_EQ(p.cpus, cpus);
}

TEST(proc_stat_live) {
  ProcStat p;
  REQUIRE(parse_proc_stat(read_proc("/proc/stat"), p));
  CHECK_EQ(p.cpus, get_nprocs());  // one cpuN line per online CPU
  CHECK(p.procs_running >= 1);     // this test is running
  struct sysinfo si;
  REQUIRE(sysinfo(&si) == 0);
  const int64_t boot = static_cast<int64_t>(time(nullptr)) - si.uptime;
  CHECK(static_cast<int64_t>(p.btime) - boot <= 2 && boot - static_cast<int64_t>(p.btime) <= 2);
  CHECK(p.cpu.total() >= p.cpu.idle_all());
  // A fork bumps the "processes" counter.
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  ProcStat q;
  REQUIRE(parse_proc_stat(read_proc("/proc/stat"), q));
  CHECK(q.processes > p.processes);
}

TEST(proc_stat_hostile) {
  const std::string good = read_fixture("proc.stat");
  ProcStat p;
  CHECK(!parse_proc_stat("", p));
  CHECK(!parse_proc_stat(good.substr(0, good.size() - 1), p));
  for (const char* key : {"btime ", "ctxt ", "processes ", "procs_running ", "procs_blocked "}) {
    std::string t = good;
    const size_t at = t.find(std::string("\n") + key);
    REQUIRE(at != std::string::npos);
    t.erase(at + 1, t.find('\n', at + 1) - at);
    CHECK(!parse_proc_stat(t, p));
  }
  std::string no_cpus;
  std::istringstream lines(good);
  for (std::string line; std::getline(lines, line);)
    if (!(line.size() > 3 && line.compare(0, 3, "cpu") == 0 && line[3] != ' ')) no_cpus += line + "\n";
  CHECK(!parse_proc_stat(no_cpus, p));  // without a cpuN line the CPU count would be an invented 0
  CHECK(!parse_proc_stat("cpu  1 2 3 4\n" + good, p));  // a short cpu line is refused, not zero-filled
  CHECK(!parse_proc_stat("cpu  1 2 3 4 5 6 7 8 9 -1\n" + good, p));
  REQUIRE(parse_proc_stat("cpu  1 2 3 4 5 6 7 8 9 10\n" + good, p));  // first wins
  CHECK_EQ(p.cpu.user, 1u);
  CHECK_EQ(p.cpu.total(), 36u);
  ProcStat full;
  REQUIRE(parse_proc_stat(good, full));
  for (size_t n = 0; n < good.size(); ++n) {
    const Exact e(std::string_view(good).substr(0, n));
    if (!parse_proc_stat(e.view(), p)) continue;
    // Only a cut at a line boundary after the last key we need can pass, and then with the full values.
    CHECK_EQ(good[n - 1], '\n');
    CHECK(n > good.find("procs_blocked"));
    CHECK_EQ(p.processes, full.processes);
    CHECK_EQ(p.cpu.total(), full.cpu.total());
    CHECK_EQ(p.cpus, full.cpus);
  }
}

// ===== meminfo ========================================================================================

TEST(meminfo_real_capture_and_live) {
  const std::string text = read_fixture("meminfo");
  const auto ref = ref_keys(text);
  MemInfo m;
  const Exact e(text);
  REQUIRE(parse_meminfo(e.view(), m));
  CHECK_EQ(m.has, 127u);
  CHECK_EQ(m.total, ref_kb(ref, "MemTotal"));
  CHECK_EQ(m.available, ref_kb(ref, "MemAvailable"));
  CHECK_EQ(m.cached, ref_kb(ref, "Cached"));  // not SwapCached, which comes later with a longer key
  CHECK_EQ(m.swap_free, ref_kb(ref, "SwapFree"));

  REQUIRE(parse_meminfo(read_proc("/proc/meminfo"), m));
  struct sysinfo si;
  REQUIRE(sysinfo(&si) == 0);
  CHECK_EQ(m.total, uint64_t{si.totalram} * si.mem_unit);  // both are totalram_pages
  CHECK_EQ(m.swap_total, uint64_t{si.totalswap} * si.mem_unit);
}

TEST(meminfo_hostile) {
  MemInfo m;
  REQUIRE(parse_meminfo("MemFree:  5 kB\nMemTotal:\t10 kB\nMemTotal: 99 kB\nHugePages_Total: 0\n", m));
  CHECK_EQ(m.has, uint32_t{MemInfo::kTotal | MemInfo::kFree});
  CHECK_EQ(m.total, 10240u);
  CHECK_EQ(m.available, 0u);
  CHECK(!parse_meminfo("MemTotal: 10 kB\nMemFree: -5 kB\n", m));
  CHECK_EQ(m.has, uint32_t{MemInfo::kTotal});
  CHECK(!parse_meminfo("MemTotal: 10 kB\nMemFree: 5", m));
  CHECK_EQ(m.has, uint32_t{MemInfo::kTotal});
  CHECK(!parse_meminfo("", m));
  CHECK(!parse_meminfo("Foo: 1 kB\n", m));
  const std::string good = read_fixture("meminfo");
  MemInfo full;
  REQUIRE(parse_meminfo(good, full));
  for (size_t n = 0; n < good.size(); ++n) {
    const Exact e(std::string_view(good).substr(0, n));
    const bool ok = parse_meminfo(e.view(), m);
    if (n > 0 && good[n - 1] != '\n') CHECK(!ok);
    CHECK_EQ(m.has & ~full.has, 0u);
    if (m.has & MemInfo::kTotal) CHECK_EQ(m.total, full.total);
    if (m.has & MemInfo::kSwapFree) CHECK_EQ(m.swap_free, full.swap_free);
  }
}

// ===== loadavg ========================================================================================

TEST(loadavg_real_capture_and_live) {
  const std::string text = read_fixture("loadavg");
  LoadAvg l;
  const Exact e(text);
  REQUIRE(parse_loadavg(e.view(), l));
  std::istringstream in(text);
  double a = 0, b = 0, c = 0;
  char slash = 0;
  uint64_t running = 0, total = 0;
  int last = 0;
  in >> a >> b >> c >> running >> slash >> total >> last;
  CHECK_EQ(l.load1, a);  // exact: the hand parse must round like strtod
  CHECK_EQ(l.load5, b);
  CHECK_EQ(l.load15, c);
  CHECK_EQ(l.running, running);
  CHECK_EQ(l.total, total);
  CHECK_EQ(l.last_pid, last);

  // The kernel prints avenrun rounded to 1/100; sysinfo gives the same avenrun in 1/65536 units. The
  // average moves every 5 s, so compare only a read bracketed by two equal sysinfo values.
  bool compared = false;
  for (int attempt = 0; attempt < 5 && !compared; ++attempt) {
    struct sysinfo si1, si2;
    REQUIRE(sysinfo(&si1) == 0);
    REQUIRE(parse_loadavg(read_proc("/proc/loadavg"), l));
    REQUIRE(sysinfo(&si2) == 0);
    if (si1.loads[0] != si2.loads[0]) continue;
    compared = true;
    CHECK(std::fabs(l.load1 - static_cast<double>(si1.loads[0]) / 65536.0) < 0.011);
  }
  CHECK(compared);
  CHECK(l.running >= 1);
  // A child forked now is the newest pid in our namespace.
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(parse_loadavg(read_proc("/proc/loadavg"), l));
  CHECK(l.last_pid >= child);
}

TEST(loadavg_fixed_point) {
  LoadAvg l;
  REQUIRE(parse_loadavg("0.52 12.34 1234.56 3/456 789\n", l));
  CHECK_EQ(l.load1, 0.52);
  CHECK_EQ(l.load5, 12.34);
  CHECK_EQ(l.load15, 1234.56);
  CHECK_EQ(l.running, 3u);
  CHECK_EQ(l.total, 456u);
  CHECK_EQ(l.last_pid, 789);
  REQUIRE(parse_loadavg("7 0.1 99.999999 0/0 0\n", l));
  CHECK_EQ(l.load1, 7.0);
  CHECK_EQ(l.load5, 0.1);
  CHECK_EQ(l.load15, 99.999999);
  for (const char* t :
       {"", "0.52 0.58 0.59 1/123 4567", ".52 0.58 0.59 1/123 4567\n", "0. 0.58 0.59 1/123 4567\n",
        "-0.52 0.58 0.59 1/123 4567\n", "0,52 0.58 0.59 1/123 4567\n", "0.52 0.58 0.59 1 123 4567\n",
        "0.52 0.58 0.59 1/123 -4567\n", "0.52 0.58 0.59 1/123 4567 8\n", "1.2345678 0 0 1/1 1\n",
        "99999999999.00 0 0 1/1 1\n", "0.52 0.58 0.59 1/18446744073709551616 1\n",
        "0.52  0.58 0.59 1/123 4567\n"}) {
    const Exact e(t);
    CHECK(!parse_loadavg(e.view(), l));
    CHECK_EQ(l.load1, 0.0);
  }
}
