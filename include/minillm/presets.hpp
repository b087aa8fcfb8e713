// Presets: an architecture type plus a default config. `presets::minimind2_small::model` is the
// type, `presets::minimind2_small::config()` its sizes; the aliases at the end name the types.
#pragma once

#include <array>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>
#include <string_view>

#include "minillm/arch.hpp"
#include "minillm/causal_lm.hpp"

namespace minillm::presets {

namespace detail {
inline ModelConfig make(std::string model_type, std::string_view arch, int64_t hidden, int64_t layers, int64_t heads,
                        int64_t kv_heads, int64_t intermediate) {
  ModelConfig c;
  c.model_type = std::move(model_type);
  c.architecture = std::string(arch);
  c.hidden_size = hidden;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.intermediate_size = intermediate;
  return c;
}
// MiniMind2's FFN rule: 8/3 * hidden rounded up to a multiple of 64.
inline int64_t minimind2_ffn(int64_t hidden) { return 64 * ((hidden * 8 / 3 + 63) / 64); }
// MiniMind-3's FFN rule: ceil(hidden * pi / 64) * 64.
inline int64_t minimind3_ffn(int64_t hidden) {
  return static_cast<int64_t>(std::ceil(static_cast<double>(hidden) * std::numbers::pi / 64.0)) * 64;
}
}  // namespace detail

// MiniMind2's mixture of experts on a config's sizes: 4 routed experts as wide as its FFN, top-2,
// one shared expert, aux loss coefficient 0.01. (The architecture stays the config's to choose.)
inline ModelConfig with_minimind2_experts(ModelConfig c) {
  c.num_experts = 4;
  c.num_experts_per_tok = 2;
  c.n_shared_experts = 1;
  c.moe_intermediate_size = c.intermediate_size;
  c.router_aux_loss_coef = 0.01;
  return c;
}

// ~4.6M parameters: trains on a 2-core CPU in minutes.
struct tiny {
  using arch = minillm::arch::Llama;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "tiny";
  static ModelConfig config() {
    auto c = detail::make("llama", arch::name, 256, 4, 4, 2, 704);
    c.max_position_embeddings = 1024;
    return c;
  }
};

// ~11M parameters.
struct small {
  using arch = minillm::arch::Llama;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "small";
  static ModelConfig config() {
    auto c = detail::make("llama", arch::name, 384, 6, 6, 2, 1024);
    c.max_position_embeddings = 2048;
    return c;
  }
};

// ~49M parameters.
struct medium {
  using arch = minillm::arch::Llama;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "medium";
  static ModelConfig config() {
    auto c = detail::make("llama", arch::name, 640, 10, 10, 2, 1728);
    c.max_position_embeddings = 2048;
    return c;
  }
};

// A small MoE (4 routed experts, top-2, 1 shared) at tiny's width: ~12M total parameters.
struct moe {
  using arch = minillm::arch::MiniMind2MoE;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "moe";
  static ModelConfig config() {
    auto c = detail::make("minimind", arch::name, 256, 4, 4, 2, 704);
    c.max_position_embeddings = 1024;
    return with_minimind2_experts(c);
  }
};

// MiniMind2-Small (26M): 512x8, 8 heads / 2 kv, ffn 1408, vocab 6400, eps 1e-5, theta 1e6.
struct minimind2_small {
  using arch = minillm::arch::Llama;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "minimind2_small";
  static ModelConfig config() { return detail::make("minimind", arch::name, 512, 8, 8, 2, detail::minimind2_ffn(512)); }
};

// MiniMind2 (104M): 768x16, ffn 2048.
struct minimind2 {
  using arch = minillm::arch::Llama;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "minimind2";
  static ModelConfig config() { return detail::make("minimind", arch::name, 768, 16, 8, 2, detail::minimind2_ffn(768)); }
};

// MiniMind2-MoE (145M): 640x8, 4 routed + 1 shared experts, top-2, ffn 1728.
struct minimind2_moe {
  using arch = minillm::arch::MiniMind2MoE;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "minimind2_moe";
  static ModelConfig config() {
    return with_minimind2_experts(detail::make("minimind", arch::name, 640, 8, 8, 2, detail::minimind2_ffn(640)));
  }
};

// MiniMind-3 (64M): 768x8, 8/4 heads, head_dim 96, ffn 2432, QK-norm, eps 1e-6.
struct minimind3 {
  using arch = minillm::arch::MiniMind3;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "minimind3";
  static ModelConfig config() {
    auto c = detail::make("minimind", arch::name, 768, 8, 8, 4, detail::minimind3_ffn(768));
    c.rms_norm_eps = 1e-6;
    return c;
  }
};

// MiniMind-3 MoE (198M total, 64M active): 4 experts, top-1, no shared expert.
struct minimind3_moe {
  using arch = minillm::arch::MiniMind3MoE;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "minimind3_moe";
  static ModelConfig config() {
    auto c = minimind3::config();
    c.architecture = std::string(arch::name);
    c.num_experts = 4;
    c.num_experts_per_tok = 1;
    c.n_shared_experts = 0;
    c.moe_intermediate_size = c.intermediate_size;
    c.router_aux_loss_coef = 5e-4;
    return c;
  }
};

// Llama-3.2-1B's shape (1.24B): 2048x16, 32/8 heads, ffn 8192, vocab 128256, theta 5e5, tied.
struct llama3_2_1b {
  using arch = minillm::arch::Llama;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "llama3_2_1b";
  static ModelConfig config() {
    auto c = detail::make("llama", arch::name, 2048, 16, 32, 8, 8192);
    c.vocab_size = 128256;
    c.rope_theta = 500000.0;
    c.rms_norm_eps = 1e-5;
    c.max_position_embeddings = 131072;
    return c;
  }
};

// Qwen3-0.6B's shape (0.6B): 1024x28, 16/8 heads, head_dim 128, ffn 3072, vocab 151936, tied.
struct qwen3_0_6b {
  using arch = minillm::arch::Qwen3;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "qwen3_0_6b";
  static ModelConfig config() {
    auto c = detail::make("qwen3", arch::name, 1024, 28, 16, 8, 3072);
    c.head_dim = 128;
    c.vocab_size = 151936;
    c.rms_norm_eps = 1e-6;
    c.max_position_embeddings = 40960;
    return c;
  }
};

// Mini-LLM's mini_deepseekv3 (174,948,040 parameters with MTP, 164,744,520 without, counting the
// 72 router-bias values as Mini-LLM does): 768x12, 12 heads, MLA (q_lora 384, kv_lora 256, nope 64,
// rope 32, v 64), 3 dense layers of ffn 3072, then 8 routed experts of 512 + 1 shared, top-2 of 4
// groups keeping 2, vocab 32004, tied, aux-free balancing, seq aux 1e-4, MTP with lambda 1e-4.
struct mini_deepseekv3 {
  using arch = minillm::arch::MiniDeepSeekV3;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "mini_deepseekv3";
  static ModelConfig config() {
    auto c = detail::make("mini_deepseekv3", arch::name, 768, 12, 12, 12, 3072);
    c.head_dim = 32;  // MLA has no single head_dim; HF's DeepseekV3Config sets it to the rope part
    c.vocab_size = 32004;
    c.rms_norm_eps = 1e-6;
    c.rope_theta = 10000.0;
    c.max_position_embeddings = 512;
    c.q_lora_rank = 384;
    c.kv_lora_rank = 256;
    c.qk_nope_head_dim = 64;
    c.qk_rope_head_dim = 32;
    c.v_head_dim = 64;
    c.first_k_dense_replace = 3;
    c.num_experts = 8;
    c.num_experts_per_tok = 2;
    c.n_shared_experts = 1;
    c.moe_intermediate_size = 512;
    c.n_group = 4;
    c.topk_group = 2;
    c.bias_update_speed = 0.001;
    c.seq_aux_alpha = 0.0001;
    c.use_mtp = true;
    c.mtp_loss_lambda = 0.0001;
    return c;
  }
};

// mini_deepseekv3's design at a size that trains on a 2-core CPU in minutes (5,924,856 parameters):
// 256x4, 4 heads, MLA (q_lora 64, kv_lora 32, nope 32, rope 16, v 32), 1 dense layer of ffn 704,
// then 8 experts of 128 + 1 shared, top-2 of 4 groups keeping 2, vocab 6400, MTP on.
struct deepseek_tiny {
  using arch = minillm::arch::MiniDeepSeekV3;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "deepseek_tiny";
  static ModelConfig config() {
    auto c = mini_deepseekv3::config();
    c.hidden_size = 256;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 4;
    c.head_dim = 16;
    c.intermediate_size = 704;
    c.vocab_size = 6400;
    c.max_position_embeddings = 1024;
    c.q_lora_rank = 64;
    c.kv_lora_rank = 32;
    c.qk_nope_head_dim = 32;
    c.qk_rope_head_dim = 16;
    c.v_head_dim = 32;
    c.first_k_dense_replace = 1;
    c.moe_intermediate_size = 128;
    return c;
  }
};

// Mini-LLM's mini_qwen3_next (162,164,376 parameters, counted with Mini-LLM's code): 768x12, every
// 4th layer full attention (12 heads / 2 kv of 64, full rotary), the others Gated DeltaNet (6 key /
// 12 value heads of 64, conv 4); layers 0-2 dense with ffn 2112, then 8 experts of 512 top-2 plus a
// gated shared expert of 512; vocab 32004, tied.
struct mini_qwen3_next {
  using arch = minillm::arch::MiniQwen3Next;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "mini_qwen3_next";
  static ModelConfig config() {
    auto c = detail::make("mini_qwen3_next", arch::name, 768, 12, 12, 2, 2112);
    c.head_dim = 64;
    c.vocab_size = 32004;
    c.rms_norm_eps = 1e-6;
    c.rope_theta = 10000.0;
    c.max_position_embeddings = 512;
    c.full_attention_interval = 4;
    c.linear_num_key_heads = 6;
    c.linear_num_value_heads = 12;
    c.linear_key_head_dim = 64;
    c.linear_value_head_dim = 64;
    c.linear_conv_kernel_dim = 4;
    c.mlp_only_layers = {0, 1, 2};
    c.num_experts = 8;
    c.num_experts_per_tok = 2;
    c.moe_intermediate_size = 512;
    c.shared_expert_intermediate_size = 512;
    c.router_aux_loss_coef = 0.01;
    return c;
  }
};

// Mini-LLM's mini_llama3 (100,538,112 parameters): 768x12, 12 heads / 4 kv, ffn 2064, vocab 32004, tied.
struct mini_llama3 {
  using arch = minillm::arch::MiniLlama3;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "mini_llama3";
  static ModelConfig config() {
    auto c = detail::make("mini_llama3", arch::name, 768, 12, 12, 4, 2064);
    c.vocab_size = 32004;
    c.rms_norm_eps = 1e-6;
    c.rope_theta = 10000.0;
    c.max_position_embeddings = 512;
    return c;
  }
};

// HF Qwen3-Next's design at a size that trains on a 2-core CPU in minutes: 256x4 (three Gated
// DeltaNet layers, then full attention with partial rotary 0.25), 4 heads / 2 kv of 64, linear 2 key
// / 4 value heads of 64, 4 experts of 256 top-2 + a gated shared expert of 256, vocab 6400.
struct qwen3_next_tiny {
  using arch = minillm::arch::Qwen3Next;
  using model = CausalLM<arch>;
  static constexpr std::string_view name = "qwen3_next_tiny";
  static ModelConfig config() {
    auto c = detail::make("qwen3_next", arch::name, 256, 4, 4, 2, 704);
    c.head_dim = 64;
    c.rms_norm_eps = 1e-6;
    c.rope_theta = 10000.0;
    c.partial_rotary_factor = 0.25;
    c.max_position_embeddings = 1024;
    c.full_attention_interval = 4;
    c.linear_num_key_heads = 2;
    c.linear_num_value_heads = 4;
    c.linear_key_head_dim = 64;
    c.linear_value_head_dim = 64;
    c.num_experts = 4;
    c.num_experts_per_tok = 2;
    c.moe_intermediate_size = 256;
    c.shared_expert_intermediate_size = 256;
    c.router_aux_loss_coef = 0.001;
    return c;
  }
};

}  // namespace minillm::presets

namespace minillm {
using Tiny = presets::tiny::model;
using Small = presets::small::model;
using Medium = presets::medium::model;
using TinyMoE = presets::moe::model;
using MiniMind2Small = presets::minimind2_small::model;
using MiniMind2 = presets::minimind2::model;
using MiniMind2MoE = presets::minimind2_moe::model;
using MiniMind3 = presets::minimind3::model;
using MiniMind3MoE = presets::minimind3_moe::model;
using Llama3_2_1B = presets::llama3_2_1b::model;
using Qwen3_0_6B = presets::qwen3_0_6b::model;
using MiniDeepSeekV3 = presets::mini_deepseekv3::model;
using MiniQwen3Next = presets::mini_qwen3_next::model;
using MiniLlama3 = presets::mini_llama3::model;
}  // namespace minillm
