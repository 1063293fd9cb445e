#include "inspector/netns.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstring>
#include <exception>
#include <thread>

#include "core/error.h"

namespace tripdump::inspector {

namespace {

std::string ns_path(int pid) {
  return "/proc/" + std::to_string(pid) + "/ns/net";
}

// socket() + connect() in the calling thread's namespace.
Fd connect_here(const TcpEndpoint& to, int timeout_ms, int pid) {
  sockaddr_storage ss{};
  socklen_t len;
  if (to.v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(to.port);
    std::memcpy(&a->sin6_addr, to.addr.data(), 16);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(to.port);
    std::memcpy(&a->sin_addr, to.addr.data(), 4);
    len = sizeof *a;
  }
  const std::string where = to.host() + ":" + std::to_string(to.port);
  Fd fd(::socket(to.v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) throw_errno("socket", where, pid);
  // Non-blocking so that a listener whose backlog is full (SYNs dropped, retried for minutes) times out.
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    if (errno != EINPROGRESS) throw_errno("connect", where, pid);
    pollfd p{fd.get(), POLLOUT, 0};
    int r;
    while ((r = ::poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (r < 0) throw_errno("poll", where, pid);
    if (r == 0) throw SysError(ETIMEDOUT, "connect", where, pid);
    int err = 0;
    socklen_t elen = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen) < 0) throw_errno("getsockopt", where, pid);
    if (err) throw SysError(err, "connect", where, pid);
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) < 0) throw_errno("fcntl", where, pid);
  return fd;
}

}  // namespace

bool other_netns(int pid) {
  struct stat theirs, ours;
  if (::stat(ns_path(pid).c_str(), &theirs) < 0) throw_errno("stat", ns_path(pid), pid);
  if (::stat("/proc/self/ns/net", &ours) < 0) throw_errno("stat", "/proc/self/ns/net");
  return theirs.st_ino != ours.st_ino || theirs.st_dev != ours.st_dev;
}

Fd connect_tcp(int pid, const TcpEndpoint& to, int timeout_ms) {
  // The namespace is opened first and compared by inode: the fd pins it even if the process exits.
  Fd ns(::open(ns_path(pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) throw_errno("open", ns_path(pid), pid);
  struct stat theirs, ours;
  if (::fstat(ns.get(), &theirs) < 0) throw_errno("fstat", ns_path(pid), pid);
  if (::stat("/proc/self/ns/net", &ours) < 0) throw_errno("stat", "/proc/self/ns/net");
  if (theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev) return connect_here(to, timeout_ms, pid);
  Fd out;
  std::exception_ptr failure;
  std::thread t([&] {
    try {
      if (::setns(ns.get(), CLONE_NEWNET) < 0) throw_errno("setns", ns_path(pid), pid);
      out = connect_here(to, timeout_ms, pid);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  t.join();
  if (failure) std::rethrow_exception(failure);
  return out;
}

}  // namespace tripdump::inspector
