// Token-by-token decoding for streaming output: each push returns only complete UTF-8 characters,
// holding back the bytes of a character that the next token will finish.
#pragma once

#include <string>

#include "minillm/tokenizer/bpe.hpp"

namespace minillm::tokenizer {

class StreamDecoder {
 public:
  explicit StreamDecoder(const BpeTokenizer& tokenizer, bool skip_special = false)
      : tokenizer_(&tokenizer), skip_special_(skip_special) {}

  // Text that became complete with this token (possibly empty).
  std::string push(int32_t id) {
    tokenizer_->append_token_bytes(id, skip_special_, pending_);
    // Emit everything up to a trailing sequence that is still incomplete (at most 3 bytes that
    // begin a valid character); invalid bytes become U+FFFD now.
    size_t keep = incomplete_tail(pending_);
    std::string out = BpeTokenizer::to_valid_utf8(std::string_view(pending_).substr(0, pending_.size() - keep));
    pending_.erase(0, pending_.size() - keep);
    return out;
  }

  // Whatever is left at the end of the stream (a cut character becomes U+FFFD).
  std::string flush() {
    std::string out = BpeTokenizer::to_valid_utf8(pending_);
    pending_.clear();
    return out;
  }

 private:
  // Bytes at the end of s that are the valid beginning of a character not yet complete.
  static size_t incomplete_tail(const std::string& s) {
    for (size_t k = 1; k <= 3 && k <= s.size(); ++k) {
      const auto b = static_cast<uint8_t>(s[s.size() - k]);
      if ((b & 0xC0) == 0x80) continue;  // continuation byte: look further back
      const size_t need = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
      if (need <= k) return 0;  // complete (or invalid): nothing to hold back
      if (k == 1) return 1;     // a lead byte alone: wait for the rest
      // Hold back only if the bytes so far can still start a valid character.
      const auto probe = s.substr(s.size() - k) + std::string(need - k, '\x80');
      return unicode::sequence_length(probe, 0) ? k : 0;
    }
    return 0;
  }

  const BpeTokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace minillm::tokenizer
