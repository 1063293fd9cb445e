// One core dump run in a short-lived dumper process (lib/worker_process.h says why a process). The addon's
// writeCoreDump and libtripdump's tripdump_write_core both go through here, so both behave the same.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "dump/core_dump.h"

namespace tripdump::lib {

// Forks the dumper, which writes the core of `pid` to `path` (dump::write_core_dump on a thread of its own
// with an 8 MiB stack: the stack it inherits from the calling thread may be small), and follows it until it
// exits: `cancel` (polled every 5 ms) is passed down, `progress` is called on the calling thread. Returns
// the result or throws the dumper's SysError; a dumper that died without a word (killed, crashed) is
// ECHILD, and its temporary file is removed. A caller that reaps children with waitpid(-1) elsewhere may
// reap the dumper first: the result is read from shared memory all the same.
dump::Result dump_in_process(int pid, const std::string& path, const dump::Options& options,
                             const std::atomic<bool>* cancel = nullptr,
                             const std::function<void(uint64_t done, uint64_t total)>& progress = {});

}  // namespace tripdump::lib
