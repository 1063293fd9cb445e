#include "dump/memory_map.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

#include "core/error.h"

namespace tripdump::dump {

size_t page_size() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

std::string read_whole_file(const std::string& path, int pid) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open", path, pid);
  std::string out;
  size_t cap = 16384;
  for (;;) {
    out.resize(out.size() + cap);
    const size_t have = out.size() - cap;
    ssize_t n = ::read(fd.get(), out.data() + have, cap);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read", path, pid);
    }
    out.resize(have + static_cast<size_t>(n));
    if (n == 0) break;
    if (cap < (1u << 20)) cap *= 2;
  }
  return out;
}

namespace {

uint64_t parse_hex(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v, 16);
  return v;
}

uint64_t parse_dec(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v, 10);
  return v;
}

std::string_view next_token(std::string_view& line) {
  size_t b = line.find_first_not_of(' ');
  if (b == std::string_view::npos) {
    line = {};
    return {};
  }
  line.remove_prefix(b);
  size_t e = line.find(' ');
  std::string_view tok = line.substr(0, e);
  line.remove_prefix(e == std::string_view::npos ? line.size() : e);
  return tok;
}

bool parse_header(std::string_view line, Vma& v) {
  std::string_view range = next_token(line), perms = next_token(line), off = next_token(line);
  next_token(line);  // dev
  std::string_view inode = next_token(line);
  size_t dash = range.find('-');
  if (dash == std::string_view::npos || perms.size() < 4 || inode.empty()) return false;
  v.start = parse_hex(range.substr(0, dash));
  v.end = parse_hex(range.substr(dash + 1));
  v.read = perms[0] == 'r';
  v.write = perms[1] == 'w';
  v.exec = perms[2] == 'x';
  v.shared = perms[3] == 's';
  v.offset = parse_hex(off);
  v.inode = parse_dec(inode);
  size_t b = line.find_first_not_of(' ');
  v.path = b == std::string_view::npos ? std::string() : std::string(line.substr(b));
  return true;
}

void parse_field(std::string_view line, Vma& v) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return;
  std::string_view key = line.substr(0, colon), rest = line.substr(colon + 1);
  if (key == "VmFlags") {
    for (std::string_view f = next_token(rest); !f.empty(); f = next_token(rest)) {
      if (f == "dd") v.vm_dontdump = true;
      if (f == "io") v.vm_io = true;
      if (f == "sh") v.vm_shared = true;
      if (f == "ht") v.vm_hugetlb = true;
      if (f == "dc") v.vm_dontcopy = true;
      if (f == "wf") v.vm_wipeonfork = true;
    }
    return;
  }
  uint64_t* slot = key == "Rss"             ? &v.rss_kb
                   : key == "Anonymous"     ? &v.anonymous_kb
                   : key == "Swap"          ? &v.swap_kb
                   : key == "AnonHugePages" ? &v.anon_huge_kb
                                            : nullptr;
  if (slot) *slot = parse_dec(next_token(rest));
}

}  // namespace

std::vector<Vma> parse_smaps(std::string_view text) {
  std::vector<Vma> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty()) continue;
    const char c = line[0];
    // Mapping headers start with a lowercase hex address; smaps fields start with an uppercase name.
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
      Vma v;
      if (parse_header(line, v)) out.push_back(std::move(v));
    } else if (!out.empty()) {
      parse_field(line, out.back());
    }
  }
  return out;
}

std::vector<Vma> read_smaps(int pid) {
  return parse_smaps(read_whole_file("/proc/" + std::to_string(pid) + "/smaps", pid));
}

uint32_t read_coredump_filter(int pid) {
  std::string s = read_whole_file("/proc/" + std::to_string(pid) + "/coredump_filter", pid);
  return static_cast<uint32_t>(parse_hex(std::string_view(s).substr(0, s.find_first_of(" \n"))));
}

DumpChoice vma_dump_choice(const Vma& v, uint32_t filter) {
  const uint64_t whole = v.size();
  // The kernel always dumps the vDSO and the vsyscall page (special mappings named by the arch).
  if (v.is_special("[vdso]") || v.is_special("[vsyscall]")) return {whole, false, "always"};
  // The vvar data pages are VM_IO/PFN mappings of kernel data: the kernel writes them empty.
  if (v.is_special("[vvar]") || v.is_special("[vvar_vclock]")) return {0, false, "vvar"};
  if (v.vm_dontdump) return {0, false, "dontdump"};
  const bool shared = v.vm_shared || v.shared;
  // DAX mappings are not visible in smaps; they are treated like ordinary file mappings.
  if (v.vm_hugetlb) {
    const uint32_t bit = shared ? kHugetlbShared : kHugetlbPrivate;
    return (filter & bit) ? DumpChoice{whole, false, "hugetlb"} : DumpChoice{0, false, "hugetlb filtered"};
  }
  if (v.vm_io) return {0, false, "io"};
  if (shared) {
    // The kernel tests the inode's link count: shmem (MAP_SHARED|MAP_ANONYMOUS, SysV shm, memfd) and
    // unlinked files count as anonymous shared memory. maps marks both with " (deleted)".
    const bool unlinked = (v.path.size() > 10 && v.path.ends_with(" (deleted)")) ||
                          v.path.starts_with("[anon_shmem:") || v.path.empty();
    const uint32_t bit = unlinked ? kAnonShared : kMappedShared;
    return (filter & bit) ? DumpChoice{whole, false, "shared"} : DumpChoice{0, false, "shared filtered"};
  }
  // The kernel asks whether the mapping has an anon_vma (it was ever written to / COW-faulted). smaps'
  // anonymous and swapped page counts are the closest visible sign of that.
  const bool has_anon = v.anonymous_kb > 0 || v.swap_kb > 0 || v.anon_huge_kb > 0;
  if (has_anon && (filter & kAnonPrivate)) return {whole, false, "anon"};
  if (!v.file_backed()) return {0, false, "untouched anon"};
  if (filter & kMappedPrivate) return {whole, false, "mapped private"};
  if ((filter & kElfHeaders) && v.offset == 0 && v.read) return {page_size(), true, "elf header?"};
  return {0, false, "filtered"};
}

bool pagemap_holes_valid(const Vma& v) {
  if (v.shared || v.vm_shared || v.vm_hugetlb || v.vm_io || v.file_backed()) return false;
  // [vdso]/[vsyscall]/[vvar] are kernel pages without ordinary page-table entries.
  if (v.path.starts_with("[v")) return false;
  return true;
}

Pagemap::Pagemap(int pid) : pid_(pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/pagemap";
  fd_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd_) throw_errno("open", path, pid);
}

void Pagemap::classify(uint64_t start, size_t pages, bool holes_valid, std::vector<PageRead>& out) {
  // Entries the kernel does not return are read through /proc/PID/mem, not assumed.
  out.assign(pages, PageRead::kCopy);
  buf_.resize(pages);
  const uint64_t off = start / page_size() * sizeof(uint64_t);
  size_t got = 0;
  while (got < pages * sizeof(uint64_t)) {
    ssize_t n = ::pread(fd_.get(), reinterpret_cast<char*>(buf_.data()) + got, pages * sizeof(uint64_t) - got,
                        static_cast<off_t>(off + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("pread", "/proc/" + std::to_string(pid_) + "/pagemap", pid_);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  // Bits (Documentation/admin-guide/mm/pagemap.rst): 63 present, 62 swapped, 61 file page or shared
  // anonymous, 56 mapped exactly once.
  constexpr uint64_t kPresent = 1ull << 63, kSwapped = 1ull << 62, kFile = 1ull << 61,
                     kExclusive = 1ull << 56;
  for (size_t i = 0; i < got / sizeof(uint64_t); i++) {
    const uint64_t e = buf_[i];
    if (e & kPresent)
      out[i] = e & (kFile | kExclusive) ? PageRead::kPin : PageRead::kCopy;
    else if (!(e & kSwapped) && holes_valid)
      out[i] = PageRead::kHole;
  }
}

bool MemoryReader::open_mem() {
  if (!mem_ && !mem_failed_) {
    mem_.reset(::open(("/proc/" + std::to_string(pid_) + "/mem").c_str(), O_RDONLY | O_CLOEXEC));
    mem_failed_ = !mem_;
  }
  return static_cast<bool>(mem_);
}

ssize_t MemoryReader::read_mem(uint64_t addr, void* buf, size_t len) {
  // Addresses above 2^63 (the vsyscall page) do not fit a signed file offset.
  if (!open_mem() || addr >= (1ull << 63)) return -1;
  ssize_t n;
  do {
    n = ::pread(mem_.get(), buf, len, static_cast<off_t>(addr));
  } while (n < 0 && errno == EINTR);
  return n;
}

ssize_t MemoryReader::read_pvm(uint64_t addr, void* buf, size_t len) {
  iovec local{buf, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_readv(pid_, &local, 1, &remote, 1, 0);
  if (n < 0 && errno == ESRCH) throw SysError(ESRCH, "process_vm_readv", "", pid_);
  return n;
}

size_t MemoryReader::read(uint64_t addr, void* buf, size_t len, PageRead how) {
  uint8_t* out = static_cast<uint8_t*>(buf);
  size_t done = 0, unreadable = 0;
  const size_t ps = page_size();
  const bool pin = how == PageRead::kPin || !open_mem();
  while (done < len) {
    ssize_t n =
        pin ? read_pvm(addr + done, out + done, len - done) : read_mem(addr + done, out + done, len - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    // Refused at addr+done: one page through the other interface, else zeros.
    const size_t chunk = std::min(len - done, ps - ((addr + done) % ps));
    ssize_t m = pin ? read_mem(addr + done, out + done, chunk) : read_pvm(addr + done, out + done, chunk);
    if (m <= 0) {
      std::memset(out + done, 0, chunk);
      unreadable += chunk;
      m = static_cast<ssize_t>(chunk);
    }
    done += static_cast<size_t>(m);
  }
  return unreadable;
}

}  // namespace tripdump::dump
