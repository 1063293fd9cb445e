// Unit tests of ProcFile's change detection (native/core/proc_file): a regular file stands in for a
// /proc file, since pread at offset 0 reads both the same way, and this test controls every byte of it.
#include "core/proc_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <set>
#include <string>

#include "test/harness.h"

using namespace tripdump;

namespace {

struct TmpFile {
  std::string path;
  TmpFile() {
    char tmpl[] = "/tmp/tripdump-procfile-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = tmpl;
  }
  ~TmpFile() { ::unlink(path.c_str()); }
  // Rewrites the whole file, as the kernel regenerates a /proc file on every read.
  void write(const std::string& text) const {
    const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(fd);
  }
};

// A stat line of the usual size, with counters that tick.
std::string stat_line(int utime, int minflt) {
  return "4242 (worker) S 1 4242 4242 0 -1 4194560 " + std::to_string(minflt) + " 0 0 0 " +
         std::to_string(utime) +
         " 7 0 0 20 0 1 0 123456 10485760 512 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 "
         "0 0 0 0 0 0 0 0\n";
}

}  // namespace

TEST(proc_file_reports_change_only_when_bytes_differ) {
  TmpFile f;
  f.write(stat_line(100, 5000));
  ProcFile pf;
  REQUIRE(pf.open(f.path) == 0);
  REQUIRE(pf.read() == 0);
  CHECK(pf.changed());  // the first read always counts as changed
  CHECK_EQ(std::string(pf.data()), stat_line(100, 5000));
  REQUIRE(pf.read() == 0);
  CHECK(!pf.changed());
  CHECK_EQ(std::string(pf.data()), stat_line(100, 5000));
  f.write(stat_line(101, 5000));  // one digit, same length
  REQUIRE(pf.read() == 0);
  CHECK(pf.changed());
  CHECK_EQ(std::string(pf.data()), stat_line(101, 5000));
  REQUIRE(pf.read() == 0);
  CHECK(!pf.changed());
  f.write(stat_line(1010, 5000));  // longer
  REQUIRE(pf.read() == 0);
  CHECK(pf.changed());
  f.write(stat_line(101, 5000));  // back to an earlier content: still a change from the last read
  REQUIRE(pf.read() == 0);
  CHECK(pf.changed());
  f.write("");  // empty (a kernel thread's io, say) differs from anything else
  REQUIRE(pf.read() == 0);
  CHECK(pf.changed());
  CHECK_EQ(pf.data().size(), size_t{0});
  REQUIRE(pf.read() == 0);
  CHECK(!pf.changed());
}

TEST(proc_file_reads_files_larger_than_its_buffer) {
  TmpFile f;
  std::string big(20000, 'x');
  for (size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>('a' + i % 26);
  f.write(big);
  ProcFile pf;
  REQUIRE(pf.open(f.path) == 0);
  REQUIRE(pf.read() == 0);
  CHECK_EQ(std::string(pf.data()), big);
  big.back() = '!';  // a change in the last byte, past every earlier buffer size
  f.write(big);
  REQUIRE(pf.read() == 0);
  CHECK(pf.changed());
  CHECK_EQ(std::string(pf.data()), big);
}

TEST(digest_tells_every_single_byte_change) {
  // Every step of the digest is a bijection of its state, so no change confined to one 8-byte word can
  // collide: check all 255 other values at every position of a stat-sized line.
  const std::string base = stat_line(100, 5000);
  const uint64_t d0 = digest(base);
  std::string s = base;
  long collisions = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    for (int v = 0; v < 256; ++v) {
      if (static_cast<char>(v) == base[i]) continue;
      s[i] = static_cast<char>(v);
      collisions += digest(s) == d0;
    }
    s[i] = base[i];
  }
  CHECK_EQ(collisions, 0L);
}

TEST(digest_spreads_multi_word_changes) {
  // Changes in several words (counters ticking together) give distinct digests: 200,000 random variants
  // of one line, all different texts, must give 200,000 different digests.
  std::mt19937_64 rng(7);
  std::set<std::string> texts;
  std::set<uint64_t> digests;
  while (texts.size() < 200000) {
    const std::string t = stat_line(static_cast<int>(rng() % 1000000), static_cast<int>(rng() % 1000000));
    if (texts.insert(t).second) digests.insert(digest(t));
  }
  CHECK_EQ(digests.size(), texts.size());
}
