// Architectures: one policy per slot. Adding one means adding a struct here and a line in
// registry.hpp; nothing else in the library changes.
#pragma once

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

// HF Qwen3-MoE: Qwen3 blocks with routed experts and the batch-level aux loss.
struct Qwen3MoE {
  static constexpr std::string_view name = "qwen3_moe";
  using norm = norm::RMSNormHF;
  using position = position::RoPE;
  using attention = attention::GroupedQuery<attention::QKNorm::on>;
  using ffn = moe::MixtureOfExperts<moe::SoftmaxTopK<moe::AuxLoss::batch>, ffn::SwiGLU>;
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

static_assert(Architecture<DeepSeekV3> && Architecture<MiniDeepSeekV3>);

static_assert(Architecture<Llama> && Architecture<Qwen2> && Architecture<Qwen3> && Architecture<MiniMind3> && Architecture<MiniMind2MoE> &&
              Architecture<MiniMind3MoE> && Architecture<Qwen3MoE> && Architecture<ClassicNoPE>);

}  // namespace minillm::arch
