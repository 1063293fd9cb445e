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

// How a page is to be read, from its pagemap entry.
enum class PageRead : uint8_t {
  kHole,  // never populated in private anonymous memory: reads as zeros, written as a hole
  kPin,   // present and mapped only here, or a file page: process_vm_readv is safe and fastest
  kCopy,  // anything else (COW-shared with a fork, swapped, unknown): /proc/PID/mem
};

// Reads /proc/PID/pagemap: one 64-bit entry per page.
class Pagemap {
 public:
  explicit Pagemap(int pid);
  // out[i] = how to read page (start + i*page); kHole only where holes_valid (see pagemap_holes_valid).
  void classify(uint64_t start, size_t pages, bool holes_valid, std::vector<PageRead>& out);

 private:
  int pid_;
  Fd fd_;
  std::vector<uint64_t> buf_;
};

// Reads another process's memory; bytes that cannot be read are zero-filled and counted.
// Two interfaces, chosen per page run (PageRead): process_vm_readv copies straight into our buffer and is
// 3-4x faster than /proc/PID/mem (which copies through a bounce page; 0.13 s vs 0.45 s per GiB here). But
// it pins pages (FOLL_PIN), and a read-only pin of an anonymous page that is copy-on-write shared with a
// fork makes the kernel copy it (unshare): reading a snapshot child that way duplicated the whole image,
// and reading a prefork server would grow it. /proc/PID/mem takes plain references, so it reads the rest.
// Each also covers the pages the other refuses (PROT_NONE and execute-only pages need /proc/PID/mem's
// FOLL_FORCE; process_vm_readv works where /proc/PID/mem cannot be opened).
class MemoryReader {
 public:
  explicit MemoryReader(int pid) : pid_(pid) {}
  // Fills buf[0, len); returns the number of bytes that could not be read (zero-filled).
  size_t read(uint64_t addr, void* buf, size_t len, PageRead how = PageRead::kCopy);

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
