// What a block needs besides its input: position encodings, the attention mask, the cache (each
// attention policy decides what it keeps there) and the kernel choice. CausalLM builds one per
// forward and hands it to every layer.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "minillm/core/torch.hpp"

namespace minillm {

// Rotary tables for the query positions of one forward: cos and sin of shape (B, T, head_dim) in
// fp32. Undefined for architectures without rotary positions.
struct PositionEncoding {
  PositionEncoding() = default;
  PositionEncoding(at::Tensor c, at::Tensor s) : cos(std::move(c)), sin(std::move(s)) {}

  at::Tensor cos;
  at::Tensor sin;

  // cos and sin cast to `dtype` and shaped (B, T, 1, D) for the heads, sin with its first half
  // negated (see RoPEImpl::rotate). Made by the first layer that asks, reused by the others: a
  // forward would otherwise cast the same tables again in every layer.
  std::pair<at::Tensor, at::Tensor> for_heads(at::ScalarType dtype) const {
    if (!head_cos_.defined() || head_cos_.scalar_type() != dtype) {
      const int64_t half = sin.size(-1) / 2;
      head_cos_ = cos.to(dtype).unsqueeze(2);
      head_sin_ = at::cat({-sin.narrow(-1, 0, half), sin.narrow(-1, half, half)}, -1).to(dtype).unsqueeze(2);
    }
    return {head_cos_, head_sin_};
  }

 private:
  mutable at::Tensor head_cos_, head_sin_;
};

enum class AttentionKernel {
  automatic,  // fused scaled-dot-product attention where LibTorch has one (math for one query), else math
  math,       // explicit matmul + softmax (the reference path; works on every LibTorch)
  fused,      // LibTorch's SDPA op (2.x: scaled_dot_product_attention; 1.13: _scaled_dot_product_attention)
};

// What one layer keeps between forwards, as its attention policy defines it (the policy's
// `make_cache(batch, capacity, options)`): per-token entries, each (B, heads, capacity, dim) with
// row b's token at column j in [b, :, j, :] (GQA: keys and values; MLA: the kv latent and the
// shared rotary key), and fixed-size state that does not grow with the length (a recurrent state,
// a convolution window), zeroed by KVCache::reset().
struct LayerCache {
  std::vector<at::Tensor> tokens;
  std::vector<at::Tensor> state;
};

// The cache of every layer of a model, one LayerCache each, over a shared length and capacity.
// Layers write their new tokens' entries at the current length (or, in a fixed-shape step that a
// CUDA graph records, at column indices held on the device) and attend over what is cached;
// CausalLM advances the length once all layers have run.
class KVCache {
 public:
  KVCache(std::vector<LayerCache> layers, int64_t capacity) : layers_(std::move(layers)), capacity_(capacity) {
    if (layers_.empty() || capacity <= 0)
      throw std::invalid_argument("KVCache needs at least one layer and a positive capacity (layers " +
                                  std::to_string(layers_.size()) + ", capacity " + std::to_string(capacity) + ")");
    for (const auto& l : layers_)
      for (const auto& group : {l.tokens, l.state})
        for (const auto& t : group)
          if (batch_ < 0) batch_ = t.size(0);
    if (batch_ <= 0) throw std::invalid_argument("KVCache: no layer holds a tensor with a positive batch size");
  }

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

  // Bytes of per-token entries one token costs across all layers (fixed-size state excluded).
  int64_t bytes_per_token() const {
    int64_t bytes = 0;
    for (const auto& l : layers_)
      for (const auto& t : l.tokens) bytes += t.numel() / (batch_ * capacity_) * static_cast<int64_t>(t.element_size());
    return bytes;
  }
  // Bytes of fixed-size state per row across all layers.
  int64_t state_bytes_per_row() const {
    int64_t bytes = 0;
    for (const auto& l : layers_)
      for (const auto& t : l.state) bytes += t.numel() / batch_ * static_cast<int64_t>(t.element_size());
    return bytes;
  }

  // Throws unless `new_tokens` more fit.
  void check_room(int64_t new_tokens) const {
    if (length_ + new_tokens > capacity_)
      throw std::length_error("KV cache full: length (" + std::to_string(length_) + ") + new tokens (" +
                              std::to_string(new_tokens) + ") exceeds capacity (" + std::to_string(capacity_) + ")");
  }

  // entries: one (B, heads, T, dim) tensor per token entry of `layer`, for the T new tokens.
  // Without `slots` they are written after length() and the result views columns [0, length() + T);
  // with `slots` (int64 (T) on the cache's device, never read by the host) they are written at
  // those columns and the result is the whole capacity. length() is unchanged either way.
  std::vector<at::Tensor> update(int64_t layer, const std::vector<at::Tensor>& entries, const at::Tensor& slots = {}) {
    auto& cached = at_layer(layer).tokens;
    if (entries.size() != cached.size())
      throw std::invalid_argument("KVCache layer " + std::to_string(layer) + " holds " + std::to_string(cached.size()) +
                                  " token entries, got " + std::to_string(entries.size()));
    std::vector<at::Tensor> out;
    out.reserve(cached.size());
    for (size_t i = 0; i < cached.size(); ++i) {
      if (slots.defined()) {
        cached[i].index_copy_(2, slots, entries[i]);
        out.push_back(cached[i]);  // (B, h, capacity, d)
      } else {
        const int64_t t = entries[i].size(2);
        check_room(t);
        cached[i].narrow(2, length_, t).copy_(entries[i]);
        out.push_back(cached[i].narrow(2, 0, length_ + t));  // (B, h, S, d)
      }
    }
    return out;
  }

  // The fixed-size state tensors of `layer`, updated in place by its attention module.
  std::vector<at::Tensor>& state(int64_t layer) { return at_layer(layer).state; }

  // Room for `capacity` tokens, keeping those cached: a generation reserves as it grows, not
  // all it may ever use up front.
  // Per-token entries are copied into larger buffers; fixed-size state stays as it is.
  void grow(int64_t capacity) {
    if (capacity <= capacity_) return;
    for (auto& l : layers_)
      for (auto& t : l.tokens) {
        auto sizes = t.sizes().vec();
        sizes[2] = capacity;
        auto bigger = at::zeros(sizes, t.options());  // (B, h, capacity, d)
        bigger.narrow(2, 0, length_).copy_(t.narrow(2, 0, length_));
        t = std::move(bigger);
      }
    capacity_ = capacity;
  }

  void advance(int64_t new_tokens) {
    check_room(new_tokens);
    length_ += new_tokens;
  }
  // Drops the last tokens (a rejected speculative draft). Only for caches without fixed-size state,
  // which cannot be rolled back.
  void truncate(int64_t length) {
    if (length < 0 || length > length_)
      throw std::out_of_range("KVCache::truncate(" + std::to_string(length) + ") outside [0, " +
                              std::to_string(length_) + "]");
    if (state_bytes_per_row() > 0) throw std::logic_error("a cache with recurrent state cannot be truncated");
    length_ = length;
  }
  void reset() {
    length_ = 0;
    for (auto& l : layers_)
      for (auto& t : l.state) t.zero_();
  }

 private:
  LayerCache& at_layer(int64_t layer) {
    if (layer < 0 || layer >= num_layers())
      throw std::out_of_range("KVCache has no layer " + std::to_string(layer) + " (layers: " +
                              std::to_string(num_layers()) + ")");
    return layers_[static_cast<size_t>(layer)];
  }

  std::vector<LayerCache> layers_;
  int64_t capacity_;
  int64_t batch_ = -1;
  int64_t length_ = 0;
};

struct AttentionContext {
  PositionEncoding position;
  // Bool (B, T): tokens at position 0, where a document begins (packed rows, left padding);
  // undefined when positions only count up from the cache.
  at::Tensor restarts;
  // Boolean (B, 1, T, S), true = may attend; already includes causality. Undefined means plain
  // causal attention over S keys whose last T are the queries.
  at::Tensor mask;
  KVCache* cache = nullptr;
  at::Tensor cache_slots;  // int64 (T) on the device: write the cache there (KVCache::update), not at length()
  AttentionKernel kernel = AttentionKernel::automatic;
};

}  // namespace minillm
