#include "crash/protocol.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "crash/safe_fs.h"

namespace tripdump::crash {

namespace {

void put(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

void tlv(std::string& out, uint16_t type, const std::string& value) {
  if (value.empty()) return;
  size_t len = value.size() > 4096 ? 4096 : value.size();
  put(out, type, 2);
  put(out, len, 2);
  out.append(value, 0, len);
}

}  // namespace

std::string encode(const Notification& n) {
  std::string body;
  put(body, kProtocolVersion, 2);
  put(body, n.flags, 2);
  for (uint32_t v : {n.pid, n.ns_pid, n.uid, n.gid, n.signal, n.dumpable, kFixedSize}) put(body, v, 4);
  for (uint64_t v : {n.time, n.core_size, n.core_allocated, n.capture_ns}) put(body, v, 8);
  tlv(body, kExeName, n.exe_name);
  tlv(body, kHostname, n.hostname);
  tlv(body, kExePath, n.exe_path);
  tlv(body, kCoreFile, n.core_file);
  tlv(body, kMetadataFile, n.metadata_file);
  tlv(body, kId, n.id);
  tlv(body, kError, n.error);
  std::string out;
  put(out, kCmdCrash, 4);
  put(out, body.size(), 4);
  return out + body;
}

int send_notification(const std::string& path, const std::string& message) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash + 1 == path.size()) return EINVAL;
  std::string dir = slash == 0 ? "/" : path.substr(0, slash), name = path.substr(slash + 1);
  try {
    Fd dirfd = open_private_dir(dir);
    struct stat st;
    // connect() follows a symlink at the last component; refuse anything but a socket there. The folder
    // is private, so nobody can swap the entry between this check and the connect.
    if (::fstatat(dirfd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return errno;
    if (!S_ISSOCK(st.st_mode)) return ENOTSOCK;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    // Through the already-opened folder, so no component of `dir` is looked up again.
    int len =
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", dirfd.get(), name.c_str());
    if (len < 0 || static_cast<size_t>(len) >= sizeof addr.sun_path) return ENAMETOOLONG;
    Fd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!sock) return errno;
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) return errno;
    ssize_t n = ::send(sock.get(), message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno;
    return static_cast<size_t>(n) == message.size() ? 0 : EAGAIN;
  } catch (const SysError& e) {
    return e.err();
  }
}

}  // namespace tripdump::crash
