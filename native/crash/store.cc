#include "crash/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <vector>

#include "core/fd.h"

namespace tripdump::crash {

namespace {

struct Capture {
  uint64_t bytes = 0;
  int64_t mtime_ns = INT64_MAX;
  std::vector<std::string> files;
};

std::map<std::string, Capture> scan(int dirfd) {
  std::map<std::string, Capture> out;
  int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return out;
  DIR* d = ::fdopendir(dup);
  if (!d) {
    ::close(dup);
    return out;
  }
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name, id;
    if (!is_capture_name(name, &id)) continue;
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) continue;
    Capture& c = out[id];
    c.bytes += static_cast<uint64_t>(st.st_blocks) * 512;
    c.mtime_ns = std::min<int64_t>(c.mtime_ns, st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
    c.files.push_back(name);
  }
  ::closedir(d);
  return out;
}

}  // namespace

bool is_capture_name(const std::string& name, std::string* id) {
  std::string base;
  if (name.size() > 5 && name.ends_with(".core"))
    base = name.substr(0, name.size() - 5);
  else if (name.size() > 5 && name.ends_with(".json"))
    base = name.substr(0, name.size() - 5);
  else
    return false;
  // <name>_<pid>_<time>[-n]: name is [A-Za-z0-9_]+ by construction.
  std::string core = base;
  size_t dash = core.rfind('-');
  if (dash != std::string::npos) {
    if (dash + 1 == core.size() || core.find_first_not_of("0123456789", dash + 1) != std::string::npos)
      return false;
    core.resize(dash);
  }
  if (core.empty() ||
      core.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
          std::string::npos)
    return false;
  size_t u2 = core.rfind('_');
  if (u2 == std::string::npos || u2 == 0) return false;
  size_t u1 = core.rfind('_', u2 - 1);
  if (u1 == std::string::npos || u1 == 0) return false;
  auto digits = [&](size_t a, size_t b) { return b > a && core.find_first_not_of("0123456789", a) >= b; };
  if (!digits(u1 + 1, u2) || !digits(u2 + 1, core.size())) return false;
  if (id) *id = base;
  return true;
}

Usage usage(int dirfd, const Config& cfg, const std::string& keep) {
  Usage u;
  for (auto& [id, c] : scan(dirfd)) {
    u.used += c.bytes;
    if (id != keep) u.removable += c.bytes;
  }
  struct statvfs vfs;
  if (::fstatvfs(dirfd, &vfs) == 0) {
    u.avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    uint64_t pct = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize / 100 * cfg.keep_free_percent;
    u.keep_free = std::max<uint64_t>(cfg.keep_free, pct);
  }
  return u;
}

int enforce_limits(int dirfd, const Config& cfg, const std::string& keep) {
  auto captures = scan(dirfd);
  std::vector<std::pair<int64_t, std::string>> order;
  uint64_t used = 0;
  for (auto& [id, c] : captures) {
    used += c.bytes;
    if (id != keep) order.emplace_back(c.mtime_ns, id);
  }
  std::sort(order.begin(), order.end());
  Usage u = usage(dirfd, cfg, keep);
  uint64_t avail = u.avail;
  int removed = 0;
  for (auto& [mtime, id] : order) {
    bool over_use = cfg.max_use && used > cfg.max_use;
    bool too_full = u.keep_free && avail < u.keep_free;
    if (!over_use && !too_full) break;
    Capture& c = captures[id];
    for (auto& f : c.files) ::unlinkat(dirfd, f.c_str(), 0);
    used -= std::min(used, c.bytes);
    avail += c.bytes;
    removed++;
  }
  return removed;
}

}  // namespace tripdump::crash
