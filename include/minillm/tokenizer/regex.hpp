// Regular expressions as HF tokenizers runs them: Oniguruma (the engine and version HF's Rust core
// bundles, 6.9.8 on Debian 12), UTF-8, the default (Oniguruma) syntax, and HF's iteration over
// matches (an empty match right after the previous match is skipped).
#pragma once

#include <oniguruma.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "minillm/tokenizer/unicode.hpp"

namespace minillm::tokenizer {

class Regex {
 public:
  // Throws TokenizerError with Oniguruma's message when the engine rejects the pattern.
  explicit Regex(std::string pattern) : pattern_(std::move(pattern)) {
    static std::once_flag init;
    std::call_once(init, [] {
      OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
      onig_initialize(encodings, 1);
    });
    unicode::require_valid_utf8(pattern_);
    regex_t* reg = nullptr;
    OnigErrorInfo info{};
    const auto* p = reinterpret_cast<const OnigUChar*>(pattern_.data());
    const int r = onig_new(&reg, p, p + pattern_.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
    if (r != ONIG_NORMAL) throw TokenizerError("regex " + quoted() + " is rejected: " + message(r, &info));
    reg_.reset(reg, onig_free);
  }

  // HF's literal patterns ({"String": ...}) are the escaped text as a regex.
  static Regex literal(std::string_view text) {
    std::string p;
    for (const char c : text) {
      if (std::string_view("\\.+*?()|[]{}^$#&-~").find(c) != std::string_view::npos) p += '\\';
      p += c;
    }
    return Regex(p);
  }

  const std::string& pattern() const { return pattern_; }

  // The matches in `text`, in order, as (begin, end) byte offsets.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const {
    std::unique_ptr<OnigRegion, void (*)(OnigRegion*)> region(onig_region_new(), [](OnigRegion* r) { onig_region_free(r, 1); });
    const auto* s = reinterpret_cast<const OnigUChar*>(text.data());
    const auto* end = s + text.size();
    size_t from = 0;
    bool have_last = false;
    size_t last_end = 0;
    while (from <= text.size()) {
      onig_region_clear(region.get());
      const int r = onig_search(reg_.get(), s, end, s + from, end, region.get(), ONIG_OPTION_NONE);
      if (r == ONIG_MISMATCH) break;
      if (r < 0) throw TokenizerError("regex " + quoted() + " failed on the input: " + message(r, nullptr));
      const auto b = static_cast<size_t>(region->beg[0]), e = static_cast<size_t>(region->end[0]);
      if (b == e && have_last && last_end == e) {  // no empty match right after the last one
        if (from >= text.size()) break;
        size_t len = 0;
        unicode::decode_at(text, from, len);
        from += len;
        continue;
      }
      out.emplace_back(b, e);
      from = e;
      have_last = true;
      last_end = e;
    }
  }

 private:
  std::string quoted() const { return "\"" + (pattern_.size() > 200 ? pattern_.substr(0, 200) + "..." : pattern_) + "\""; }
  static std::string message(int code, OnigErrorInfo* info) {
    OnigUChar buf[ONIG_MAX_ERROR_MESSAGE_LEN];
    const int n = info ? onig_error_code_to_str(buf, code, info) : onig_error_code_to_str(buf, code);
    return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(std::max(n, 0)));
  }

  std::string pattern_;
  std::shared_ptr<regex_t> reg_;  // read-only after compilation: shared by copies and threads
};

}  // namespace minillm::tokenizer
