// A training micro-batch and the data cursor: what every data source hands the trainer, and all a
// checkpoint needs to resume a source exactly.
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "minillm/causal_lm.hpp"
#include "minillm/data/text_corpus.hpp"

namespace minillm::data {

// Pretraining needs only input_ids (labels = input_ids); SFT adds labels with -100 outside the
// assistant spans, and packed rows add a block-diagonal mask and positions that restart at each
// sample.
struct Batch {
  at::Tensor input_ids;       // (B, T) int64
  at::Tensor labels;          // (B, T) int64, -100 = not trained on; undefined: input_ids
  at::Tensor attention_mask;  // undefined, (B, T) padding mask, or bool (B, 1, T, T) with causality folded in
  at::Tensor position_ids;    // undefined or (B, T)

  // The four fields, in order, for code that treats them alike (undefined ones included).
  std::array<at::Tensor*, 4> tensors() { return {&input_ids, &labels, &attention_mask, &position_ids}; }
  std::array<const at::Tensor*, 4> tensors() const { return {&input_ids, &labels, &attention_mask, &position_ids}; }

  Batch to(const at::Device& device) const {
    Batch out = *this;
    for (auto* t : out.tensors())
      if (t->defined()) *t = t->to(device);
    return out;
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
  for (uint64_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

// Items 0..n-1 visited epoch after epoch, each epoch in its own seeded order; the cursor (epoch,
// position) is all a checkpoint needs to continue the same sequence. `items` names them in errors.
class EpochOrder {
 public:
  EpochOrder(uint64_t n, uint64_t seed, std::string items)
      : n_(n), seed_(seed), items_(std::move(items)), order_(epoch_order(n, seed, 0)) {}

  uint64_t size() const { return n_; }
  const DataCursor& cursor() const { return cursor_; }
  void set_cursor(const DataCursor& c) {
    if (c.position > n_)
      throw DataError("data cursor position " + std::to_string(c.position) + " is past the " + std::to_string(n_) + " " +
                      items_ + " of an epoch");
    const bool new_epoch = c.epoch != cursor_.epoch;
    cursor_ = c;
    if (new_epoch) order_ = epoch_order(n_, seed_, cursor_.epoch);
  }
  bool epoch_done() const { return cursor_.position == n_; }
  // The next item without taking it (starts the next epoch when this one is done).
  uint64_t peek() {
    if (epoch_done()) set_cursor({cursor_.epoch + 1, 0});
    return order_[cursor_.position];
  }
  uint64_t next() {
    const auto i = peek();
    ++cursor_.position;
    return i;
  }

 private:
  uint64_t n_, seed_;
  std::string items_;
  DataCursor cursor_;
  std::vector<uint64_t> order_;
};

}  // namespace minillm::data
