// tokenizer_config.json of a tokenizer directory (HF's: chat_template, bos_token, eos_token, ...).
#pragma once

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "minillm/tokenizer/bpe.hpp"

namespace minillm::tokenizer {

// A JSON file that must hold an object (keys in the file's order), else an error naming it.
inline nlohmann::ordered_json read_json_object(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw TokenizerError("cannot open " + file.string());
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw TokenizerError(file.string() + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw TokenizerError(file.string() + ": expected a JSON object, got " + j.type_name());
  return j;
}

// The directory's tokenizer_config.json object, or an empty object when the directory has none. A
// file that is there but is not a JSON object is an error naming it (never silently the defaults).
inline nlohmann::ordered_json read_tokenizer_config(const std::filesystem::path& tokenizer_dir) {
  const auto file = tokenizer_dir / "tokenizer_config.json";
  if (!std::filesystem::exists(file)) return nlohmann::ordered_json::object();
  return read_json_object(file);
}

}  // namespace minillm::tokenizer
