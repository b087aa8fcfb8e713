// Mixture-of-experts feed-forward: a router picks k of num_experts routed experts per token and
// mixes their outputs by the router weights; always-on shared experts are added. Parameter names
// follow MiniMind/HF: mlp.gate.weight, mlp.experts.N.{gate,up,down}_proj.weight, and the shared
// experts as
//   SharedExperts::list      n_shared_experts experts, added unweighted (MiniMind2: mlp.shared_experts.N.*)
//   SharedExperts::one_wide  one expert n_shared_experts times as wide (DeepSeek: mlp.shared_experts.*;
//                            the same function, since SwiGLU sums over its intermediate units)
//   SharedExperts::gated     one expert of shared_expert_intermediate_size scaled per token by
//                            sigmoid(shared_expert_gate(x)) (Qwen3-Next: mlp.shared_expert.*,
//                            mlp.shared_expert_gate.weight)
#pragma once

#include <utility>
#include <vector>

#include "minillm/concepts.hpp"
#include "minillm/core/layers.hpp"
#include "minillm/ffn/swiglu.hpp"
#include "minillm/moe/softmax_topk.hpp"

namespace minillm::moe {

enum class SharedExperts { list, one_wide, gated };

template <RouterPolicy Router, ExpertPolicy Expert, SharedExperts S>
class MixtureOfExpertsImpl : public torch::nn::Module {
  using ExpertModule = typename Expert::module;

 public:
  MixtureOfExpertsImpl(const ModelConfig& c, const at::TensorOptions& options) : top_k_(c.num_experts_per_tok) {
    gate = register_module("gate", std::make_shared<typename Router::module>(c, options));
    const int64_t inter = c.resolved_moe_intermediate_size();
    auto make = [&] { return std::make_shared<ExpertModule>(c.hidden_size, inter, c.initializer_range, options); };
    experts_list = register_module("experts", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_experts; ++i) {
      experts.push_back(make());
      experts_list->push_back(experts.back());
    }
    if constexpr (S == SharedExperts::gated) {
      if (c.shared_expert_intermediate_size > 0) {
        shared.push_back(register_module("shared_expert", std::make_shared<ExpertModule>(
                                                              c.hidden_size, c.shared_expert_intermediate_size,
                                                              c.initializer_range, options)));
        shared_expert_gate =
            register_module("shared_expert_gate", Linear(c.hidden_size, 1, false, c.initializer_range, options));
      }
    } else if (c.n_shared_experts > 0 && S == SharedExperts::one_wide) {
      shared.push_back(register_module("shared_experts", std::make_shared<ExpertModule>(
                                                             c.hidden_size, inter * c.n_shared_experts, c.initializer_range, options)));
    } else if (c.n_shared_experts > 0) {
      shared_list = register_module("shared_experts", torch::nn::ModuleList());
      for (int64_t i = 0; i < c.n_shared_experts; ++i) {
        shared.push_back(make());
        shared_list->push_back(shared.back());
      }
    }
  }

  // Whether a training forward reads back to the host: routing sorts tokens by expert with one
  // read of the counts; on CUDA with few experts per chosen one (num_experts <= 4 k) every expert
  // runs on every token instead, weighted by zero where not chosen: more FLOPs (at most 4x the
  // routed experts'), no read, so the step can be a recorded CUDA graph.
  bool reads_host_in_training() const { return !every_expert_in_training(gate->parameters().front().is_cuda()); }

  at::Tensor forward(const at::Tensor& x) {  // (B, T, C)
    const int64_t b = x.size(0), t = x.size(1), c = x.size(2);
    const auto flat = x.reshape({b * t, c});  // (N, C)
    const auto routing = gate->route(flat);   // weights, indices: (N, k)
    aux_ = is_training() ? gate->aux_loss(routing, b, t) : at::Tensor();
    const bool every = is_training() ? every_expert_in_training(flat.is_cuda()) : flat.size(0) <= kDenseTokens;
    at::Tensor counts;  // (E) tokens per expert; scatter_add_, not bincount (which reads the largest id back first)
    if (is_training() || !every) {
      const auto assigned = routing.indices.reshape({-1});
      counts = at::zeros({static_cast<int64_t>(experts.size())}, assigned.options())
                   .scatter_add_(0, assigned, at::ones_like(assigned));
    }
    if (is_training()) load_ = counts;  // left on the device: the trainer reads it after the step
    // The sorted-token batching reads the counts back once.
    auto y = every ? every_expert(flat, routing) : routed(flat, routing, counts.cpu());
    for (auto& s : shared) {
      if (shared_expert_gate) y = y + at::sigmoid(shared_expert_gate->forward(flat)) * s->forward(flat);
      else y = y + s->forward(flat);
    }
    return y.view({b, t, c});
  }

  // Load-balancing loss of the last forward in training mode (undefined in eval mode), handed over
  // once: the module then no longer holds that forward's autograd graph (a graph kept alive across
  // steps breaks the recording of a CUDA-graph training step).
  at::Tensor aux_loss() { return std::exchange(aux_, at::Tensor()); }
  // Tokens each routed expert got in the last training forward: int64 (E).
  const at::Tensor& expert_load() const { return load_; }

  // The model's aux loss from its MoE layers' aux_loss() values: the router's rule, else their sum.
  static at::Tensor combine_aux(const std::vector<at::Tensor>& layers) {
    if constexpr (requires { Router::module::combine_aux(layers); }) return Router::module::combine_aux(layers);
    else return at::stack(layers).sum();
  }

  std::shared_ptr<typename Router::module> gate;
  std::vector<std::shared_ptr<ExpertModule>> experts, shared;
  Linear shared_expert_gate{nullptr};  // SharedExperts::gated only

 private:
  // Up to this many tokens (decode steps), inference runs every expert on every token and weights
  // the unchosen ones by zero: no host read, so the step can be a CUDA graph, and at this size a
  // few more small matmuls cost less than routing.
  static constexpr int64_t kDenseTokens = 16;
  static constexpr int64_t kEveryExpertRatio = 4;

  bool every_expert_in_training(bool on_cuda) const {
    return on_cuda && static_cast<int64_t>(experts.size()) <= kEveryExpertRatio * top_k_;
  }

  at::Tensor every_expert(const at::Tensor& flat, const Routing& routing) {
    // (N, E): each token's router weight for every expert, zero where the expert was not chosen.
    const auto mix = at::zeros({flat.size(0), static_cast<int64_t>(experts.size())}, routing.weights.options())
                         .scatter_add_(1, routing.indices, routing.weights);
    at::Tensor y;
    for (size_t e = 0; e < experts.size(); ++e) {
      const auto part = experts[e]->forward(flat) * mix.narrow(1, static_cast<int64_t>(e), 1);
      y = y.defined() ? y + part : part;
    }
    return y;
  }

  at::Tensor routed(const at::Tensor& flat, const Routing& routing, const at::Tensor& counts) {  // counts: (E) on the CPU
    // Sorted-token batching: the N*k (token, expert) assignments sorted by expert, so each expert
    // runs once on a contiguous slice, with a single host read (the per-expert counts) instead of
    // one nonzero() sync per expert.
    const int64_t k = routing.indices.size(1);
    const auto assigned = routing.indices.reshape({-1});                            // (N*k) expert ids
    const auto order = assigned.argsort();                                          // by expert
    const auto token = order.div(k, "floor");                                       // (N*k) token of each
    const auto weight = routing.weights.reshape({-1}).index_select(0, order).unsqueeze(-1);  // (N*k, 1)
    const auto inputs = flat.index_select(0, token);  // (N*k, C), grouped by expert
    const auto* count = counts.data_ptr<int64_t>();
    std::vector<at::Tensor> outputs;
    int64_t start = 0;
    for (size_t e = 0; e < experts.size(); ++e) {
      const int64_t n = count[e];
      if (n > 0) outputs.push_back(experts[e]->forward(inputs.narrow(0, start, n)));
      start += n;
    }
    return at::zeros_like(flat).index_add_(0, token, at::cat(outputs) * weight);  // (N, C)
  }

  torch::nn::ModuleList experts_list{nullptr}, shared_list{nullptr};
  at::Tensor aux_, load_;
  int64_t top_k_;
};

template <RouterPolicy Router = SoftmaxTopK<>, ExpertPolicy Expert = ffn::SwiGLU, SharedExperts S = SharedExperts::list>
struct MixtureOfExperts {
  using policy_category = ffn_tag;
  using module = MixtureOfExpertsImpl<Router, Expert, S>;
  static void validate(const ModelConfig& c) {
    using detail::config_fail;
    validate_policy<Router>(c);
    if (c.num_experts < 1) config_fail("num_experts (", c.num_experts, ") must be at least 1 for a mixture-of-experts model");
    if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_experts)
      config_fail("num_experts_per_tok (", c.num_experts_per_tok, ") must be between 1 and num_experts (", c.num_experts, ")");
    if (c.n_shared_experts < 0) config_fail("n_shared_experts (", c.n_shared_experts, ") must not be negative");
    if (c.shared_expert_intermediate_size < 0)
      config_fail("shared_expert_intermediate_size (", c.shared_expert_intermediate_size, ") must not be negative");
    if (c.moe_intermediate_size < 0)
      config_fail("moe_intermediate_size (", c.moe_intermediate_size, ") must be positive, or 0 for intermediate_size");
    if (!(c.router_aux_loss_coef >= 0.0))
      config_fail("router_aux_loss_coef (", c.router_aux_loss_coef, ") must not be negative");
  }
};
static_assert(FfnPolicy<MixtureOfExperts<>>);

}  // namespace minillm::moe
