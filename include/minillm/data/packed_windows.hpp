// Pretraining batches packed from token shards: the shards' tokens form one stream (documents back
// to back, each already bos ... eos), cut into windows of seq_len + 1 tokens at stride seq_len, so
// no position is padding. Windows are visited in a seeded random order, a new order each epoch;
// the cursor (epoch, position) is all a checkpoint needs to resume exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "minillm/data/batch.hpp"
#include "minillm/data/token_shard.hpp"

namespace minillm::data {

class PackedWindows {
 public:
  PackedWindows(const std::vector<std::filesystem::path>& shards, int64_t seq_len, uint64_t seed)
      : seq_len_(seq_len) {
    if (seq_len < 1) throw DataError("seq_len (" + std::to_string(seq_len) + ") must be positive");
    if (shards.empty()) throw DataError("no token shards given");
    uint64_t offset = 0;
    for (const auto& p : shards) {
      shards_.emplace_back(p);
      starts_.push_back(offset);
      offset += shards_.back().size();
    }
    total_ = offset;
    windows_ = total_ > 1 ? (total_ - 1) / static_cast<uint64_t>(seq_len) : 0;
    if (windows_ == 0)
      throw DataError("the shards hold " + std::to_string(total_) + " tokens: too few for one window of " +
                      std::to_string(seq_len + 1));
    order_ = EpochOrder(windows_, seed, "windows");
  }

  uint64_t num_windows() const { return windows_; }
  uint64_t num_tokens() const { return total_; }
  const DataCursor& cursor() const { return order_.cursor(); }
  void set_cursor(const DataCursor& c) { order_.set_cursor(c); }

  // The next `batch` windows: (batch, seq_len + 1) int64; the epoch rolls over when exhausted.
  at::Tensor next_batch(int64_t batch) {
    auto out = at::empty({batch, seq_len_ + 1}, at::kLong);
    for (int64_t b = 0; b < batch; ++b)
      read(order_.next() * static_cast<uint64_t>(seq_len_), static_cast<uint64_t>(seq_len_) + 1,
           out.data_ptr<int64_t>() + b * (seq_len_ + 1));
    return out;
  }

  // Window i of the stream, in order (for validation).
  at::Tensor window(uint64_t i) const {
    auto out = at::empty({1, seq_len_ + 1}, at::kLong);
    read(i * static_cast<uint64_t>(seq_len_), static_cast<uint64_t>(seq_len_) + 1, out.data_ptr<int64_t>());
    return out;
  }

 private:
  void read(uint64_t begin, uint64_t n, int64_t* out) const {
    size_t s = 0;
    while (s + 1 < starts_.size() && starts_[s + 1] <= begin) ++s;
    while (n > 0) {
      const uint64_t local = begin - starts_[s];
      const uint64_t take = std::min(n, shards_[s].size() - local);
      shards_[s].read(local, take, out);
      out += take, begin += take, n -= take, ++s;
    }
  }

  std::vector<TokenShard> shards_;
  std::vector<uint64_t> starts_;
  uint64_t total_ = 0, windows_ = 0;
  int64_t seq_len_;
  EpochOrder order_{0, 0, "windows"};
};

}  // namespace minillm::data
