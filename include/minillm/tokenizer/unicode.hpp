// UTF-8 decoding with validation, and the Unicode classes the splitters and added tokens use.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "minillm/tokenizer/unicode_tables.hpp"

namespace minillm::tokenizer {

struct TokenizerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace unicode {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if the bytes there are not valid UTF-8
// (bad lead byte, bad continuation, overlong form, surrogate, beyond U+10FFFF, or cut short).
inline size_t sequence_length(std::string_view s, size_t i, uint32_t* cp_out = nullptr) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  uint32_t cp;
  size_t n;
  if (b0 < 0x80) {
    if (cp_out) *cp_out = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    cp = b0 & 0x1F, n = 2;
  } else if ((b0 & 0xF0) == 0xE0) {
    cp = b0 & 0x0F, n = 3;
  } else if ((b0 & 0xF8) == 0xF0) {
    cp = b0 & 0x07, n = 4;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<uint8_t>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  if (cp_out) *cp_out = cp;
  return n;
}

// Throws TokenizerError naming the byte offset of the first invalid sequence.
inline void require_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = sequence_length(s, i);
    if (n == 0)
      throw TokenizerError("input is not valid UTF-8: bad byte 0x" +
                           std::string(1, "0123456789abcdef"[static_cast<uint8_t>(s[i]) >> 4]) +
                           std::string(1, "0123456789abcdef"[static_cast<uint8_t>(s[i]) & 15]) + " at offset " +
                           std::to_string(i));
    i += n;
  }
}

inline void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

template <size_t N>
bool in_table(const CodepointRange (&table)[N], uint32_t cp) {
  const auto it = std::upper_bound(std::begin(table), std::end(table), cp,
                                   [](uint32_t c, const CodepointRange& r) { return c < r.first; });
  return it != std::begin(table) && cp <= std::prev(it)->last;
}

inline bool is_letter(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_table(kLetter, cp);
}
inline bool is_number(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_table(kNumber, cp);
}
// Rust regex's \w (added tokens' single_word).
inline bool is_word(uint32_t cp) {
  if (cp < 0x80) return ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') || (cp >= '0' && cp <= '9') || cp == '_';
  return in_table(kWord, cp);
}
// Unicode White_Space (Rust's char::is_whitespace, Oniguruma's \s).
inline bool is_whitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// The code point at s[i] (valid UTF-8 assumed) and its length.
inline uint32_t decode_at(std::string_view s, size_t i, size_t& len) {
  uint32_t cp = 0;
  len = sequence_length(s, i, &cp);
  if (len == 0) len = 1, cp = static_cast<uint8_t>(s[i]);
  return cp;
}

}  // namespace unicode
}  // namespace minillm::tokenizer
