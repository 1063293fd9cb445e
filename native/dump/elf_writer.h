// ELF core layout as the Linux kernel writes it (fs/binfmt_elf.c): ELF header, program headers (PT_NOTE
// first, then one PT_LOAD per mapping in address order), the note segment, then page-aligned segment data.
// Debuggers are picky about the notes: elfutils drops a note of the wrong size and will not unwind without
// NT_PRPSINFO, lldb attaches every register note to the latest NT_PRSTATUS.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dump/memory_map.h"
#include "dump/ptrace_session.h"

namespace tripdump::dump {

// Process-wide facts for NT_PRSTATUS / NT_PRPSINFO, read from /proc before the threads run again.
struct ProcessInfo {
  int pid = 0, ppid = 0, pgrp = 0, sid = 0;
  char state = 'R';
  int nice = 0;
  uint64_t flags = 0;
  uint32_t uid = 0, gid = 0;
  std::string comm, psargs;
  uint64_t utime = 0, stime = 0, cutime = 0, cstime = 0;  // clock ticks, whole process
  struct Thread {
    uint64_t utime = 0, stime = 0, sigpend = 0;
  };
  std::vector<Thread> threads;  // parallel to the session's threads
};
// The process-wide part (ids, comm, arguments, CPU times), without `threads`. `state` is the process state
// before we stopped it (/proc shows 't' while we trace it). Snapshot mode reads it before the stop.
ProcessInfo read_process_info(int pid, char state);
// Fills info.threads (CPU times and pending signals of each), while the threads are stopped.
void read_thread_info(int pid, const std::vector<ThreadState>& threads, ProcessInfo& info);

class NoteWriter {
 public:
  void add(uint32_t type, std::string_view name, const void* desc, size_t size);
  const std::string& bytes() const { return buf_; }

 private:
  std::string buf_;
};

// The whole PT_NOTE payload in the kernel's order: thread 0's PRSTATUS, PRPSINFO, SIGINFO, AUXV, FILE,
// thread 0's other regsets, then each further thread's PRSTATUS and regsets.
std::string build_notes(const std::vector<ThreadState>& threads, const ProcessInfo& info,
                        const std::string& auxv, const std::vector<Vma>& maps);

// Building blocks, exposed for the tests.
std::string prstatus_note_desc(const ThreadState& t, const ProcessInfo& info, size_t index, int cursig);
std::string prpsinfo_note_desc(const ProcessInfo& info);
std::string file_note_desc(const std::vector<Vma>& maps);

struct LoadSegment {
  uint64_t vaddr = 0, memsz = 0, filesz = 0, offset = 0;
  uint32_t flags = 0;  // PF_R | PF_W | PF_X
};

// Size of the ELF header plus program headers for `loads` PT_LOADs and one PT_NOTE.
uint64_t headers_size(size_t loads);
// ELF header + program headers. When the program header count does not fit e_phnum, the kernel's
// extended numbering is used and `shdr_offset` is where the single section header goes.
std::string build_headers(uint64_t note_offset, uint64_t note_size, const std::vector<LoadSegment>& loads,
                          uint64_t shdr_offset);
bool needs_extended_numbering(size_t loads);
std::string build_extnum_shdr(size_t loads);

}  // namespace tripdump::dump
