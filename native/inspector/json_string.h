// The text a JSON string literal stands for (RFC 8259 §7), decoded without a JS string in between: a heap
// snapshot arrives as hundreds of MiB of CDP events whose one field is such a literal, and building JS
// strings of them (large ones live in V8's old generation until a major GC) grows tripdump's RSS with the
// snapshot; decoding here keeps it flat.
#pragma once

#include <string>
#include <string_view>

namespace tripdump::inspector {

// Appends to `out` what the contents of a JSON string literal (the bytes between its quotes) stand for,
// as UTF-8. False on a malformed escape or an unescaped quote (what was decoded so far stays appended).
bool json_unescape(std::string_view in, std::string& out);

}  // namespace tripdump::inspector
