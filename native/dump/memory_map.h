// The target's address space as the core writer sees it: /proc/PID/smaps (mappings + VmFlags + anonymous
// page counts), /proc/PID/coredump_filter, and /proc/PID/pagemap (which pages were ever populated). The
// per-mapping choice of what to dump mirrors the kernel's vma_dump_size() in fs/binfmt_elf.c.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/fd.h"

namespace tripdump::dump {

// coredump_filter bits (man 5 core).
enum FilterBit : uint32_t {
  kAnonPrivate = 1u << 0,
  kAnonShared = 1u << 1,
  kMappedPrivate = 1u << 2,
  kMappedShared = 1u << 3,
  kElfHeaders = 1u << 4,
  kHugetlbPrivate = 1u << 5,
  kHugetlbShared = 1u << 6,
  kDaxPrivate = 1u << 7,
  kDaxShared = 1u << 8,
};
constexpr uint32_t kDefaultFilter = 0x33;

struct Vma {
  uint64_t start = 0, end = 0, offset = 0, inode = 0;
  bool read = false, write = false, exec = false, shared = false;
  std::string path;  // "" for anonymous, "[heap]", "/usr/lib/...", "/memfd:x (deleted)"
  // From smaps (kB), present when the entry came from smaps.
  uint64_t rss_kb = 0, anonymous_kb = 0, swap_kb = 0, anon_huge_kb = 0;
  bool vm_dontdump = false;    // dd: MADV_DONTDUMP
  bool vm_io = false;          // io: VM_IO (device memory)
  bool vm_shared = false;      // sh: VM_SHARED
  bool vm_hugetlb = false;     // ht: hugetlbfs
  bool vm_dontcopy = false;    // dc: MADV_DONTFORK, absent from a fork child
  bool vm_wipeonfork = false;  // wf: zero in a fork child

  uint64_t size() const { return end - start; }
  bool file_backed() const { return !path.empty() && path[0] == '/'; }
  bool is_special(std::string_view name) const { return path == name; }
};

std::vector<Vma> parse_smaps(std::string_view text);  // also accepts plain /proc/PID/maps text
std::vector<Vma> read_smaps(int pid);
uint32_t read_coredump_filter(int pid);

// How much of a mapping goes into the core: a byte count, or "first page if it starts with an ELF
// header", which needs the mapping's first bytes to decide (the kernel defers the same check).
struct DumpChoice {
  uint64_t size = 0;
  bool maybe_elf_header = false;
  const char* reason = "";  // why, for debugging and warnings
};
DumpChoice vma_dump_choice(const Vma& v, uint32_t filter);

// True if the mapping holds ordinary private anonymous memory, where a page that pagemap reports as
// neither present nor swapped is known to read as zero (for file and shmem pages it is not).
bool pagemap_holes_valid(const Vma& v);

// Reads /proc/PID/pagemap: one 64-bit entry per page.
class Pagemap {
 public:
  explicit Pagemap(int pid);
  // populated[i] = page (start + i*page) is present or swapped.
  void populated(uint64_t start, size_t pages, std::vector<uint8_t>& out);

 private:
  int pid_;
  Fd fd_;
  std::vector<uint64_t> buf_;
};

// Reads another process's memory through /proc/PID/mem, falling back to process_vm_readv for what it
// refuses; bytes neither can read are zero-filled and counted.
// Why /proc/PID/mem first: process_vm_readv pins pages (FOLL_PIN), and a read-only pin of an anonymous page
// that is copy-on-write shared with a fork child makes the kernel copy it (unshare). Reading a snapshot
// child that way duplicated the whole image (10x slower, 1 GiB more memory); reading a target that has a
// live fork child would grow the target. /proc/PID/mem takes plain page references; it is as fast here.
class MemoryReader {
 public:
  explicit MemoryReader(int pid) : pid_(pid) {}
  // Fills buf[0, len); returns the number of bytes that could not be read (zero-filled).
  size_t read(uint64_t addr, void* buf, size_t len);

 private:
  bool open_mem();
  ssize_t read_mem(uint64_t addr, void* buf, size_t len);
  ssize_t read_pvm(uint64_t addr, void* buf, size_t len);
  int pid_;
  Fd mem_;
  bool mem_failed_ = false;
};

// Reads a whole (proc) file; throws SysError with the path and pid.
std::string read_whole_file(const std::string& path, int pid);
size_t page_size();

}  // namespace tripdump::dump
