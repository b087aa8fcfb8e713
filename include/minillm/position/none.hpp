// No positional encoding inside attention (NoPE): order comes only from the causal mask.
#pragma once

#include "minillm/concepts.hpp"

namespace minillm::position {

class NoPositionImpl : public torch::nn::Module {
 public:
  NoPositionImpl(const ModelConfig&, const at::TensorOptions&) {}
  PositionEncoding encode(const at::Tensor&) { return {}; }
  static at::Tensor rotate(const at::Tensor& x, const PositionEncoding&) { return x; }
};

struct None {
  using policy_category = position_tag;
  using module = NoPositionImpl;
};
static_assert(PositionPolicy<None>);

}  // namespace minillm::position
