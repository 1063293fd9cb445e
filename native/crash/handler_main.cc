// tripdump-crash-handler: what the kernel runs for every core dump (core_pattern pipe mode), and, as
// `tripdump-crash-handler serve`, the listener of core_pattern's socket mode (@/path, Linux 6.16+).
//
//   |HANDLER [-c CONFIG] %P %p %u %g %s %t %c %h %e %d %F
//   HANDLER serve [-c CONFIG] --listen PATH
//
// Small and native on purpose: the crashing process stays blocked in the kernel until its core has been
// drained, so nothing slow (an interpreter starting) may come before that. The kernel starts a pipe
// helper with RLIMIT_CORE = 1, which makes a crash of the helper itself skip its dump instead of
// recursing; this program never raises that limit and never execs anything.
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fd.h"
#include "crash/capture.h"
#include "crash/config.h"
#include "crash/protocol.h"

using namespace tripdump;
using namespace tripdump::crash;

namespace {

bool g_stderr_open = false;

// Untrusted bytes (comm, hostname) never reach a log verbatim.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return out;
}

void log_line(const std::string& msg) {
  std::string line = "tripdump-crash-handler[" + std::to_string(::getpid()) + "]: " + printable(msg) + "\n";
  if (g_stderr_open) {
    if (::write(2, line.data(), line.size()) < 0) {
    }
    return;
  }
  // Run by the kernel there is no stderr; the kernel log is where core_pattern helpers report.
  int fd = ::open("/dev/kmsg", O_WRONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return;
  line = "<4>" + line;
  if (::write(fd, line.data(), line.size()) < 0) {
  }
  ::close(fd);
}

// The kernel starts the helper with only stdin open. Files opened later must not land on fd 1 or 2.
void ensure_std_fds() {
  g_stderr_open = ::fcntl(2, F_GETFD) >= 0;
  for (int fd = 0; fd < 3; fd++)
    if (::fcntl(fd, F_GETFD) < 0) {
      int n = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      if (n >= 0 && n != fd) {
        ::dup2(n, fd);
        ::close(n);
      }
    }
}

bool parse_u32(const char* s, uint32_t& out) {
  if (!s || !*s) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(s, &end, 10);
  if (errno || *end || v > UINT32_MAX) return false;
  out = static_cast<uint32_t>(v);
  return true;
}

Config config_or_default(const std::string& path) {
  try {
    return load_config(path);
  } catch (const SysError& e) {
    log_line(std::string("config: ") + e.what() + (e.detail().empty() ? "" : "") + "; using defaults");
    return Config{};
  }
}

void discard(int in) {
  char buf[65536];
  for (;;) {
    ::alarm(30);
    ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
  }
  ::alarm(0);
}

void notify(const Config& cfg, const Notification& n) {
  if (cfg.socket.empty()) return;
  int err = send_notification(cfg.socket, encode(n));
  // No daemon listening is normal (the core is kept anyway); anything else is worth a log line.
  if (err && err != ENOENT && err != ECONNREFUSED)
    log_line("notify " + cfg.socket + ": " + SysError::errno_text(err));
}

int pipe_mode(int argc, char** argv) {
  uint64_t start = now_ns();
  std::string config_path = kDefaultConfig;
  int i = 1;
  if (i + 1 < argc && std::strcmp(argv[i], "-c") == 0) {
    config_path = argv[i + 1];
    i += 2;
  }
  // %P %p %u %g %s %t %c %h %e %d [%F]
  CrashFields f;
  uint32_t t = 0;
  bool ok = argc - i >= 10;
  if (ok) {
    uint64_t time = 0;
    char* end = nullptr;
    time = std::strtoull(argv[i + 5], &end, 10);
    ok = parse_u32(argv[i], f.pid) && parse_u32(argv[i + 1], f.ns_pid) && parse_u32(argv[i + 2], f.uid) &&
         parse_u32(argv[i + 3], f.gid) && parse_u32(argv[i + 4], f.signal) && *argv[i + 5] && !*end &&
         parse_u32(argv[i + 9], f.dumpable);
    f.time = time;
    f.rlimit = argv[i + 6];
    f.hostname = argv[i + 7];
    f.comm = argv[i + 8];
    if (argc - i >= 11 && parse_u32(argv[i + 10], t)) f.pidfd = static_cast<int>(t);
  }
  if (!ok || f.pid == 0) {
    log_line("bad arguments: expected [-c CONFIG] %P %p %u %g %s %t %c %h %e %d %F; core discarded");
    discard(0);
    return 2;
  }
  // A reader that takes big gulps: fewer wake-ups of the crashing process's writer.
  ::fcntl(0, F_SETPIPE_SZ, 1 << 20);
  Config cfg = config_or_default(config_path);
  Notification n = capture(0, f, cfg, start);
  if (!n.error.empty()) log_line("pid " + std::to_string(f.pid) + " (" + f.comm + "): " + n.error);
  notify(cfg, n);
  return 0;
}

// ---- socket mode --------------------------------------------------------------------------------

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

// include/uapi/linux/pidfd.h (6.16+), spelled out because the build machine's headers may be older.
struct PidfdInfo {
  uint64_t mask, cgroupid;
  uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
  int32_t exit_code;
  uint32_t coredump_mask, spare1;
};
constexpr uint64_t kPidfdInfoCoredump = 1u << 4;
constexpr uint32_t kPidfdCoredumped = 1u << 0;
constexpr unsigned long kPidfdGetInfo = _IOWR(0xFF, 11, PidfdInfo);

// The signal from the first NT_PRSTATUS note (pr_cursig), when the notes start inside `head`.
uint32_t signal_from_core(const std::string& head) {
  auto u16 = [&](size_t o) {
    return o + 2 <= head.size() ? uint32_t(uint8_t(head[o])) | uint32_t(uint8_t(head[o + 1])) << 8 : 0u;
  };
  auto u32 = [&](size_t o) { return o + 4 <= head.size() ? u16(o) | u16(o + 2) << 16 : 0u; };
  auto u64 = [&](size_t o) { return uint64_t(u32(o)) | uint64_t(u32(o + 4)) << 32; };
  if (head.size() < 64 ||
      head.compare(0, 4,
                   "\x7f"
                   "ELF") != 0 ||
      head[4] != 2)
    return 0;
  uint64_t phoff = u64(32);
  uint32_t phentsize = u16(54), phnum = u16(56);
  for (uint32_t k = 0; k < phnum; k++) {
    size_t ph = phoff + k * phentsize;
    if (u32(ph) != 4 /* PT_NOTE */) continue;
    size_t off = u64(ph + 8), end = off + u64(ph + 32);
    while (off + 12 <= end && off + 12 <= head.size()) {
      uint32_t namesz = u32(off), descsz = u32(off + 4), type = u32(off + 8);
      size_t desc = off + 12 + ((namesz + 3) & ~3u);
      if (type == 1 /* NT_PRSTATUS */) return u16(desc + 12);
      off = desc + ((descsz + 3) & ~3u);
    }
    return 0;
  }
  return 0;
}

// One connection from the kernel: its peer is the crashing task (SO_PEERCRED, SO_PEERPIDFD), and the
// pidfd must say the task is dumping core — anyone may connect to the socket, only the kernel's
// connections are stored.
void serve_one(int conn, const Config& cfg) {
  uint64_t start = now_ns();
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return;
  int pidfd = -1;
  len = sizeof pidfd;
  if (::getsockopt(conn, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0) {
    log_line("SO_PEERPIDFD: " + SysError::errno_text(errno) + "; connection dropped");
    return;
  }
  Fd pidfd_owner(pidfd);
  PidfdInfo info{};
  info.mask = kPidfdInfoCoredump;
  if (::ioctl(pidfd, kPidfdGetInfo, &info) < 0 || !(info.mask & kPidfdInfoCoredump) ||
      !(info.coredump_mask & kPidfdCoredumped)) {
    log_line("connection from pid " + std::to_string(cred.pid) + " is not a kernel core dump; dropped");
    return;
  }
  CrashFields f;
  f.socket_mode = true;
  f.pid = static_cast<uint32_t>(cred.pid);
  f.ns_pid = f.pid;
  f.uid = cred.uid;
  f.gid = cred.gid;
  f.pidfd = pidfd;
  f.time = start / 1000000000ULL;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  f.hostname = host;
  std::string comm;
  {
    int fd = ::open(("/proc/" + std::to_string(cred.pid) + "/comm").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char buf[64];
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) comm.assign(buf, static_cast<size_t>(n));
      ::close(fd);
    }
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  }
  f.comm = comm;
  // The signal is not in the connection: peek at the core's first bytes for NT_PRSTATUS.
  std::string head(65536, '\0');
  pollfd p{conn, POLLIN, 0};
  if (::poll(&p, 1, 2000) > 0) {
    ssize_t n = ::recv(conn, head.data(), head.size(), MSG_PEEK | MSG_WAITALL);
    head.resize(n > 0 ? static_cast<size_t>(n) : 0);
    f.signal = signal_from_core(head);
  }
  Notification n = capture(conn, f, cfg, start);
  if (!n.error.empty()) log_line("pid " + std::to_string(f.pid) + ": " + n.error);
  notify(cfg, n);
}

int serve_mode(int argc, char** argv) {
  std::string config_path = kDefaultConfig, listen_path;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "-c") == 0)
      config_path = argv[i + 1];
    else if (std::strcmp(argv[i], "--listen") == 0)
      listen_path = argv[i + 1];
  }
  if (listen_path.empty() || listen_path[0] != '/') {
    std::fprintf(stderr, "usage: tripdump-crash-handler serve [-c CONFIG] --listen /ABS/PATH\n");
    return 2;
  }
  Config cfg = config_or_default(config_path);
  Fd srv(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (listen_path.size() >= sizeof addr.sun_path) return 2;
  std::memcpy(addr.sun_path, listen_path.c_str(), listen_path.size());
  ::unlink(listen_path.c_str());
  // The kernel connects with its own credentials; nobody else needs to reach the socket.
  mode_t old = ::umask(0177);
  int r = ::bind(srv.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (r < 0 || ::listen(srv.get(), 128) < 0) {
    log_line("listen " + listen_path + ": " + SysError::errno_text(errno));
    return 1;
  }
  // The parent (the daemon) reads this line to know the socket is ready for core_pattern.
  std::printf("listening %s\n", listen_path.c_str());
  std::fflush(stdout);
  for (;;) {
    int conn = ::accept4(srv.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      log_line("accept: " + SysError::errno_text(errno));
      return 1;
    }
    Fd owner(conn);
    // One crash at a time: the kernel queues further connections in the backlog, and each crashing
    // process waits only for its own core to be read.
    serve_one(conn, cfg);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::umask(077);
  std::signal(SIGPIPE, SIG_IGN);
  ensure_std_fds();
  if (argc >= 2 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("tripdump-crash-handler 1 (protocol %u)\n", kProtocolVersion);
    return 0;
  }
  if (argc >= 2 && std::strcmp(argv[1], "serve") == 0) return serve_mode(argc, argv);
  return pipe_mode(argc, argv);
}
