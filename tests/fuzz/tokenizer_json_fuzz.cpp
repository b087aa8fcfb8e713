// libFuzzer target for tokenizer.json loading, encoding and decoding (no LibTorch needed).
// Input: tokenizer.json text, a NUL byte, then a text to encode. Loading must either succeed or
// throw TokenizerError (never another exception, a crash, or an absurd allocation); a loaded
// tokenizer must encode the text (or reject invalid UTF-8 with TokenizerError) into ids it can
// decode, and decode(encode(x)) must be valid UTF-8.
//   scripts/fuzz.sh tokenizer [seconds]
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "minillm/tokenizer/bpe.hpp"

using minillm::tokenizer::BpeTokenizer;
using minillm::tokenizer::TokenizerError;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const auto json_text = input.substr(0, nul);
  const auto text = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
  const auto j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  std::optional<BpeTokenizer> tok;
  try {
    tok.emplace(BpeTokenizer::from_json(j));
  } catch (const TokenizerError&) {
    return 0;
  }
  for (const bool special : {false, true}) {
    std::vector<int32_t> ids;
    try {
      ids = tok->encode(text, special);
    } catch (const TokenizerError&) {
      continue;  // invalid UTF-8, a byte the vocabulary lacks, a regex past its retry limit
    }
    for (const auto id : ids)
      if (id < 0 || static_cast<size_t>(id) >= tok->vocab_size()) std::abort();  // an id it cannot decode
    const auto back = tok->decode(ids);
    if (BpeTokenizer::to_valid_utf8(back) != back) std::abort();
  }
  return 0;
}
