// HF tokenizers' pre-tokenizers for the byte-level BPE family: Split (a regex or a string, with
// its behavior and invert), ByteLevel (add_prefix_space, use_regex), Digits, and Sequence — from a
// tokenizer.json "pre_tokenizer" object. The regexes of GPT-2, Llama-3 and Qwen2/3 run through
// hand-written scanners that give Oniguruma's matches (tests compare them), the rest through
// Oniguruma.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "minillm/tokenizer/byte_level.hpp"
#include "minillm/tokenizer/normalizer.hpp"
#include "minillm/tokenizer/regex.hpp"

namespace minillm::tokenizer {

// The Llama-3 pattern (max_digits 3) and the Qwen2/3 one (max_digits 1):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// Every character is covered by some alternative, so the matches are the pieces.
inline void split_llama3(std::string_view text, std::vector<std::string_view>& out, int max_digits) {
  using namespace unicode;
  auto at = [&](size_t i, size_t& len) { return decode_at(text, i, len); };
  auto is_other = [](uint32_t cp) { return !is_whitespace(cp) && !is_letter(cp) && !is_number(cp); };
  auto is_crlf = [](uint32_t cp) { return cp == '\r' || cp == '\n'; };
  size_t i = 0, len = 0, len2 = 0;
  while (i < text.size()) {
    const uint32_t c = at(i, len);
    size_t end = i;
    // (?i:'s|'t|'re|'ve|'m|'ll|'d): Oniguruma's case folding also lets U+017F (long s) match s.
    if (c == '\'' && i + 1 < text.size()) {
      const uint32_t c1 = at(i + 1, len2);
      const uint32_t l1 = c1 < 0x80 ? (c1 | 0x20) : c1;
      const size_t after1 = i + 1 + len2;
      auto next_is = [&](char want) {
        return after1 < text.size() && (static_cast<uint8_t>(text[after1]) | 0x20) == static_cast<uint8_t>(want);
      };
      if (l1 == 's' || l1 == 0x17F || l1 == 't' || l1 == 'm' || l1 == 'd') end = after1;
      else if ((l1 == 'r' && next_is('e')) || (l1 == 'v' && next_is('e')) || (l1 == 'l' && next_is('l'))) end = after1 + 1;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (end == i) {
      size_t body = i;
      if (!is_letter(c) && !is_number(c) && !is_crlf(c) && i + len < text.size() && is_letter(at(i + len, len2))) body = i + len;
      if (is_letter(at(body, len2))) {
        end = body;
        while (end < text.size() && is_letter(at(end, len2))) end += len2;
      }
    }
    // \p{N}{1,max}
    if (end == i && is_number(c)) {
      end = i;
      for (int k = 0; k < max_digits && end < text.size() && is_number(at(end, len2)); ++k) end += len2;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    if (end == i) {
      size_t body = i;
      if (c == ' ' && i + 1 < text.size() && is_other(at(i + 1, len2))) body = i + 1;
      if (is_other(at(body, len2))) {
        end = body;
        while (end < text.size() && is_other(at(end, len2))) end += len2;
        while (end < text.size() && (text[end] == '\r' || text[end] == '\n')) ++end;
      }
    }
    if (end == i) {  // whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
      size_t ws_end = i, last_crlf = std::string_view::npos, last_start = i;
      while (ws_end < text.size()) {
        const uint32_t w = at(ws_end, len2);
        if (!is_whitespace(w)) break;
        if (is_crlf(w)) last_crlf = ws_end;
        last_start = ws_end;
        ws_end += len2;
      }
      if (last_crlf != std::string_view::npos) end = last_crlf + 1;
      else if (ws_end == text.size() || last_start == i) end = ws_end;
      else end = last_start;
    }
    out.push_back(text.substr(i, end - i));
    i = end;
  }
}

// The split regexes the hand-written scanners implement, as tokenizer.json writes them.
namespace patterns {
inline constexpr std::string_view kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kQwen =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}  // namespace patterns

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

class PreTokenizer {
 public:
  // Buffers reused across calls (one per thread).
  struct Scratch {
    std::vector<std::string_view> a, b;
    std::vector<std::pair<size_t, size_t>> matches;
    std::vector<std::pair<std::pair<size_t, size_t>, bool>> spans;
    std::deque<std::string> strings;  // pieces made by add_prefix_space
  };

  // The GPT-2 ByteLevel pre-tokenizer (what minillm trains).
  static PreTokenizer byte_level() {
    PreTokenizer p;
    p.steps_.push_back({Step::byte_level, nullptr, Fast::none, SplitBehavior::isolated, false, false, true, false});
    return p;
  }

  static PreTokenizer from_json(const nlohmann::json& j, const std::string& where = "pre_tokenizer") {
    PreTokenizer p;
    p.add(j, where);
    size_t byte_levels = 0;
    for (const auto& s : p.steps_) byte_levels += s.kind == Step::byte_level;
    if (byte_levels != 1 || p.steps_.back().kind != Step::byte_level)
      throw TokenizerError(where + " must end with one ByteLevel pre-tokenizer (the byte-level BPE family), got " +
                           j.dump().substr(0, 300));
    return p;
  }

  // Splits text into pieces (views into text or into scratch.strings), none empty.
  void run(std::string_view text, std::vector<std::string_view>& out, Scratch& s) const {
    s.strings.clear();
    if (steps_.size() == 1) return run_step(steps_[0], text, out, s);
    s.a.assign(1, text);
    for (const auto& step : steps_) {
      s.b.clear();
      for (const auto piece : s.a) run_step(step, piece, s.b, s);
      s.a.swap(s.b);
    }
    out.insert(out.end(), s.a.begin(), s.a.end());
  }

 private:
  enum class Fast { none, gpt2, llama3, qwen };
  struct Step {
    enum Kind { split, byte_level, digits } kind;
    std::shared_ptr<const Regex> regex;
    Fast fast = Fast::none;
    SplitBehavior behavior = SplitBehavior::isolated;
    bool invert = false;
    bool add_prefix_space = false, use_regex = true, individual_digits = false;
  };

  void add(const nlohmann::json& j, const std::string& where) {
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
      throw TokenizerError(where + " must be an object with a \"type\" string, got " + j.dump().substr(0, 200));
    const auto type = j["type"].get<std::string>();
    auto flag = [&](const char* key, bool def) {
      if (!j.contains(key)) return def;
      if (!j[key].is_boolean()) throw TokenizerError(where + "." + key + " must be true or false");
      return j[key].get<bool>();
    };
    if (type == "Sequence") {
      if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
        throw TokenizerError(where + ".pretokenizers must be an array");
      for (size_t i = 0; i < j["pretokenizers"].size(); ++i)
        add(j["pretokenizers"][i], where + ".pretokenizers[" + std::to_string(i) + "]");
    } else if (type == "Split") {
      Step s{Step::split};
      s.regex = std::make_shared<const Regex>(Normalizer::pattern_from_json(j, where));
      const auto behavior = j.value("behavior", nlohmann::json());
      static const std::pair<const char*, SplitBehavior> kBehaviors[] = {
          {"Removed", SplitBehavior::removed}, {"Isolated", SplitBehavior::isolated},
          {"MergedWithPrevious", SplitBehavior::merged_with_previous}, {"MergedWithNext", SplitBehavior::merged_with_next},
          {"Contiguous", SplitBehavior::contiguous}};
      bool known = false;
      for (const auto& [name, b] : kBehaviors)
        if (behavior == name) s.behavior = b, known = true;
      if (!known)
        throw TokenizerError(where + ".behavior must be Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous, got " +
                             behavior.dump());
      s.invert = flag("invert", false);
      if (j["pattern"].contains("Regex") && s.behavior == SplitBehavior::isolated && !s.invert) {
        const auto& p = s.regex->pattern();
        s.fast = p == patterns::kGpt2 ? Fast::gpt2 : p == patterns::kLlama3 ? Fast::llama3 : p == patterns::kQwen ? Fast::qwen : Fast::none;
      }
      steps_.push_back(std::move(s));
    } else if (type == "ByteLevel") {
      Step s{Step::byte_level};
      s.add_prefix_space = flag("add_prefix_space", true);
      s.use_regex = flag("use_regex", true);
      steps_.push_back(std::move(s));
    } else if (type == "Digits") {
      Step s{Step::digits};
      s.individual_digits = flag("individual_digits", false);
      steps_.push_back(std::move(s));
    } else {
      throw TokenizerError(where + ": pre-tokenizer type \"" + type +
                           "\" is not supported (Split, ByteLevel, Digits, Sequence)");
    }
  }

  static void run_fast(Fast f, std::string_view text, std::vector<std::string_view>& out) {
    switch (f) {
      case Fast::gpt2: split_gpt2(text, out); break;
      case Fast::llama3: split_llama3(text, out, 3); break;
      case Fast::qwen: split_llama3(text, out, 1); break;
      case Fast::none: break;
    }
  }

  void run_step(const Step& step, std::string_view text, std::vector<std::string_view>& out, Scratch& s) const {
    if (text.empty()) return;
    switch (step.kind) {
      case Step::byte_level:
        if (step.add_prefix_space && text[0] != ' ') {
          s.strings.push_back(" " + std::string(text));
          text = s.strings.back();
        }
        if (step.use_regex) split_gpt2(text, out);
        else out.push_back(text);
        return;
      case Step::split:
        if (step.fast != Fast::none) return run_fast(step.fast, text, out);
        s.matches.clear();
        step.regex->find_all(text, s.matches);
        break;
      case Step::digits: {  // each numeric character (Rust's char::is_numeric) is a match
        s.matches.clear();
        for (size_t i = 0, len = 0; i < text.size(); i += len)
          if (unicode::is_number(unicode::decode_at(text, i, len))) s.matches.emplace_back(i, i + len);
        break;
      }
    }
    // Matches and the gaps between them, flagged, as HF's find_matches gives them.
    auto& spans = s.spans;
    spans.clear();
    size_t prev = 0;
    for (const auto& [b, e] : s.matches) {
      if (prev != b) spans.push_back({{prev, b}, false});
      spans.push_back({{b, e}, true});
      prev = e;
    }
    if (prev != text.size()) spans.push_back({{prev, text.size()}, false});
    const SplitBehavior behavior =
        step.kind == Step::digits ? (step.individual_digits ? SplitBehavior::isolated : SplitBehavior::contiguous) : step.behavior;
    if (step.invert)
      for (auto& sp : spans) sp.second = !sp.second;
    const size_t first = out.size();
    auto emit = [&](std::pair<size_t, size_t> r) { out.push_back(text.substr(r.first, r.second - r.first)); };
    bool previous_match = false;
    switch (behavior) {
      case SplitBehavior::isolated:
        for (const auto& sp : spans) emit(sp.first);
        break;
      case SplitBehavior::removed:
        for (const auto& sp : spans)
          if (!sp.second) emit(sp.first);
        break;
      case SplitBehavior::contiguous:
        for (size_t k = 0; k < spans.size(); ++k) {
          if (k > 0 && spans[k].second == previous_match) {
            out.back() = text.substr(0, spans[k].first.second).substr(out.back().data() - text.data());
          } else {
            emit(spans[k].first);
          }
          previous_match = spans[k].second;
        }
        break;
      case SplitBehavior::merged_with_previous:
        for (size_t k = 0; k < spans.size(); ++k) {
          if (spans[k].second && !previous_match && out.size() > first) {
            out.back() = text.substr(0, spans[k].first.second).substr(out.back().data() - text.data());
          } else {
            emit(spans[k].first);
          }
          previous_match = spans[k].second;
        }
        break;
      case SplitBehavior::merged_with_next: {
        std::vector<std::pair<size_t, size_t>> rev;
        for (size_t k = spans.size(); k-- > 0;) {
          if (spans[k].second && !previous_match && !rev.empty()) rev.back().first = spans[k].first.first;
          else rev.push_back(spans[k].first);
          previous_match = spans[k].second;
        }
        for (size_t k = rev.size(); k-- > 0;) emit(rev[k]);
        break;
      }
    }
    // HF drops empty pieces.
    out.erase(std::remove_if(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
                             [](std::string_view v) { return v.empty(); }),
              out.end());
  }

  std::vector<Step> steps_;
};

}  // namespace minillm::tokenizer
