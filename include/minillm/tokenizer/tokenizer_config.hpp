// tokenizer_config.json of a tokenizer directory (HF's: chat_template, bos_token, eos_token, ...).
#pragma once

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "minillm/tokenizer/bpe.hpp"

namespace minillm::tokenizer {

// The file's object, or an empty object when the directory has none. A file that is there but is
// not a JSON object is an error naming it (never silently the defaults).
inline nlohmann::json read_tokenizer_config(const std::filesystem::path& tokenizer_dir) {
  const auto file = tokenizer_dir / "tokenizer_config.json";
  std::ifstream in(file);
  if (!in) return nlohmann::json::object();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw TokenizerError(file.string() + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw TokenizerError(file.string() + ": expected a JSON object, got " + j.type_name());
  return j;
}

}  // namespace minillm::tokenizer
