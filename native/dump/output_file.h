// The core file on disk, mode 0600, written sparsely (all-zero pages become holes) and given its final name
// only when complete. It is an unnamed O_TMPFILE in the destination directory until commit() links it in,
// so nothing can be left behind even when the writer is SIGKILLed. File systems without O_TMPFILE get a
// named temporary file (.tripdump-<pid>-<random>.tmp) that the destructor removes; only there can a killed
// writer leave one (the N-API glue sweeps it up).
// The final name is never followed if it is a symlink: linkat() fails with EEXIST on any existing entry,
// a dangling symlink included. Overwrite replaces only a regular file: a symlink (ELOOP), a folder (EISDIR)
// or any other kind of file (EEXIST) is left alone. An empty path (EINVAL) or one ending in '/' (EISDIR)
// names no file.
#pragma once

#include <cstdint>
#include <string>

#include "core/fd.h"

namespace tripdump::dump {

class OutputFile {
 public:
  // Throws SysError (EEXIST when `path` exists and !overwrite, ENOENT for a missing directory, ...): the
  // path rules above, checked before anything is written.
  OutputFile(const std::string& path, bool overwrite, int pid);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write_at(const void* data, size_t len, uint64_t offset);
  // Writes `len` bytes (a multiple of the page size except possibly at the end), skipping all-zero pages,
  // and streams what lies behind to disk (write_behind). Calls are expected in ascending offset order.
  // Returns the number of bytes actually written.
  uint64_t write_sparse(const uint8_t* data, size_t len, uint64_t offset);
  void set_size(uint64_t size);
  // Gives the file its final name: EEXIST when it exists, unless overwrite (then it is replaced atomically).
  void commit();
  uint64_t bytes_on_disk() const;
  const std::string& path() const { return path_; }

 private:
  void check_final_name() const;
  void open_named_temp();
  void write_behind(uint64_t end);
  std::string unique_temp_name() const;

  std::string path_;
  std::string tmp_path_;  // empty while the file is an unnamed O_TMPFILE
  bool overwrite_;
  int pid_;
  Fd fd_;
  bool committed_ = false;
  uint64_t kicked_ = 0, dropped_ = 0;  // writeback started / page cache released below these offsets
  bool write_behind_ = true;  // false where the file system has no writeback to drive (ESPIPE, EINVAL)
};

}  // namespace tripdump::dump
