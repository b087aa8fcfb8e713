// How a pretraining document is wrapped: bos + text + eos (MiniMind's format).
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include "minillm/tokenizer/bpe.hpp"
#include "minillm/tokenizer/tokenizer_config.hpp"

namespace minillm {

// The bos/eos ids a document is wrapped in: tokenizer_config.json's bos_token / eos_token in
// `tokenizer_dir` when present, else <|im_start|> / <|im_end|>.
inline std::pair<int32_t, int32_t> document_markers(const std::filesystem::path& tokenizer_dir,
                                                    const tokenizer::BpeTokenizer& tok) {
  std::string bos = "<|im_start|>", eos = "<|im_end|>";
  const auto c = tokenizer::read_tokenizer_config(tokenizer_dir);
  if (c.contains("bos_token") && c["bos_token"].is_string()) bos = c["bos_token"];
  if (c.contains("eos_token") && c["eos_token"].is_string()) eos = c["eos_token"];
  const auto b = tok.token_to_id(bos), e = tok.token_to_id(eos);
  if (!b || !e) throw tokenizer::TokenizerError("tokenizer has no bos/eos token \"" + bos + "\" / \"" + eos + "\"");
  return {*b, *e};
}

}  // namespace minillm
