// A TCP connection made from inside another process's network namespace. A target in a container listens
// on its own namespace's loopback, which no socket of ours can reach; a socket created by a thread that
// has setns()ed into the target's namespace can, and keeps that namespace for its whole life whatever the
// thread does next. So the connect runs on a short-lived std::thread (setns(CLONE_NEWNET) changes only the
// calling thread) that hands the connected fd back; the caller's threads never change namespace.
#pragma once

#include "core/fd.h"
#include "inspector/listeners.h"

namespace tripdump::inspector {

// Whether process pid is in another network namespace than the caller. Throws SysError.
bool other_netns(int pid);

// Connects to `to` (an address in pid's namespace) and returns the connected blocking socket (O_CLOEXEC).
// Throws SysError: ECONNREFUSED, ETIMEDOUT after timeout_ms, EPERM from setns without CAP_SYS_ADMIN...
Fd connect_tcp(int pid, const TcpEndpoint& to, int timeout_ms);

}  // namespace tripdump::inspector
