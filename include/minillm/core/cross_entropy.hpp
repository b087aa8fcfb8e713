// Mean cross entropy over (N, V) logits in row chunks, computed in fp32 as HF's loss does
// (logits.float() then cross_entropy), but without keeping fp32 copies of the logits: the forward
// keeps the logits as they are (bf16 under autocast) and one log-sum-exp per row, and the backward
// rebuilds softmax - one_hot chunk by chunk, straight into a gradient of the logits' dtype. With
// minimind2_small's 32 x 512 tokens and 6400-token vocabulary, the plain path holds ~1 GiB of fp32
// logits, log-probabilities and their gradients at its peak; this holds one chunk.
#pragma once

#include <torch/csrc/autograd/custom_function.h>

#include "minillm/core/torch.hpp"

namespace minillm {

namespace detail {

class ChunkedCrossEntropy : public torch::autograd::Function<ChunkedCrossEntropy> {
 public:
  // logits (N, V) float/bf16/half; target (N) int64, `ignore_index` rows do not count.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& target,
                            int64_t ignore_index, int64_t chunk_rows) {
    const int64_t n = logits.size(0);
    const auto valid = target.ne(ignore_index);
    const auto safe_target = target.masked_fill(valid.logical_not(), 0).unsqueeze(1);  // (N, 1)
    auto lse = at::empty({n}, logits.options().dtype(at::kFloat));
    auto picked = at::empty({n}, lse.options());
    for (int64_t start = 0; start < n; start += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, n - start);
      const auto x = logits.narrow(0, start, rows).to(at::kFloat);
      lse.narrow(0, start, rows).copy_(x.logsumexp(-1));
      picked.narrow(0, start, rows).copy_(x.gather(1, safe_target.narrow(0, start, rows)).squeeze(1));
    }
    const auto count = valid.sum().to(at::kFloat);
    ctx->save_for_backward({logits, safe_target, valid, lse, count});
    ctx->saved_data["chunk_rows"] = chunk_rows;
    return ((lse - picked) * valid).sum() / count;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_output) {
    const auto saved = ctx->get_saved_variables();
    const auto &logits = saved[0], &target = saved[1], &valid = saved[2], &lse = saved[3], &count = saved[4];
    const int64_t chunk_rows = ctx->saved_data["chunk_rows"].toInt();
    const int64_t n = logits.size(0);
    // d(loss)/d(logit) = (softmax - one_hot(target)) * upstream / count, for counted rows only.
    const auto row_scale = (valid.to(at::kFloat) * (grad_output[0].to(at::kFloat) / count)).unsqueeze(1);  // (N, 1)
    auto grad = at::empty_like(logits);
    for (int64_t start = 0; start < n; start += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, n - start);
      auto p = (logits.narrow(0, start, rows).to(at::kFloat) - lse.narrow(0, start, rows).unsqueeze(1)).exp_();
      p.scatter_add_(1, target.narrow(0, start, rows), at::full({rows, 1}, -1.0, p.options()));
      grad.narrow(0, start, rows).copy_(p.mul_(row_scale.narrow(0, start, rows)));
    }
    return {grad, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace detail

// Mean over the rows whose target is not `ignore_index` of -log softmax(logits)[target], in fp32;
// NaN when no row counts (as at::cross_entropy_loss). A chunk holds about `chunk_values` fp32 values.
inline at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& target, int64_t ignore_index,
                                int64_t chunk_values = int64_t{1} << 25) {
  const int64_t chunk_rows = std::max<int64_t>(1, chunk_values / std::max<int64_t>(1, logits.size(1)));
  return detail::ChunkedCrossEntropy::apply(logits, target, ignore_index, chunk_rows);
}

}  // namespace minillm
