// GPT-2's byte-level scheme, as HF tokenizers' ByteLevel pre-tokenizer and decoder implement it:
// text is split by the GPT-2 regex, each piece's bytes are mapped to printable characters
// (bytes_to_unicode), and decoding maps the characters back to bytes.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "minillm/tokenizer/unicode.hpp"

namespace minillm::tokenizer {

// byte -> code point of its printable stand-in ('!'..'~', '¡'..'¬', '®'..'ÿ' stand for
// themselves; the other 68 bytes map to U+0100 onwards, in order).
inline const std::array<uint32_t, 256>& byte_to_codepoint() {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

// The byte-level string of raw bytes (each byte becomes one character, UTF-8 encoded).
inline std::string bytes_to_symbols(std::string_view bytes) {
  static const auto table = [] {
    std::array<std::string, 256> t;
    for (int b = 0; b < 256; ++b) unicode::append_utf8(t[static_cast<size_t>(b)], byte_to_codepoint()[static_cast<size_t>(b)]);
    return t;
  }();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += table[b];
  return out;
}

// The inverse: -1 for code points that stand for no byte.
inline int codepoint_to_byte(uint32_t cp) {
  static const auto table = [] {
    std::array<int, 512> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[byte_to_codepoint()[static_cast<size_t>(b)]] = b;
    return t;
  }();
  return cp < 512 ? table[cp] : -1;
}

// Splits valid UTF-8 text as the GPT-2 regex does:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// Alternatives are tried in order at each position, as the regex engine does; the whitespace
// alternative backtracks one character so a run of spaces leaves its last space to the next word.
inline void split_gpt2(std::string_view text, std::vector<std::string_view>& out) {
  using namespace unicode;
  struct Cp {
    uint32_t cp;
    size_t len;
  };
  auto at = [&](size_t i) -> Cp {
    uint32_t cp = 0;
    const size_t n = sequence_length(text, i, &cp);
    return {cp, n == 0 ? 1 : n};
  };
  auto is_other = [](uint32_t cp) { return !is_whitespace(cp) && !is_letter(cp) && !is_number(cp); };
  auto run = [&](size_t i, auto pred) {  // end of the run of code points satisfying pred from i
    while (i < text.size()) {
      const auto c = at(i);
      if (!pred(c.cp)) break;
      i += c.len;
    }
    return i;
  };
  size_t i = 0;
  while (i < text.size()) {
    const auto c = at(i);
    // 's 't 're 've 'm 'll 'd
    if (c.cp == '\'' && i + 1 < text.size()) {
      const auto rest = text.substr(i + 1, 2);
      size_t n = 0;
      if (rest.size() >= 2 && (rest.substr(0, 2) == "re" || rest.substr(0, 2) == "ve" || rest.substr(0, 2) == "ll")) n = 3;
      else if (rest[0] == 's' || rest[0] == 't' || rest[0] == 'm' || rest[0] == 'd') n = 2;
      if (n > 0) {
        out.push_back(text.substr(i, n));
        i += n;
        continue;
      }
    }
    // optional space, then letters / numbers / other
    const size_t body = (c.cp == ' ' && i + 1 < text.size()) ? i + 1 : i;
    if (body < text.size()) {
      const auto b = at(body);
      size_t end = body;
      if (is_letter(b.cp)) end = run(body, is_letter);
      else if (is_number(b.cp)) end = run(body, is_number);
      else if (is_other(b.cp)) end = run(body, is_other);
      if (end > body) {
        out.push_back(text.substr(i, end - i));
        i = end;
        continue;
      }
    }
    // whitespace: \s+(?!\S) then \s+
    const size_t ws_end = run(i, is_whitespace);
    if (ws_end == text.size()) {
      out.push_back(text.substr(i));
      i = ws_end;
      continue;
    }
    size_t last = i;  // start of the last whitespace code point of the run
    for (size_t k = i; k < ws_end; k += at(k).len) last = k;
    const size_t end = last > i ? last : ws_end;
    out.push_back(text.substr(i, end - i));
    i = end;
  }
}

}  // namespace minillm::tokenizer
