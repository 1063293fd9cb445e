// Who is at the other end of a connected Unix socket, as the kernel recorded it (SO_PEERCRED): the
// process that called listen() on the server side, with its effective ids at that moment. Used before a
// byte goes to a diagnostics socket, so a socket planted at a runtime's well-known path by another process
// is refused (src/runtimes/dotnet/ipc.ts).
#pragma once

#include <sys/types.h>

namespace tripdump {

struct PeerCred {
  // In the caller's pid namespace; 0 when the peer is not visible from it.
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Throws SysError (getsockopt) for an fd that is not a connected Unix socket.
PeerCred peer_credentials(int fd);

}  // namespace tripdump
