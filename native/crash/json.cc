#include "crash/json.h"

#include <cstdio>

namespace tripdump::crash {

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one (overlongs, surrogates and
// code points above U+10FFFF are invalid too, so the output is always valid JSON text).
size_t utf8_len(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, cp = c & 0x07;
  else
    return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; k++) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return n;
}

}  // namespace

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_len(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

std::string to_hex(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

void Json::sep(std::string_view key) {
  if (!first_.empty()) {
    if (!first_.back()) out_ += ',';
    first_.back() = false;
  }
  if (!key.empty()) {
    quote(key);
    out_ += ':';
  }
}

void Json::quote(std::string_view s) {
  out_ += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = utf8_len(s, i);
    if (n == 0) {
      out_ += "\\ufffd";
      i++;
      continue;
    }
    if (n > 1) {
      out_.append(s.substr(i, n));
    } else if (c == '"' || c == '\\') {
      out_ += '\\';
      out_ += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      out_ += esc;
    } else {
      out_ += static_cast<char>(c);
    }
    i += n;
  }
  out_ += '"';
}

Json& Json::begin_object(std::string_view key) {
  sep(key);
  out_ += '{';
  first_.push_back(true);
  return *this;
}
Json& Json::end_object() {
  first_.pop_back();
  out_ += '}';
  return *this;
}
Json& Json::begin_array(std::string_view key) {
  sep(key);
  out_ += '[';
  first_.push_back(true);
  return *this;
}
Json& Json::end_array() {
  first_.pop_back();
  out_ += ']';
  return *this;
}
Json& Json::str(std::string_view key, std::string_view value) {
  sep(key);
  quote(value);
  return *this;
}
Json& Json::raw_str(std::string_view key, std::string_view value) {
  str(key, value);
  if (!valid_utf8(value)) str(std::string(key) + "Hex", to_hex(value));
  return *this;
}
Json& Json::num(std::string_view key, uint64_t value) {
  sep(key);
  out_ += std::to_string(value);
  return *this;
}
Json& Json::snum(std::string_view key, int64_t value) {
  sep(key);
  out_ += std::to_string(value);
  return *this;
}
Json& Json::boolean(std::string_view key, bool value) {
  sep(key);
  out_ += value ? "true" : "false";
  return *this;
}
Json& Json::null(std::string_view key) {
  sep(key);
  out_ += "null";
  return *this;
}

}  // namespace tripdump::crash
