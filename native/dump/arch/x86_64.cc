// x86_64 facts for the core writer (see dump/arch.h).
#if defined(__x86_64__)

#include <cpuid.h>
#include <elf.h>
#include <sys/syscall.h>

#include <cstring>

#include "dump/arch.h"

namespace tripdump::dump::arch {

uint16_t elf_machine() {
  return EM_X86_64;
}

const std::vector<RegsetSpec>& extra_regsets() {
  // FXSAVE area (512 bytes) then the full XSAVE area, which is ~2.7 KB with AVX-512 and ~11 KB with AMX;
  // 64 KiB leaves room for future extensions.
  static const std::vector<RegsetSpec> specs = {
      {NT_PRFPREG, "CORE", 512},
      {NT_X86_XSTATE, "LINUX", 64 * 1024},
  };
  return specs;
}

std::vector<ProcessNote> process_notes(const std::vector<std::pair<uint32_t, const std::string*>>& regsets) {
  constexpr uint32_t kNtX86XsaveLayout = 0x205;  // not in every libc's elf.h yet
  constexpr size_t kXcr0Offset = 464;            // XSAVE software-reserved bytes: the user xfeatures mask
  const std::string* xstate = nullptr;
  for (const auto& [type, bytes] : regsets)
    if (type == NT_X86_XSTATE) xstate = bytes;
  if (!xstate || xstate->size() < kXcr0Offset + 8) return {};
  uint64_t xfeatures = 0;
  std::memcpy(&xfeatures, xstate->data() + kXcr0Offset, sizeof xfeatures);
  // One {type, size, offset, flags} record per extended feature (2 and up), size and standard-format
  // offset from CPUID leaf 0xD, as the kernel writes it.
  std::string desc;
  for (uint32_t i = 2; i < 64; i++) {
    if (!(xfeatures & (1ull << i))) continue;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(0xd, i, &eax, &ebx, &ecx, &edx)) return {};
    const uint32_t rec[4] = {i, eax, ebx, 0};
    desc.append(reinterpret_cast<const char*>(rec), sizeof rec);
  }
  if (desc.empty()) return {};
  return {{kNtX86XsaveLayout, "LINUX", desc}};
}

bool snapshot_supported() {
  return true;
}

uint64_t pc(const GpRegs& r) {
  return r.rip;
}

long stopped_syscall(const GpRegs& r) {
  return static_cast<long>(r.orig_rax);
}

bool in_temp_sigmask_syscall(const GpRegs& r) {
  // Arguments are in rdi, rsi, rdx, r10, r8, r9. A null mask argument means no temporary mask.
  switch (static_cast<long>(r.orig_rax)) {
    case SYS_rt_sigsuspend:
      return true;
    case SYS_ppoll:
      return r.r10 != 0;
    case SYS_pselect6:  // 6th argument points to {sigset pointer, size}: assume it holds a mask
      return r.r9 != 0;
    case SYS_epoll_pwait:
#ifdef SYS_epoll_pwait2
    case SYS_epoll_pwait2:
#endif
      return r.r8 != 0;
    case SYS_io_pgetevents:
      return r.r9 != 0;
    default:
      return false;
  }
}

bool is_syscall_insn(const uint8_t* b) {
  return b[0] == 0x0f && b[1] == 0x05;
}

long nr_clone() {
  return SYS_clone;
}
long nr_wait4() {
  return SYS_wait4;
}

void setup_syscall(GpRegs& r, uint64_t insn, long nr, const std::vector<uint64_t>& args) {
  r.rip = insn;
  r.rax = static_cast<uint64_t>(nr);
  // orig_rax = -1 tells the kernel the thread is not in a system call, so the pending restart of the
  // interrupted one (rax = -ERESTART*, rip rewound) is not applied to our registers.
  r.orig_rax = static_cast<uint64_t>(-1);
  uint64_t a[6] = {};
  for (size_t i = 0; i < args.size() && i < 6; i++) a[i] = args[i];
  r.rdi = a[0];
  r.rsi = a[1];
  r.rdx = a[2];
  r.r10 = a[3];
  r.r8 = a[4];
  r.r9 = a[5];
}

long syscall_result(const GpRegs& r) {
  return static_cast<long>(r.rax);
}

}  // namespace tripdump::dump::arch

#endif
