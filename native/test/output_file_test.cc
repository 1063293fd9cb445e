// The path rules of OutputFile (native/dump/output_file.h), which every core tripdump writes follows: what
// an empty or '/'-terminated path means, what overwrite may replace, how long a name may be, and that a
// refused path leaves nothing behind.
#include "dump/output_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "test/harness.h"
#include "test/tmp_dir.h"

namespace tripdump::dump {
namespace {

using Dir = test::TmpDir;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// Writes "core" through OutputFile and commits it; returns the error, or errno 0.
SysError write_file(const std::string& path, bool overwrite) {
  try {
    OutputFile f(path, overwrite, 0);
    f.write_at("core", 4, 0);
    f.commit();
  } catch (const SysError& e) {
    return e;
  }
  return SysError(0, "none");
}

}  // namespace

TEST(output_file_empty_and_trailing_slash_name_no_file) {
  Dir d;
  CHECK_EQ(write_file("", false).err(), EINVAL);
  CHECK_EQ(write_file(d.path + "/", false).err(), EISDIR);
  CHECK_EQ(write_file(d.path + "/nosuch/", false).err(), EISDIR);
  CHECK_EQ(write_file(d.path + "/nosuch/", true).err(), EISDIR);
  spit(d.path + "/afile", "keep");
  CHECK_EQ(write_file(d.path + "/afile/", true).err(), EISDIR);
  // A regular file used as a folder: ENOTDIR, and the file is untouched.
  CHECK_EQ(write_file(d.path + "/afile/core", true).err(), ENOTDIR);
  CHECK_EQ(slurp(d.path + "/afile"), std::string("keep"));
  CHECK(d.entries() == std::vector<std::string>{"afile"});
}

TEST(output_file_overwrite_replaces_only_a_regular_file) {
  Dir d;
  const std::string file = d.path + "/core", link = d.path + "/link", victim = d.path + "/victim";
  spit(file, "old");
  CHECK_EQ(write_file(file, false).err(), EEXIST);
  CHECK_EQ(slurp(file), std::string("old"));
  CHECK_EQ(write_file(file, true).err(), 0);
  CHECK_EQ(slurp(file), std::string("core"));
  struct stat st;
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK_EQ(st.st_mode & 07777, 0600u);

  // A symlink is never replaced, dangling or not, and its target is never written.
  REQUIRE(::symlink(victim.c_str(), link.c_str()) == 0);
  CHECK_EQ(write_file(link, false).err(), EEXIST);
  CHECK_EQ(write_file(link, true).err(), ELOOP);
  spit(victim, "precious");
  CHECK_EQ(write_file(link, true).err(), ELOOP);
  REQUIRE(::lstat(link.c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  CHECK_EQ(slurp(victim), std::string("precious"));

  // Neither a folder nor a FIFO becomes a core.
  REQUIRE(::mkdir((d.path + "/sub").c_str(), 0700) == 0);
  CHECK_EQ(write_file(d.path + "/sub", true).err(), EISDIR);
  REQUIRE(::mkfifo((d.path + "/fifo").c_str(), 0600) == 0);
  const SysError fifo = write_file(d.path + "/fifo", true);
  CHECK_EQ(fifo.err(), EEXIST);
  CHECK_EQ(fifo.path(), d.path + "/fifo");
  REQUIRE(::lstat((d.path + "/fifo").c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
  // Nothing was left behind by any refusal: no temporary file, no stray name.
  CHECK(d.entries() == (std::vector<std::string>{"core", "fifo", "link", "sub", "victim"}));
}

TEST(output_file_errors_name_the_folder) {
  Dir d;
  const SysError missing = write_file(d.path + "/missing/core", false);
  CHECK_EQ(missing.err(), ENOENT);
  CHECK_EQ(missing.path(), d.path + "/missing");
  // An unwritable folder: as root, checked in a child that gives up root first.
  REQUIRE(::chmod(d.path.c_str(), 0755) == 0);
  REQUIRE(::mkdir((d.path + "/ro").c_str(), 0555) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(3);
    const SysError denied = write_file(d.path + "/ro/core", false);
    ::_exit(denied.err() == EACCES && denied.path() == d.path + "/ro" ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
  CHECK(d.entries() == (std::vector<std::string>{"ro"}));
}

TEST(output_file_names_up_to_name_max) {
  Dir d;
  // The temporary name is not derived from the final one, so a final name of NAME_MAX bytes works with
  // overwrite too (which goes through a named temporary file).
  const std::string longest = d.path + "/" + std::string(255, 'x');
  CHECK_EQ(write_file(longest, false).err(), 0);
  CHECK_EQ(write_file(longest, true).err(), 0);
  CHECK_EQ(slurp(longest), std::string("core"));
  CHECK_EQ(write_file(d.path + "/" + std::string(256, 'x'), false).err(), ENAMETOOLONG);
  CHECK(d.entries() == std::vector<std::string>{std::string(255, 'x')});
}

}  // namespace tripdump::dump
