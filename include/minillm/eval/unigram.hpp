// The unigram baseline: the entropy (nats per token) of the token-frequency distribution of a
// corpus — the loss of a model that knows how often each token occurs and nothing else. A language
// model's validation loss is compared with it.
#pragma once

#include <cmath>
#include <filesystem>
#include <vector>

#include "minillm/data/token_shard.hpp"

namespace minillm {

inline double unigram_entropy(const std::vector<std::filesystem::path>& shards) {
  std::vector<uint64_t> counts;
  uint64_t total = 0;
  std::vector<int64_t> chunk(1 << 16);
  for (const auto& path : shards) {
    const data::TokenShard shard(path);
    counts.resize(std::max<size_t>(counts.size(), shard.header().vocab_size), 0);
    for (uint64_t at = 0; at < shard.size(); at += chunk.size()) {
      const uint64_t n = std::min<uint64_t>(chunk.size(), shard.size() - at);
      shard.read(at, n, chunk.data());
      for (uint64_t i = 0; i < n; ++i) {
        const auto id = static_cast<size_t>(chunk[i]);
        if (id >= counts.size()) counts.resize(id + 1, 0);
        ++counts[id];
      }
      total += n;
    }
  }
  if (total == 0) throw data::DataError("unigram entropy of an empty corpus");
  double h = 0;
  for (const auto c : counts)
    if (c > 0) {
      const double p = static_cast<double>(c) / static_cast<double>(total);
      h -= p * std::log(p);
    }
  return h;
}

}  // namespace minillm
