// HF tokenizers' normalizers: NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Strip and
// Sequence, from a tokenizer.json "normalizer" object. Unicode data: unicode_tables.hpp (generated
// from Python's unicodedata by scripts/gen_unicode_tables.py).
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "minillm/tokenizer/regex.hpp"
#include "minillm/tokenizer/unicode.hpp"

namespace minillm::tokenizer {

namespace unicode {

enum class Form { nfc, nfd, nfkc, nfkd };

inline uint32_t combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  const auto it = std::upper_bound(std::begin(kCombiningClass), std::end(kCombiningClass), cp,
                                   [](uint32_t c, const CodepointValue& r) { return c < r.first; });
  return it != std::begin(kCombiningClass) && cp <= std::prev(it)->last ? std::prev(it)->value : 0;
}

namespace hangul {
constexpr uint32_t kS = 0xAC00, kL = 0x1100, kV = 0x1161, kT = 0x11A7, kVCount = 21, kTCount = 28, kSCount = 11172;
}

// Appends the full decomposition of cp (canonical, or compatibility when compat).
inline void decompose(uint32_t cp, bool compat, std::vector<uint32_t>& out) {
  using namespace hangul;
  if (cp >= kS && cp < kS + kSCount) {
    const uint32_t s = cp - kS;
    out.push_back(kL + s / (kVCount * kTCount));
    out.push_back(kV + (s % (kVCount * kTCount)) / kTCount);
    if (s % kTCount) out.push_back(kT + s % kTCount);
    return;
  }
  auto lookup = [&](const auto& table, const auto& pool) {
    const auto it = std::lower_bound(std::begin(table), std::end(table), cp,
                                     [](const Decomposition& d, uint32_t c) { return d.cp < c; });
    if (it == std::end(table) || it->cp != cp) return false;
    out.insert(out.end(), pool + it->offset, pool + it->offset + it->length);
    return true;
  };
  if (!(compat ? lookup(kCompatDecomposition, kCompatPool) : lookup(kCanonicalDecomposition, kCanonicalPool)))
    out.push_back(cp);
}

// The primary composite of a + b, or 0.
inline uint32_t compose(uint32_t a, uint32_t b) {
  using namespace hangul;
  if (a >= kL && a < kL + 19 && b >= kV && b < kV + kVCount) return kS + ((a - kL) * kVCount + (b - kV)) * kTCount;
  if (a >= kS && a < kS + kSCount && (a - kS) % kTCount == 0 && b > kT && b < kT + kTCount) return a + (b - kT);
  const auto it = std::lower_bound(std::begin(kComposition), std::end(kComposition), std::pair{a, b},
                                   [](const Composition& c, std::pair<uint32_t, uint32_t> k) {
                                     return c.first != k.first ? c.first < k.first : c.second < k.second;
                                   });
  return it != std::end(kComposition) && it->first == a && it->second == b ? it->composite : 0;
}

// text in Unicode normalization form `form` (UAX #15). Returns false, leaving out untouched,
// when the text is already in that form (the common case, checked without allocating).
inline bool normalize(std::string_view text, Form form, std::string& out) {
  const bool compose_after = form == Form::nfc || form == Form::nfkc;
  const bool compat = form == Form::nfkc || form == Form::nfkd;
  bool maybe = false;
  for (size_t i = 0; i < text.size() && !maybe;) {
    if (static_cast<uint8_t>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    const uint32_t cp = decode_at(text, i, len);
    i += len;
    switch (form) {
      case Form::nfc: maybe = in_table(kMaybeNotNfc, cp); break;
      case Form::nfkc: maybe = in_table(kMaybeNotNfkc, cp); break;
      default: {  // NFD/NFKD: anything that decomposes or carries a combining class
        std::vector<uint32_t> d;
        decompose(cp, compat, d);
        maybe = d.size() != 1 || d[0] != cp || combining_class(cp) != 0;
      }
    }
  }
  if (!maybe) return false;
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    decompose(decode_at(text, i, len), compat, cps);
    i += len;
  }
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (combining_class(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && combining_class(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + static_cast<std::ptrdiff_t>(i), cps.begin() + static_cast<std::ptrdiff_t>(j),
                     [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  if (compose_after) {
    std::vector<uint32_t> res;
    res.reserve(cps.size());
    long starter = -1;
    int last_cc = -1;  // class of the last character kept after the starter; -1: none (adjacent)
    for (const uint32_t c : cps) {
      const int cc = static_cast<int>(combining_class(c));
      if (starter >= 0 && (last_cc == -1 || last_cc < cc)) {
        if (const uint32_t comp = compose(res[static_cast<size_t>(starter)], c)) {
          res[static_cast<size_t>(starter)] = comp;
          continue;
        }
      }
      if (cc == 0) {
        starter = static_cast<long>(res.size());
        last_cc = -1;
      } else {
        last_cc = cc;
      }
      res.push_back(c);
    }
    cps.swap(res);
  }
  out.clear();
  for (const uint32_t c : cps) append_utf8(out, c);
  return true;
}

// Rust's char::to_lowercase for each code point.
inline void append_lowercase(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    return;
  }
  if (cp == 0x130) {  // the one mapping to two code points
    out += "i\xCC\x87";
    return;
  }
  const auto it = std::lower_bound(std::begin(kLowercase), std::end(kLowercase), cp,
                                   [](const CodepointValue& r, uint32_t c) { return r.first < c; });
  append_utf8(out, it != std::end(kLowercase) && it->first == cp ? it->value : cp);
}

}  // namespace unicode

// One step of a normalizer ("Sequence" is flattened into its steps).
class Normalizer {
 public:
  Normalizer() = default;

  // `where` names the JSON path in error messages (e.g. "normalizer.normalizers[1]").
  static Normalizer from_json(const nlohmann::json& j, const std::string& where = "normalizer") {
    Normalizer n;
    if (!j.is_null()) n.add(j, where);
    return n;
  }

  bool empty() const { return steps_.empty(); }

  // Returns false (out untouched) when no step changes the text. Replace/Prepend steps chained
  // could grow a text without bound: past 64x (+64 KiB) it is an error, not an allocation.
  bool apply(std::string_view text, std::string& out) const {
    bool changed = false;
    std::string tmp;
    const size_t limit = 64 * text.size() + 65536;
    for (size_t i = 0; i < steps_.size(); ++i) {
      const std::string_view cur = changed ? std::string_view(out) : text;
      if (steps_[i].run(cur, tmp)) {
        if (tmp.size() > limit)
          throw TokenizerError("normalizer step " + std::to_string(i) + " grew a " + std::to_string(text.size()) +
                               "-byte text to " + std::to_string(tmp.size()) + " bytes");
        out.swap(tmp);
        changed = true;
      }
    }
    return changed;
  }

 private:
  struct Step {
    enum Kind { unicode_form, lowercase, replace, prepend, strip } kind;
    unicode::Form form = unicode::Form::nfc;
    std::shared_ptr<const Regex> pattern;
    std::string content;
    bool left = false, right = false;

    bool run(std::string_view text, std::string& out) const {
      switch (kind) {
        case unicode_form: return unicode::normalize(text, form, out);
        case lowercase: {
          bool any = false;
          for (const char c : text) any |= static_cast<uint8_t>(c) >= 0x80 || (c >= 'A' && c <= 'Z');
          if (!any) return false;
          out.clear();
          for (size_t i = 0; i < text.size();) {
            size_t len = 0;
            unicode::append_lowercase(out, unicode::decode_at(text, i, len));
            i += len;
          }
          return true;
        }
        case replace: {
          std::vector<std::pair<size_t, size_t>> m;
          pattern->find_all(text, m);
          if (m.empty()) return false;
          out.clear();
          size_t prev = 0;
          for (const auto& [b, e] : m) {
            out.append(text.substr(prev, b - prev));
            out += content;
            prev = e;
            if (out.size() > 64 * text.size() + 65536) break;  // apply() reports the growth
          }
          out.append(text.substr(prev));
          return true;
        }
        case prepend:
          if (text.empty()) return false;
          out = content;
          out.append(text);
          return true;
        case strip: {
          size_t b = 0, e = text.size(), len = 0;
          while (left && b < e && unicode::is_whitespace(unicode::decode_at(text, b, len))) b += len;
          while (right && e > b) {
            size_t k = e - 1;
            while (k > b && (static_cast<uint8_t>(text[k]) & 0xC0) == 0x80) --k;
            if (!unicode::is_whitespace(unicode::decode_at(text, k, len))) break;
            e = k;
          }
          if (b == 0 && e == text.size()) return false;
          out.assign(text.substr(b, e - b));
          return true;
        }
      }
      return false;
    }
  };

  void add(const nlohmann::json& j, const std::string& where) {
    if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
      throw TokenizerError(where + " must be an object with a \"type\" string, got " + j.dump().substr(0, 200));
    const auto type = j["type"].get<std::string>();
    auto flag = [&](const char* key) {
      if (!j.contains(key)) return false;
      if (!j[key].is_boolean()) throw TokenizerError(where + "." + key + " must be true or false, got " + j[key].dump());
      return j[key].get<bool>();
    };
    auto str = [&](const char* key) {
      if (!j.contains(key) || !j[key].is_string()) throw TokenizerError(where + "." + key + " must be a string");
      return j[key].get<std::string>();
    };
    if (type == "Sequence") {
      if (!j.contains("normalizers") || !j["normalizers"].is_array())
        throw TokenizerError(where + ".normalizers must be an array");
      for (size_t i = 0; i < j["normalizers"].size(); ++i)
        add(j["normalizers"][i], where + ".normalizers[" + std::to_string(i) + "]");
    } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
      Step s{Step::unicode_form};
      s.form = type == "NFC" ? unicode::Form::nfc : type == "NFD" ? unicode::Form::nfd
             : type == "NFKC" ? unicode::Form::nfkc : unicode::Form::nfkd;
      steps_.push_back(s);
    } else if (type == "Lowercase") {
      steps_.push_back({Step::lowercase});
    } else if (type == "Replace") {
      Step s{Step::replace};
      s.pattern = std::make_shared<const Regex>(pattern_from_json(j, where));
      s.content = str("content");
      steps_.push_back(std::move(s));
    } else if (type == "Prepend") {
      Step s{Step::prepend};
      s.content = str("prepend");
      steps_.push_back(std::move(s));
    } else if (type == "Strip") {
      Step s{Step::strip};
      s.left = flag("strip_left");
      s.right = flag("strip_right");
      steps_.push_back(std::move(s));
    } else {
      throw TokenizerError(where + ": normalizer type \"" + type +
                           "\" is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Strip, Sequence)");
    }
  }

 public:
  // A Split/Replace "pattern": {"String": text} or {"Regex": pattern}.
  static Regex pattern_from_json(const nlohmann::json& j, const std::string& where) {
    if (!j.contains("pattern") || !j["pattern"].is_object() || j["pattern"].size() != 1)
      throw TokenizerError(where + ".pattern must be {\"String\": ...} or {\"Regex\": ...}");
    const auto& p = j["pattern"];
    try {
      if (p.contains("String") && p["String"].is_string()) return Regex::literal(p["String"].get<std::string>());
      if (p.contains("Regex") && p["Regex"].is_string()) return Regex(p["Regex"].get<std::string>());
    } catch (const TokenizerError& e) {
      throw TokenizerError(where + ".pattern: " + e.what());
    }
    throw TokenizerError(where + ".pattern must be {\"String\": ...} or {\"Regex\": ...}, got " + p.dump().substr(0, 200));
  }

 private:
  std::vector<Step> steps_;
};

}  // namespace minillm::tokenizer
