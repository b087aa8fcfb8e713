// Trains a byte-level BPE tokenizer as HF tokenizers' BpeTrainer does: special tokens take the
// first ids, then the 256 byte symbols (sorted), then merges, each time the adjacent pair with the
// highest count over all pre-tokenized words (ties: the smallest pair of ids), until the vocabulary
// is full or the best pair occurs fewer than min_frequency times. Word counting is multi-threaded.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <queue>
#include <thread>

#include "minillm/tokenizer/bpe.hpp"

namespace minillm::tokenizer {

struct TrainerOptions {
  size_t vocab_size = 6400;
  uint64_t min_frequency = 2;
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  unsigned threads = 0;  // 0: all cores
};

// Word counts of the pre-tokenized texts (GPT-2 split), counted on `threads` threads.
using WordCounts = std::unordered_map<std::string, uint64_t>;

inline WordCounts count_words(const std::vector<std::string>& texts, unsigned threads = 0) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<WordCounts> local(threads);
  run_on_threads(threads, [&](unsigned t) {
    std::vector<std::string_view> words;
    for (size_t i = t; i < texts.size(); i += threads) {
      unicode::require_valid_utf8(texts[i]);
      words.clear();
      split_gpt2(texts[i], words);
      for (const auto& w : words) ++local[t][std::string(w)];
    }
  });
  WordCounts total = std::move(local[0]);
  for (unsigned t = 1; t < threads; ++t)
    for (auto& [w, n] : local[t]) total[w] += n;
  return total;
}

// progress(merges done, merges wanted) is called now and then.
inline BpeTokenizer train_bpe(const WordCounts& counts, const TrainerOptions& opt,
                              const std::function<void(size_t, size_t)>& progress = {}) {
  if (opt.vocab_size < opt.special_tokens.size() + 256)
    throw TokenizerError("vocab_size (" + std::to_string(opt.vocab_size) + ") must be at least 256 + the " +
                         std::to_string(opt.special_tokens.size()) + " special tokens");
  std::vector<std::string> token;  // id -> byte-level string
  std::vector<AddedToken> added;
  for (const auto& s : opt.special_tokens) {
    if (s.empty()) throw TokenizerError("special tokens must not be empty");
    added.push_back({s, static_cast<int32_t>(token.size()), true});
    token.push_back(s);
  }
  std::array<int32_t, 256> byte_id{};
  {
    std::vector<std::pair<uint32_t, int>> alphabet;
    for (int b = 0; b < 256; ++b) alphabet.emplace_back(byte_to_codepoint()[static_cast<size_t>(b)], b);
    std::sort(alphabet.begin(), alphabet.end());
    for (const auto& [cp, b] : alphabet) {
      byte_id[static_cast<size_t>(b)] = static_cast<int32_t>(token.size());
      token.emplace_back();
      unicode::append_utf8(token.back(), cp);
    }
  }

  std::unordered_map<std::string, int32_t> token_id;
  for (size_t id = 0; id < token.size(); ++id) token_id.emplace(token[id], static_cast<int32_t>(id));

  using Pair = std::pair<int32_t, int32_t>;
  struct PairHash {
    size_t operator()(const Pair& p) const {
      return std::hash<uint64_t>()((static_cast<uint64_t>(static_cast<uint32_t>(p.first)) << 32) |
                                   static_cast<uint32_t>(p.second));
    }
  };
  std::vector<std::vector<int32_t>> words;
  std::vector<uint64_t> freq;
  words.reserve(counts.size());
  for (const auto& [w, n] : counts) {
    std::vector<int32_t> sym;
    sym.reserve(w.size());
    for (unsigned char b : w) sym.push_back(byte_id[b]);
    words.push_back(std::move(sym));
    freq.push_back(n);
  }
  std::unordered_map<Pair, int64_t, PairHash> pair_count;
  std::unordered_map<Pair, std::vector<uint32_t>, PairHash> where;  // may hold stale/duplicate word indices
  for (uint32_t w = 0; w < words.size(); ++w)
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      const Pair p{words[w][i], words[w][i + 1]};
      pair_count[p] += static_cast<int64_t>(freq[w]);
      where[p].push_back(w);
    }
  // Max-heap on (count, then the smaller pair first); entries are re-checked when popped.
  auto worse = [](const std::pair<int64_t, Pair>& a, const std::pair<int64_t, Pair>& b) {
    return a.first != b.first ? a.first < b.first : a.second > b.second;
  };
  std::priority_queue<std::pair<int64_t, Pair>, std::vector<std::pair<int64_t, Pair>>, decltype(worse)> heap(worse);
  for (const auto& [p, n] : pair_count) heap.emplace(n, p);

  std::vector<std::pair<std::string, std::string>> merges;
  const size_t wanted = opt.vocab_size - token.size();
  while (token.size() < opt.vocab_size && !heap.empty()) {
    auto [n, p] = heap.top();
    heap.pop();
    const auto current = pair_count.find(p);
    const int64_t now = current == pair_count.end() ? 0 : current->second;
    if (now != n) {
      if (now > 0) heap.emplace(now, p);
      continue;
    }
    if (n < static_cast<int64_t>(opt.min_frequency)) break;
    // Two merge paths can spell the same string ("ab"+"c", "a"+"bc"): it keeps its first id.
    auto merged = token[static_cast<size_t>(p.first)] + token[static_cast<size_t>(p.second)];
    auto [known, fresh] = token_id.try_emplace(merged, static_cast<int32_t>(token.size()));
    const int32_t new_id = known->second;
    merges.emplace_back(token[static_cast<size_t>(p.first)], token[static_cast<size_t>(p.second)]);
    if (fresh) token.push_back(std::move(merged));

    auto list = std::move(where[p]);
    where.erase(p);
    std::sort(list.begin(), list.end());
    list.erase(std::unique(list.begin(), list.end()), list.end());
    std::unordered_map<Pair, int64_t, PairHash> delta;
    for (const auto w : list) {
      auto& sym = words[w];
      const auto f = static_cast<int64_t>(freq[w]);
      for (size_t i = 0; i + 1 < sym.size();) {
        if (sym[i] != p.first || sym[i + 1] != p.second) {
          ++i;
          continue;
        }
        if (i > 0) {
          delta[{sym[i - 1], sym[i]}] -= f;
          delta[{sym[i - 1], new_id}] += f;
          where[{sym[i - 1], new_id}].push_back(w);
        }
        if (i + 2 < sym.size()) {
          delta[{sym[i + 1], sym[i + 2]}] -= f;
          delta[{new_id, sym[i + 2]}] += f;
          where[{new_id, sym[i + 2]}].push_back(w);
        }
        delta[p] -= f;
        sym[i] = new_id;
        sym.erase(sym.begin() + static_cast<long>(i) + 1);
        ++i;
      }
    }
    for (const auto& [q, d] : delta) {
      auto& c = pair_count[q];
      c += d;
      if (c <= 0) {
        pair_count.erase(q);
      } else if (d > 0) {
        heap.emplace(c, q);
      }
    }
    if (progress && (merges.size() % 100 == 0 || merges.size() == wanted)) progress(merges.size(), wanted);
  }
  if (progress) progress(merges.size(), wanted);

  std::unordered_map<std::string, int32_t> vocab;
  for (size_t id = opt.special_tokens.size(); id < token.size(); ++id) vocab.emplace(token[id], static_cast<int32_t>(id));
  return BpeTokenizer(std::move(vocab), std::move(merges), std::move(added));
}

}  // namespace minillm::tokenizer
