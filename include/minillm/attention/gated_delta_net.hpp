// Gated DeltaNet linear attention as HF's Qwen3NextGatedDeltaNet computes it (Qwen3-Next, Mini-LLM's
// mini_qwen3_next):
//   in_proj_qkvz, in_proj_ba   projections in HF's grouped layout: per key head, its q, k, then the
//                              v and z of the value heads it serves; per key head, b then a
//   conv1d                     depthwise causal convolution (linear_conv_kernel_dim) over q, k, v, SiLU
//   beta = sigmoid(b), g = -exp(A_log) softplus(a + dt_bias)
//   core = gated delta rule over L2-normalised q, k (delta_rule.hpp), chunked or recurrent
//   out_proj(RMSNormGated(core, z))
// Its cache is fixed-size state (LayerCache::state): the convolution's last kernel-1 inputs and the
// recurrent state (fp32), whatever the length. A token at position 0 begins a new document (packed
// rows, left padding): its convolution window and the recurrent state start empty there.
#pragma once

#include "minillm/attention/delta_rule.hpp"
#include "minillm/concepts.hpp"
#include "minillm/core/layers.hpp"

namespace minillm::attention {

// RMSNorm over each value head, then a SiLU gate (HF's Qwen3NextRMSNormGated): the norm in fp32, cast,
// times the weight, times silu(gate) in fp32, cast.
class RMSNormGatedImpl : public torch::nn::Module {
 public:
  RMSNormGatedImpl(int64_t dim, double eps, const at::TensorOptions& options)
      : weight(register_parameter("weight", at::ones({dim}, options))), eps_(eps) {}

  at::Tensor forward(const at::Tensor& x, const at::Tensor& gate) {  // (..., dim) both
    const auto xf = x.to(at::kFloat);
    const auto normed = (xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_)).to(x.scalar_type());
    return ((weight * normed) * at::silu(gate.to(at::kFloat))).to(x.scalar_type());
  }

  at::Tensor weight;  // (dim)

 private:
  double eps_;
};

template <NormPolicy Norm, PositionPolicy Position>
class GatedDeltaNetImpl : public torch::nn::Module {
 public:
  GatedDeltaNetImpl(const ModelConfig& c, int64_t layer, const at::TensorOptions& options)
      : layer_(layer),
        key_heads_(c.linear_num_key_heads),
        value_heads_(c.linear_num_value_heads),
        key_dim_(c.linear_key_head_dim),
        value_dim_(c.linear_value_head_dim),
        kernel_(c.linear_conv_kernel_dim) {
    const double std = c.initializer_range;
    const int64_t per_key = value_heads_ / key_heads_;
    in_proj_qkvz = register_module(
        "in_proj_qkvz", Linear(c.hidden_size, key_heads_ * (2 * key_dim_ + 2 * per_key * value_dim_), false, std, options));
    in_proj_ba = register_module("in_proj_ba", Linear(c.hidden_size, 2 * value_heads_, false, std, options));
    conv1d = register_module("conv1d", std::make_shared<torch::nn::Module>());
    {
      at::NoGradGuard no_grad;
      // As HF's _init_weights: N(0, initializer_range) for the convolution, dt_bias 1, A = U(0, 16).
      conv_weight = conv1d->register_parameter("weight", at::empty({conv_channels(), 1, kernel_}, options).normal_(0.0, std));
      dt_bias = register_parameter("dt_bias", at::ones({value_heads_}, options));
      A_log = register_parameter("A_log", at::empty({value_heads_}, options).uniform_(0.0, 16.0).log_());
    }
    norm = register_module("norm", std::make_shared<RMSNormGatedImpl>(value_dim_, c.rms_norm_eps, options));
    out_proj = register_module("out_proj", Linear(value_heads_ * value_dim_, c.hidden_size, false, std, options));
  }

  static constexpr std::string_view module_name = "linear_attn";

  at::Tensor forward(const at::Tensor& x, const AttentionContext& ctx) {  // x: (B, T, C)
    const int64_t b = x.size(0), t = x.size(1), per_key = value_heads_ / key_heads_;
    const auto qkvz = in_proj_qkvz->forward(x).view({b, t, key_heads_, 2 * key_dim_ + 2 * per_key * value_dim_});
    const auto ba = in_proj_ba->forward(x).view({b, t, key_heads_, 2 * per_key});
    const auto z = qkvz.narrow(-1, 2 * key_dim_ + per_key * value_dim_, per_key * value_dim_)
                       .reshape({b, t, value_heads_, value_dim_});        // (B, T, Hv, dv)
    const auto gate_b = ba.narrow(-1, 0, per_key).reshape({b, t, value_heads_});      // (B, T, Hv)
    const auto gate_a = ba.narrow(-1, per_key, per_key).reshape({b, t, value_heads_});  // (B, T, Hv)
    const auto mixed = at::cat({qkvz.narrow(-1, 0, key_dim_).reshape({b, t, -1}),
                                qkvz.narrow(-1, key_dim_, key_dim_).reshape({b, t, -1}),
                                qkvz.narrow(-1, 2 * key_dim_, per_key * value_dim_).reshape({b, t, -1})},
                               -1);  // (B, T, D): all q, all k, all v

    const auto& restarts = ctx.restarts;  // (B, T) or undefined
    auto* state = ctx.cache != nullptr ? &ctx.cache->state(layer_) : nullptr;
    const auto conv = short_convolution(mixed.transpose(1, 2), state ? &(*state)[0] : nullptr, restarts)
                          .transpose(1, 2);  // (B, T, D)
    const int64_t qk = key_heads_ * key_dim_;
    auto heads = [&](const at::Tensor& y, int64_t dim) {  // (B, T, H*dim) -> fp32 (B, Hv, T, dim)
      auto out = y.reshape({b, t, -1, dim});
      if (out.size(2) != value_heads_) out = out.repeat_interleave(per_key, 2);
      return out;
    };
    const auto q = l2_normalized(heads(conv.narrow(-1, 0, qk), key_dim_)).transpose(1, 2).to(at::kFloat);
    const auto k = l2_normalized(heads(conv.narrow(-1, qk, qk), key_dim_)).transpose(1, 2).to(at::kFloat);
    const auto v = heads(conv.narrow(-1, 2 * qk, value_heads_ * value_dim_), value_dim_).transpose(1, 2).to(at::kFloat);
    const auto beta = at::sigmoid(gate_b).transpose(1, 2).to(at::kFloat);                                  // (B, Hv, T)
    const auto g = (-A_log.to(at::kFloat).exp() * at::softplus(gate_a.to(at::kFloat) + dt_bias)).transpose(1, 2);  // (B, Hv, T)

    auto initial = state ? (*state)[1] : at::zeros({b, value_heads_, key_dim_, value_dim_}, q.options());
    auto [core, final_state] = t == 1 ? delta_rule_recurrent(q, k, v, g, beta, initial, restarts)
                                      : delta_rule_chunked(q, k, v, g, beta, initial, restarts);  // (B, Hv, T, dv)
    if (state) (*state)[1].copy_(final_state);
    const auto out = norm->forward(core.transpose(1, 2).to(x.scalar_type()), z);  // (B, T, Hv, dv)
    return out_proj->forward(out.reshape({b, t, value_heads_ * value_dim_}));      // (B, T, C)
  }

  // Fixed-size state, independent of the capacity: the convolution window (B, D, kernel - 1) in the
  // model's dtype and the recurrent state (B, Hv, dk, dv) in fp32.
  LayerCache make_cache(int64_t batch, int64_t capacity, const at::TensorOptions& options) const {
    (void)capacity;
    return {.state = {at::zeros({batch, conv_channels(), kernel_ - 1}, options),
                      at::zeros({batch, value_heads_, key_dim_, value_dim_}, options.dtype(at::kFloat))}};
  }

  Linear in_proj_qkvz{nullptr}, in_proj_ba{nullptr}, out_proj{nullptr};
  std::shared_ptr<torch::nn::Module> conv1d;
  std::shared_ptr<RMSNormGatedImpl> norm;
  at::Tensor conv_weight;  // (D, 1, kernel): conv1d.weight
  at::Tensor dt_bias;      // (Hv)
  at::Tensor A_log;        // (Hv)

 private:
  int64_t conv_channels() const { return 2 * key_heads_ * key_dim_ + value_heads_ * value_dim_; }

  // x / sqrt(sum x^2 + 1e-6) over the last dimension, in x's dtype (HF's l2norm).
  static at::Tensor l2_normalized(const at::Tensor& x) { return x * at::rsqrt((x * x).sum(-1, true) + 1e-6); }

  // Depthwise causal convolution + SiLU. x: (B, D, T); window: (B, D, kernel - 1) the inputs before
  // x, or null for none (zeros); updated in place with the last inputs of this call's document.
  at::Tensor short_convolution(const at::Tensor& x, at::Tensor* window, const at::Tensor& restarts) const {
    const int64_t b = x.size(0), d = x.size(1), t = x.size(2), past = kernel_ - 1;
    const auto before = window ? window->to(x.scalar_type()) : at::zeros({b, d, past}, x.options());
    const auto full = at::cat({before, x}, -1);  // (B, D, past + T)
    const auto w = conv_weight.to(x.scalar_type());
    at::Tensor out, segment;
    if (!restarts.defined()) {
      const int64_t one = 1, none = 0;
      out = at::conv1d(full, w, at::Tensor(), at::IntArrayRef(one), at::IntArrayRef(none), at::IntArrayRef(one), d);  // (B, D, T)
    } else {
      // Each output sees only inputs of its own document (the window's inputs count as document 0).
      segment = at::cat({at::zeros({b, past}, restarts.options().dtype(at::kLong)), restarts.to(at::kLong).cumsum(1)}, 1);
      const auto own = segment.unfold(1, kernel_, 1).eq(segment.narrow(1, past, t).unsqueeze(-1));  // (B, T, K)
      out = (full.unfold(2, kernel_, 1) * own.unsqueeze(1).to(x.scalar_type()) * w.view({1, d, 1, kernel_})).sum(-1);
    }
    if (window) {
      auto tail = full.narrow(2, t, past);  // (B, D, K-1)
      if (segment.defined())
        tail = tail * segment.narrow(1, t, past).eq(segment.select(1, past + t - 1).unsqueeze(1)).unsqueeze(1).to(x.scalar_type());
      window->copy_(tail);
    }
    return at::silu(out);
  }

  int64_t layer_, key_heads_, value_heads_, key_dim_, value_dim_, kernel_;
};

struct GatedDeltaNet {
  using policy_category = attention_tag;
  template <NormPolicy Norm, PositionPolicy Position>
  using module = GatedDeltaNetImpl<Norm, Position>;
  static void validate(const ModelConfig& c) {
    using detail::config_fail;
    using detail::require_positive;
    require_positive("linear_num_key_heads", c.linear_num_key_heads);
    require_positive("linear_num_value_heads", c.linear_num_value_heads);
    require_positive("linear_key_head_dim", c.linear_key_head_dim);
    require_positive("linear_value_head_dim", c.linear_value_head_dim);
    require_positive("linear_conv_kernel_dim", c.linear_conv_kernel_dim);
    if (c.linear_num_value_heads % c.linear_num_key_heads != 0)
      config_fail("linear_num_value_heads (", c.linear_num_value_heads, ") must be a multiple of linear_num_key_heads (",
                  c.linear_num_key_heads, ")");
  }
};

}  // namespace minillm::attention
