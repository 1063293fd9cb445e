// What the core writer needs to know about one CPU architecture: the register layout of NT_PRSTATUS, the
// extra register sets a core carries per thread, and how to run a system call inside a stopped thread
// (snapshot mode). Each architecture implements this in arch/<name>.cc; only one is compiled in.
#pragma once

#include <sys/user.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tripdump::dump::arch {

#if defined(__x86_64__)
using GpRegs = struct user_regs_struct;  // what PTRACE_GETREGSET(NT_PRSTATUS) returns, = elf_gregset_t
#else
#error "tripdump's core writer supports x86_64 only for now"
#endif

// ELF e_machine for the core file header.
uint16_t elf_machine();

// Register sets written after a thread's NT_PRSTATUS, in the kernel's order.
struct RegsetSpec {
  uint32_t note_type;
  const char* note_name;  // "CORE" or "LINUX"
  size_t max_size;        // buffer handed to PTRACE_GETREGSET; the kernel says how much it filled
};
const std::vector<RegsetSpec>& extra_regsets();

// Process-wide notes the kernel appends after every thread's notes (x86: NT_X86_XSAVE_LAYOUT, which tells
// debuggers where each XSAVE component sits; AMD and Intel CPUs differ). `first_thread_regsets` holds the
// first thread's extra regsets as {note type, bytes}.
struct ProcessNote {
  uint32_t note_type;
  const char* note_name;
  std::string desc;
};
std::vector<ProcessNote> process_notes(
    const std::vector<std::pair<uint32_t, const std::string*>>& first_thread_regsets);

// True when fork-snapshot mode is implemented for this architecture.
bool snapshot_supported();

uint64_t pc(const GpRegs& r);
// The system call a thread is stopped in (its restart logic still pending), or -1.
long stopped_syscall(const GpRegs& r);
// True when the thread is stopped inside a system call that swapped in a temporary signal mask
// (sigsuspend, ppoll, pselect6, epoll_pwait with a mask, ...). Injecting into such a thread would lose the
// mask saved by the kernel, because PTRACE_SETSIGMASK drops it.
bool in_temp_sigmask_syscall(const GpRegs& r);

constexpr size_t kSyscallInsnLen = 2;
bool is_syscall_insn(const uint8_t* bytes);  // kSyscallInsnLen bytes

long nr_clone();
long nr_wait4();

// Prepares `r` to execute system call `nr` with `args` at the syscall instruction at `insn`, bypassing
// the kernel's restart logic for whatever the thread was doing.
void setup_syscall(GpRegs& r, uint64_t insn, long nr, const std::vector<uint64_t>& args);
long syscall_result(const GpRegs& r);

}  // namespace tripdump::dump::arch
