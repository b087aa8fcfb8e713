// Scaled dot-product attention for grouped queries, two ways that must agree (tests/ check it):
// an explicit math path that works on every LibTorch, and LibTorch's fused op where it exists.
#pragma once

#include <cmath>
#include <limits>

#include "minillm/attention/context.hpp"
#include "minillm/core/torch.hpp"

namespace minillm::attention {

// Bool (T, S): query i (absolute position S - T + i) may attend key j <= S - T + i.
inline at::Tensor causal_mask(int64_t t, int64_t s, const at::Device& device) {
  const auto rows = at::arange(t, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(1) + (s - t);
  const auto cols = at::arange(s, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(0);
  return cols <= rows;
}

// The softmax scale: `scale` if given (> 0), else 1 / sqrt(head_dim).
inline double softmax_scale(double scale, int64_t head_dim) {
  return scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

// q: (B, H, T, D); k: (B, Hkv, S, D), v: (B, Hkv, S, Dv) with H a multiple of Hkv (query head h
// uses kv head h / (H / Hkv)); mask: bool (B, 1, T, S) or undefined for causal. Returns (B, H, T, Dv).
inline at::Tensor attention_math(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                                 double scale_override = 0.0) {
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), d = q.size(3);
  const int64_t hkv = k.size(1), s = k.size(2), groups = h / hkv;
  const double scale = softmax_scale(scale_override, d);
  // Grouping the query heads avoids materialising repeated keys/values.
  const auto qg = q.reshape({b, hkv, groups * t, d});                       // (B, Hkv, g*T, D)
  auto scores = at::matmul(qg, k.transpose(-2, -1)).view({b, hkv, groups, t, s}) * scale;  // (B, Hkv, g, T, S)
  const auto allowed = mask.defined() ? mask.unsqueeze(2)                   // (B, 1, 1, T, S)
                                      : causal_mask(t, s, q.device());      // (T, S)
  scores = at::where(allowed, scores, -std::numeric_limits<double>::infinity());
  const auto probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());  // fp32 softmax, as HF's eager path
  return at::matmul(probs.view({b, hkv, groups * t, s}), v).view({b, h, t, v.size(3)});  // (B, H, T, Dv)
}

// (B, Hkv, S, D) -> (B, Hkv * groups, S, D), each kv head repeated for its group of query heads.
// (repeat_interleave does the same but is an order of magnitude slower on LibTorch 1.13.)
inline at::Tensor repeat_kv(const at::Tensor& x, int64_t groups) {
  if (groups == 1) return x;
  const int64_t b = x.size(0), hkv = x.size(1), s = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, hkv, groups, s, d}).reshape({b, hkv * groups, s, d});
}

inline at::Tensor attention_fused(const at::Tensor& q_in, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                                  double scale_override = 0.0) {
  const int64_t t = q_in.size(2), s = k.size(2), groups = q_in.size(1) / k.size(1);
  // Another scale is folded into q (LibTorch 1.13's op has no scale argument).
  const double d = static_cast<double>(q_in.size(3));
  const auto q = scale_override > 0.0 ? q_in * (scale_override * std::sqrt(d)) : q_in;
  // is_causal aligns the diagonal to the top-left, so with cached keys (S > T) the mask is explicit;
  // one query (a decode step) may see every key and needs none.
  const bool plain_causal = !mask.defined() && s == t;
  at::Tensor m = mask;
  if (!mask.defined() && s != t && t > 1) m = causal_mask(t, s, q.device());
#if MINILLM_TORCH_AT_LEAST(2, 5)
  return at::scaled_dot_product_attention(q, k, v, m.defined() ? c10::optional<at::Tensor>(m) : c10::nullopt, 0.0,
                                          plain_causal, c10::nullopt, /*enable_gqa=*/groups > 1);
#else
  const auto kr = repeat_kv(k, groups);  // (B, H, S, D)
  const auto vr = repeat_kv(v, groups);
  const auto mo = m.defined() ? c10::optional<at::Tensor>(m) : c10::nullopt;
#if MINILLM_TORCH_AT_LEAST(2, 0)
  return at::scaled_dot_product_attention(q, kr, vr, mo, 0.0, plain_causal);
#else
  return std::get<0>(at::_scaled_dot_product_attention(q, kr, vr, mo, 0.0, false, plain_causal));
#endif
#endif
}

// `scale`: the softmax scale, 0 for 1 / sqrt(head_dim).
inline at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                         AttentionKernel kernel, double scale = 0.0) {
  // A decode step (one query per row) is two small matmuls. `automatic` takes the math path for it:
  // on LibTorch 2.11 with CUDA, fused SDPA with GQA picked a backend that planned anew for every
  // key length, ~50 ms per generated token (measured: 20 tokens/s on an H200).
  if (kernel == AttentionKernel::math || (kernel == AttentionKernel::automatic && q.size(2) == 1))
    return attention_math(q, k, v, mask, scale);
  return attention_fused(q, k, v, mask, scale);
}

}  // namespace minillm::attention
