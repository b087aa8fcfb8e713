// A training micro-batch and the data cursor: what every data source hands the trainer, and all a
// checkpoint needs to resume a source exactly.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "minillm/causal_lm.hpp"

namespace minillm::data {

// Pretraining needs only input_ids (labels = input_ids); SFT adds labels with -100 outside the
// assistant spans, and packed rows add a block-diagonal mask and positions that restart at each
// sample.
struct Batch {
  at::Tensor input_ids;       // (B, T) int64
  at::Tensor labels;          // (B, T) int64, -100 = not trained on; undefined: input_ids
  at::Tensor attention_mask;  // undefined, (B, T) padding mask, or bool (B, 1, T, T) with causality folded in
  at::Tensor position_ids;    // undefined or (B, T)

  Batch to(const at::Device& device) const {
    auto move = [&](const at::Tensor& t) { return t.defined() ? t.to(device) : t; };
    return {move(input_ids), move(labels), move(attention_mask), move(position_ids)};
  }
  // Tokens the loss is computed on (labels shifted by one, -100 excluded).
  int64_t target_tokens() const {
    if (!labels.defined()) return input_ids.size(0) * (input_ids.size(1) - 1);
    return labels.narrow(1, 1, labels.size(1) - 1).ne(kIgnoreIndex).sum().item<int64_t>();
  }
};

struct DataCursor {
  uint64_t epoch = 0;
  uint64_t position = 0;  // items already taken in this epoch
  bool operator==(const DataCursor&) const = default;
};

// The visiting order of n items in an epoch: Fisher-Yates over a 64-bit Mersenne twister seeded by
// (seed, epoch), the same on every platform (std::shuffle's algorithm is implementation-defined).
inline std::vector<uint64_t> epoch_order(uint64_t n, uint64_t seed, uint64_t epoch) {
  std::vector<uint64_t> order(n);
  for (uint64_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + epoch);
  for (uint64_t i = n - 1; n > 1 && i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
  return order;
}

}  // namespace minillm::data
