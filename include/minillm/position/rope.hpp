// Rotary position embedding, half-split ("rotate_half") layout as in HF Llama/Qwen3 and MiniMind2/3,
// with optional YaRN frequency scaling using MiniMind's formula (model/model_minimind.py,
// precompute_freqs_cis): applied when max_position_embeddings exceeds the original context.
#pragma once

#include <cmath>
#include <numbers>
#include <utility>

#include "minillm/concepts.hpp"

namespace minillm::position {

// YaRN's correction range [low, high] over the head_dim/2 frequency indices: indices below `low`
// keep their frequency, above `high` are divided by `factor`, a linear ramp in between.
inline std::pair<int64_t, int64_t> yarn_correction_range(int64_t head_dim, double rope_theta, const RopeScaling& s) {
  const auto dim = static_cast<double>(head_dim);
  const auto orig = static_cast<double>(s.original_max_position_embeddings);
  auto inv_dim = [&](double beta) {
    return dim * std::log(orig / (beta * 2.0 * std::numbers::pi)) / (2.0 * std::log(rope_theta));
  };
  const auto low = std::max<int64_t>(static_cast<int64_t>(std::floor(inv_dim(s.beta_fast))), 0);
  const auto high = std::min<int64_t>(static_cast<int64_t>(std::ceil(inv_dim(s.beta_slow))), head_dim / 2 - 1);
  return {low, high};
}

// Inverse frequencies (rotary_dim/2), fp32 arithmetic as in the references, plus the factor that
// scales cos and sin (YaRN's attention_factor, 1 otherwise).
inline std::pair<at::Tensor, double> rope_inverse_frequencies(const ModelConfig& c) {
  const int64_t dim = c.rotary_dim();
  const auto exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  auto inv_freq = 1.0 / at::pow(c.rope_theta, exponents);  // (dim/2)
  double attention_factor = 1.0;
  if (c.rope_scaling && static_cast<double>(c.max_position_embeddings) /
                                static_cast<double>(c.rope_scaling->original_max_position_embeddings) >
                            1.0) {
    const auto& s = *c.rope_scaling;
    const auto [low, high] = yarn_correction_range(dim, c.rope_theta, s);
    const double span = std::max(static_cast<double>(high - low), 0.001);
    const auto ramp = at::clamp((at::arange(dim / 2, at::kFloat) - static_cast<double>(low)) / span, 0.0, 1.0);
    inv_freq = inv_freq * (1.0 - ramp + ramp / s.factor);
    attention_factor = s.attention_factor;
  }
  return {inv_freq, attention_factor};
}

class RoPEImpl : public torch::nn::Module {
 public:
  RoPEImpl(const ModelConfig& c, const at::TensorOptions& options) {
    auto [inv_freq, factor] = rope_inverse_frequencies(c);
    inv_freq_ = register_buffer("inv_freq", inv_freq.to(options.device()));
    attention_factor_ = factor;
  }

  // positions: (B, T) int64 -> cos, sin: (B, T, head_dim) in fp32.
  PositionEncoding encode(const at::Tensor& positions) {
    const auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq_;  // (B, T, D/2)
    const auto emb = at::cat({freqs, freqs}, -1);                            // (B, T, D)
    if (attention_factor_ == 1.0) return {emb.cos(), emb.sin()};
    return {emb.cos() * attention_factor_, emb.sin() * attention_factor_};
  }

  // x: (B, T, H, D). cos/sin are cast to x's dtype first, as HF does. HF's x * cos +
  // rotate_half(x) * sin with rotate_half(x) = (-x2, x1) is computed as x * cos + (x2, x1) * (-s1, s2):
  // the same products to the bit (negation is exact), one kernel fewer, the sign folded into the
  // table once per forward.
  // With partial rotary (tables narrower than the head) only the head's leading dimensions turn.
  static at::Tensor rotate(const at::Tensor& x, const PositionEncoding& pe) {
    const int64_t turned = pe.cos.size(-1);
    if (turned < x.size(-1))
      return at::cat({rotate(x.narrow(-1, 0, turned), pe), x.narrow(-1, turned, x.size(-1) - turned)}, -1);
    const auto [cos, signed_sin] = pe.for_heads(x.scalar_type());  // (B, T, 1, D)
    const int64_t half = x.size(-1) / 2;
    const auto swapped = x.unflatten(-1, {2, half}).flip(-2).flatten(-2);  // (x2, x1)
    return x * cos + swapped * signed_sin;
  }

 private:
  at::Tensor inv_freq_;  // (D/2), a buffer: moves with the module, not saved in checkpoints
  double attention_factor_ = 1.0;
};

struct RoPE {
  using policy_category = position_tag;
  using module = RoPEImpl;
  static void validate(const ModelConfig& c) {
    if (c.rotary_dim() % 2 != 0)
      detail::config_fail(c.qk_rope_head_dim > 0 ? "qk_rope_head_dim (" : "the rotary part of head_dim (", c.rotary_dim(),
                          ") must be even for rotary position embedding");
    if (c.rotary_dim() <= 0)
      detail::config_fail("head_dim x partial_rotary_factor (", c.rotary_dim(), ") must be at least 2 rotary dimensions");
  }
};
static_assert(PositionPolicy<RoPE>);

}  // namespace minillm::position
