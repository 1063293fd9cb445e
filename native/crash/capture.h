// One crash, from the bytes of its core to the notification: shared by the pipe helper (stdin from the
// kernel) and the socket-mode server (a connection from the kernel).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "crash/config.h"
#include "crash/protocol.h"

namespace tripdump::crash {

// What core_pattern's specifiers said; every string here is untrusted.
struct CrashFields {
  uint32_t pid = 0;     // %P, in the initial pid namespace
  uint32_t ns_pid = 0;  // %p, as the process saw it
  uint32_t uid = 0, gid = 0, signal = 0, dumpable = 0;
  uint64_t time = 0;     // %t
  std::string rlimit;    // %c
  std::string hostname;  // %h
  std::string comm;      // %e: the process can set it (prctl), so never a path
  int pidfd = -1;        // %F, or SO_PEERPIDFD in socket mode
  bool socket_mode = false;
};

uint64_t now_ns();

// Reads the core from `in` until EOF and stores it (with the metadata JSON, limits enforced) where `cfg`
// says; returns the notification to send. Never throws: what failed is in `error` and the flags, and
// the input is always drained so the kernel is never left blocked on it.
Notification capture(int in, const CrashFields& f, const Config& cfg, uint64_t start_ns);

// File name part from %e: [A-Za-z0-9] kept, everything else '_', at most 32 bytes, never empty.
std::string safe_name(const std::string& comm);

}  // namespace tripdump::crash
