#include "inspector/json_string.h"

#include <cstdint>
#include <cstring>

namespace tripdump::inspector {

namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool hex4(std::string_view in, size_t at, uint32_t& out) {
  if (in.size() - at < 4) return false;
  out = 0;
  for (size_t i = at; i < at + 4; i++) {
    const int h = hex(in[i]);
    if (h < 0) return false;
    out = (out << 4) | static_cast<uint32_t>(h);
  }
  return true;
}

void utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

}  // namespace

bool json_unescape(std::string_view in, std::string& out) {
  out.reserve(out.size() + in.size());
  size_t i = 0;
  while (i < in.size()) {
    // Runs without a backslash are copied at once: most of a snapshot.
    const void* bs = std::memchr(in.data() + i, '\\', in.size() - i);
    const size_t run_end = bs ? static_cast<size_t>(static_cast<const char*>(bs) - in.data()) : in.size();
    if (std::memchr(in.data() + i, '"', run_end - i)) return false;
    out.append(in.data() + i, run_end - i);
    i = run_end;
    if (i >= in.size()) break;
    if (i + 1 >= in.size()) return false;
    const char c = in[i + 1];
    i += 2;
    switch (c) {
      case '"':
        out.push_back('"');
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '/':
        out.push_back('/');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        uint32_t cp;
        if (!hex4(in, i, cp)) return false;
        i += 4;
        if (cp >= 0xd800 && cp < 0xdc00) {
          // A high surrogate takes the low one that follows; alone it is written as U+FFFD.
          uint32_t low;
          if (in.size() - i >= 6 && in[i] == '\\' && in[i + 1] == 'u' && hex4(in, i + 2, low) &&
              low >= 0xdc00 && low < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            i += 6;
          } else {
            cp = 0xfffd;
          }
        } else if (cp >= 0xdc00 && cp < 0xe000) {
          cp = 0xfffd;
        }
        utf8(cp, out);
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

}  // namespace tripdump::inspector
