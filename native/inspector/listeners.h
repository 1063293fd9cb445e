// The listening TCP sockets of a process, as the kernel reports them: the socket inodes among its fds
// (/proc/PID/fd links "socket:[N]") matched to the LISTEN entries of its network namespace's tables
// (/proc/PID/net/tcp and tcp6 show the namespace of PID, not ours). This is how the port a Node
// target's inspector really listens on is found, never by guessing 9229.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tripdump::inspector {

struct TcpEndpoint {
  bool v6 = false;
  std::array<uint8_t, 16> addr{};  // network byte order; the first 4 bytes for IPv4
  uint16_t port = 0;
  // Numeric text: "127.0.0.1", "::1".
  std::string host() const;
  bool wildcard() const;
};

struct TcpListener : TcpEndpoint {
  uint64_t inode = 0;
};

// The LISTEN entries of /proc/net/tcp (v6 false) or /proc/net/tcp6 text. Hostile input is fine: lines
// that do not parse are skipped, nothing is read out of bounds.
std::vector<TcpListener> parse_tcp_listeners(std::string_view text, bool v6);

// Every listening TCP socket in process pid's network namespace, whoever holds it. Throws SysError
// (ENOENT/ESRCH when the process is gone).
std::vector<TcpListener> namespace_listeners(int pid);

// The socket inodes process pid holds. Throws SysError (EACCES without ptrace-read access).
std::vector<uint64_t> socket_inodes(int pid);

// The listening TCP sockets process pid itself holds.
std::vector<TcpListener> process_listeners(int pid);

// Where a client connects to reach a listener: its own address, or loopback for a wildcard bind.
TcpEndpoint connect_address(const TcpEndpoint& listener);

// Reads a whole (/proc) file. Throws SysError carrying pid.
std::string read_text_file(const std::string& path, int pid);

}  // namespace tripdump::inspector
