// Reads the texts of a corpus file one at a time, without loading the file:
//   *.jsonl  one JSON object per line: its "text", or the contents of its "conversations"
//            (MiniMind's SFT format; reasoning_content included), joined by newlines
//   other    each line is a text (its newline kept, so tokenizers learn it); it must be UTF-8
// Malformed lines (bad JSON, invalid UTF-8) raise an error naming the file and line number.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "minillm/tokenizer/unicode.hpp"

namespace minillm::data {

struct DataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline bool is_jsonl(const std::filesystem::path& p) { return p.extension() == ".jsonl"; }

// Calls `fn(text)` for each text; stops early when fn returns false. Returns the bytes read.
inline uint64_t for_each_text(const std::filesystem::path& path, const std::function<bool(std::string&&)>& fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open " + path.string());
  const bool jsonl = is_jsonl(path);
  std::string line;
  uint64_t line_no = 0, bytes = 0;
  while (std::getline(in, line)) {
    ++line_no;
    bytes += line.size() + 1;
    const auto where = [&] { return path.string() + ":" + std::to_string(line_no); };
    if (!jsonl) {
      try {
        tokenizer::unicode::require_valid_utf8(line);  // JSON lines are checked by the parser
      } catch (const tokenizer::TokenizerError& e) {
        throw DataError(where() + ": " + e.what());
      }
      if (!in.eof()) line += '\n';
      if (!fn(std::move(line))) break;
      continue;
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw DataError(where() + ": not valid JSON (" + e.what() + ")");
    }
    std::string text;
    if (j.is_object() && j.contains("text") && j["text"].is_string()) {
      text = j["text"].get<std::string>();
    } else if (j.is_object() && j.contains("conversations") && j["conversations"].is_array()) {
      for (const auto& m : j["conversations"])
        for (const char* key : {"reasoning_content", "content"})
          if (m.is_object() && m.contains(key) && m[key].is_string()) {
            if (!text.empty()) text += '\n';
            text += m[key].get<std::string>();
          }
    } else {
      throw DataError(where() + ": expected an object with a \"text\" string or a \"conversations\" array");
    }
    if (!fn(std::move(text))) break;
  }
  return bytes;
}

}  // namespace minillm::data
