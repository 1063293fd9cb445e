// Tests of native/inspector: the /proc/net/tcp parser and the guard's protocol pieces against hostile
// input, and the listener scan and connect against real sockets of this process.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <string>

#include "core/error.h"
#include "core/fd.h"
#include "inspector/guard.h"
#include "inspector/json_string.h"
#include "inspector/listeners.h"
#include "inspector/netns.h"
#include "test/harness.h"

namespace tripdump::inspector {
namespace {

constexpr const char* kTcp =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 0100007F:2411 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 812345 1 "
    "0000000000000000 100 0 0 10 0\n"
    "   1: 0100007F:2411 0100007F:A2B4 01 00000000:00000000 00:00000000 00000000     0        0 812399 1\n"
    "   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 99 1\n";

constexpr const char* kTcp6 =
    "  sl  local_address                         remote_address                        st tx_queue rx_queue "
    "tr "
    "tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000000000000000000001000000:2411 00000000000000000000000000000000:0000 0A 00000000:00000000 "
    "00:00000000 00000000     0        0 4242 1\n";

TEST(inspector_parses_listen_entries_of_proc_net_tcp) {
  const auto v4 = parse_tcp_listeners(kTcp, false);
  REQUIRE(v4.size() == 2);
  CHECK_EQ(v4[0].host(), std::string("127.0.0.1"));
  CHECK_EQ(v4[0].port, 9233);
  CHECK_EQ(v4[0].inode, 812345u);
  CHECK(!v4[0].wildcard());
  CHECK(v4[1].wildcard());
  CHECK_EQ(v4[1].port, 8080);
  CHECK_EQ(connect_address(v4[1]).host(), std::string("127.0.0.1"));
  const auto v6 = parse_tcp_listeners(kTcp6, true);
  REQUIRE(v6.size() == 1);
  CHECK_EQ(v6[0].host(), std::string("::1"));
  CHECK_EQ(v6[0].inode, 4242u);
}

TEST(inspector_tcp_parser_survives_hostile_input) {
  CHECK(parse_tcp_listeners("", false).empty());
  CHECK(parse_tcp_listeners("heading only", false).empty());
  CHECK(parse_tcp_listeners("h\n   0: 0100007F:2411 00000000:0000 0A", false).empty());     // truncated
  CHECK(parse_tcp_listeners("h\n   0: 0100007Z:2411 x 0A a b c d e 5\n", false).empty());   // bad hex
  CHECK(parse_tcp_listeners("h\n   0: 0100007F:24119 x 0A a b c d e 5\n", false).empty());  // long port
  CHECK(parse_tcp_listeners("h\n   0: 0100007F:2411 x 0A a b c d e 5x\n", false).empty());  // bad inode
  CHECK(parse_tcp_listeners("h\n   0: 0100007F:2411 x 0A a b c d e 5\n", true).empty());    // v4 as v6
  // Random bytes: no crash, no read out of bounds (ASan watches).
  std::mt19937 rng(7);
  for (int round = 0; round < 2000; round++) {
    std::string s(static_cast<size_t>(rng() % 400), '\0');
    for (auto& c : s) c = "0123456789ABCDEF: \n"[rng() % 19];
    (void)parse_tcp_listeners(s, round % 2 == 1);
  }
}

// Decodes a client frame the way a server does (RFC 6455 5.2).
std::string unmask(const std::string& f) {
  REQUIRE(f.size() >= 6);
  CHECK_EQ(static_cast<uint8_t>(f[0]), 0x81);
  CHECK(static_cast<uint8_t>(f[1]) & 0x80);
  uint64_t n = static_cast<uint8_t>(f[1]) & 0x7f;
  size_t at = 2;
  if (n == 126) {
    n = (static_cast<uint64_t>(static_cast<uint8_t>(f[2])) << 8) | static_cast<uint8_t>(f[3]);
    at = 4;
  } else if (n == 127) {
    n = 0;
    for (int i = 0; i < 8; i++) n = (n << 8) | static_cast<uint8_t>(f[2 + i]);
    at = 10;
  }
  const std::string mask = f.substr(at, 4);
  at += 4;
  CHECK_EQ(f.size() - at, n);
  std::string out;
  for (size_t i = 0; i < n; i++) out.push_back(static_cast<char>(f[at + i] ^ mask[i % 4]));
  return out;
}

TEST(inspector_ws_frame_round_trips_every_length_form) {
  for (size_t n : {0u, 5u, 125u, 126u, 200u, 65535u, 65536u, 70000u}) {
    std::string payload(n, 'x');
    for (size_t i = 0; i < n; i++) payload[i] = static_cast<char>('a' + i % 26);
    const std::string f = ws_text_frame(payload, {0x12, 0x34, 0x56, 0x78});
    CHECK_EQ(f.size(), n + 2 + 4 + (n < 126 ? 0 : n <= 65535 ? 2 : 8));
    CHECK(unmask(f) == payload);
  }
}

TEST(inspector_reads_server_frame_headers) {
  CHECK(!ws_frame_header(""));
  CHECK(!ws_frame_header("\x81"));
  auto f = ws_frame_header(std::string("\x88\x02\x03\xe8", 4));
  REQUIRE(f);
  CHECK_EQ(f->opcode, 8);
  CHECK_EQ(f->header, 2u);
  CHECK_EQ(f->length, 2u);
  f = ws_frame_header(std::string("\x81\x7e\x01\x00", 4));
  REQUIRE(f);
  CHECK_EQ(f->length, 256u);
  CHECK(!ws_frame_header(std::string("\x81\x7f\x00\x00", 4)));  // 64-bit length, incomplete
  f = ws_frame_header(std::string("\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10));
  REQUIRE(f);
  CHECK_EQ(f->length, 65536u);
  CHECK(!ws_frame_header(std::string("\x81\x85\x01\x02", 4)));  // masked: 4 more header bytes
  const std::string close = ws_close_frame({1, 2, 3, 4});
  CHECK_EQ(close, std::string("\x88\x80\x01\x02\x03\x04", 6));
}

TEST(inspector_reads_http_heads_and_json_list_ids) {
  const std::string head =
      "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 651\r\n\r\n[";
  CHECK_EQ(http_head_end(head), head.size() - 1);
  CHECK_EQ(http_head_end("HTTP/1.0 200 OK\r\nContent-Len"), std::string_view::npos);
  CHECK_EQ(http_status(head), 200);
  CHECK_EQ(http_status("HTTP/1.1 101 Switching Protocols\r\n\r\n"), 101);
  CHECK_EQ(http_status("HTTP/1.1 1x1"), -1);
  CHECK_EQ(http_status("garbage"), -1);
  CHECK(http_content_length(head) == std::optional<size_t>(651));
  CHECK(http_content_length("HTTP/1.1 200 OK\r\ncontent-length:  7\r\n\r\n") == std::optional<size_t>(7));
  CHECK(!http_content_length("HTTP/1.1 200 OK\r\n\r\n"));
  CHECK(!http_content_length("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"));
  const std::string list =
      "[ {\n  \"description\": \"node.js instance\",\n  \"id\": \"aa40cc44-6347-4d74\",\n}]";
  CHECK(first_target_id(list) == std::optional<std::string>("aa40cc44-6347-4d74"));
  CHECK(!first_target_id("[]"));
  CHECK(!first_target_id("{\"id\": 5}"));
  CHECK(!first_target_id("{\"id\": \"a b\"}"));  // not an id that fits a request line
  CHECK(!first_target_id("{\"id\": \"unterminated"));
  CHECK(first_target_id("{\"idx\": 1, \"id\":\"ok-1\"}") == std::optional<std::string>("ok-1"));
}

TEST(inspector_finds_this_process_listener_and_connects_to_it) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(s.get(), 4) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
  const uint16_t port = ntohs(a.sin_port);
  bool seen = false;
  TcpListener mine;
  for (const auto& l : process_listeners(::getpid()))
    if (l.port == port) {
      seen = true;
      mine = l;
    }
  REQUIRE(seen);
  CHECK_EQ(mine.host(), std::string("127.0.0.1"));
  CHECK(!other_netns(::getpid()));
  Fd c = connect_tcp(::getpid(), connect_address(mine), 1000);
  CHECK(c);
  Fd accepted(::accept4(s.get(), nullptr, nullptr, SOCK_CLOEXEC));
  CHECK(accepted);
  s.reset();
  bool refused = false;
  try {
    connect_tcp(::getpid(), connect_address(mine), 1000);
  } catch (const SysError& e) {
    refused = e.err() == ECONNREFUSED;
  }
  CHECK(refused);
}

}  // namespace
}  // namespace tripdump::inspector

namespace tripdump::inspector {
namespace {

std::string unescape(std::string_view in, bool* ok = nullptr) {
  std::string out;
  const bool r = json_unescape(in, out);
  if (ok) *ok = r;
  return out;
}

TEST(inspector_json_unescape_decodes_every_escape) {
  CHECK_EQ(unescape(R"({\"snapshot\":{\"meta\"\n[1,2]})"), std::string("{\"snapshot\":{\"meta\"\n[1,2]}"));
  CHECK_EQ(unescape(R"(a\\b\/c\b\f\r\t)"), std::string("a\\b/c\b\f\r\t"));
  CHECK_EQ(unescape(R"(\u00e9\u20ac\ud83d\ude00)"), std::string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
  CHECK_EQ(unescape(R"(\ud83dx)"), std::string("\xef\xbf\xbdx"));  // a lone surrogate: U+FFFD
  CHECK_EQ(unescape(R"(\ude00)"), std::string("\xef\xbf\xbd"));
  CHECK_EQ(unescape("plain"), std::string("plain"));
  CHECK_EQ(unescape(""), std::string());
  bool ok = true;
  unescape(R"(a\)", &ok);
  CHECK(!ok);  // truncated escape
  unescape(R"(\u12)", &ok);
  CHECK(!ok);
  unescape(R"(\uzzzz)", &ok);
  CHECK(!ok);
  unescape(R"(\x)", &ok);
  CHECK(!ok);
  unescape(R"(a"b)", &ok);
  CHECK(!ok);  // an unescaped quote ends a literal: not content
}

TEST(inspector_json_unescape_survives_random_input) {
  std::mt19937 rng(11);
  for (int round = 0; round < 5000; round++) {
    std::string s(static_cast<size_t>(rng() % 64), '\0');
    for (auto& c : s) c = "\\u\"0dD8aFx nrt/"[rng() % 15];
    std::string out;
    (void)json_unescape(s, out);
    CHECK(out.size() <= s.size() * 3);
  }
}

}  // namespace
}  // namespace tripdump::inspector
