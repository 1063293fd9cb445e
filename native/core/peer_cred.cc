#include "core/peer_cred.h"

#include <sys/socket.h>

#include "core/error.h"

namespace tripdump {

PeerCred peer_credentials(int fd) {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) throw_errno("getsockopt");
  return {cred.pid, cred.uid, cred.gid};
}

}  // namespace tripdump
