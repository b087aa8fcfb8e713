// A pre-norm residual decoder block:
//   h   = x + self_attn(input_layernorm(x))
//   out = h + mlp(post_attention_layernorm(h))
#pragma once

#include "minillm/concepts.hpp"

namespace minillm {

template <Architecture A>
class BlockImpl : public torch::nn::Module {
 public:
  using Norm = typename A::norm::module;
  using Attention = typename A::attention::template module<typename A::norm, typename A::position>;
  using Ffn = typename A::ffn::module;

  BlockImpl(const ModelConfig& c, int64_t layer, const at::TensorOptions& options)
      : input_layernorm(register_module("input_layernorm", std::make_shared<Norm>(c.hidden_size, c.rms_norm_eps, options))),
        self_attn(register_module("self_attn", std::make_shared<Attention>(c, layer, options))),
        post_attention_layernorm(
            register_module("post_attention_layernorm", std::make_shared<Norm>(c.hidden_size, c.rms_norm_eps, options))),
        mlp(register_module("mlp", std::make_shared<Ffn>(c, options))) {}

  at::Tensor forward(const at::Tensor& x, const AttentionContext& ctx) {  // (B, T, C)
    const auto h = x + self_attn->forward(input_layernorm->forward(x), ctx);
    return h + mlp->forward(post_attention_layernorm->forward(h));
  }

  std::shared_ptr<Norm> input_layernorm;
  std::shared_ptr<Attention> self_attn;
  std::shared_ptr<Norm> post_attention_layernorm;
  std::shared_ptr<Ffn> mlp;
};

// TORCH_MODULE does not take class templates; this is its equivalent.
template <Architecture A>
using Block = torch::nn::ModuleHolder<BlockImpl<A>>;

}  // namespace minillm
