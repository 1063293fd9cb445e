#include "inspector/listeners.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/error.h"
#include "core/fd.h"

namespace tripdump::inspector {

namespace {

constexpr std::string_view kListen = "0A";  // TCP_LISTEN in the st column

// Next whitespace-separated field of `line` from `pos`; empty at the end.
std::string_view next_field(std::string_view line, size_t& pos) {
  while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) pos++;
  const size_t start = pos;
  while (pos < line.size() && line[pos] != ' ' && line[pos] != '\t') pos++;
  return line.substr(start, pos - start);
}

bool hex32(std::string_view s, uint32_t& out) {
  if (s.size() != 8) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return ec == std::errc() && p == s.data() + s.size();
}

// "0100007F:2411": the address as the kernel prints it (each 32-bit word in host order, %08X), the port
// in hex.
bool parse_endpoint(std::string_view s, bool v6, TcpEndpoint& out) {
  const size_t colon = s.find(':');
  const size_t words = v6 ? 4 : 1;
  if (colon != words * 8 || s.size() - colon - 1 != 4) return false;
  out.v6 = v6;
  for (size_t i = 0; i < words; i++) {
    uint32_t w;
    if (!hex32(s.substr(i * 8, 8), w)) return false;
    std::memcpy(out.addr.data() + i * 4, &w, 4);  // the word's memory layout is network order
  }
  unsigned port = 0;
  auto [p, ec] = std::from_chars(s.data() + colon + 1, s.data() + s.size(), port, 16);
  if (ec != std::errc() || p != s.data() + s.size() || port > 0xffff) return false;
  out.port = static_cast<uint16_t>(port);
  return true;
}

}  // namespace

std::string TcpEndpoint::host() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, addr.data(), buf, sizeof buf);
  return buf;
}

bool TcpEndpoint::wildcard() const {
  const size_t n = v6 ? 16 : 4;
  return std::all_of(addr.begin(), addr.begin() + n, [](uint8_t b) { return b == 0; });
}

std::vector<TcpListener> parse_tcp_listeners(std::string_view text, bool v6) {
  std::vector<TcpListener> out;
  size_t at = text.find('\n');  // the first line is the heading
  while (at != std::string_view::npos && at < text.size()) {
    const size_t start = at + 1;
    const size_t end = std::min(text.find('\n', start), text.size());
    const std::string_view line = text.substr(start, end - start);
    at = end;
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    size_t pos = 0;
    std::string_view f[10];
    for (auto& x : f) x = next_field(line, pos);
    if (f[9].empty() || f[3] != kListen) continue;
    TcpListener l;
    if (!parse_endpoint(f[1], v6, l)) continue;
    auto [p, ec] = std::from_chars(f[9].data(), f[9].data() + f[9].size(), l.inode);
    if (ec != std::errc() || p != f[9].data() + f[9].size() || l.inode == 0) continue;
    out.push_back(l);
  }
  return out;
}

std::string read_text_file(const std::string& path, int pid) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open", path, pid);
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read", path, pid);
    }
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

std::vector<TcpListener> namespace_listeners(int pid) {
  const std::string base = "/proc/" + std::to_string(pid) + "/net/";
  std::vector<TcpListener> out = parse_tcp_listeners(read_text_file(base + "tcp", pid), false);
  try {
    auto v6 = parse_tcp_listeners(read_text_file(base + "tcp6", pid), true);
    out.insert(out.end(), v6.begin(), v6.end());
  } catch (const SysError& e) {
    if (e.err() != ENOENT) throw;  // a kernel without IPv6
  }
  return out;
}

std::vector<uint64_t> socket_inodes(int pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) throw_errno("open", dir, pid);
  DIR* d = ::fdopendir(dfd.get());
  if (!d) throw_errno("fdopendir", dir, pid);
  const int fd = dfd.release();  // owned by d now
  std::vector<uint64_t> out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char link[64];
    const ssize_t n = ::readlinkat(fd, e->d_name, link, sizeof link - 1);
    if (n <= 0) continue;  // closed meanwhile
    link[n] = 0;
    uint64_t inode = 0;
    if (std::strncmp(link, "socket:[", 8) != 0) continue;
    auto [p, ec] = std::from_chars(link + 8, link + n, inode);
    if (ec == std::errc() && *p == ']') out.push_back(inode);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<TcpListener> process_listeners(int pid) {
  const std::vector<uint64_t> mine = socket_inodes(pid);
  std::vector<TcpListener> out;
  for (const auto& l : namespace_listeners(pid))
    if (std::binary_search(mine.begin(), mine.end(), l.inode)) out.push_back(l);
  return out;
}

TcpEndpoint connect_address(const TcpEndpoint& listener) {
  TcpEndpoint to = listener;
  if (!listener.wildcard()) return to;
  to.addr.fill(0);
  if (to.v6)
    to.addr[15] = 1;  // ::1
  else
    to.addr = {127, 0, 0, 1};
  return to;
}

}  // namespace tripdump::inspector
