// Linear and Embedding with the construction the library needs: parameters created directly on the
// requested device and dtype (the "meta" device counts parameters of large models without
// allocating), initialised N(0, initializer_range) as HF's _init_weights does.
#pragma once

#include "minillm/core/torch.hpp"

namespace minillm {

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias, double init_std, const at::TensorOptions& options)
      : weight(register_parameter("weight", at::empty({out_features, in_features}, options))) {
    at::NoGradGuard no_grad;
    weight.normal_(0.0, init_std);
    if (bias) this->bias = register_parameter("bias", at::zeros({out_features}, options));
  }
  at::Tensor forward(const at::Tensor& x) { return at::linear(x, weight, bias); }  // (..., in) -> (..., out)

  at::Tensor weight;  // (out, in)
  at::Tensor bias;    // (out) or undefined
};
TORCH_MODULE(Linear);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t dim, double init_std, const at::TensorOptions& options)
      : weight(register_parameter("weight", at::empty({num_embeddings, dim}, options))) {
    at::NoGradGuard no_grad;
    weight.normal_(0.0, init_std);
  }
  at::Tensor forward(const at::Tensor& ids) { return at::embedding(weight, ids); }  // (B, T) -> (B, T, C)

  at::Tensor weight;  // (V, C)
};
TORCH_MODULE(Embedding);

}  // namespace minillm
