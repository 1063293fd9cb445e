// Tests of core/peer_cred: the credentials of a socketpair's peer (this process, as the kernel records
// it) and the error for an fd that is not a Unix socket.
#include "core/peer_cred.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "core/error.h"
#include "core/fd.h"
#include "test/harness.h"

namespace tripdump {
namespace {

TEST(peer_credentials_of_a_socketpair_are_this_process) {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  Fd a(fds[0]), b(fds[1]);
  const PeerCred c = peer_credentials(a.get());
  CHECK_EQ(c.pid, ::getpid());
  CHECK_EQ(c.uid, ::geteuid());
  CHECK_EQ(c.gid, ::getegid());
}

TEST(peer_credentials_of_a_pipe_is_a_getsockopt_error) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  Fd r(fds[0]), w(fds[1]);
  try {
    (void)peer_credentials(r.get());
    CHECK(false);
  } catch (const SysError& e) {
    CHECK_EQ(e.err(), ENOTSOCK);
    CHECK_EQ(std::string(e.syscall()), std::string("getsockopt"));
  }
}

}  // namespace
}  // namespace tripdump
