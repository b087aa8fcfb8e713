// Causal self-attention with grouped key/value heads: MHA when num_key_value_heads equals
// num_attention_heads, GQA in between, MQA at one kv head. Optional per-head RMS "QK-norm" before
// the rotary embedding (Qwen3, MiniMind-3), optional biases on the q/k/v projections (Qwen2), and an
// optional per-element output gate (Qwen3-Next's gated attention: q_proj also yields, per head, a
// gate g after the query; the heads' output is multiplied by sigmoid(g) before o_proj).
// Parameter names are HF's: q_proj, k_proj, v_proj, o_proj, q_norm, k_norm.
#pragma once

#include "minillm/attention/kernels.hpp"
#include "minillm/concepts.hpp"
#include "minillm/core/layers.hpp"
#include "minillm/norm/rms_norm.hpp"
#include "minillm/position/rope.hpp"

namespace minillm::attention {

enum class QKNorm { off, on };
enum class QKVBias { off, on };
enum class OutputGate { off, on };

template <NormPolicy Norm, PositionPolicy Position, QKNorm Q, QKVBias B, OutputGate G>
class GroupedQueryAttentionImpl : public torch::nn::Module {
  using NormModule = typename Norm::module;

 public:
  GroupedQueryAttentionImpl(const ModelConfig& c, int64_t layer, const at::TensorOptions& options)
      : layer_(layer),
        heads_(c.num_attention_heads),
        kv_heads_(c.num_key_value_heads),
        head_dim_(c.resolved_head_dim()) {
    const double std = c.initializer_range;
    constexpr bool bias = B == QKVBias::on;
    constexpr int64_t q_parts = G == OutputGate::on ? 2 : 1;  // per head: query, then gate
    q_proj = register_module("q_proj", Linear(c.hidden_size, heads_ * head_dim_ * q_parts, bias, std, options));
    k_proj = register_module("k_proj", Linear(c.hidden_size, kv_heads_ * head_dim_, bias, std, options));
    v_proj = register_module("v_proj", Linear(c.hidden_size, kv_heads_ * head_dim_, bias, std, options));
    o_proj = register_module("o_proj", Linear(heads_ * head_dim_, c.hidden_size, false, std, options));
    if constexpr (Q == QKNorm::on) {
      q_norm = register_module("q_norm", std::make_shared<NormModule>(head_dim_, c.rms_norm_eps, options));
      k_norm = register_module("k_norm", std::make_shared<NormModule>(head_dim_, c.rms_norm_eps, options));
    }
  }

  at::Tensor forward(const at::Tensor& x, const AttentionContext& ctx) {  // x: (B, T, C)
    const int64_t b = x.size(0), t = x.size(1);
    at::Tensor q, gate;
    if constexpr (G == OutputGate::on) {
      const auto qg = q_proj->forward(x).view({b, t, heads_, 2 * head_dim_});  // (B, T, H, 2D)
      q = qg.narrow(-1, 0, head_dim_);                                          // (B, T, H, D)
      gate = qg.narrow(-1, head_dim_, head_dim_).reshape({b, t, heads_ * head_dim_});
    } else {
      q = q_proj->forward(x).view({b, t, heads_, head_dim_});  // (B, T, H, D)
    }
    auto k = k_proj->forward(x).view({b, t, kv_heads_, head_dim_});  // (B, T, Hkv, D)
    auto v = v_proj->forward(x).view({b, t, kv_heads_, head_dim_});  // (B, T, Hkv, D)
    if constexpr (Q == QKNorm::on) {
      q = q_norm->forward(q);
      k = k_norm->forward(k);
    }
    q = Position::module::rotate(q, ctx.position).transpose(1, 2);  // (B, H, T, D)
    k = Position::module::rotate(k, ctx.position).transpose(1, 2);  // (B, Hkv, T, D)
    v = v.transpose(1, 2);                                          // (B, Hkv, T, D)
    if (ctx.cache != nullptr) {
      const auto kv = ctx.cache->update(layer_, {k, v}, ctx.cache_slots);
      k = kv[0];  // (B, Hkv, S, D)
      v = kv[1];
    }
    auto out = attend(q, k, v, ctx.mask, ctx.kernel).transpose(1, 2).reshape({b, t, heads_ * head_dim_});  // (B, T, H*D)
    if constexpr (G == OutputGate::on) out = out * at::sigmoid(gate);
    return o_proj->forward(out);  // (B, T, C)
  }

  // The cache keeps every token's keys and values: 2 * Hkv * head_dim numbers per token and layer.
  LayerCache make_cache(int64_t batch, int64_t capacity, const at::TensorOptions& options) const {
    return {.tokens = {at::zeros({batch, kv_heads_, capacity, head_dim_}, options),
                       at::zeros({batch, kv_heads_, capacity, head_dim_}, options)}};
  }

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  std::shared_ptr<NormModule> q_norm, k_norm;  // null unless QK-norm is on

 private:
  int64_t layer_, heads_, kv_heads_, head_dim_;
};

template <QKNorm Q = QKNorm::off, QKVBias B = QKVBias::off, OutputGate G = OutputGate::off>
struct GroupedQuery {
  using policy_category = attention_tag;
  template <NormPolicy Norm, PositionPolicy Position>
  using module = GroupedQueryAttentionImpl<Norm, Position, Q, B, G>;
};

// Qwen3-Next's full-attention layers: QK-norm, output gate, partial rotary (from the config).
using Gated = GroupedQuery<QKNorm::on, QKVBias::off, OutputGate::on>;

static_assert(AttentionPolicy<GroupedQuery<QKNorm::off>, norm::RMSNormHF, position::RoPE>);
static_assert(AttentionPolicy<GroupedQuery<QKNorm::on>, norm::RMSNormMiniMind3, position::RoPE>);
static_assert(AttentionPolicy<GroupedQuery<QKNorm::off, QKVBias::on>, norm::RMSNormHF, position::RoPE>);
static_assert(AttentionPolicy<Gated, norm::ZeroCenteredRMSNorm, position::RoPE>);

}  // namespace minillm::attention
