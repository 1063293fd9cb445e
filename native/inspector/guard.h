// The inspector guard: a small process that opens a Node target's inspector (SIGUSR1) and closes it again
// when tripdump no longer can. It exists because "never leave an inspector open" must hold when tripdump
// is SIGKILLed, and then nothing of tripdump runs: the guard is forked before the signal is sent, holds a
// plain TCP connection to the inspector (not a debugging session), and watches two things: that connection
// (EOF: the inspector was closed, by tripdump's own session as normal; the guard just exits) and its
// control socket to tripdump (EOF: tripdump is gone, or "close": tripdump asks it to take over). Taking
// over means upgrading its connection to a WebSocket session, waiting for the event loop to turn (see
// GuardOptions::probe_message), sending the CDP message that closes the inspector (Runtime.evaluate of
// inspector.close()), then answering the inspector's close frame (the
// target's inspector.close() waits for every session's closing handshake, so a guard that did not answer
// would hang the target) and waiting until the inspector has dropped the connection.
// A target paused by tripdump's session needs nothing more: V8 resumes it when that session's socket
// closes (verified in test/native/node-kill.test.ts).
//
// The WebSocket and HTTP spoken here are the least that reaches that one message (a GET of /json/list for
// the session id, an upgrade, one masked text frame): tripdump's own sessions use the `ws` library; this
// process runs when no JavaScript is left to run them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tripdump::inspector {

struct GuardOptions {
  int pid = 0;
  uint64_t start_ticks = 0;  // the target's identity with pid (field 22 of /proc/PID/stat)
  // How long the inspector may take to start listening after SIGUSR1 before "none" is reported.
  int open_timeout_ms = 5000;
  // After "none", how long to go on watching for a late start (a target busy outside JavaScript takes the
  // signal's request only when it comes back) and close it.
  int late_watch_ms = 120000;
  // The CDP message (JSON text, id 1) whose answer means the event loop has turned: sent, and answered,
  // before the close. Node opens its inspector on SIGUSR1 from two places, a V8 interrupt (a loop busy in
  // JavaScript) and a libuv async callback (an idle loop), whichever comes first; the other is a no-op,
  // unless the inspector was closed before the loop ran it, and then it opens the inspector again.
  std::string probe_message;
  // The CDP message (JSON text) that closes the inspector.
  std::string close_message;
};

// The guard process's body. Lines it writes on `control`: "guard PID" first, then "open HOST PORT ID" (the
// inspector listens there; ID is its session path), "none" (no new listener by the deadline), "error ERRNO
// SYSCALL". Lines it reads: "close" (take over now), "stop" (exit without doing anything). EOF on control
// means tripdump is gone: it takes over. Returns when there is nothing left to do.
void run_guard(int control, const GuardOptions& options);

// Pieces of the guard's protocol, pure functions (unit-tested):
// A masked WebSocket text frame (RFC 6455 5.2) carrying payload.
std::string ws_text_frame(std::string_view payload, const std::array<uint8_t, 4>& mask);
// A WebSocket close frame (RFC 6455 5.5.1) from the client, masked, with no body.
std::string ws_close_frame(const std::array<uint8_t, 4>& mask);
// The frame at the start of `buffer` (from the server: unmasked), once its header is complete.
struct WsFrame {
  int opcode = 0;
  size_t header = 0;    // bytes before the payload
  uint64_t length = 0;  // payload bytes
};
std::optional<WsFrame> ws_frame_header(std::string_view buffer);
// The first "id" string of a /json/list body.
std::optional<std::string> first_target_id(std::string_view json);
// Offset just past the blank line that ends an HTTP head, or npos while incomplete.
size_t http_head_end(std::string_view buffer);
// The status code of an HTTP head ("HTTP/1.1 101 ..."), or -1.
int http_status(std::string_view head);
// The Content-Length of an HTTP head, if it has one.
std::optional<size_t> http_content_length(std::string_view head);

}  // namespace tripdump::inspector
