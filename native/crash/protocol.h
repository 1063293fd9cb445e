// The crash notification (docs/crash.md; decoder in src/crash/protocol.ts). All integers little-endian.
//   header  u32 cmd (1 = crash), u32 msg_size (bytes of body that follow)
//   body    fixed part (its own size at offset 28, so later versions can grow it) then TLV strings
//           {u16 type, u16 length, bytes}; unknown types are skipped by readers.
#pragma once

#include <cstdint>
#include <string>

namespace tripdump::crash {

inline constexpr uint32_t kCmdCrash = 1;
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr uint32_t kFixedSize = 64;
inline constexpr uint32_t kMaxBody = 65536;

enum Flags : uint16_t {
  kCoreStored = 1,      // the core file is complete on disk
  kMetadataStored = 2,  // the JSON beside it was written
  kSocketMode = 4,      // received through core_pattern's @socket mode rather than a pipe helper
  kCoreSkipped = 8,     // the core was drained but not kept (limits, refused directory, error)
};

enum Tlv : uint16_t {
  kExeName = 1,   // %e: comm, untrusted bytes
  kHostname = 2,  // %h
  kExePath = 3,   // /proc/PID/exe
  kCoreFile = 4,
  kMetadataFile = 5,
  kId = 6,
  kError = 7,  // why the core was not kept
};

struct Notification {
  uint16_t flags = 0;
  uint32_t pid = 0, ns_pid = 0, uid = 0, gid = 0, signal = 0, dumpable = 0;
  uint64_t time = 0, core_size = 0, core_allocated = 0, capture_ns = 0;
  std::string exe_name, hostname, exe_path, core_file, metadata_file, id, error;
};

std::string encode(const Notification& n);

// Sends one message to the AF_UNIX stream socket at `path` without ever blocking: the socket's folder is
// opened without following symlinks and must be private (root-owned, not group/other-writable); a full
// backlog or buffer drops the message. Returns 0 or an errno.
int send_notification(const std::string& path, const std::string& message);

}  // namespace tripdump::crash
