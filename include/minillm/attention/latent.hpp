// Multi-head latent attention (DeepSeek-V2/V3), as HF's DeepseekV3Attention computes it:
//   q        = q_b_proj(q_a_layernorm(q_a_proj(x)))      (or q_proj(x) without q_lora_rank)
//   [c, kr]  = kv_a_proj_with_mqa(x)                      c: kv latent (kv_lora_rank), kr: rope key shared by all heads
//   [kn, v]  = kv_b_proj(kv_a_layernorm(c))               per head: qk_nope_head_dim keys, v_head_dim values
//   scores   = (q_nope . kn + rope(q_rope) . rope(kr)) * (qk_nope + qk_rope)^-0.5 (* YaRN mscale^2)
// The cache keeps the normed latent and the rotated shared key: kv_lora_rank + qk_rope_head_dim
// numbers per token and layer, whatever the head count. With cached tokens to attend over (decode,
// speculative verification, the fixed-shape step) the up-projection is absorbed instead: kv_b_proj's
// key rows fold into the query and its value rows into the output, so the latent is never expanded.
// Prefill and training take the plain form. Both forms are the same function (tests compare them).
// Parameter names are HF's; Mini-LLM's (wq_a, wkv_a, ...) are a checkpoint layout (io/layouts.hpp).
#pragma once

#include <cmath>

#include "minillm/attention/kernels.hpp"
#include "minillm/concepts.hpp"
#include "minillm/core/layers.hpp"

namespace minillm::attention {

template <NormPolicy Norm, PositionPolicy Position>
class LatentAttentionImpl : public torch::nn::Module {
  using NormModule = typename Norm::module;

 public:
  LatentAttentionImpl(const ModelConfig& c, int64_t layer, const at::TensorOptions& options)
      : layer_(layer),
        heads_(c.num_attention_heads),
        kv_rank_(c.kv_lora_rank),
        nope_(c.qk_nope_head_dim),
        rope_(c.qk_rope_head_dim),
        v_dim_(c.v_head_dim),
        interleaved_(c.rope_interleave),
        scale_(latent_softmax_scale(c)) {
    const double std = c.initializer_range;
    const int64_t qk = nope_ + rope_;
    if (c.q_lora_rank > 0) {
      q_a_proj = register_module("q_a_proj", Linear(c.hidden_size, c.q_lora_rank, false, std, options));
      q_a_layernorm = register_module("q_a_layernorm", std::make_shared<NormModule>(c.q_lora_rank, c.rms_norm_eps, options));
      q_b_proj = register_module("q_b_proj", Linear(c.q_lora_rank, heads_ * qk, false, std, options));
    } else {
      q_proj = register_module("q_proj", Linear(c.hidden_size, heads_ * qk, false, std, options));
    }
    kv_a_proj_with_mqa = register_module("kv_a_proj_with_mqa", Linear(c.hidden_size, kv_rank_ + rope_, false, std, options));
    kv_a_layernorm = register_module("kv_a_layernorm", std::make_shared<NormModule>(kv_rank_, c.rms_norm_eps, options));
    kv_b_proj = register_module("kv_b_proj", Linear(kv_rank_, heads_ * (nope_ + v_dim_), false, std, options));
    o_proj = register_module("o_proj", Linear(heads_ * v_dim_, c.hidden_size, false, std, options));
  }

  // (nope + rope)^-0.5, times DeepSeek's YaRN mscale squared when rope_scaling sets mscale_all_dim.
  static double latent_softmax_scale(const ModelConfig& c) {
    double scale = 1.0 / std::sqrt(static_cast<double>(c.qk_nope_head_dim + c.qk_rope_head_dim));
    if (c.rope_scaling && c.rope_scaling->mscale_all_dim > 0.0 && c.rope_scaling->factor > 1.0) {
      const double mscale = 0.1 * c.rope_scaling->mscale_all_dim * std::log(c.rope_scaling->factor) + 1.0;
      scale *= mscale * mscale;
    }
    return scale;
  }

  at::Tensor forward(const at::Tensor& x, const AttentionContext& ctx) {  // x: (B, T, C)
    const int64_t b = x.size(0), t = x.size(1);
    const auto q = (q_proj ? q_proj->forward(x) : q_b_proj->forward(q_a_layernorm->forward(q_a_proj->forward(x))))
                       .view({b, t, heads_, nope_ + rope_});                       // (B, T, H, nope + rope)
    const auto q_nope = q.narrow(-1, 0, nope_).transpose(1, 2);                   // (B, H, T, nope)
    const auto q_rope = rotate(q.narrow(-1, nope_, rope_), ctx.position).transpose(1, 2);  // (B, H, T, rope)
    const auto compressed = kv_a_proj_with_mqa->forward(x);                       // (B, T, R + rope)
    auto latent = kv_a_layernorm->forward(compressed.narrow(-1, 0, kv_rank_)).unsqueeze(1);  // (B, 1, T, R)
    auto k_rope = rotate(compressed.narrow(-1, kv_rank_, rope_).unsqueeze(2), ctx.position).transpose(1, 2);  // (B, 1, T, rope)
    if (ctx.cache != nullptr) {
      const auto cached = ctx.cache->update(layer_, {latent, k_rope}, ctx.cache_slots);
      latent = cached[0];  // (B, 1, S, R)
      k_rope = cached[1];  // (B, 1, S, rope)
    }
    const auto out = latent.size(2) > t ? absorbed(q_nope, q_rope, latent, k_rope, ctx)
                                        : expanded(q_nope, q_rope, latent, k_rope, ctx);  // (B, H, T, v)
    return o_proj->forward(out.transpose(1, 2).reshape({b, t, heads_ * v_dim_}));      // (B, T, C)
  }

  // The cache keeps the latent and the shared rope key: kv_lora_rank + qk_rope_head_dim per token.
  LayerCache make_cache(int64_t batch, int64_t capacity, const at::TensorOptions& options) const {
    return {.tokens = {at::zeros({batch, 1, capacity, kv_rank_}, options), at::zeros({batch, 1, capacity, rope_}, options)}};
  }

  // Both forms of the attention over the same inputs, for tests: q_nope (B, H, T, nope), q_rope
  // (B, H, T, rope), latent (B, 1, S, R), k_rope (B, 1, S, rope) -> (B, H, T, v).
  at::Tensor expanded(const at::Tensor& q_nope, const at::Tensor& q_rope, const at::Tensor& latent, const at::Tensor& k_rope,
                      const AttentionContext& ctx) {
    const int64_t b = latent.size(0), s = latent.size(2);
    const auto kv = kv_b_proj->forward(latent.squeeze(1)).view({b, s, heads_, nope_ + v_dim_}).transpose(1, 2);  // (B, H, S, nope + v)
    const auto k = at::cat({kv.narrow(-1, 0, nope_), k_rope.expand({b, heads_, s, rope_})}, -1);  // (B, H, S, nope + rope)
    const auto v = kv.narrow(-1, nope_, v_dim_);                                                  // (B, H, S, v)
    return attend(at::cat({q_nope, q_rope}, -1), k, v, ctx.mask, ctx.kernel, scale_);
  }
  at::Tensor absorbed(const at::Tensor& q_nope, const at::Tensor& q_rope, const at::Tensor& latent, const at::Tensor& k_rope,
                      const AttentionContext& ctx) {
    const int64_t t = q_nope.size(2), s = latent.size(2);
    const auto w = kv_b_proj->weight.view({heads_, nope_ + v_dim_, kv_rank_});  // (H, nope + v, R)
    const auto q_latent = at::matmul(q_nope, w.narrow(1, 0, nope_));            // (B, H, T, R)
    auto scores = (at::matmul(q_latent, latent.transpose(-2, -1)) + at::matmul(q_rope, k_rope.transpose(-2, -1))) *
                  scale_;  // (B, H, T, S)
    const auto allowed = ctx.mask.defined() ? ctx.mask : causal_mask(t, s, q_nope.device());  // (B, 1, T, S) or (T, S)
    scores = at::where(allowed, scores, -std::numeric_limits<double>::infinity());
    const auto probs = at::softmax(scores, -1, at::kFloat).to(q_nope.scalar_type());  // fp32 softmax, as HF
    const auto out_latent = at::matmul(probs, latent);                                // (B, H, T, R)
    return at::matmul(out_latent, w.narrow(1, nope_, v_dim_).transpose(1, 2));        // (B, H, T, v)
  }

  Linear q_proj{nullptr}, q_a_proj{nullptr}, q_b_proj{nullptr};  // q_proj without q_lora_rank, else q_a/q_b
  std::shared_ptr<NormModule> q_a_layernorm;
  Linear kv_a_proj_with_mqa{nullptr};
  std::shared_ptr<NormModule> kv_a_layernorm;
  Linear kv_b_proj{nullptr}, o_proj{nullptr};

 private:
  // x: (B, T, h, rope). DeepSeek's checkpoints pair adjacent dims (rope_interleave); HF turns them
  // into halves before the usual rotation, and so do we (scores do not depend on the dim order).
  at::Tensor rotate(const at::Tensor& x, const PositionEncoding& pe) const {
    const auto halves = interleaved_ ? x.unflatten(-1, {rope_ / 2, 2}).transpose(-2, -1).flatten(-2) : x;
    return Position::module::rotate(halves, pe);
  }

  int64_t layer_, heads_, kv_rank_, nope_, rope_, v_dim_;
  bool interleaved_;
  double scale_;
};

struct MultiHeadLatent {
  using policy_category = attention_tag;
  template <NormPolicy Norm, PositionPolicy Position>
  using module = LatentAttentionImpl<Norm, Position>;
  static void validate(const ModelConfig& c) {
    using detail::config_fail;
    if (c.q_lora_rank < 0) config_fail("q_lora_rank (", c.q_lora_rank, ") must be positive, or null for a plain q projection");
    detail::require_positive("kv_lora_rank", c.kv_lora_rank);
    detail::require_positive("qk_nope_head_dim", c.qk_nope_head_dim);
    detail::require_positive("qk_rope_head_dim", c.qk_rope_head_dim);
    detail::require_positive("v_head_dim", c.v_head_dim);
  }
};

}  // namespace minillm::attention
