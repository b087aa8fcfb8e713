// SwiGLU feed-forward: down_proj(silu(gate_proj(x)) * up_proj(x)), no biases (Llama, Qwen3, MiniMind).
#pragma once

#include "minillm/concepts.hpp"
#include "minillm/core/layers.hpp"

namespace minillm::ffn {

class SwiGLUImpl : public torch::nn::Module {
 public:
  SwiGLUImpl(int64_t hidden, int64_t intermediate, double init_std, const at::TensorOptions& options)
      : gate_proj(register_module("gate_proj", Linear(hidden, intermediate, false, init_std, options))),
        up_proj(register_module("up_proj", Linear(hidden, intermediate, false, init_std, options))),
        down_proj(register_module("down_proj", Linear(intermediate, hidden, false, init_std, options))) {}
  SwiGLUImpl(const ModelConfig& c, const at::TensorOptions& options)
      : SwiGLUImpl(c.hidden_size, c.intermediate_size, c.initializer_range, options) {}

  at::Tensor forward(const at::Tensor& x) {  // (..., C) -> (..., C)
    return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));
  }

  Linear gate_proj, up_proj, down_proj;
};

struct SwiGLU {
  using policy_category = ffn_tag;
  using module = SwiGLUImpl;
};
static_assert(ExpertPolicy<SwiGLU>);

}  // namespace minillm::ffn
