// DeepSeek-V3 router: sigmoid affinities, a selection bias, group-limited top-k.
//   s        = sigmoid(x W^T)                                   (N, E), fp32
//   choice   = s + bias                                         the bias only picks experts
//   groups   = sum of the top-2 choice scores in each of n_group groups; keep topk_group groups
//   indices  = top-k of choice within the kept groups
//   weights  = s[indices], / their sum when norm_topk_prob, * routed_scaling_factor
// Training: aux-loss-free balancing moves the bias after every training forward (Mini-LLM: per
// micro-batch) by bias_update_speed * sign(mean load - load), outside autograd; the sequence-wise
// aux loss (Mini-LLM) is seq_aux_alpha * sum_b sum_e f[b,e] * P[b,e] with P the per-sequence mean of
// s renormalised over all experts and f = count[b,e] * E / (k * T).
// Parameter names are HF's: gate.weight, gate.e_score_correction_bias (Mini-LLM's gate.bias is a
// checkpoint layout). The bias is a parameter that takes no gradient, so it is saved, loaded and
// counted like Mini-LLM's (HF keeps it as a buffer).
#pragma once

#include <limits>

#include "minillm/concepts.hpp"

namespace minillm::moe {

// The two references differ below fp32 and in corner cases: HF computes the scores in fp32, fills
// the dropped groups with 0 and adds 1e-20 to the normaliser; Mini-LLM scores in the input dtype,
// fills with -inf and adds 1e-6.
enum class DeepSeekFlavor { hf, mini_llm };

template <DeepSeekFlavor F>
class DeepSeekRouterImpl : public torch::nn::Module {
 public:
  DeepSeekRouterImpl(const ModelConfig& c, const at::TensorOptions& options)
      : weight(register_parameter("weight", at::empty({c.num_experts, c.hidden_size}, options))),
        e_score_correction_bias(
            register_parameter("e_score_correction_bias", at::zeros({c.num_experts}, options.dtype(at::kFloat)), false)),
        experts_(c.num_experts),
        top_k_(c.num_experts_per_tok),
        groups_(c.n_group),
        kept_groups_(c.topk_group),
        normalize_(c.norm_topk_prob),
        scaling_(c.routed_scaling_factor),
        bias_speed_(c.bias_update_speed),
        seq_alpha_(c.seq_aux_alpha) {
    at::NoGradGuard no_grad;
    weight.normal_(0.0, c.initializer_range);
  }

  Routing route(const at::Tensor& x) {  // x: (N, C)
    const auto logits = F == DeepSeekFlavor::hf ? at::linear(x.to(at::kFloat), weight.to(at::kFloat)) : at::linear(x, weight);
    const auto scores = logits.sigmoid().to(at::kFloat);  // (N, E)
    const auto indices = choose(scores.detach() + e_score_correction_bias);  // (N, k)
    auto w = scores.gather(1, indices);                                     // (N, k)
    if (normalize_) w = w / (w.sum(-1, /*keepdim=*/true) + (F == DeepSeekFlavor::hf ? 1e-20 : 1e-6));
    if (scaling_ != 1.0) w = w * scaling_;
    if (is_training() && bias_speed_ > 0.0) balance(indices);
    return {w.to(x.scalar_type()), indices, scores};
  }

  // Sequence-wise aux loss; undefined when seq_aux_alpha is 0.
  at::Tensor aux_loss(const Routing& r, int64_t batch, int64_t seq) {
    if (seq_alpha_ == 0.0) return {};
    const auto p = (r.probs / r.probs.sum(-1, /*keepdim=*/true)).view({batch, seq, experts_}).mean(1);  // (B, E)
    const auto per_seq = r.indices.reshape({batch, seq * top_k_});                                      // (B, T*k)
    const auto counts = at::zeros({batch, experts_}, r.probs.options())
                            .scatter_add_(1, per_seq, at::ones(per_seq.sizes(), r.probs.options()));  // (B, E)
    const auto f = counts * (static_cast<double>(experts_) / static_cast<double>(top_k_ * seq));
    return (f * p).sum() * seq_alpha_;
  }

  at::Tensor weight;                   // (E, C)
  at::Tensor e_score_correction_bias;  // (E) fp32, no gradient

 private:
  at::Tensor choose(at::Tensor choice) const {  // (N, E) -> (N, k)
    const int64_t n = choice.size(0);
    if (groups_ > 1) {
      const auto grouped = choice.view({n, groups_, experts_ / groups_});            // (N, G, E/G)
      const auto group_scores = std::get<0>(grouped.topk(2, -1)).sum(-1);             // (N, G)
      const auto kept = std::get<1>(group_scores.topk(kept_groups_, -1));             // (N, kg)
      const auto keep = at::zeros({n, groups_}, choice.options().dtype(at::kBool)).scatter_(1, kept, true);  // (N, G)
      const double fill = F == DeepSeekFlavor::hf ? 0.0 : -std::numeric_limits<double>::infinity();
      choice = grouped.masked_fill(keep.unsqueeze(-1).logical_not(), fill).view({n, experts_});
    }
    return std::get<1>(choice.topk(top_k_, -1));
  }

  // bias += speed * sign(mean load - load), the load counted over this forward's tokens.
  void balance(const at::Tensor& indices) {
    at::NoGradGuard no_grad;
    const auto flat = indices.reshape({-1});
    const auto load = at::zeros({experts_}, e_score_correction_bias.options())
                          .scatter_add_(0, flat, at::ones(flat.sizes(), e_score_correction_bias.options()));  // (E)
    e_score_correction_bias.add_(at::sign(load.mean() - load) * bias_speed_);
  }

  int64_t experts_, top_k_, groups_, kept_groups_;
  bool normalize_;
  double scaling_, bias_speed_, seq_alpha_;
};

template <DeepSeekFlavor F = DeepSeekFlavor::hf>
struct DeepSeekRouter {
  using policy_category = router_tag;
  using module = DeepSeekRouterImpl<F>;
  static void validate(const ModelConfig& c) {
    using detail::config_fail;
    if (c.n_group < 1 || c.num_experts % c.n_group != 0)
      config_fail("n_group (", c.n_group, ") must be at least 1 and divide the number of routed experts (", c.num_experts, ")");
    if (c.n_group > 1 && c.num_experts / c.n_group < 2)
      config_fail("n_group (", c.n_group, ") leaves fewer than 2 experts per group; groups are scored by their top 2");
    if (c.topk_group < 1 || c.topk_group > c.n_group)
      config_fail("topk_group (", c.topk_group, ") must be between 1 and n_group (", c.n_group, ")");
    if (c.n_group > 1 && c.topk_group * (c.num_experts / c.n_group) < c.num_experts_per_tok)
      config_fail("topk_group (", c.topk_group, ") groups of ", c.num_experts / c.n_group,
                  " experts hold fewer than num_experts_per_tok (", c.num_experts_per_tok, ")");
    if (!(c.routed_scaling_factor > 0.0)) config_fail("routed_scaling_factor (", c.routed_scaling_factor, ") must be positive");
    if (!(c.bias_update_speed >= 0.0)) config_fail("bias_update_speed (", c.bias_update_speed, ") must not be negative");
    if (!(c.seq_aux_alpha >= 0.0)) config_fail("seq_aux_alpha (", c.seq_aux_alpha, ") must not be negative");
  }
};
static_assert(RouterPolicy<DeepSeekRouter<DeepSeekFlavor::hf>>);
static_assert(RouterPolicy<DeepSeekRouter<DeepSeekFlavor::mini_llm>>);

}  // namespace minillm::moe
