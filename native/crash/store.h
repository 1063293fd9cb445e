// The capture folder: <id>.core + <id>.json pairs. Limits are enforced by removing the oldest captures.
#pragma once

#include <cstdint>
#include <string>

#include "crash/config.h"

namespace tripdump::crash {

struct Usage {
  uint64_t used = 0;       // bytes allocated by tripdump's captures (st_blocks, so holes are free)
  uint64_t removable = 0;  // of which bytes belong to captures other than `keep`
  uint64_t avail = 0;      // free bytes for unprivileged users (f_bavail)
  uint64_t keep_free = 0;  // bytes that must stay free (keep_free, keep_free_percent: the larger)
};

// True for names this handler creates: <name>_<pid>_<time>[-n].core|.json. Only those are ever removed.
bool is_capture_name(const std::string& name, std::string* id = nullptr);

Usage usage(int dirfd, const Config& cfg, const std::string& keep);

// Removes whole captures, oldest first (by the capture's own mtime), never `keep`, until the folder uses
// at most max_use and keep_free bytes stay free. Returns how many were removed.
int enforce_limits(int dirfd, const Config& cfg, const std::string& keep);

}  // namespace tripdump::crash
