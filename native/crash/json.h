// A minimal JSON writer for the metadata file. Strings come from the crashing process (comm, cmdline,
// exe path) and are untrusted: every control character is escaped and bytes that are not valid UTF-8
// become U+FFFD, with the exact bytes kept beside in hex ("<key>Hex") so nothing is lost.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tripdump::crash {

bool valid_utf8(std::string_view s);
std::string to_hex(std::string_view s);

class Json {
 public:
  Json& begin_object(std::string_view key = {});
  Json& end_object();
  Json& begin_array(std::string_view key = {});
  Json& end_array();
  Json& str(std::string_view key, std::string_view value);
  // A string from an untrusted source: adds "<key>Hex" when it is not valid UTF-8.
  Json& raw_str(std::string_view key, std::string_view value);
  Json& num(std::string_view key, uint64_t value);
  Json& snum(std::string_view key, int64_t value);
  Json& boolean(std::string_view key, bool value);
  Json& null(std::string_view key);
  const std::string& text() const { return out_; }

 private:
  void sep(std::string_view key);
  void quote(std::string_view s);
  std::string out_;
  std::vector<bool> first_;
};

}  // namespace tripdump::crash
