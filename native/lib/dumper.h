// One core dump run in a short-lived dumper process (lib/worker_process.h says why a process). The addon's
// writeCoreDump and libtripdump's tripdump_write_core both go through here, so both behave the same.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "dump/core_dump.h"

namespace tripdump::lib {

// Forks the dumper, which writes the core of `pid` to `path` (dump::write_core_dump on a thread of its own
// with an 8 MiB stack: the stack it inherits from the calling thread may be small), and follows it until it
// exits; `progress` is called on the calling thread. `cancel` is read by the dumper itself, so setting it
// reaches the dump at once with no thread in between: it must live in memory shared with child processes
// (a SharedPage mapped before the call; a private flag is not seen once the dumper runs). Returns
// the result or throws the dumper's SysError; a dumper that died without a word (killed, crashed) is
// ECHILD, and its temporary file is removed. A caller that reaps children with waitpid(-1) elsewhere may
// reap the dumper first: the result is read from shared memory all the same.
// When the dumper is told to stop — its death signal, SIGTERM, when the calling thread ends (the caller
// exited, was SIGKILLed, OOM-killed), or a SIGTERM or SIGHUP sent to it — it sets `cancel` (a flag of its
// own when the caller gives none) and the dump ends as a cancelled one: the target let go, the snapshot
// child killed and reaped, the file removed. The dumper has a process group of its own, so a kill of the
// caller's group reaches it that way too. What no process can handle is a SIGKILL of the dumper itself
// (the OOM killer's choice, kill -9 of its pid, a service manager's final kill of the whole cgroup): the
// kernel then lets the target go and kills the snapshot child (PTRACE_O_EXITKILL), which stays in the
// target as a zombie only a wait with __WALL or __WCLONE would see; or, if the dumper died between the
// clone and the child's first stop (dump/snapshot.h), the child is not yet marked to die with it and runs
// on. A caller that outlives its dumper kills and reaps that child itself (dump::SnapshotChild::
// reap_left_behind). Only when both die at once is it left behind. A dumper SIGKILLed during the injected
// clone itself also leaves the injecting thread's registers as the clone set them: the system call it was
// in returns the child's pid instead of restarting.
// `cleaning`: when given, a cancelled dump returns as soon as the dumper has let the target go (threads
// detached, snapshot child killed), before the slow part of its clean-up (the writer's last write, the
// unlinked file's release, the child's memory teardown: tens of milliseconds each at 1 GiB). ECANCELED is
// thrown at once and *cleaning holds the dumper's pid, which the caller must reap; the dumper finishes
// even if the caller exits meanwhile. Without it the call returns when the dumper has exited.
dump::Result dump_in_process(int pid, const std::string& path, const dump::Options& options,
                             std::atomic<bool>* cancel = nullptr,
                             const std::function<void(uint64_t done, uint64_t total)>& progress = {},
                             pid_t* cleaning = nullptr);

}  // namespace tripdump::lib
