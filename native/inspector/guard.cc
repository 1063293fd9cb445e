#include "inspector/guard.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstring>
#include <random>
#include <set>

#include "core/error.h"
#include "core/fd.h"
#include "core/parsers.h"
#include "inspector/listeners.h"
#include "inspector/netns.h"

namespace tripdump::inspector {

std::string ws_text_frame(std::string_view payload, const std::array<uint8_t, 4>& mask) {
  std::string f;
  f.push_back(static_cast<char>(0x81));  // FIN, text
  const uint64_t n = payload.size();
  if (n < 126) {
    f.push_back(static_cast<char>(0x80 | n));
  } else if (n <= 0xffff) {
    f.push_back(static_cast<char>(0x80 | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xff));
  } else {
    f.push_back(static_cast<char>(0x80 | 127));
    for (int shift = 56; shift >= 0; shift -= 8) f.push_back(static_cast<char>((n >> shift) & 0xff));
  }
  for (uint8_t m : mask) f.push_back(static_cast<char>(m));
  for (size_t i = 0; i < n; i++) f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return f;
}

std::string ws_close_frame(const std::array<uint8_t, 4>& mask) {
  std::string f;
  f.push_back(static_cast<char>(0x88));  // FIN, close
  f.push_back(static_cast<char>(0x80));  // masked, no body
  for (uint8_t m : mask) f.push_back(static_cast<char>(m));
  return f;
}

std::optional<WsFrame> ws_frame_header(std::string_view b) {
  if (b.size() < 2) return std::nullopt;
  WsFrame f;
  f.opcode = static_cast<uint8_t>(b[0]) & 0x0f;
  const bool masked = static_cast<uint8_t>(b[1]) & 0x80;
  const uint8_t len7 = static_cast<uint8_t>(b[1]) & 0x7f;
  size_t at = 2;
  if (len7 == 126) {
    if (b.size() < 4) return std::nullopt;
    f.length = (static_cast<uint64_t>(static_cast<uint8_t>(b[2])) << 8) | static_cast<uint8_t>(b[3]);
    at = 4;
  } else if (len7 == 127) {
    if (b.size() < 10) return std::nullopt;
    for (size_t i = 2; i < 10; i++) f.length = (f.length << 8) | static_cast<uint8_t>(b[i]);
    at = 10;
  } else {
    f.length = len7;
  }
  f.header = at + (masked ? 4 : 0);
  if (b.size() < f.header) return std::nullopt;
  return f;
}

std::optional<std::string> first_target_id(std::string_view json) {
  for (size_t at = json.find("\"id\""); at != std::string_view::npos; at = json.find("\"id\"", at + 4)) {
    size_t i = at + 4;
    while (i < json.size() && (json[i] == ' ' || json[i] == '\n' || json[i] == '\r' || json[i] == '\t')) i++;
    if (i >= json.size() || json[i] != ':') continue;
    i++;
    while (i < json.size() && (json[i] == ' ' || json[i] == '\n' || json[i] == '\r' || json[i] == '\t')) i++;
    if (i >= json.size() || json[i] != '"') continue;
    const size_t end = json.find('"', i + 1);
    if (end == std::string_view::npos) return std::nullopt;
    const std::string_view id = json.substr(i + 1, end - i - 1);
    // Node's ids are UUIDs; anything that would need escaping in a request line is not one.
    if (id.empty() || id.size() > 128 || !std::all_of(id.begin(), id.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
        }))
      return std::nullopt;
    return std::string(id);
  }
  return std::nullopt;
}

size_t http_head_end(std::string_view buffer) {
  const size_t at = buffer.find("\r\n\r\n");
  return at == std::string_view::npos ? std::string_view::npos : at + 4;
}

int http_status(std::string_view head) {
  if (head.size() < 12 || head.substr(0, 5) != "HTTP/") return -1;
  const size_t sp = head.find(' ');
  if (sp == std::string_view::npos || sp + 4 > head.size()) return -1;
  int code = 0;
  auto [p, ec] = std::from_chars(head.data() + sp + 1, head.data() + sp + 4, code);
  if (ec != std::errc() || p != head.data() + sp + 4) return -1;
  return code;
}

std::optional<size_t> http_content_length(std::string_view head) {
  size_t at = 0;
  while ((at = head.find("\r\n", at)) != std::string_view::npos) {
    at += 2;
    constexpr std::string_view key = "content-length:";
    if (head.size() - at < key.size()) return std::nullopt;
    bool match = true;
    for (size_t i = 0; i < key.size() && match; i++)
      match = std::tolower(static_cast<unsigned char>(head[at + i])) == key[i];
    if (!match) continue;
    size_t i = at + key.size();
    while (i < head.size() && head[i] == ' ') i++;
    size_t n = 0;
    auto [p, ec] = std::from_chars(head.data() + i, head.data() + head.size(), n);
    if (ec != std::errc() || p == head.data() + i) return std::nullopt;
    return n;
  }
  return std::nullopt;
}

namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string host_header(const TcpEndpoint& to) {
  return (to.v6 ? "[" + to.host() + "]" : to.host()) + ":" + std::to_string(to.port);
}

class Guard {
 public:
  Guard(int control, const GuardOptions& o) : control_(control), o_(o) {}

  void run() {
    say("guard " + std::to_string(::getpid()));
    if (!attach()) return;
    std::set<uint64_t> known;
    for (const auto& l : namespace_listeners(o_.pid)) known.insert(l.inode);
    if (!signal_target()) return;
    std::optional<TcpListener> found;
    const auto deadline = Clock::now() + std::chrono::milliseconds(o_.open_timeout_ms);
    while (!(found = find_new(known))) {
      if (Clock::now() >= deadline) break;
      if (wait(-1, 5) < 0) return;
    }
    if (!found) {
      say("none");
      // Late start: whatever opens now is closed at once; tripdump has reported a failure.
      const auto late = Clock::now() + std::chrono::milliseconds(o_.late_watch_ms);
      while (!(found = find_new(known))) {
        if (Clock::now() >= late) return;
        if (wait(-1, 250) < 0) return;
      }
      take_over_ = true;
    }
    const TcpEndpoint to = connect_address(*found);
    const std::optional<std::string> id = target_id(to);
    if (!id) return;
    Fd raw = connect_tcp(o_.pid, to, 2000);
    if (!take_over_) {
      say("open " + to.host() + " " + std::to_string(to.port) + " " + *id);
      // Until the inspector closes (tripdump's session closed it: done) or tripdump is gone.
      while (!take_over_) {
        const int r = wait(raw.get(), -1);
        if (r < 0) return;                            // the target exited, or "stop"
        if (r > 0 && !drain_some(raw.get())) return;  // closed
      }
    }
    close_inspector(raw.get(), to, *id);
  }

 private:
  // Pins the target with a pidfd and checks it is still the process tripdump meant.
  bool attach() {
#ifdef SYS_pidfd_open
    pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, o_.pid, 0)));
#endif
    StatFields st;
    const std::string stat = read_text_file("/proc/" + std::to_string(o_.pid) + "/stat", o_.pid);
    if (!parse_stat(stat, st) || st.starttime != o_.start_ticks) {
      say("error " + std::to_string(ESRCH) + " kill");
      return false;
    }
    return true;
  }

  bool signal_target() {
    int r = -1;
#ifdef SYS_pidfd_send_signal
    if (pidfd_) r = static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGUSR1, nullptr, 0));
#endif
    if (r < 0 && (!pidfd_ || errno == ENOSYS)) r = ::kill(o_.pid, SIGUSR1);
    if (r < 0) {
      say("error " + std::to_string(errno) + " kill");
      return false;
    }
    return true;
  }

  bool target_alive() {
    if (pidfd_) {
      pollfd p{pidfd_.get(), POLLIN, 0};
      return ::poll(&p, 1, 0) == 0;
    }
    return ::kill(o_.pid, 0) == 0;
  }

  // A listener the target opened since `known` was taken; other processes' new listeners join `known`.
  std::optional<TcpListener> find_new(std::set<uint64_t>& known) {
    std::vector<TcpListener> fresh;
    try {
      for (const auto& l : namespace_listeners(o_.pid))
        if (!known.count(l.inode)) fresh.push_back(l);
      if (fresh.empty()) return std::nullopt;
      const std::vector<uint64_t> mine = socket_inodes(o_.pid);
      for (const auto& l : fresh) {
        if (std::binary_search(mine.begin(), mine.end(), l.inode)) return l;
        known.insert(l.inode);
      }
    } catch (const SysError&) {
      // The target is exiting; wait() sees it.
    }
    return std::nullopt;
  }

  // Waits up to timeout_ms for `fd` (when >= 0) to be readable, handling the control socket and the
  // target's exit meanwhile. Returns 1 when fd is readable, 0 on timeout, -1 when the guard should end
  // (the target exited, or tripdump said "stop"). "close" or EOF on control sets take_over_ and returns 0.
  int wait(int fd, int timeout_ms) {
    pollfd p[3];
    nfds_t n = 0;
    const int ci = owner_gone_ ? -1 : static_cast<int>(n);
    if (ci >= 0) p[n++] = {control_, POLLIN, 0};
    const int pi = pidfd_ ? static_cast<int>(n) : -1;
    if (pi >= 0) p[n++] = {pidfd_.get(), POLLIN, 0};
    const int fi = fd >= 0 ? static_cast<int>(n) : -1;
    if (fi >= 0) p[n++] = {fd, POLLIN, 0};
    // Without a pidfd (kernels before 5.3) the target's exit is checked every second.
    const int t = pidfd_ ? timeout_ms : (timeout_ms < 0 || timeout_ms > 1000 ? 1000 : timeout_ms);
    int r = ::poll(p, n, t);
    if (r < 0) return errno == EINTR ? 0 : -1;
    if (pi >= 0 ? (p[pi].revents != 0) : !target_alive()) return -1;
    if (ci >= 0 && p[ci].revents) {
      char buf[256];
      const ssize_t got = ::recv(control_, buf, sizeof buf, MSG_DONTWAIT);
      if (got <= 0) {
        if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
          owner_gone_ = true;
          take_over_ = true;
        }
      } else {
        orders_.append(buf, static_cast<size_t>(got));
        for (size_t nl; (nl = orders_.find('\n')) != std::string::npos; orders_.erase(0, nl + 1)) {
          const std::string line = orders_.substr(0, nl);
          if (line == "stop") return -1;
          if (line == "close") take_over_ = true;
        }
      }
      if (take_over_) return 0;
    }
    return fi >= 0 && p[fi].revents ? 1 : 0;
  }

  // Reads and drops what the peer sent; false at EOF or on an error (the connection is over).
  static bool drain_some(int fd) {
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) return true;
    return n < 0 && (errno == EAGAIN || errno == EINTR);
  }

  // Reads an HTTP head (and, with want_body, the body its Content-Length announces) from fd.
  std::optional<std::pair<std::string, std::string>> read_response(int fd, bool want_body, int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    std::string buf;
    size_t head_end = std::string::npos;
    for (;;) {
      if (head_end == std::string::npos) head_end = http_head_end(buf);
      if (head_end != std::string::npos) {
        if (!want_body) return std::pair{buf.substr(0, head_end), std::string()};
        const auto len = http_content_length(std::string_view(buf).substr(0, head_end));
        if (!len || *len > (1u << 20)) return std::nullopt;
        if (buf.size() - head_end >= *len)
          return std::pair{buf.substr(0, head_end), buf.substr(head_end, *len)};
      }
      if (buf.size() > (2u << 20)) return std::nullopt;
      const int r = wait(fd, ms_left(deadline));
      if (r < 0 || (r == 0 && Clock::now() >= deadline)) return std::nullopt;
      if (r == 0) continue;
      char chunk[16384];
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
      if (n == 0) return std::nullopt;
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return std::nullopt;
      }
      buf.append(chunk, static_cast<size_t>(n));
    }
  }

  // The session id the inspector serves (GET /json/list), retried while the server starts up.
  std::optional<std::string> target_id(const TcpEndpoint& to) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(o_.open_timeout_ms);
    do {
      try {
        Fd fd = connect_tcp(o_.pid, to, 2000);
        if (send_all(fd.get(), "GET /json/list HTTP/1.1\r\nHost: " + host_header(to) + "\r\n\r\n"))
          if (auto r = read_response(fd.get(), true, 2000); r && http_status(r->first) == 200)
            if (auto id = first_target_id(r->second)) return id;
      } catch (const SysError&) {
        // not serving yet, or gone: retried until the deadline
      }
      if (!target_alive()) return std::nullopt;
      ::usleep(50000);
    } while (Clock::now() < deadline);
    say("error " + std::to_string(EPROTO) + " inspector");
    return std::nullopt;
  }

  void close_inspector(int fd, const TcpEndpoint& to, const std::string& id) {
    std::array<uint8_t, 4> mask;
    std::random_device rd;
    for (auto& m : mask) m = static_cast<uint8_t>(rd());
    const std::string upgrade =
        "GET /" + id + " HTTP/1.1\r\nHost: " + host_header(to) +
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dHJpcGR1bXAtZ3VhcmQtMQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (!send_all(fd, upgrade)) return;
    // As long as it takes: the target runs the close when its JavaScript next gets control.
    const auto head = read_response(fd, false, 24 * 3600 * 1000);
    if (!head || http_status(head->first) != 101) return;
    if (!send_all(fd, ws_text_frame(o_.probe_message, mask))) return;
    // Frames: the probe's answer (then the close is sent), then the inspector's close frame, which is
    // answered; then until it drops the connection.
    constexpr uint64_t kMaxKept = 1u << 20;  // larger frames are skipped unread
    std::string buf;
    uint64_t skip = 0;  // payload bytes of a skipped frame still to drop
    bool closing = false, answered = false;
    for (;;) {
      const int r = wait(fd, -1);
      if (r < 0) return;
      if (r == 0) continue;
      char chunk[65536];
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
      if (n == 0) return;
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return;
      }
      if (answered) continue;
      std::string_view in(chunk, static_cast<size_t>(n));
      const size_t dropped = static_cast<size_t>(std::min<uint64_t>(skip, in.size()));
      skip -= dropped;
      buf.append(in.substr(dropped));
      while (skip == 0 && !answered) {
        const auto f = ws_frame_header(buf);
        if (!f) break;
        if (f->length > kMaxKept) {
          const uint64_t have = buf.size() - f->header;
          skip = f->length - std::min(have, f->length);
          buf.clear();
          continue;
        }
        if (buf.size() < f->header + f->length) break;
        const std::string_view payload =
            std::string_view(buf).substr(f->header, static_cast<size_t>(f->length));
        if (f->opcode == 0x8) {
          send_all(fd, ws_close_frame(mask));
          ::shutdown(fd, SHUT_WR);
          answered = true;
        } else if (f->opcode == 0x1 && !closing && payload.starts_with("{\"id\":1,")) {
          closing = true;
          if (!send_all(fd, ws_text_frame(o_.close_message, mask))) return;
        }
        buf.erase(0, f->header + static_cast<size_t>(f->length));
      }
    }
  }

  void say(const std::string& line) {
    if (!owner_gone_) send_all(control_, line + "\n");  // nobody to tell once tripdump is gone
  }

  int control_;
  const GuardOptions& o_;
  Fd pidfd_;
  bool owner_gone_ = false;
  bool take_over_ = false;
  std::string orders_;
};

}  // namespace

void run_guard(int control, const GuardOptions& options) {
  // Whatever tripdump's process group or service manager sends to stop it must not stop the guard before
  // the inspector is closed (SIGKILL still does, as it must).
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  ::prctl(PR_SET_NAME, "tripdump-guard");
  Guard g(control, options);
  try {
    g.run();
  } catch (const SysError& e) {
    const std::string line = "error " + std::to_string(e.err()) + " " + e.syscall() + "\n";
    send_all(control, line);
  }
}

}  // namespace tripdump::inspector
