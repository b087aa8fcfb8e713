// RMSNorm computed in fp32. The two rounding orders seen in the reference code differ only when
// activations are narrower than fp32 (bf16/fp16):
//   multiply_then_cast: (w * norm(x.float())).to(x.dtype)   MiniMind-3
//   cast_then_multiply: w * norm(x.float()).to(x.dtype)     HF Llama / Qwen3, MiniMind2
#pragma once

#include "minillm/concepts.hpp"

namespace minillm::norm {

enum class Rounding { multiply_then_cast, cast_then_multiply };

template <Rounding R>
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, const at::TensorOptions& options)
      : weight(register_parameter("weight", at::ones({dim}, options))), eps_(eps) {}

  at::Tensor forward(const at::Tensor& x) {  // (..., dim)
    if constexpr (R == Rounding::multiply_then_cast) {
      return (weight * normalized(x.to(at::kFloat))).to(x.scalar_type());
    } else {
      return weight * normalized(x);
    }
  }

  // x / rms(x), computed in fp32 and returned in x's dtype. LibTorch >= 2.4 has it as one op (one
  // fused kernel on CUDA, forward and backward) instead of five elementwise passes.
  at::Tensor normalized(const at::Tensor& x) const {
#if MINILLM_TORCH_AT_LEAST(2, 4)
    return at::rms_norm(x, {x.size(-1)}, c10::nullopt, eps_);
#else
    const auto xf = x.to(at::kFloat);
    return (xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_)).to(x.scalar_type());
#endif
  }

  at::Tensor weight;  // (dim)

 private:
  double eps_;
};

template <Rounding R>
struct RMSNorm {
  using policy_category = norm_tag;
  using module = RMSNormImpl<R>;
};

// Zero-centred RMSNorm (Qwen3-Next, Mini-LLM): (1 + w) * norm(x), all in fp32, then cast; w starts
// at zero, so weight decay pulls the gain towards 1 rather than 0.
class ZeroCenteredRMSNormImpl : public RMSNormImpl<Rounding::multiply_then_cast> {
 public:
  ZeroCenteredRMSNormImpl(int64_t dim, double eps, const at::TensorOptions& options)
      : RMSNormImpl<Rounding::multiply_then_cast>(dim, eps, options) {
    at::NoGradGuard no_grad;
    weight.zero_();
  }

  at::Tensor forward(const at::Tensor& x) {  // (..., dim)
    return ((weight.to(at::kFloat) + 1.0) * normalized(x.to(at::kFloat))).to(x.scalar_type());
  }
};

struct ZeroCenteredRMSNorm {
  using policy_category = norm_tag;
  using module = ZeroCenteredRMSNormImpl;
};

using RMSNormHF = RMSNorm<Rounding::cast_then_multiply>;
using RMSNormMiniMind3 = RMSNorm<Rounding::multiply_then_cast>;

static_assert(NormPolicy<RMSNormHF>);
static_assert(NormPolicy<RMSNormMiniMind3>);
static_assert(NormPolicy<ZeroCenteredRMSNorm>);

}  // namespace minillm::norm
