// Softmax top-k router (MiniMind, Qwen3-MoE): probabilities over experts from a bias-free linear
// gate ("mlp.gate.weight"), the k largest chosen, optionally renormalised to sum to one
// (norm_topk_prob). Load-balancing loss, scaled by router_aux_loss_coef:
//   AuxLoss::batch     MiniMind-3 / HF load_balancing_loss_func:
//                      E * sum_{slot,e} mean_tokens(onehot(idx)[slot,e]) * mean_tokens(p[e])
//   AuxLoss::sequence  MiniMind2 (seq_aux=True): per sequence b,
//                      sum_e count_b(e) / (T*k/E) * mean_t p[b,t,e], averaged over b
//   AuxLoss::balanced  Mini-LLM's Qwen3-Next: the batch form times 1/k (1 at perfect balance),
//                      averaged over the MoE layers
//   AuxLoss::pooled    HF Qwen3-MoE / Qwen3-Next (transformers 5 load_balancing_loss_func): the
//                      batch form over the tokens of all MoE layers pooled, on the probabilities
//                      softmaxed a second time (HF's router hands out probabilities, which the
//                      loss function takes for logits)
// The batch and sequence forms are summed over layers; combine_aux says how each form joins.
#pragma once

#include <vector>

#include "minillm/concepts.hpp"

namespace minillm::moe {

enum class AuxLoss { batch, sequence, balanced, pooled };

template <AuxLoss A>
class SoftmaxTopKImpl : public torch::nn::Module {
 public:
  SoftmaxTopKImpl(const ModelConfig& c, const at::TensorOptions& options)
      : weight(register_parameter("weight", at::empty({c.num_experts, c.hidden_size}, options))),
        experts_(c.num_experts),
        top_k_(c.num_experts_per_tok),
        normalize_(c.norm_topk_prob),
        coef_(c.router_aux_loss_coef) {
    at::NoGradGuard no_grad;
    weight.normal_(0.0, c.initializer_range);
  }

  Routing route(const at::Tensor& x) {  // x: (N, C)
    const auto probs = at::softmax(at::linear(x, weight).to(at::kFloat), -1);  // (N, E)
    auto [w, idx] = probs.topk(top_k_, -1, /*largest=*/true, /*sorted=*/true);  // (N, k)
    if (normalize_) w = w / (w.sum(-1, /*keepdim=*/true) + 1e-20);
    return {w.to(x.scalar_type()), idx, probs};
  }

  // Routing of batch * seq tokens (row-major) -> this layer's share, already scaled by the
  // coefficient: a scalar, or for the pooled form (k + 1, E): the scaled share of choices per
  // expert (k rows, one per choice rank) and the mean probability per expert (last row).
  at::Tensor aux_loss(const Routing& r, int64_t batch, int64_t seq) {
    const auto e = static_cast<double>(experts_);
    if constexpr (A == AuxLoss::batch || A == AuxLoss::balanced) {
      const auto load = at::one_hot(r.indices, experts_).to(at::kFloat).mean(0);  // (k, E)
      const double per_choice = A == AuxLoss::balanced ? 1.0 / static_cast<double>(top_k_) : 1.0;
      return (load * r.probs.mean(0)).sum() * e * coef_ * per_choice;
    } else if constexpr (A == AuxLoss::pooled) {
      const auto load = at::one_hot(r.indices, experts_).to(at::kFloat).mean(0);  // (k, E)
      return at::cat({load * (e * coef_), at::softmax(r.probs, -1).mean(0, /*keepdim=*/true)}, 0);  // (k + 1, E)
    } else {
      const auto per_seq = r.indices.view({batch, seq * top_k_});                 // (B, T*k)
      const auto counts = at::zeros({batch, experts_}, r.probs.options())
                              .scatter_add_(1, per_seq, at::ones(per_seq.sizes(), r.probs.options()));  // (B, E)
      const auto ce = counts / (static_cast<double>(seq * top_k_) / e);
      const auto mean_p = r.probs.view({batch, seq, experts_}).mean(1);           // (B, E)
      return (ce * mean_p).sum(1).mean() * coef_;
    }
  }

  // The whole model's aux loss from its MoE layers' shares (in layer order).
  static at::Tensor combine_aux(const std::vector<at::Tensor>& layers) {
    if constexpr (A == AuxLoss::pooled) {
      const auto mean = at::stack(layers).mean(0);  // (k + 1, E)
      const int64_t k = mean.size(0) - 1;
      return (mean.narrow(0, 0, k) * mean.narrow(0, k, 1)).sum();
    } else {
      const auto total = at::stack(layers).sum();
      return A == AuxLoss::balanced ? total / static_cast<double>(layers.size()) : total;
    }
  }

  at::Tensor weight;  // (E, C)

 private:
  int64_t experts_, top_k_;
  bool normalize_;
  double coef_;
};

template <AuxLoss A = AuxLoss::batch>
struct SoftmaxTopK {
  using policy_category = router_tag;
  using module = SoftmaxTopKImpl<A>;
};
static_assert(RouterPolicy<SoftmaxTopK<AuxLoss::batch>>);
static_assert(RouterPolicy<SoftmaxTopK<AuxLoss::sequence>>);
static_assert(RouterPolicy<SoftmaxTopK<AuxLoss::pooled>>);

}  // namespace minillm::moe
