// The core file on disk: created 0600 under a temporary name in the destination directory, written
// sparsely (all-zero pages become holes), and renamed to the final name only when complete. Until commit()
// succeeds, the destructor removes the temporary file, so a failed or cancelled dump leaves nothing.
#pragma once

#include <cstdint>
#include <string>

#include "core/fd.h"

namespace tripdump::dump {

class OutputFile {
 public:
  // Throws SysError (EEXIST when `path` exists and !overwrite, ENOENT for a missing directory, ...).
  OutputFile(const std::string& path, bool overwrite, int pid);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write_at(const void* data, size_t len, uint64_t offset);
  // Writes `len` bytes (a multiple of the page size except possibly at the end), skipping all-zero pages.
  // Returns the number of bytes actually written.
  uint64_t write_sparse(const uint8_t* data, size_t len, uint64_t offset);
  void set_size(uint64_t size);
  // Renames the temporary file to the final name (RENAME_NOREPLACE unless overwrite).
  void commit();
  uint64_t bytes_on_disk() const;
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_path_;
  bool overwrite_;
  int pid_;
  Fd fd_;
  bool committed_ = false;
};

}  // namespace tripdump::dump
