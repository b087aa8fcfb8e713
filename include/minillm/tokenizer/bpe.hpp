// Byte-level BPE tokenizers as HF tokenizers defines them in tokenizer.json (model "BPE"; the
// GPT-2, Llama-3, Qwen2/3 and DeepSeek-V3 family): normalizer, pre-tokenizer ending in ByteLevel,
// BPE (ignore_merges included), ByteLevel decoder, post-processor (TemplateProcessing,
// Roberta/Bert, ByteLevel) and added tokens (lstrip, rstrip, single_word, normalized). Same ids
// for the same text as HF, same text for the same ids.
#pragma once

#include <filesystem>
#include <memory>
#include <fstream>
#include <mutex>
#include <optional>
#include <algorithm>
#include <bit>
#include <functional>
#include <tuple>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "minillm/core/parallel.hpp"
#include "minillm/io/atomic_write.hpp"
#include "minillm/tokenizer/byte_level.hpp"
#include "minillm/tokenizer/normalizer.hpp"
#include "minillm/tokenizer/pre_tokenizer.hpp"

namespace minillm::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = true;
  bool lstrip = false, rstrip = false, single_word = false;
  bool normalized = false;  // matched in the normalized text (else in the raw text, before normalizing)
};

// The parts of tokenizer.json around the BPE model, as loaded.
struct Pipeline {
  Normalizer normalizer;
  PreTokenizer pre_tokenizer = PreTokenizer::byte_level();
  // Post-processor with add_special_tokens: the single-sequence template as id runs, the text's
  // ids standing where `sequence_at` says (empty template: nothing added).
  std::vector<std::vector<int32_t>> template_ids;
  size_t sequence_at = 0;
  bool ignore_merges = false;
  nlohmann::json json;  // normalizer, pre_tokenizer, post_processor, decoder as read (written back by to_json)
};

class BpeTokenizer {
 public:
  BpeTokenizer() = default;
  // Copies rebuild the lookup tables (they point into the copied vocabulary); moves keep them.
  BpeTokenizer(const BpeTokenizer& o) : BpeTokenizer(o.vocab_, o.merges_, o.added_, o.pipeline_) {}
  BpeTokenizer& operator=(const BpeTokenizer& o) {
    if (this != &o) *this = BpeTokenizer(o);
    return *this;
  }
  BpeTokenizer(BpeTokenizer&&) noexcept = default;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept = default;

  // vocab: token (byte-level string) -> id; merges in rank order; added tokens with their ids.
  BpeTokenizer(std::unordered_map<std::string, int32_t> vocab, std::vector<std::pair<std::string, std::string>> merges,
               std::vector<AddedToken> added, Pipeline pipeline = {})
      : vocab_(std::move(vocab)), merges_(std::move(merges)), added_(std::move(added)), pipeline_(std::move(pipeline)) {
    index();
  }

  // Errors name the file and the field.
  static BpeTokenizer from_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) throw TokenizerError("cannot open tokenizer file " + path.string());
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      throw TokenizerError(path.string() + ": not valid JSON: " + e.what());
    }
    try {
      return from_json(j);
    } catch (const TokenizerError& e) {
      throw TokenizerError(path.string() + ": " + e.what());
    } catch (const nlohmann::json::exception& e) {
      throw TokenizerError(path.string() + ": " + e.what());
    }
  }

  static BpeTokenizer from_json(const nlohmann::json& j) {
    using nlohmann::json;
    if (!j.is_object()) throw TokenizerError("the top level must be a JSON object, got " + std::string(j.type_name()));
    auto need = [](const json& parent, const char* key, const std::string& where, json::value_t type) -> const json& {
      if (!parent.contains(key)) throw TokenizerError("field \"" + where + "\" is missing");
      const auto& v = parent[key];
      if (v.type() != type && !(type == json::value_t::number_integer && v.is_number_unsigned()))
        throw TokenizerError("field \"" + where + "\" must be " + json(type).type_name() + std::string(", got ") +
                             v.type_name());
      return v;
    };
    auto optional_flag = [](const json& parent, const char* key, const std::string& where, bool def) {
      if (!parent.contains(key) || parent[key].is_null()) return def;
      if (!parent[key].is_boolean()) throw TokenizerError("field \"" + where + "\" must be true or false, got " + parent[key].dump());
      return parent[key].get<bool>();
    };
    const auto& model = need(j, "model", "model", json::value_t::object);
    if (model.contains("type") && model["type"] != "BPE")
      throw TokenizerError("model.type must be \"BPE\", got " + model["type"].dump());
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.contains(key) && !model[key].is_null() && model[key] != "")
        throw TokenizerError(std::string("model.") + key + " = " + model[key].dump() + " is not supported (byte-level BPE has none)");
    if (optional_flag(model, "byte_fallback", "model.byte_fallback", false))
      throw TokenizerError("model.byte_fallback = true is not supported (byte-level BPE needs no fallback)");
    if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"] != 0)
      throw TokenizerError("model.dropout = " + model["dropout"].dump() + " is not supported (encoding is deterministic)");

    Pipeline pipe;
    pipe.ignore_merges = optional_flag(model, "ignore_merges", "model.ignore_merges", false);
    const json none;
    const auto& normalizer = j.contains("normalizer") ? j["normalizer"] : none;
    const auto& pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : none;
    const auto& post = j.contains("post_processor") ? j["post_processor"] : none;
    const auto& decoder = j.contains("decoder") ? j["decoder"] : none;
    pipe.normalizer = Normalizer::from_json(normalizer);
    if (pre.is_null()) throw TokenizerError("field \"pre_tokenizer\" is missing (byte-level BPE needs a ByteLevel one)");
    pipe.pre_tokenizer = PreTokenizer::from_json(pre);
    check_decoder(decoder, "decoder");
    pipe.json = {{"normalizer", normalizer}, {"pre_tokenizer", pre}, {"post_processor", post}, {"decoder", decoder}};

    std::unordered_map<std::string, int32_t> vocab;
    const auto& vocab_json = need(model, "vocab", "model.vocab", json::value_t::object);
    for (auto it = vocab_json.begin(); it != vocab_json.end(); ++it) {
      if (!it.value().is_number_integer())
        throw TokenizerError("model.vocab: the id of token \"" + it.key() + "\" must be an integer, got " + it.value().dump());
      const auto id = it.value().get<int64_t>();
      if (id < 0 || id > INT32_MAX)
        throw TokenizerError("model.vocab: id " + std::to_string(id) + " of token \"" + it.key() + "\" is out of range");
      vocab[it.key()] = static_cast<int32_t>(id);
    }
    std::vector<std::pair<std::string, std::string>> merges;
    const auto& merges_json = need(model, "merges", "model.merges", json::value_t::array);
    for (size_t r = 0; r < merges_json.size(); ++r) {
      const auto& m = merges_json[r];
      if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else if (m.is_string()) {  // older format: "a b"
        const auto s = m.get<std::string>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos) throw TokenizerError("model.merges[" + std::to_string(r) + "]: \"" + s + "\" is not two tokens");
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else {
        throw TokenizerError("model.merges[" + std::to_string(r) + "]: " + m.dump().substr(0, 100) + " is neither [a, b] nor \"a b\"");
      }
    }
    std::vector<AddedToken> added;
    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      const auto& list = need(j, "added_tokens", "added_tokens", json::value_t::array);
      for (size_t i = 0; i < list.size(); ++i) {
        const auto where = "added_tokens[" + std::to_string(i) + "]";
        const auto& a = list[i];
        if (!a.is_object()) throw TokenizerError("field \"" + where + "\" must be object, got " + a.type_name());
        AddedToken t;
        t.content = need(a, "content", where + ".content", json::value_t::string).get<std::string>();
        const auto id = need(a, "id", where + ".id", json::value_t::number_integer).get<int64_t>();
        if (id < 0 || id > INT32_MAX) throw TokenizerError(where + ": id " + std::to_string(id) + " is out of range");
        t.id = static_cast<int32_t>(id);
        t.special = optional_flag(a, "special", where + ".special", false);
        t.lstrip = optional_flag(a, "lstrip", where + ".lstrip", false);
        t.rstrip = optional_flag(a, "rstrip", where + ".rstrip", false);
        t.single_word = optional_flag(a, "single_word", where + ".single_word", false);
        t.normalized = optional_flag(a, "normalized", where + ".normalized", !t.special);
        added.push_back(std::move(t));
      }
    }
    read_post_processor(post, "post_processor", pipe);
    return BpeTokenizer(std::move(vocab), std::move(merges), std::move(added), std::move(pipe));
  }

  nlohmann::json to_json() const {
    nlohmann::json vocab = nlohmann::json::object(), merges = nlohmann::json::array(), added = nlohmann::json::array();
    std::vector<std::pair<int32_t, std::string>> by_id;
    for (const auto& [tok, id] : vocab_) by_id.emplace_back(id, tok);
    std::sort(by_id.begin(), by_id.end());
    for (const auto& [id, tok] : by_id) vocab[tok] = id;
    for (const auto& [a, b] : merges_) merges.push_back({a, b});
    for (const auto& t : added_)
      added.push_back({{"id", t.id}, {"content", t.content}, {"single_word", t.single_word}, {"lstrip", t.lstrip},
                       {"rstrip", t.rstrip}, {"normalized", t.normalized}, {"special", t.special}});
    const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                                       {"use_regex", true}};
    const auto& p = pipeline_.json;
    auto part = [&](const char* key, const nlohmann::json& def) { return p.is_null() ? def : p[key]; };
    return {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
            {"normalizer", part("normalizer", nullptr)}, {"pre_tokenizer", part("pre_tokenizer", byte_level)},
            {"post_processor", part("post_processor", nullptr)}, {"decoder", part("decoder", byte_level)},
            {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                       {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                       {"ignore_merges", pipeline_.ignore_merges}, {"vocab", vocab}, {"merges", merges}}}};
  }

  void save(const std::filesystem::path& path) const { io::write_text_file_atomic(path, to_json().dump(2) + "\n"); }

  // Text (valid UTF-8, else TokenizerError) -> ids. Special tokens written in the text are
  // recognised; with add_special_tokens the post-processor's (BOS/EOS...) are added, as HF's
  // encode(text, add_special_tokens=True) does.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const {
    Scratch scratch;
    return encode(text, add_special_tokens, nullptr, scratch);
  }

  // Like encode(), but special-token strings in the text are encoded as the plain text they are:
  // what a user typed never becomes a control token.
  std::vector<int32_t> encode_literal(std::string_view text) const {
    Scratch scratch;
    return encode(text, false, nullptr, scratch, /*special_tokens=*/false);
  }

  // The first special token written in `text` at or after `from`: {position, length}, or
  // {npos, 0} when there is none.
  std::pair<size_t, size_t> find_special(std::string_view text, size_t from = 0) const {
    if (special_added_.empty) return {std::string_view::npos, 0};
    for (size_t i = from; i < text.size(); ++i)
      for (const auto* a : special_added_.by_first_byte[static_cast<uint8_t>(text[i])])  // longest first
        if (text.compare(i, a->content.size(), a->content) == 0) return {i, a->content.size()};
    return {std::string_view::npos, 0};
  }

  // Encodes many texts on `threads` threads (0: all cores); results in input order. Each thread
  // keeps its own word cache, so threads never wait on each other.
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts, unsigned threads = 0,
                                                 bool add_special_tokens = false) const {
    std::vector<std::vector<int32_t>> out(texts.size());
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    threads = std::min<unsigned>(threads, static_cast<unsigned>(std::max<size_t>(1, texts.size())));
    const size_t chunk = (texts.size() + threads - 1) / threads;
    run_on_threads(threads, [&](unsigned t) {
      WordCache local;
      Scratch scratch;
      for (size_t i = t * chunk; i < std::min(texts.size(), (t + 1) * chunk); ++i)
        out[i] = encode(texts[i], add_special_tokens, &local, scratch);
    });
    return out;
  }

  // ids -> the raw bytes they stand for (may end inside a UTF-8 sequence).
  std::string decode_bytes(const std::vector<int32_t>& ids, bool skip_special = false) const {
    std::string out;
    for (const auto id : ids) append_token_bytes(id, skip_special, out);
    return out;
  }

  // ids -> text. Invalid UTF-8 (a sequence cut by the ids chosen) becomes U+FFFD, as HF does.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const {
    return to_valid_utf8(decode_bytes(ids, skip_special));
  }

  // The ByteLevel decoder, token by token: a token whose characters all stand for bytes gives
  // those bytes, any other token its own UTF-8 (added tokens included, as HF does).
  void append_token_bytes(int32_t id, bool skip_special, std::string& out) const {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || id_to_token_[static_cast<size_t>(id)] == nullptr)
      throw TokenizerError("token id " + std::to_string(id) + " is not in the vocabulary (size " +
                           std::to_string(vocab_size()) + ")");
    if (skip_special && is_special(id)) return;
    const std::string& sym = *id_to_token_[static_cast<size_t>(id)];
    const size_t mark = out.size();
    for (size_t i = 0; i < sym.size();) {
      uint32_t cp = 0;
      const size_t n = unicode::sequence_length(sym, i, &cp);
      const int b = n ? codepoint_to_byte(cp) : -1;
      if (b < 0) {  // not a byte-level character: the token's own text
        out.resize(mark);
        out += sym;
        return;
      }
      out += static_cast<char>(b);
      i += n;
    }
  }

  // Replaces invalid UTF-8 sequences by U+FFFD (one per maximal invalid subpart, like from_utf8_lossy).
  static std::string to_valid_utf8(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    for (size_t i = 0; i < bytes.size();) {
      const size_t n = unicode::sequence_length(bytes, i);
      if (n > 0) {
        out.append(bytes, i, n);
        i += n;
      } else {
        out += "\xEF\xBF\xBD";
        i += invalid_prefix_length(bytes, i);
      }
    }
    return out;
  }

  std::optional<int32_t> token_to_id(std::string_view token) const {
    for (const auto& a : added_)
      if (a.content == token) return a.id;
    const auto it = vocab_.find(std::string(token));
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  // The token's string as stored (byte-level characters for BPE tokens).
  std::string id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || id_to_token_[static_cast<size_t>(id)] == nullptr)
      throw TokenizerError("token id " + std::to_string(id) + " is not in the vocabulary");
    return *id_to_token_[static_cast<size_t>(id)];
  }
  size_t vocab_size() const { return id_to_token_.size(); }
  const std::vector<AddedToken>& added_tokens() const { return added_; }
  const std::vector<std::pair<std::string, std::string>>& merges() const { return merges_; }
  bool is_special(int32_t id) const {
    const auto* a = added_by_id(id);
    return a != nullptr && a->special;
  }

 private:
  struct StringHash {  // lookups by string_view, without building a std::string
    using is_transparent = void;
    size_t operator()(std::string_view v) const { return std::hash<std::string_view>()(v); }
  };
  using WordCache = std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>>;
  struct Scratch {
    PreTokenizer::Scratch pre;
    std::vector<std::string_view> words;
    std::string normalized;
  };
  // Added tokens matched in one pass: by first byte, longest first (leftmost-longest, as HF's
  // Aho-Corasick automaton with MatchKind::LeftmostLongest).
  struct AddedMatcher {
    std::vector<std::vector<const AddedToken*>> by_first_byte;
    bool empty = true;
  };

  static void check_decoder(const nlohmann::json& d, const std::string& where) {
    const auto type = d.is_object() && d.contains("type") ? d["type"] : nlohmann::json();
    if (type == "ByteLevel") return;
    if (type == "Sequence" && d.contains("decoders") && d["decoders"].is_array()) {
      for (size_t i = 0; i < d["decoders"].size(); ++i)
        check_decoder(d["decoders"][i], where + ".decoders[" + std::to_string(i) + "]");
      return;
    }
    throw TokenizerError(where + " must be {\"type\": \"ByteLevel\"} (byte-level BPE), got " + d.dump().substr(0, 200));
  }

  static void read_post_processor(const nlohmann::json& p, const std::string& where, Pipeline& pipe) {
    if (p.is_null()) return;
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
      throw TokenizerError(where + " must be an object with a \"type\" string");
    const auto type = p["type"].get<std::string>();
    auto token_id = [&](const char* key) {  // ["<s>", 0]
      const auto& v = p.value(key, nlohmann::json());
      if (!v.is_array() || v.size() != 2 || !v[0].is_string() || !v[1].is_number_integer())
        throw TokenizerError(where + "." + key + " must be [token, id], got " + v.dump());
      return v[1].get<int64_t>();
    };
    auto set_template = [&](std::vector<std::vector<int32_t>> runs, size_t at) {
      if (!pipe.template_ids.empty())
        throw TokenizerError(where + ": more than one post-processor adds special tokens");
      pipe.template_ids = std::move(runs);
      pipe.sequence_at = at;
    };
    auto checked = [&](int64_t id) {
      if (id < 0 || id > INT32_MAX) throw TokenizerError(where + ": special token id " + std::to_string(id) + " is out of range");
      return static_cast<int32_t>(id);
    };
    if (type == "ByteLevel") return;  // offsets only
    if (type == "Sequence") {
      if (!p.contains("processors") || !p["processors"].is_array()) throw TokenizerError(where + ".processors must be an array");
      for (size_t i = 0; i < p["processors"].size(); ++i)
        read_post_processor(p["processors"][i], where + ".processors[" + std::to_string(i) + "]", pipe);
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
      set_template({{checked(token_id("cls"))}, {checked(token_id("sep"))}}, 1);
    } else if (type == "TemplateProcessing") {
      const auto& single = p.value("single", nlohmann::json());
      const auto& specials = p.value("special_tokens", nlohmann::json::object());
      if (!single.is_array()) throw TokenizerError(where + ".single must be an array");
      std::vector<std::vector<int32_t>> runs;
      size_t at = SIZE_MAX;
      for (size_t i = 0; i < single.size(); ++i) {
        const auto& item = single[i];
        const auto item_where = where + ".single[" + std::to_string(i) + "]";
        if (item.contains("Sequence")) {
          if (at != SIZE_MAX || !item["Sequence"].is_object() || item["Sequence"].value("id", nlohmann::json()) != "A")
            throw TokenizerError(item_where + ": a single-sequence template holds sequence A once");
          at = runs.size();
        } else if (item.contains("SpecialToken") && item["SpecialToken"].contains("id") && item["SpecialToken"]["id"].is_string()) {
          const auto name = item["SpecialToken"]["id"].get<std::string>();
          if (!specials.is_object() || !specials.contains(name) || !specials[name].contains("ids") || !specials[name]["ids"].is_array())
            throw TokenizerError(item_where + ": special token \"" + name + "\" is not in " + where + ".special_tokens");
          std::vector<int32_t> ids;
          for (const auto& id : specials[name]["ids"]) {
            if (!id.is_number_integer()) throw TokenizerError(where + ".special_tokens[\"" + name + "\"].ids must hold integers");
            ids.push_back(checked(id.get<int64_t>()));
          }
          runs.push_back(std::move(ids));
        } else {
          throw TokenizerError(item_where + " must be {\"SpecialToken\": ...} or {\"Sequence\": ...}, got " + item.dump());
        }
      }
      if (at == SIZE_MAX) throw TokenizerError(where + ".single has no {\"Sequence\": {\"id\": \"A\"}}");
      set_template(std::move(runs), at);
    } else {
      throw TokenizerError(where + ": post-processor type \"" + type +
                           "\" is not supported (TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence)");
    }
  }

  // local == nullptr: the tokenizer's shared cache (locked); else a caller-owned one (unlocked).
  // special_tokens == false: special added tokens are not matched (their text is encoded as text).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens, WordCache* local, Scratch& s,
                              bool special_tokens = true) const {
    unicode::require_valid_utf8(text);
    std::vector<int32_t> ids;
    auto model = [&](std::string_view piece) {  // pre-tokenize and BPE a piece free of added tokens
      s.words.clear();
      pipeline_.pre_tokenizer.run(piece, s.words, s.pre);
      for (const auto& w : s.words) encode_word(w, ids, local);
    };
    // Added tokens matched in the raw text first, then normalized ones in each normalized rest.
    split_added(text, raw_added_, special_tokens, ids, [&](std::string_view rest) {
      std::string_view norm = rest;
      if (!pipeline_.normalizer.empty() && pipeline_.normalizer.apply(rest, s.normalized)) norm = s.normalized;
      if (normalized_added_.empty) return model(norm);
      const std::string owned(norm);  // s.normalized is reused below
      split_added(owned, normalized_added_, special_tokens, ids, model);
    });
    if (add_special_tokens && !pipeline_.template_ids.empty()) {
      std::vector<int32_t> out;
      for (size_t r = 0; r <= pipeline_.template_ids.size(); ++r) {
        if (r == pipeline_.sequence_at) out.insert(out.end(), ids.begin(), ids.end());
        if (r < pipeline_.template_ids.size()) out.insert(out.end(), pipeline_.template_ids[r].begin(), pipeline_.template_ids[r].end());
      }
      return out;
    }
    return ids;
  }

  // HF's AddedVocabulary::find_matches: leftmost-longest matches, single_word ones only between
  // non-word characters, lstrip/rstrip taking the whitespace beside them.
  template <class F>
  void split_added(std::string_view text, const AddedMatcher& m, bool special_tokens, std::vector<int32_t>& ids, F&& rest) const {
    if (text.empty()) return;
    if (m.empty) return rest(text);
    auto last_cp = [&](size_t end, size_t& start) {  // the code point ending at end
      start = end - 1;
      while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
      size_t len = 0;
      return unicode::decode_at(text, start, len);
    };
    size_t start_offset = 0, i = 0;
    while (i < text.size()) {
      const AddedToken* hit = nullptr;
      for (const auto* a : m.by_first_byte[static_cast<uint8_t>(text[i])])
        if ((special_tokens || !a->special) && text.compare(i, a->content.size(), a->content) == 0) {
          hit = a;
          break;
        }
      if (hit == nullptr) {
        ++i;
        continue;
      }
      size_t start = i, stop = i + hit->content.size();
      i = stop;  // the automaton goes on after the match itself
      if (hit->single_word) {
        size_t b = 0, len = 0;
        const bool start_space = start == 0 || !unicode::is_word(last_cp(start, b));
        const bool stop_space = stop == text.size() || !unicode::is_word(unicode::decode_at(text, stop, len));
        if (!start_space || !stop_space) continue;
      }
      if (hit->lstrip) {
        size_t s = start, b = 0;
        while (s > 0 && unicode::is_whitespace(last_cp(s, b))) s = b;
        start = std::max(s, start_offset);
      }
      if (hit->rstrip) {
        size_t len = 0;
        while (stop < text.size() && unicode::is_whitespace(unicode::decode_at(text, stop, len))) stop += len;
      }
      if (start_offset < start) rest(text.substr(start_offset, start - start_offset));
      ids.push_back(hit->id);
      start_offset = stop;
    }
    if (start_offset < text.size()) rest(text.substr(start_offset));
  }

  struct MergeInfo {
    int32_t rank, result;
  };
  // (left id, right id) -> merge: open addressing over 8-byte slots (left:20 | right:20 | rank:24
  // bits), the merged ids in an array by rank. BPE looks up every adjacent pair, and on a large
  // vocabulary each lookup is a cache miss: a node-based map costs several, a compact table one.
  class MergeTable {
   public:
    static constexpr int32_t kMaxId = (1 << 20) - 1;
    static constexpr size_t kMaxMerges = (size_t{1} << 24) - 1;

    void build(size_t n) {
      if (n > kMaxMerges) throw TokenizerError("model.merges: more than " + std::to_string(kMaxMerges) + " merges");
      size_t cap = 16;
      while (cap < n + n / 2) cap *= 2;
      shift_ = 64 - static_cast<int>(std::countr_zero(cap));
      slots_.assign(cap, kEmpty);
      results_.assign(n, 0);
    }
    void insert(int32_t a, int32_t b, MergeInfo m) {  // the first insert of a pair wins
      if (a > kMaxId || b > kMaxId)
        throw TokenizerError("model.merges: token id " + std::to_string(std::max(a, b)) + " in a merge is above " +
                             std::to_string(kMaxId) + " (the largest the merge table holds)");
      const uint64_t k = key(a, b);
      for (size_t i = slot(k);; i = (i + 1) & (slots_.size() - 1)) {
        if (slots_[i] != kEmpty && (slots_[i] >> 24) == k) return;
        if (slots_[i] == kEmpty) {
          slots_[i] = (k << 24) | static_cast<uint64_t>(m.rank);
          results_[static_cast<size_t>(m.rank)] = m.result;
          return;
        }
      }
    }
    // Starts loading the pair's slot: a word's first pairs are independent, their misses overlap.
    void prefetch(int32_t a, int32_t b) const {
      if (!slots_.empty() && a <= kMaxId && b <= kMaxId) __builtin_prefetch(&slots_[slot(key(a, b))]);
    }
    std::optional<MergeInfo> find(int32_t a, int32_t b) const {
      if (slots_.empty() || a > kMaxId || b > kMaxId) return std::nullopt;
      const uint64_t k = key(a, b);
      for (size_t i = slot(k);; i = (i + 1) & (slots_.size() - 1)) {
        const uint64_t v = slots_[i];
        if (v == kEmpty) return std::nullopt;
        if ((v >> 24) == k) {
          const auto rank = static_cast<int32_t>(v & kMaxMerges);
          return MergeInfo{rank, results_[static_cast<size_t>(rank)]};
        }
      }
    }

   private:
    static constexpr uint64_t kEmpty = ~uint64_t{0};  // would need ids 2^20-1 and rank 2^24-1
    static uint64_t key(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 20) | static_cast<uint64_t>(b); }
    size_t slot(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ULL) >> shift_); }
    std::vector<uint64_t> slots_;
    std::vector<int32_t> results_;
    int shift_ = 60;
  };

  void index() {
    // Ids index a table: bound them by the number of entries, so a stray 2e9 cannot allocate 16 GB.
    const size_t entries = vocab_.size() + added_.size();
    std::vector<const std::string*> by_id(entries, nullptr);
    for (const auto& [tok, id] : vocab_) {
      if (id < 0 || static_cast<size_t>(id) >= entries)
        throw TokenizerError("model.vocab: id " + std::to_string(id) + " of token \"" + tok + "\" is out of range (ids must be below " +
                             std::to_string(entries) + ", the number of vocabulary entries plus added tokens)");
      if (by_id[static_cast<size_t>(id)] != nullptr)
        throw TokenizerError("model.vocab: tokens \"" + *by_id[static_cast<size_t>(id)] + "\" and \"" + tok + "\" share id " +
                             std::to_string(id));
      by_id[static_cast<size_t>(id)] = &tok;
    }
    std::unordered_map<std::string, int32_t> seen_content;
    std::unordered_map<int32_t, const AddedToken*> seen_id;
    for (const auto& a : added_) {
      if (a.content.empty()) throw TokenizerError("added token with id " + std::to_string(a.id) + " is empty");
      if (a.id < 0 || static_cast<size_t>(a.id) >= entries)
        throw TokenizerError("added token \"" + a.content + "\": id " + std::to_string(a.id) + " is out of range (ids must be below " +
                             std::to_string(entries) + ", the number of vocabulary entries plus added tokens)");
      if (const auto [it, fresh] = seen_content.emplace(a.content, a.id); !fresh)
        throw TokenizerError("added token \"" + a.content + "\" appears twice (ids " + std::to_string(it->second) + " and " +
                             std::to_string(a.id) + ")");
      if (const auto [it, fresh] = seen_id.emplace(a.id, &a); !fresh)
        throw TokenizerError("added tokens \"" + it->second->content + "\" and \"" + a.content + "\" share id " + std::to_string(a.id));
    }
    size_t max_id = 0;
    for (size_t id = 0; id < entries; ++id)
      if (by_id[id] != nullptr) max_id = id + 1;
    for (const auto& a : added_) max_id = std::max(max_id, static_cast<size_t>(a.id) + 1);
    id_to_token_.assign(max_id, nullptr);
    for (size_t id = 0; id < max_id; ++id) id_to_token_[id] = by_id[id];
    for (const auto& a : added_) id_to_token_[static_cast<size_t>(a.id)] = &a.content;  // HF: added tokens win
    for (int b = 0; b < 256; ++b) {
      std::string sym;
      unicode::append_utf8(sym, byte_to_codepoint()[static_cast<size_t>(b)]);
      const auto it = vocab_.find(sym);
      byte_id_[static_cast<size_t>(b)] = it == vocab_.end() ? -1 : it->second;
    }
    merge_rank_.build(merges_.size());
    for (size_t r = 0; r < merges_.size(); ++r) {
      const auto& [a, b] = merges_[r];
      const auto ia = vocab_.find(a), ib = vocab_.find(b), ic = vocab_.find(a + b);
      if (ia == vocab_.end() || ib == vocab_.end() || ic == vocab_.end())
        throw TokenizerError("model.merges[" + std::to_string(r) + "] (\"" + a + "\", \"" + b + "\") uses a token not in the vocabulary");
      merge_rank_.insert(ia->second, ib->second, MergeInfo{static_cast<int32_t>(r), ic->second});
    }
    // ignore_merges looks words up whole; words are raw bytes here, so key the vocabulary by bytes.
    raw_vocab_.clear();
    if (pipeline_.ignore_merges)
      for (const auto& [tok, id] : vocab_) {
        std::string raw;
        bool ok = true;
        for (size_t i = 0; i < tok.size() && ok;) {
          size_t len = 0;
          const int b = codepoint_to_byte(unicode::decode_at(tok, i, len));
          ok = b >= 0;
          raw += static_cast<char>(b);
          i += len;
        }
        if (ok) raw_vocab_.emplace(std::move(raw), id);
      }
    // Normalized added tokens are matched by their normalized text.
    raw_added_ = {};
    normalized_added_ = {};
    special_added_ = {};
    normalized_content_.clear();
    normalized_content_.reserve(added_.size());
    raw_added_.by_first_byte.assign(256, {});
    normalized_added_.by_first_byte.assign(256, {});
    special_added_.by_first_byte.assign(256, {});
    for (const auto& a : added_) {
      if (a.special) {  // find_special looks for them as written, in the raw text
        special_added_.by_first_byte[static_cast<uint8_t>(a.content[0])].push_back(&a);
        special_added_.empty = false;
      }
      if (!a.normalized || pipeline_.normalizer.empty()) {
        auto& m = a.normalized ? normalized_added_ : raw_added_;
        m.by_first_byte[static_cast<uint8_t>(a.content[0])].push_back(&a);
        m.empty = false;
        continue;
      }
      std::string n;
      AddedToken copy = a;
      if (pipeline_.normalizer.apply(a.content, n)) copy.content = n;
      if (copy.content.empty()) continue;
      normalized_content_.push_back(std::move(copy));
      const auto* p = &normalized_content_.back();
      normalized_added_.by_first_byte[static_cast<uint8_t>(p->content[0])].push_back(p);
      normalized_added_.empty = false;
    }
    for (auto* m : {&raw_added_, &normalized_added_, &special_added_})
      for (auto& list : m->by_first_byte)
        std::stable_sort(list.begin(), list.end(), [](auto* x, auto* y) { return x->content.size() > y->content.size(); });
    added_by_id_.clear();
    for (const auto& a : added_) added_by_id_[a.id] = &a;
  }

  const AddedToken* added_by_id(int32_t id) const {
    const auto it = added_by_id_.find(id);
    return it == added_by_id_.end() ? nullptr : it->second;
  }

  static size_t invalid_prefix_length(std::string_view s, size_t i) {
    // Length of the maximal prefix of a valid sequence starting at i (at least 1).
    const auto b0 = static_cast<uint8_t>(s[i]);
    size_t need = (b0 & 0xE0) == 0xC0 ? 2 : (b0 & 0xF0) == 0xE0 ? 3 : (b0 & 0xF8) == 0xF0 ? 4 : 1;
    if (need == 1 || b0 == 0xC0 || b0 == 0xC1 || b0 > 0xF4) return 1;
    size_t k = 1;
    while (k < need && i + k < s.size() && (static_cast<uint8_t>(s[i + k]) & 0xC0) == 0x80) {
      const auto b1 = static_cast<uint8_t>(s[i + 1]);
      if (k == 1 && ((b0 == 0xE0 && b1 < 0xA0) || (b0 == 0xED && b1 > 0x9F) || (b0 == 0xF0 && b1 < 0x90) ||
                     (b0 == 0xF4 && b1 > 0x8F)))
        break;
      ++k;
    }
    return k;
  }

  // BPE over one pre-token: start from its bytes' ids, merge the lowest-ranked adjacent pair
  // (leftmost first) until no merge applies. Results are cached per word. With ignore_merges a
  // word that is a vocabulary entry is that entry.
  void encode_word(std::string_view word, std::vector<int32_t>& ids, WordCache* local) const {
    if (pipeline_.ignore_merges) {
      if (const auto it = raw_vocab_.find(word); it != raw_vocab_.end()) {
        ids.push_back(it->second);
        return;
      }
    }
    if (local != nullptr) {
      if (const auto it = local->find(word); it != local->end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    } else {
      std::shared_lock lock(cache_->mutex);
      if (const auto it = cache_->words.find(word); it != cache_->words.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    // Buffers reused across words (per thread): most words are short, allocation would dominate.
    thread_local std::vector<int32_t> sym;
    thread_local std::vector<int> prev, next;
    using Cand = std::tuple<int32_t, int, int32_t, int32_t, int32_t>;  // rank, left position, left id, right id, merged id
    thread_local std::vector<Cand> heap;
    const size_t n = word.size();
    sym.resize(n);
    prev.resize(n);
    next.resize(n);
    heap.clear();
    for (size_t i = 0; i < n; ++i) {
      const int32_t id = byte_id_[static_cast<uint8_t>(word[i])];
      if (id < 0)
        throw TokenizerError("the vocabulary has no token for byte 0x" + std::to_string(static_cast<uint8_t>(word[i])) +
                             " (not a byte-level BPE vocabulary?)");
      sym[i] = id;
      prev[i] = static_cast<int>(i) - 1;
      next[i] = i + 1 < n ? static_cast<int>(i + 1) : -1;
    }
    // Linked list over symbols plus a min-heap of candidate merges (rank, then leftmost).
    const auto later = std::greater<>();
    auto push = [&](int left) {
      if (left < 0 || next[left] < 0) return;
      if (const auto m = merge_rank_.find(sym[left], sym[next[left]])) {
        heap.emplace_back(m->rank, left, sym[left], sym[next[left]], m->result);
        std::push_heap(heap.begin(), heap.end(), later);
      }
    };
    for (size_t i = 0; i + 1 < n; ++i) merge_rank_.prefetch(sym[i], sym[i + 1]);
    for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int>(i));
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), later);
      const auto [rank, left, a, b, merged] = heap.back();
      heap.pop_back();
      const int right = next[left];
      if (sym[left] != a || right < 0 || sym[right] != b) continue;  // stale
      sym[left] = merged;
      sym[right] = -1;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      push(prev[left]);
      push(left);
    }
    std::vector<int32_t> result;
    for (int i = 0; i >= 0; i = next[i]) result.push_back(sym[i]);
    ids.insert(ids.end(), result.begin(), result.end());
    remember(word, std::move(result), local);
  }

  void remember(std::string_view word, std::vector<int32_t> result, WordCache* local) const {
    if (word.size() > 15) return;  // long words rarely repeat (15: the key fits std::string inline)
    if (local != nullptr) {
      if (local->size() < 200'000) local->emplace(word, std::move(result));
    } else {
      std::unique_lock lock(cache_->mutex);
      if (cache_->words.size() < 200'000) cache_->words.emplace(word, std::move(result));
    }
  }

  std::unordered_map<std::string, int32_t> vocab_;  // the model's (added tokens are in added_)
  std::vector<std::pair<std::string, std::string>> merges_;
  std::vector<AddedToken> added_;
  Pipeline pipeline_;
  std::vector<const std::string*> id_to_token_;
  std::array<int32_t, 256> byte_id_{};
  MergeTable merge_rank_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> raw_vocab_;  // raw bytes -> id (ignore_merges)
  AddedMatcher raw_added_, normalized_added_;
  AddedMatcher special_added_;  // the special tokens by their written content (find_special)
  std::vector<AddedToken> normalized_content_;  // normalized tokens with normalized content (reserved: stable)
  std::unordered_map<int32_t, const AddedToken*> added_by_id_;
  struct Cache {  // pre-token -> ids for encode(); batches use one WordCache per thread
    WordCache words;
    std::shared_mutex mutex;
  };
  std::unique_ptr<Cache> cache_ = std::make_unique<Cache>();
};

}  // namespace minillm::tokenizer
