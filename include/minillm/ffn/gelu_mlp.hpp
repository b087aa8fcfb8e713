// Two-layer GELU MLP: down_proj(gelu(up_proj(x))), exact (erf) GELU, no biases.
#pragma once

#include "minillm/concepts.hpp"
#include "minillm/core/layers.hpp"

namespace minillm::ffn {

class GeluMLPImpl : public torch::nn::Module {
 public:
  GeluMLPImpl(int64_t hidden, int64_t intermediate, double init_std, const at::TensorOptions& options)
      : up_proj(register_module("up_proj", Linear(hidden, intermediate, false, init_std, options))),
        down_proj(register_module("down_proj", Linear(intermediate, hidden, false, init_std, options))) {}
  GeluMLPImpl(const ModelConfig& c, const at::TensorOptions& options)
      : GeluMLPImpl(c.hidden_size, c.intermediate_size, c.initializer_range, options) {}

  at::Tensor forward(const at::Tensor& x) { return down_proj->forward(at::gelu(up_proj->forward(x))); }  // (..., C)

  Linear up_proj, down_proj;
};

struct GeluMLP {
  using policy_category = ffn_tag;
  using module = GeluMLPImpl;
};
static_assert(ExpertPolicy<GeluMLP>);

}  // namespace minillm::ffn
