// A byte-level BPE tokenizer compatible with HF tokenizers' tokenizer.json (model "BPE",
// pre-tokenizer and decoder "ByteLevel", no normalizer): same ids for the same text, same text
// for the same ids. Added tokens (special or not) are matched whole in the text first, longest
// match leftmost, as HF does.
#pragma once

#include <filesystem>
#include <memory>
#include <fstream>
#include <mutex>
#include <optional>
#include <queue>
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

namespace minillm::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = true;
};

class BpeTokenizer {
 public:
  BpeTokenizer() = default;
  // Copies rebuild the lookup tables (they point into the copied vocabulary); moves keep them.
  BpeTokenizer(const BpeTokenizer& o) : BpeTokenizer(o.vocab_, o.merges_, o.added_) {}
  BpeTokenizer& operator=(const BpeTokenizer& o) {
    if (this != &o) *this = BpeTokenizer(o);
    return *this;
  }
  BpeTokenizer(BpeTokenizer&&) noexcept = default;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept = default;

  // vocab: token (byte-level string) -> id; merges in rank order; added tokens with their ids.
  BpeTokenizer(std::unordered_map<std::string, int32_t> vocab, std::vector<std::pair<std::string, std::string>> merges,
               std::vector<AddedToken> added)
      : vocab_(std::move(vocab)), merges_(std::move(merges)), added_(std::move(added)) {
    index();
  }

  static BpeTokenizer from_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) throw TokenizerError("cannot open tokenizer file " + path.string());
    nlohmann::json j;
    try {
      in >> j;
      return from_json(j);
    } catch (const nlohmann::json::exception& e) {
      throw TokenizerError(path.string() + ": " + e.what());
    } catch (const TokenizerError& e) {
      throw TokenizerError(path.string() + ": " + e.what());
    }
  }

  static BpeTokenizer from_json(const nlohmann::json& j) {
    const auto& model = j.at("model");
    if (model.value("type", "") != "BPE") throw TokenizerError("model.type must be \"BPE\", got " + model.value("type", "none"));
    auto require_type = [&](const char* key, const char* type) {
      if (!j.contains(key) || j[key].is_null() || j[key].value("type", "") != type)
        throw TokenizerError(std::string(key) + " must be {\"type\": \"" + type + "\"} (byte-level BPE); got " +
                             (j.contains(key) ? j[key].dump() : "nothing"));
    };
    require_type("pre_tokenizer", "ByteLevel");
    require_type("decoder", "ByteLevel");
    if (j.contains("normalizer") && !j["normalizer"].is_null())
      throw TokenizerError("normalizer " + j["normalizer"].dump() + " is not supported (byte-level BPE has none)");
    if (j["pre_tokenizer"].value("add_prefix_space", false))
      throw TokenizerError("pre_tokenizer.add_prefix_space = true is not supported");
    if (model.value("byte_fallback", false) || !model.value("continuing_subword_prefix", nlohmann::json()).is_null() ||
        !model.value("end_of_word_suffix", nlohmann::json()).is_null())
      throw TokenizerError("BPE options byte_fallback / continuing_subword_prefix / end_of_word_suffix are not supported");

    std::unordered_map<std::string, int32_t> vocab;
    for (auto it = model.at("vocab").begin(); it != model.at("vocab").end(); ++it) vocab[it.key()] = it.value().get<int32_t>();
    std::vector<std::pair<std::string, std::string>> merges;
    for (const auto& m : model.at("merges")) {
      if (m.is_array() && m.size() == 2) {
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else if (m.is_string()) {  // older format: "a b"
        const auto s = m.get<std::string>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos) throw TokenizerError("merge \"" + s + "\" is not two tokens");
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else {
        throw TokenizerError("merge entry " + m.dump() + " is neither [a, b] nor \"a b\"");
      }
    }
    std::vector<AddedToken> added;
    if (j.contains("added_tokens"))
      for (const auto& a : j["added_tokens"]) {
        if (a.value("lstrip", false) || a.value("rstrip", false) || a.value("single_word", false))
          throw TokenizerError("added token " + a.value("content", "") + ": lstrip/rstrip/single_word are not supported");
        added.push_back({a.at("content").get<std::string>(), a.at("id").get<int32_t>(), a.value("special", true)});
      }
    return BpeTokenizer(std::move(vocab), std::move(merges), std::move(added));
  }

  nlohmann::json to_json() const {
    nlohmann::json vocab = nlohmann::json::object(), merges = nlohmann::json::array(), added = nlohmann::json::array();
    std::vector<std::pair<int32_t, std::string>> by_id;
    for (const auto& [tok, id] : vocab_) by_id.emplace_back(id, tok);
    std::sort(by_id.begin(), by_id.end());
    for (const auto& [id, tok] : by_id) vocab[tok] = id;
    for (const auto& [a, b] : merges_) merges.push_back({a, b});
    for (const auto& t : added_)
      added.push_back({{"id", t.id}, {"content", t.content}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", t.special}});
    const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                                       {"use_regex", true}};
    return {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
            {"normalizer", nullptr}, {"pre_tokenizer", byte_level}, {"post_processor", nullptr}, {"decoder", byte_level},
            {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                       {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                       {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}}}};
  }

  void save(const std::filesystem::path& path) const { io::write_text_file_atomic(path, to_json().dump(2) + "\n"); }

  // Text (valid UTF-8, else TokenizerError) -> ids. No special tokens are added; special tokens
  // written in the text are recognised.
  std::vector<int32_t> encode(std::string_view text) const { return encode(text, nullptr); }

  // Like encode(), but special-token strings in the text are encoded as the plain text they are:
  // what a user typed never becomes a control token.
  std::vector<int32_t> encode_literal(std::string_view text) const { return encode(text, nullptr, false); }

  // The first special token written in `text` at or after `from`: {position, length}, or
  // {npos, 0} when there is none.
  std::pair<size_t, size_t> find_special(std::string_view text, size_t from = 0) const {
    const auto [pos, token] = next_added(text, from, Match::special);
    return token == nullptr ? std::pair<size_t, size_t>{std::string_view::npos, 0} : std::pair{pos, token->content.size()};
  }

  // Encodes many texts on `threads` threads (0: all cores); results in input order. Each thread
  // keeps its own word cache, so threads never wait on each other.
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts, unsigned threads = 0) const {
    std::vector<std::vector<int32_t>> out(texts.size());
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    threads = std::min<unsigned>(threads, static_cast<unsigned>(std::max<size_t>(1, texts.size())));
    const size_t chunk = (texts.size() + threads - 1) / threads;
    run_on_threads(threads, [&](unsigned t) {
      WordCache local;
      for (size_t i = t * chunk; i < std::min(texts.size(), (t + 1) * chunk); ++i) out[i] = encode(texts[i], &local);
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

  void append_token_bytes(int32_t id, bool skip_special, std::string& out) const {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || id_to_token_[static_cast<size_t>(id)] == nullptr)
      throw TokenizerError("token id " + std::to_string(id) + " is not in the vocabulary (size " +
                           std::to_string(vocab_size()) + ")");
    if (const auto* a = added_by_id(id)) {
      if (!(skip_special && a->special)) out += a->content;
      return;
    }
    const std::string& sym = *id_to_token_[static_cast<size_t>(id)];
    for (size_t i = 0; i < sym.size();) {
      uint32_t cp = 0;
      const size_t n = unicode::sequence_length(sym, i, &cp);
      const int b = n ? codepoint_to_byte(cp) : -1;
      if (b < 0) {  // not a byte-level character: pass its UTF-8 through
        out.append(sym, i, n ? n : 1);
      } else {
        out += static_cast<char>(b);
      }
      i += n ? n : 1;
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
  using WordCache = std::unordered_map<std::string, std::vector<int32_t>>;

  // local == nullptr: the tokenizer's shared cache (locked); else a caller-owned one (unlocked).
  std::vector<int32_t> encode(std::string_view text, WordCache* local, bool special_tokens = true) const {
    const auto match = special_tokens ? Match::any : Match::not_special;
    unicode::require_valid_utf8(text);
    std::vector<int32_t> ids;
    std::vector<std::string_view> words;
    size_t start = 0;
    while (start <= text.size()) {
      const auto [pos, token] = next_added(text, start, match);
      words.clear();
      split_gpt2(text.substr(start, pos - start), words);
      for (const auto& w : words) encode_word(w, ids, local);
      if (token == nullptr) break;
      ids.push_back(token->id);
      start = pos + token->content.size();
    }
    return ids;
  }


  struct PairHash {
    size_t operator()(const std::pair<int32_t, int32_t>& p) const {
      return std::hash<uint64_t>()((static_cast<uint64_t>(static_cast<uint32_t>(p.first)) << 32) |
                                   static_cast<uint32_t>(p.second));
    }
  };
  struct MergeInfo {
    int32_t rank, result;
  };

  void index() {
    int32_t max_id = -1;
    for (const auto& [tok, id] : vocab_) max_id = std::max(max_id, id);
    for (const auto& a : added_) {
      max_id = std::max(max_id, a.id);
      vocab_.try_emplace(a.content, a.id);
    }
    id_to_token_.assign(static_cast<size_t>(max_id + 1), nullptr);
    for (const auto& [tok, id] : vocab_) {
      if (id < 0) throw TokenizerError("negative id " + std::to_string(id) + " for token \"" + tok + "\"");
      id_to_token_[static_cast<size_t>(id)] = &tok;
    }
    for (int b = 0; b < 256; ++b) {
      std::string sym;
      unicode::append_utf8(sym, byte_to_codepoint()[static_cast<size_t>(b)]);
      const auto it = vocab_.find(sym);
      byte_id_[static_cast<size_t>(b)] = it == vocab_.end() ? -1 : it->second;
    }
    merge_rank_.clear();
    for (size_t r = 0; r < merges_.size(); ++r) {
      const auto& [a, b] = merges_[r];
      const auto ia = vocab_.find(a), ib = vocab_.find(b), ic = vocab_.find(a + b);
      if (ia == vocab_.end() || ib == vocab_.end() || ic == vocab_.end())
        throw TokenizerError("merge " + std::to_string(r) + " (\"" + a + "\", \"" + b + "\") uses a token not in the vocabulary");
      merge_rank_.try_emplace({ia->second, ib->second}, MergeInfo{static_cast<int32_t>(r), ic->second});
    }
    added_by_first_byte_.assign(256, {});
    for (const auto& a : added_) {
      if (a.content.empty()) throw TokenizerError("added token with id " + std::to_string(a.id) + " is empty");
      added_by_first_byte_[static_cast<uint8_t>(a.content[0])].push_back(&a);
    }
    for (auto& list : added_by_first_byte_)
      std::sort(list.begin(), list.end(), [](auto* x, auto* y) { return x->content.size() > y->content.size(); });
    added_by_id_.clear();
    for (const auto& a : added_) added_by_id_[a.id] = &a;
  }

  const AddedToken* added_by_id(int32_t id) const {
    const auto it = added_by_id_.find(id);
    return it == added_by_id_.end() ? nullptr : it->second;
  }

  enum class Match { any, special, not_special };  // which added tokens next_added() looks for

  // The first added token at or after `from` (leftmost, then longest), or {size, nullptr}.
  std::pair<size_t, const AddedToken*> next_added(std::string_view text, size_t from, Match match = Match::any) const {
    if (added_.empty()) return {text.size(), nullptr};
    for (size_t i = from; i < text.size(); ++i)
      for (const auto* a : added_by_first_byte_[static_cast<uint8_t>(text[i])])
        if ((match == Match::any || a->special == (match == Match::special)) && text.compare(i, a->content.size(), a->content) == 0) return {i, a};
    return {text.size(), nullptr};
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
  // (leftmost first) until no merge applies. Results are cached per word.
  void encode_word(std::string_view word, std::vector<int32_t>& ids, WordCache* local) const {
    const std::string key(word);
    if (local != nullptr) {
      if (const auto it = local->find(key); it != local->end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    } else {
      std::shared_lock lock(cache_->mutex);
      if (const auto it = cache_->words.find(key); it != cache_->words.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> sym;
    sym.reserve(word.size());
    for (unsigned char b : word) {
      if (byte_id_[b] < 0)
        throw TokenizerError("the vocabulary has no token for byte 0x" + std::to_string(b) + " (not a byte-level BPE vocabulary?)");
      sym.push_back(byte_id_[b]);
    }
    // Linked list over symbols plus a heap of candidate merges (rank, position).
    const size_t n = sym.size();
    std::vector<int> prev(n), next(n);
    for (size_t i = 0; i < n; ++i) prev[i] = static_cast<int>(i) - 1, next[i] = i + 1 < n ? static_cast<int>(i + 1) : -1;
    using Cand = std::tuple<int32_t, int, int32_t, int32_t>;  // rank, left position, left id, right id
    std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
    auto push = [&](int left) {
      if (left < 0 || next[left] < 0) return;
      const auto it = merge_rank_.find({sym[left], sym[next[left]]});
      if (it != merge_rank_.end()) heap.emplace(it->second.rank, left, sym[left], sym[next[left]]);
    };
    for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int>(i));
    while (!heap.empty()) {
      const auto [rank, left, a, b] = heap.top();
      heap.pop();
      const int right = next[left];
      if (sym[left] != a || right < 0 || sym[right] != b) continue;  // stale
      sym[left] = merge_rank_.at({a, b}).result;
      sym[right] = -1;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      push(prev[left]);
      push(left);
    }
    std::vector<int32_t> result;
    for (int i = 0; i >= 0; i = next[i]) result.push_back(sym[i]);
    ids.insert(ids.end(), result.begin(), result.end());
    if (word.size() > 64) return;  // long words rarely repeat
    if (local != nullptr) {
      if (local->size() < 200'000) local->emplace(key, std::move(result));
    } else {
      std::unique_lock lock(cache_->mutex);
      if (cache_->words.size() < 200'000) cache_->words.emplace(key, std::move(result));
    }
  }

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::pair<std::string, std::string>> merges_;
  std::vector<AddedToken> added_;
  std::vector<const std::string*> id_to_token_;
  std::array<int32_t, 256> byte_id_{};
  std::unordered_map<std::pair<int32_t, int32_t>, MergeInfo, PairHash> merge_rank_;
  std::vector<std::vector<const AddedToken*>> added_by_first_byte_;
  std::unordered_map<int32_t, const AddedToken*> added_by_id_;
  struct Cache {  // pre-token -> ids for encode(); batches use one WordCache per thread
    WordCache words;
    std::shared_mutex mutex;
  };
  std::unique_ptr<Cache> cache_ = std::make_unique<Cache>();
};

}  // namespace minillm::tokenizer
