#include "dump/elf_writer.h"

#include <elf.h>
#include <sys/procfs.h>
#include <unistd.h>

#include <cstring>

#include "core/error.h"
#include "dump/arch.h"

namespace tripdump::dump {

static_assert(sizeof(struct elf_prstatus) == 336, "NT_PRSTATUS must be 336 bytes on x86_64");
static_assert(sizeof(struct elf_prpsinfo) == 136, "NT_PRPSINFO must be 136 bytes");
static_assert(sizeof(siginfo_t) == 128, "NT_SIGINFO is the kernel's 128-byte siginfo");
static_assert(sizeof(elf_gregset_t) == sizeof(arch::GpRegs), "pr_reg is the ptrace register block");

namespace {

constexpr size_t align4(size_t n) {
  return (n + 3) & ~size_t{3};
}

// "pid (comm) S ppid ..." → the fields after the comm's closing parenthesis, 0-based from the state.
std::vector<std::string> stat_fields(const std::string& s, std::string* comm) {
  std::vector<std::string> out;
  size_t open = s.find('('), close = s.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return out;
  if (comm) *comm = s.substr(open + 1, close - open - 1);
  size_t p = close + 1;
  while (p < s.size()) {
    size_t b = s.find_first_not_of(" \n", p);
    if (b == std::string::npos) break;
    size_t e = s.find_first_of(" \n", b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    p = e == std::string::npos ? s.size() : e;
  }
  return out;
}

uint64_t field_u64(const std::vector<std::string>& f, size_t i) {
  return i < f.size() ? std::strtoull(f[i].c_str(), nullptr, 10) : 0;
}

uint64_t status_hex(const std::string& s, const char* key) {
  size_t p = s.find(std::string("\n") + key + ":");
  return p == std::string::npos ? 0 : std::strtoull(s.c_str() + p + std::strlen(key) + 2, nullptr, 16);
}

uint32_t status_first_dec(const std::string& s, const char* key) {
  size_t p = s.find(std::string("\n") + key + ":");
  return p == std::string::npos
             ? 0
             : static_cast<uint32_t>(std::strtoul(s.c_str() + p + std::strlen(key) + 2, nullptr, 10));
}

timeval ticks_to_timeval(uint64_t ticks) {
  static const long hz = sysconf(_SC_CLK_TCK);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ticks / static_cast<uint64_t>(hz));
  tv.tv_usec =
      static_cast<suseconds_t>((ticks % static_cast<uint64_t>(hz)) * 1000000 / static_cast<uint64_t>(hz));
  return tv;
}

std::string read_or_empty(const std::string& path, int pid) {
  try {
    return read_whole_file(path, pid);
  } catch (const SysError&) {
    return {};
  }
}

}  // namespace

ProcessInfo read_process_info(int pid, char state) {
  ProcessInfo info;
  info.pid = pid;
  const std::string base = "/proc/" + std::to_string(pid);
  // stat fields after the comm: 0 state, 1 ppid, 2 pgrp, 3 session, 6 flags, 11 utime, 12 stime,
  // 13 cutime, 14 cstime, 16 nice.
  const auto f = stat_fields(read_whole_file(base + "/stat", pid), &info.comm);
  info.state = state;
  info.ppid = static_cast<int>(field_u64(f, 1));
  info.pgrp = static_cast<int>(field_u64(f, 2));
  info.sid = static_cast<int>(field_u64(f, 3));
  info.flags = field_u64(f, 6);
  info.utime = field_u64(f, 11);
  info.stime = field_u64(f, 12);
  info.cutime = field_u64(f, 13);
  info.cstime = field_u64(f, 14);
  info.nice = f.size() > 16 ? std::atoi(f[16].c_str()) : 0;
  const std::string status = read_or_empty(base + "/status", pid);
  info.uid = status_first_dec(status, "Uid");
  info.gid = status_first_dec(status, "Gid");
  std::string cmdline = read_or_empty(base + "/cmdline", pid);
  for (char& c : cmdline)
    if (c == '\0') c = ' ';
  info.psargs = cmdline;
  return info;
}

void read_thread_info(int pid, const std::vector<ThreadState>& threads, ProcessInfo& info) {
  const std::string base = "/proc/" + std::to_string(pid);
  info.threads.clear();
  for (const auto& t : threads) {
    const std::string tb = base + "/task/" + std::to_string(t.tid);
    const auto tf = stat_fields(read_or_empty(tb + "/stat", pid), nullptr);
    ProcessInfo::Thread th;
    th.utime = field_u64(tf, 11);
    th.stime = field_u64(tf, 12);
    th.sigpend = status_hex(read_or_empty(tb + "/status", pid), "SigPnd");
    info.threads.push_back(th);
  }
}

void NoteWriter::add(uint32_t type, std::string_view name, const void* desc, size_t size) {
  Elf64_Nhdr h{};
  h.n_namesz = static_cast<Elf64_Word>(name.size() + 1);
  h.n_descsz = static_cast<Elf64_Word>(size);
  h.n_type = type;
  buf_.append(reinterpret_cast<const char*>(&h), sizeof h);
  buf_.append(name.data(), name.size());
  buf_.append(align4(name.size() + 1) - name.size(), '\0');
  buf_.append(static_cast<const char*>(desc), size);
  buf_.append(align4(size) - size, '\0');
}

std::string prstatus_note_desc(const ThreadState& t, const ProcessInfo& info, size_t index, int cursig) {
  struct elf_prstatus p;
  std::memset(&p, 0, sizeof p);
  p.pr_info.si_signo = cursig;
  p.pr_cursig = static_cast<short>(cursig);
  const ProcessInfo::Thread th = index < info.threads.size() ? info.threads[index] : ProcessInfo::Thread{};
  p.pr_sigpend = th.sigpend;
  p.pr_sighold = t.sigmask;
  p.pr_pid = t.tid;
  p.pr_ppid = info.ppid;
  p.pr_pgrp = info.pgrp;
  p.pr_sid = info.sid;
  // Like the kernel: the thread-group leader carries the whole process's CPU time, others their own.
  const bool leader = t.tid == info.pid;
  p.pr_utime = ticks_to_timeval(leader ? info.utime : th.utime);
  p.pr_stime = ticks_to_timeval(leader ? info.stime : th.stime);
  p.pr_cutime = ticks_to_timeval(info.cutime);
  p.pr_cstime = ticks_to_timeval(info.cstime);
  std::memcpy(&p.pr_reg, &t.regs, sizeof p.pr_reg);
  p.pr_fpvalid = 1;
  return std::string(reinterpret_cast<const char*>(&p), sizeof p);
}

std::string prpsinfo_note_desc(const ProcessInfo& info) {
  struct elf_prpsinfo p;
  std::memset(&p, 0, sizeof p);
  static const char kStates[] = "RSDTZW";
  const char* at = std::strchr(kStates, info.state);
  p.pr_state = static_cast<char>(at ? at - kStates : 0);
  p.pr_sname = info.state;
  p.pr_zomb = info.state == 'Z';
  p.pr_nice = static_cast<char>(info.nice);
  p.pr_flag = info.flags;
  p.pr_uid = info.uid;
  p.pr_gid = info.gid;
  p.pr_pid = info.pid;
  p.pr_ppid = info.ppid;
  p.pr_pgrp = info.pgrp;
  p.pr_sid = info.sid;
  std::strncpy(p.pr_fname, info.comm.c_str(), sizeof p.pr_fname - 1);
  std::strncpy(p.pr_psargs, info.psargs.c_str(), sizeof p.pr_psargs - 1);
  return std::string(reinterpret_cast<const char*>(&p), sizeof p);
}

std::string file_note_desc(const std::vector<Vma>& maps) {
  // count, page size, then {start, end, offset in pages} per file mapping, then the NUL-terminated names.
  std::vector<uint64_t> head{0, page_size()};
  std::string names;
  for (const Vma& v : maps) {
    if (!v.file_backed()) continue;
    head.push_back(v.start);
    head.push_back(v.end);
    head.push_back(v.offset / page_size());
    names += v.path;
    names += '\0';
    head[0]++;
  }
  std::string out(reinterpret_cast<const char*>(head.data()), head.size() * sizeof(uint64_t));
  return out + names;
}

std::string build_notes(const std::vector<ThreadState>& threads, const ProcessInfo& info,
                        const std::string& auxv, const std::vector<Vma>& maps) {
  NoteWriter w;
  const int cursig = threads.empty() ? SIGSTOP : threads[0].siginfo.si_signo;
  for (size_t i = 0; i < threads.size(); i++) {
    const ThreadState& t = threads[i];
    const std::string prs = prstatus_note_desc(t, info, i, t.real_siginfo ? t.siginfo.si_signo : cursig);
    w.add(NT_PRSTATUS, "CORE", prs.data(), prs.size());
    if (i == 0) {
      const std::string ps = prpsinfo_note_desc(info);
      w.add(NT_PRPSINFO, "CORE", ps.data(), ps.size());
      w.add(NT_SIGINFO, "CORE", &t.siginfo, sizeof t.siginfo);
      w.add(NT_AUXV, "CORE", auxv.data(), auxv.size());
      const std::string files = file_note_desc(maps);
      w.add(NT_FILE, "CORE", files.data(), files.size());
    }
    for (const RegsetData& r : t.extra) w.add(r.note_type, r.note_name, r.bytes.data(), r.bytes.size());
  }
  if (!threads.empty()) {
    std::vector<std::pair<uint32_t, const std::string*>> first;
    for (const RegsetData& r : threads[0].extra) first.emplace_back(r.note_type, &r.bytes);
    for (const auto& n : arch::process_notes(first))
      w.add(n.note_type, n.note_name, n.desc.data(), n.desc.size());
  }
  return w.bytes();
}

bool needs_extended_numbering(size_t loads) {
  return loads + 1 >= PN_XNUM;
}

uint64_t headers_size(size_t loads) {
  return sizeof(Elf64_Ehdr) + (loads + 1) * sizeof(Elf64_Phdr);
}

std::string build_headers(uint64_t note_offset, uint64_t note_size, const std::vector<LoadSegment>& loads,
                          uint64_t shdr_offset) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_ident[EI_OSABI] = ELFOSABI_NONE;
  eh.e_type = ET_CORE;
  eh.e_machine = arch::elf_machine();
  eh.e_version = EV_CURRENT;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  const size_t segs = loads.size() + 1;
  if (needs_extended_numbering(loads.size())) {
    // Extended numbering: e_phnum = PN_XNUM and the real count in section header 0's sh_info.
    eh.e_phnum = PN_XNUM;
    eh.e_shoff = shdr_offset;
    eh.e_shentsize = sizeof(Elf64_Shdr);
    eh.e_shnum = 1;
    eh.e_shstrndx = SHN_UNDEF;
  } else {
    eh.e_phnum = static_cast<Elf64_Half>(segs);
  }
  std::string out(reinterpret_cast<const char*>(&eh), sizeof eh);
  Elf64_Phdr note{};
  note.p_type = PT_NOTE;
  note.p_offset = note_offset;
  note.p_filesz = note_size;
  note.p_align = 4;  // never 8: readers would then parse the notes with 8-byte padding
  out.append(reinterpret_cast<const char*>(&note), sizeof note);
  for (const LoadSegment& l : loads) {
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_offset = l.offset;
    ph.p_vaddr = l.vaddr;
    ph.p_filesz = l.filesz;
    ph.p_memsz = l.memsz;
    ph.p_flags = l.flags;
    ph.p_align = page_size();
    out.append(reinterpret_cast<const char*>(&ph), sizeof ph);
  }
  return out;
}

std::string build_extnum_shdr(size_t loads) {
  Elf64_Shdr sh{};
  sh.sh_type = SHT_NULL;
  sh.sh_info = static_cast<Elf64_Word>(loads + 1);
  return std::string(reinterpret_cast<const char*>(&sh), sizeof sh);
}

}  // namespace tripdump::dump
