// Architectures: one policy per slot. Adding one means adding a struct here and a line in
// registry.hpp; nothing else in the library changes.
#pragma once

#include <algorithm>

#include "minillm/attention/gated_delta_net.hpp"
#include "minillm/attention/grouped_query.hpp"
#include "minillm/attention/latent.hpp"
#include "minillm/ffn/gelu_mlp.hpp"
#include "minillm/ffn/swiglu.hpp"
#include "minillm/moe/deepseek_router.hpp"
#include "minillm/moe/mixture_of_experts.hpp"
#include "minillm/norm/layer_norm.hpp"
#include "minillm/norm/rms_norm.hpp"
#include "minillm/position/none.hpp"
#include "minillm/position/rope.hpp"

namespace minillm::layers {

// Per-layer rule for PerLayer<FirstKDense, Dense, Sparse>: layers [0, first_k_dense_replace) use
// the dense kind, the rest the sparse one (DeepSeek-V3; Mini-LLM's num_dense_layers).
struct FirstKDense {
  static size_t kind(const ModelConfig& c, int64_t layer) { return layer < c.first_k_dense_replace ? 0 : 1; }
  static void validate(const ModelConfig& c) {
    if (c.first_k_dense_replace < 0 || c.first_k_dense_replace > c.num_hidden_layers)
      detail::config_fail("first_k_dense_replace (", c.first_k_dense_replace, ") must be between 0 and num_hidden_layers (",
                          c.num_hidden_layers, ")");
  }
};

// Per-layer rule for PerLayer<LinearOrFull, Linear, Full> token mixers (Qwen3-Next): HF's
// layer_types, or without it every full_attention_interval-th layer full, the others linear.
struct LinearOrFull {
  static size_t kind(const ModelConfig& c, int64_t layer) { return c.full_attention_layer(layer) ? 1 : 0; }
  static void validate(const ModelConfig& c) {
    if (c.layer_types.empty()) {
      detail::require_positive("full_attention_interval", c.full_attention_interval);
      return;
    }
    if (static_cast<int64_t>(c.layer_types.size()) != c.num_hidden_layers)
      detail::config_fail("layer_types has ", c.layer_types.size(), " entries; num_hidden_layers is ", c.num_hidden_layers);
    for (size_t i = 0; i < c.layer_types.size(); ++i)
      if (c.layer_types[i] != "linear_attention" && c.layer_types[i] != "full_attention")
        detail::config_fail("layer_types[", i, "] (\"", c.layer_types[i],
                            "\") is not a token mixer this architecture has; it has \"linear_attention\" and \"full_attention\"");
  }
};

// Per-layer rule for PerLayer<SparseStep, Dense, Sparse> feed-forwards (HF Qwen3-MoE / Qwen3-Next):
// layer i is sparse unless it is in mlp_only_layers, or (i + 1) is not a multiple of
// decoder_sparse_step, or the model has no experts.
struct SparseStep {
  static size_t kind(const ModelConfig& c, int64_t layer) {
    const bool listed = std::find(c.mlp_only_layers.begin(), c.mlp_only_layers.end(), layer) != c.mlp_only_layers.end();
    return listed || c.num_experts == 0 || (layer + 1) % c.decoder_sparse_step != 0 ? 0 : 1;
  }
  static void validate(const ModelConfig& c) {
    detail::require_positive("decoder_sparse_step", c.decoder_sparse_step);
    for (const auto layer : c.mlp_only_layers)
      if (layer < 0 || layer >= c.num_hidden_layers)
        detail::config_fail("mlp_only_layers names layer ", layer, ", outside [0, num_hidden_layers ", c.num_hidden_layers, ")");
  }
};

}  // namespace minillm::layers

namespace minillm::arch {

// HF Llama; also MiniMind2 dense (same math: RMSNorm casts before the weight multiply).
struct Llama {
  static constexpr std::string_view name = "llama";
  using norm = norm::RMSNormHF;
  using position = position::RoPE;
  using attention = attention::GroupedQuery<attention::QKNorm::off>;
  using ffn = ffn::SwiGLU;
};

// HF Qwen2 / Qwen2.5: Llama with biases on the q, k and v projections.
struct Qwen2 {
  static constexpr std::string_view name = "qwen2";
  using norm = norm::RMSNormHF;
  using position = position::RoPE;
  using attention = attention::GroupedQuery<attention::QKNorm::off, attention::QKVBias::on>;
  using ffn = ffn::SwiGLU;
};

// HF Qwen3: Llama plus per-head QK-norm.
struct Qwen3 {
  static constexpr std::string_view name = "qwen3";
  using norm = norm::RMSNormHF;
  using position = position::RoPE;
  using attention = attention::GroupedQuery<attention::QKNorm::on>;
  using ffn = ffn::SwiGLU;
};

// MiniMind-3: Qwen3's shape with MiniMind's RMSNorm rounding (multiply in fp32, then cast).
struct MiniMind3 {
  static constexpr std::string_view name = "minimind3";
  using norm = norm::RMSNormMiniMind3;
  using position = position::RoPE;
  using attention = attention::GroupedQuery<attention::QKNorm::on>;
  using ffn = ffn::SwiGLU;
};

// MiniMind2 MoE: Llama blocks with routed + shared SwiGLU experts and per-sequence aux loss.
struct MiniMind2MoE {
  static constexpr std::string_view name = "minimind2_moe";
  using norm = norm::RMSNormHF;
  using position = position::RoPE;
  using attention = attention::GroupedQuery<attention::QKNorm::off>;
  using ffn = moe::MixtureOfExperts<moe::SoftmaxTopK<moe::AuxLoss::sequence>, ffn::SwiGLU>;
};

// MiniMind-3 MoE: MiniMind-3 blocks with routed experts and the batch-level aux loss.
struct MiniMind3MoE {
  static constexpr std::string_view name = "minimind3_moe";
  using norm = norm::RMSNormMiniMind3;
  using position = position::RoPE;
  using attention = attention::GroupedQuery<attention::QKNorm::on>;
  using ffn = moe::MixtureOfExperts<moe::SoftmaxTopK<moe::AuxLoss::batch>, ffn::SwiGLU>;
};

// HF Qwen3-MoE: Qwen3 blocks with routed experts (dense where mlp_only_layers / decoder_sparse_step
// say) and transformers' aux loss pooled over the MoE layers.
struct Qwen3MoE {
  static constexpr std::string_view name = "qwen3_moe";
  using norm = norm::RMSNormHF;
  using position = position::RoPE;
  using attention = attention::GroupedQuery<attention::QKNorm::on>;
  using ffn = PerLayer<layers::SparseStep, ffn::SwiGLU, moe::MixtureOfExperts<moe::SoftmaxTopK<moe::AuxLoss::pooled>, ffn::SwiGLU>>;
};

// A classic pre-LN block for comparison: LayerNorm, no rotary positions (NoPE), GELU MLP.
struct ClassicNoPE {
  static constexpr std::string_view name = "classic_nope";
  using norm = norm::LayerNorm;
  using position = position::None;
  using attention = attention::GroupedQuery<attention::QKNorm::off>;
  using ffn = ffn::GeluMLP;
};

// DeepSeek-V3's feed-forward slot: dense SwiGLU in the first layers, then DeepSeek's MoE (routed
// experts + one wide shared expert).
template <moe::DeepSeekFlavor F>
using DeepSeekFfn = PerLayer<layers::FirstKDense, ffn::SwiGLU,
                             moe::MixtureOfExperts<moe::DeepSeekRouter<F>, ffn::SwiGLU, moe::SharedExperts::one_wide>>;

// HF DeepSeek-V3: multi-head latent attention, first_k_dense_replace dense layers, then sigmoid
// group-limited routing with a selection bias.
struct DeepSeekV3 {
  static constexpr std::string_view name = "deepseek_v3";
  using norm = norm::RMSNormHF;
  using position = position::RoPE;
  using attention = attention::MultiHeadLatent;
  using ffn = DeepSeekFfn<moe::DeepSeekFlavor::hf>;
};

// Mini-LLM's mini_deepseekv3: DeepSeek-V3 with Mini-LLM's RMSNorm rounding (multiply in fp32, then
// cast) and routing corner cases; trained with aux-loss-free balancing, the sequence-wise aux loss
// and (config use_mtp) multi-token prediction.
struct MiniDeepSeekV3 {
  static constexpr std::string_view name = "mini_deepseekv3";
  using norm = norm::RMSNormMiniMind3;
  using position = position::RoPE;
  using attention = attention::MultiHeadLatent;
  using ffn = DeepSeekFfn<moe::DeepSeekFlavor::mini_llm>;
};

// Qwen3-Next's token mixers: Gated DeltaNet linear attention, and gated full attention.
using HybridAttention = PerLayer<layers::LinearOrFull, attention::GatedDeltaNet, attention::Gated>;
template <moe::AuxLoss Aux>
using Qwen3NextFfn = PerLayer<layers::SparseStep, ffn::SwiGLU,
                              moe::MixtureOfExperts<moe::SoftmaxTopK<Aux>, ffn::SwiGLU, moe::SharedExperts::gated>>;

// HF Qwen3-Next: hybrid linear / full attention, zero-centred norms, softmax top-k experts plus a
// gated shared expert, transformers' pooled aux loss.
struct Qwen3Next {
  static constexpr std::string_view name = "qwen3_next";
  using norm = norm::ZeroCenteredRMSNorm;
  using position = position::RoPE;
  using attention = HybridAttention;
  using ffn = Qwen3NextFfn<moe::AuxLoss::pooled>;
};

// Mini-LLM's mini_qwen3_next: Qwen3-Next's math with Mini-LLM's aux loss (per MoE layer, 1 at
// balance, averaged over the layers); its checkpoints name the feed-forward w1/w2/w3.
struct MiniQwen3Next {
  static constexpr std::string_view name = "mini_qwen3_next";
  using norm = norm::ZeroCenteredRMSNorm;
  using position = position::RoPE;
  using attention = HybridAttention;
  using ffn = Qwen3NextFfn<moe::AuxLoss::balanced>;
};

// Mini-LLM's mini_llama3: Llama with RMSNorm multiplied in fp32 before the cast; its checkpoints
// name the feed-forward w1/w2/w3.
struct MiniLlama3 {
  static constexpr std::string_view name = "mini_llama3";
  using norm = norm::RMSNormMiniMind3;
  using position = position::RoPE;
  using attention = attention::GroupedQuery<attention::QKNorm::off>;
  using ffn = ffn::SwiGLU;
};

static_assert(Architecture<DeepSeekV3> && Architecture<MiniDeepSeekV3>);
static_assert(Architecture<Qwen3Next> && Architecture<MiniQwen3Next> && Architecture<MiniLlama3>);

static_assert(Architecture<Llama> && Architecture<Qwen2> && Architecture<Qwen3> && Architecture<MiniMind3> && Architecture<MiniMind2MoE> &&
              Architecture<MiniMind3MoE> && Architecture<Qwen3MoE> && Architecture<ClassicNoPE>);

}  // namespace minillm::arch
