// Next-token selection from a (B, V) row of logits: repetition penalty, temperature, top-k, top-p,
// min-p, then a seeded draw (or argmax when temperature is 0).
//
// Order, as HF transformers' generate() applies its processors: the repetition penalty first (on
// the raw logits), then temperature, then top-k, top-p and min-p on the tempered distribution.
#pragma once

#include <limits>
#include <stdexcept>
#include <string>

#include "minillm/core/torch.hpp"

namespace minillm::infer {

struct SamplingOptions {
  double temperature = 1.0;         // 0: greedy (argmax); the other filters then do not matter
  int64_t top_k = 0;                // keep the k most likely tokens; 0: off
  double top_p = 1.0;               // keep the smallest set whose probability reaches p; 1: off
  double min_p = 0.0;               // drop tokens below min_p × the top token's probability; 0: off
  double repetition_penalty = 1.0;  // > 1 discourages tokens already in the context; 1: off

  // Throws std::invalid_argument naming the value out of range.
  void validate() const {
    auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
    if (!(temperature >= 0)) fail("temperature (" + std::to_string(temperature) + ") must be >= 0");
    if (top_k < 0) fail("top_k (" + std::to_string(top_k) + ") must be >= 0");
    if (!(top_p > 0 && top_p <= 1)) fail("top_p (" + std::to_string(top_p) + ") must be in (0, 1]");
    if (!(min_p >= 0 && min_p <= 1)) fail("min_p (" + std::to_string(min_p) + ") must be in [0, 1]");
    if (!(repetition_penalty > 0)) fail("repetition_penalty (" + std::to_string(repetition_penalty) + ") must be > 0");
  }
  bool greedy() const { return temperature == 0; }
};

inline const double kNegInf = -std::numeric_limits<double>::infinity();

// HF's rule: for each token present in `context` (B, L) int64 (prompt and generated so far), a
// positive logit is divided by the penalty and a negative one multiplied by it. Padding ids may be
// passed as -1 and are ignored.
inline at::Tensor apply_repetition_penalty(const at::Tensor& logits, const at::Tensor& context, double penalty) {
  if (penalty == 1.0 || !context.defined() || context.numel() == 0) return logits;
  const auto real = context.ge(0).to(at::kLong);
  const auto seen = at::zeros(logits.sizes(), real.options()).scatter_add_(1, context.clamp_min(0), real) > 0;  // (B, V)
  return at::where(seen, at::where(logits < 0, logits * penalty, logits / penalty), logits);
}

// Keeps the k largest logits of each row; the rest become -inf (ties at the k-th value stay).
inline at::Tensor apply_top_k(const at::Tensor& logits, int64_t k) {
  if (k <= 0 || k >= logits.size(-1)) return logits;
  const auto kth = std::get<0>(logits.topk(k, -1)).narrow(-1, k - 1, 1);  // (B, 1)
  return logits.masked_fill(logits < kth, kNegInf);
}

// Nucleus filtering: keeps the most likely tokens whose cumulative probability first reaches p
// (at least one token); the rest become -inf.
inline at::Tensor apply_top_p(const at::Tensor& logits, double p) {
  if (p >= 1.0) return logits;
  const auto [sorted, order] = logits.sort(-1, /*descending=*/true);
  const auto probs = sorted.softmax(-1);
  // A token is dropped when the mass before it already reaches p.
  auto drop_sorted = (probs.cumsum(-1) - probs) >= p;
  drop_sorted.select(-1, 0).fill_(false);
  const auto drop = at::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
  return logits.masked_fill(drop, kNegInf);
}

// Drops tokens whose probability is below min_p times the most likely token's.
inline at::Tensor apply_min_p(const at::Tensor& logits, double min_p) {
  if (min_p <= 0) return logits;
  const auto probs = logits.softmax(-1);
  const auto threshold = std::get<0>(probs.max(-1, /*keepdim=*/true)) * min_p;  // (B, 1)
  return logits.masked_fill(probs < threshold, kNegInf);
}

// The filtered, tempered logits the draw is made from (float32, on the logits' device).
inline at::Tensor process_logits(const at::Tensor& logits, const at::Tensor& context, const SamplingOptions& o) {
  auto x = apply_repetition_penalty(logits.to(at::kFloat), context, o.repetition_penalty);
  if (o.greedy()) return x;
  // Shifted so the top logit is 0 before dividing: a tiny temperature then sends the others to
  // -inf (a greedy draw) instead of overflowing to inf - inf = nan.
  x = (x - std::get<0>(x.max(-1, /*keepdim=*/true))) / o.temperature;  // (B, V), <= 0
  x = apply_top_k(x, o.top_k);
  x = apply_top_p(x, o.top_p);
  return apply_min_p(x, o.min_p);
}

// Next token per row: (B, V) logits -> (B) int64 on the logits' device. The draw uses `generator`
// on the CPU so a seed gives the same tokens on every device.
inline at::Tensor sample_next(const at::Tensor& logits, const at::Tensor& context, const SamplingOptions& o,
                              at::Generator& generator) {
  const auto x = process_logits(logits, context, o);
  if (o.greedy()) return x.argmax(-1);
  const auto probs = x.softmax(-1).to(at::kCPU);
  return at::multinomial(probs, 1, /*replacement=*/false, generator).squeeze(-1).to(logits.device());
}

}  // namespace minillm::infer
