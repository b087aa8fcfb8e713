// What a block needs besides its input: position encodings, the attention mask, the KV cache hook
// and the kernel choice. CausalLM builds one per forward and hands it to every layer.
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

// Preallocated keys and values for every layer: (B, n_kv, capacity, head_dim) each. Layers append
// the new tokens' keys/values at the current length and attend over everything cached; CausalLM
// advances the length once all layers have run. A fixed-shape step (a CUDA graph) writes at column
// indices held on the device instead (write_at) and attends over the whole capacity under a mask.
class KVCache {
 public:
  KVCache(int64_t num_layers, int64_t batch, int64_t num_kv_heads, int64_t capacity, int64_t head_dim,
          const at::TensorOptions& options)
      : capacity_(capacity) {
    if (num_layers <= 0 || batch <= 0 || num_kv_heads <= 0 || capacity <= 0 || head_dim <= 0)
      throw std::invalid_argument("KVCache sizes must be positive (layers " + std::to_string(num_layers) +
                                  ", batch " + std::to_string(batch) + ", kv heads " + std::to_string(num_kv_heads) +
                                  ", capacity " + std::to_string(capacity) + ", head_dim " +
                                  std::to_string(head_dim) + ")");
    for (int64_t i = 0; i < num_layers; ++i) {
      keys_.push_back(at::zeros({batch, num_kv_heads, capacity, head_dim}, options));
      values_.push_back(at::zeros({batch, num_kv_heads, capacity, head_dim}, options));
    }
  }

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return keys_.front().size(0); }
  int64_t num_layers() const { return static_cast<int64_t>(keys_.size()); }

  // Throws unless `new_tokens` more fit.
  void check_room(int64_t new_tokens) const {
    if (length_ + new_tokens > capacity_)
      throw std::length_error("KV cache full: length (" + std::to_string(length_) + ") + new tokens (" +
                              std::to_string(new_tokens) + ") exceeds capacity (" + std::to_string(capacity_) + ")");
  }

  // k, v: (B, n_kv, T, D) for the tokens after length(). Returns keys/values for [0, length() + T).
  std::pair<at::Tensor, at::Tensor> append(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
    const int64_t t = k.size(2);
    check_room(t);
    auto& kc = keys_.at(static_cast<size_t>(layer));
    auto& vc = values_.at(static_cast<size_t>(layer));
    kc.narrow(2, length_, t).copy_(k);
    vc.narrow(2, length_, t).copy_(v);
    return {kc.narrow(2, 0, length_ + t), vc.narrow(2, 0, length_ + t)};  // (B, n_kv, S, D)
  }

  // k, v: (B, n_kv, T, D) written at the columns `slots` (int64 (T), on the cache's device), which
  // the host never reads. Returns the whole buffers (B, n_kv, capacity, D); length() is unchanged.
  std::pair<at::Tensor, at::Tensor> write_at(int64_t layer, const at::Tensor& k, const at::Tensor& v,
                                             const at::Tensor& slots) {
    auto& kc = keys_.at(static_cast<size_t>(layer));
    auto& vc = values_.at(static_cast<size_t>(layer));
    kc.index_copy_(2, slots, k);
    vc.index_copy_(2, slots, v);
    return {kc, vc};
  }

  // Room for `capacity` tokens, keeping those cached: a generation reserves as it grows, not
  // all it may ever use up front.
  void grow(int64_t capacity) {
    if (capacity <= capacity_) return;
    for (auto* buffers : {&keys_, &values_})
      for (auto& t : *buffers) {
        auto sizes = t.sizes().vec();
        sizes[2] = capacity;
        auto bigger = at::zeros(sizes, t.options());  // (B, n_kv, capacity, D)
        bigger.narrow(2, 0, length_).copy_(t.narrow(2, 0, length_));
        t = std::move(bigger);
      }
    capacity_ = capacity;
  }

  void advance(int64_t new_tokens) {
    check_room(new_tokens);
    length_ += new_tokens;
  }
  void reset() { length_ = 0; }

 private:
  std::vector<at::Tensor> keys_, values_;
  int64_t capacity_;
  int64_t length_ = 0;
};

struct AttentionContext {
  PositionEncoding position;
  // Boolean (B, 1, T, S), true = may attend; already includes causality. Undefined means plain
  // causal attention over S keys whose last T are the queries.
  at::Tensor mask;
  KVCache* cache = nullptr;
  at::Tensor cache_slots;  // int64 (T) on the device: write the cache there (KVCache::write_at), not at length()
  AttentionKernel kernel = AttentionKernel::automatic;
};

}  // namespace minillm
