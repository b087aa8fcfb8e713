// LayerNorm with weight and bias (GPT-2 / BERT style), computed by LibTorch's layer_norm.
#pragma once

#include "minillm/concepts.hpp"

namespace minillm::norm {

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, const at::TensorOptions& options)
      : weight(register_parameter("weight", at::ones({dim}, options))),
        bias(register_parameter("bias", at::zeros({dim}, options))),
        dim_(dim),
        eps_(eps) {}

  at::Tensor forward(const at::Tensor& x) { return at::layer_norm(x, {dim_}, weight, bias, eps_); }  // (..., dim)

  at::Tensor weight, bias;  // (dim)

 private:
  int64_t dim_;
  double eps_;
};

struct LayerNorm {
  using policy_category = norm_tag;
  using module = LayerNormImpl;
};
static_assert(NormPolicy<LayerNorm>);

}  // namespace minillm::norm
