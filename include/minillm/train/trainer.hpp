// Trainer<Model>: one optimiser step at a time over any minillm model (CausalLM<A> or the
// registry's AnyCausalLM): AdamW, the learning-rate schedule, gradient accumulation over
// micro-batches, gradient clipping, bf16 autocast (fp32 master weights), and a guard that skips a
// step whose loss or gradients are not finite (and stops after too many in a row) instead of
// applying it.
#pragma once

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <torch/optim/adamw.h>

#include "minillm/causal_lm.hpp"
#include "minillm/core/autocast.hpp"
#include "minillm/core/cuda_graph.hpp"
#include "minillm/data/batch.hpp"
#include "minillm/train/schedule.hpp"

namespace minillm::train {

using data::Batch;

struct TrainingError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TrainerOptions {
  ScheduleOptions schedule;
  int64_t accumulation = 1;      // micro-batches per optimiser step
  double clip = 1.0;             // max gradient norm; <= 0: no clipping
  double weight_decay = 0.01;    // AdamW's decoupled decay (PyTorch's default, as MiniMind uses)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t max_consecutive_skips = 10;
  Precision precision = Precision::fp32;  // bf16: forward under autocast, weights and AdamW state stay fp32
  bool fused_adamw = true;  // CUDA on LibTorch >= 2.1: one at::_fused_adamw_ launch instead of ~12 per tensor
  // CUDA with fused AdamW, LibTorch >= 2.4, a model without host reads in training (MoE only where
  // it runs every expert, see MixtureOfExpertsImpl::reads_host_in_training): after
  // one eager step, the whole step (forward and backward of each micro-batch, clipping, AdamW, the
  // finite check) is recorded as a CUDA graph and replayed while the micro-batches keep their count
  // and shapes. The first step with other shapes ends the graph; the trainer goes on eagerly.
  bool cuda_graph = true;
};

struct StepStats {
  int64_t step = 0;         // the optimiser step this was (0-based)
  double loss = 0;          // mean objective over the micro-batches (lm + mtp + aux)
  double lm_loss = 0;       // mean cross entropy
  double mtp_loss = 0;      // mean weighted MTP term (models with MTP; eager steps)
  double aux_loss = 0;      // mean MoE aux loss (MoE models; eager steps)
  // Per MoE layer (layer index, max / min tokens per routed expert over the step, a min of 0 counted
  // as 1): 1 is perfectly balanced (Mini-LLM's ExpertBalance). Eager steps only.
  std::vector<std::pair<int64_t, double>> expert_balance;
  double lr = 0;
  double grad_norm = 0;     // before clipping
  int64_t tokens = 0;       // predicted tokens
  bool skipped = false;     // non-finite loss or gradients: nothing was applied
};

namespace detail {

// The optimizer's key for a parameter's state (a string in LibTorch 1.x, a pointer in newer ones).
template <class Optimizer>
auto state_key(Optimizer& opt, const at::Tensor& p) {
  using Key = typename std::decay_t<decltype(opt.state())>::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << p.unsafeGetTensorImpl();
    return os.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

}  // namespace detail

// The total 2-norm of the parameters' gradients; when it exceeds max_norm (> 0) the gradients are
// scaled down to it, as torch.nn.utils.clip_grad_norm_(foreach=True) does: one multi-tensor norm
// and one multi-tensor scale instead of a few kernels per tensor. Non-finite norms scale nothing.
inline double clip_gradients(const std::vector<at::Tensor>& params, double max_norm) {
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0;
  const double total = at::stack(at::_foreach_norm(grads, 2)).norm().item<double>();
  if (max_norm > 0 && std::isfinite(total)) {
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1) at::_foreach_mul_(grads, coef);
  }
  return total;
}

// The model's output on a batch (labels default to the inputs), under autocast when `precision`
// asks for it. Call backward() on the result outside: autocast must not cover the backward pass.
// `ids_checked`: the caller has range-checked the ids (see ForwardOptions).
template <class Model>
CausalLMOutput forward_batch(Model& model, const Batch& b, Precision precision, bool ids_checked = false) {
  AutocastGuard autocast(b.input_ids.device().type(), precision);
  return forward_of(model, b.input_ids,
                    {.labels = b.labels.defined() ? b.labels : b.input_ids,
                     .attention_mask = b.attention_mask,
                     .position_ids = b.position_ids,
                     .ids_checked = ids_checked});
}

template <class Model>
class Trainer {
 public:
  Trainer(Model& model, TrainerOptions options)
      : model_(model),
        options_(std::move(options)),
        params_(trainable(module_of(model_))),
        optimizer_(params_, torch::optim::AdamWOptions(options_.schedule.lr)
                                .betas({options_.beta1, options_.beta2})
                                .eps(options_.eps)
                                .weight_decay(options_.weight_decay)) {
    if (options_.accumulation < 1)
      throw std::invalid_argument("accumulation (" + std::to_string(options_.accumulation) + ") must be at least 1");
  }

  // One optimiser step over pretraining micro-batches of token ids (labels = ids).
  StepStats step(const std::vector<at::Tensor>& micro_batches) {
    std::vector<Batch> batches;
    for (const auto& ids : micro_batches) batches.push_back({.input_ids = ids});
    return step(batches);
  }

  // One optimiser step over `micro_batches`, normally `accumulation` of them. Each micro-batch's
  // loss is scaled by 1 / count before backward, so accumulating k batches of size B matches one
  // batch of size k*B with equal token counts (MiniMind's rule).
  StepStats step(const std::vector<Batch>& micro_batches) {
    if (micro_batches.empty()) throw std::invalid_argument("step() needs at least one micro-batch");
    StepStats s;
    s.step = step_;
    s.lr = learning_rate(options_.schedule, step_);
    module_of(model_).train();
#if MINILLM_CUDA_GRAPHS
    if (graph_step_wanted(micro_batches)) return graph_step(micro_batches, s);
#endif
    for (auto& group : optimizer_.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(s.lr);
    optimizer_.zero_grad();
    bool finite = true;
    const double scale = 1.0 / static_cast<double>(micro_batches.size());
    std::vector<at::Tensor> loads;  // per layer, summed over the micro-batches
    for (const auto& b : micro_batches) {
      const CausalLMOutput out = forward_batch(model_, b, options_.precision);
      // All loss terms in one read from the device (each read waits for the queued work).
      const auto zero = at::zeros({}, out.loss.options());
      const auto losses = at::stack({out.loss.detach(), out.lm_loss.detach(),
                                     out.mtp_loss.defined() ? out.mtp_loss.detach() : zero,
                                     out.aux_loss.defined() ? out.aux_loss.detach() : zero})
                              .to(at::kCPU, at::kDouble);
      const double loss = losses[0].item<double>();
      finite = finite && std::isfinite(loss);
      s.loss += loss * scale;
      s.lm_loss += losses[1].item<double>() * scale;
      s.mtp_loss += losses[2].item<double>() * scale;
      s.aux_loss += losses[3].item<double>() * scale;
      s.tokens += b.target_tokens();
      loads.resize(std::max(loads.size(), out.expert_load.size()));
      for (size_t i = 0; i < out.expert_load.size(); ++i)
        if (out.expert_load[i].defined()) loads[i] = loads[i].defined() ? loads[i] + out.expert_load[i] : out.expert_load[i];
      if (finite) (out.loss * scale).backward();
    }
    expert_balance(loads, s);
    if (finite) {
      s.grad_norm = clip_gradients(params_, options_.clip);
      finite = std::isfinite(s.grad_norm);
    }
    if (finite) apply_adamw(s.lr);
    else optimizer_.zero_grad();
    eager_step_applied_ = eager_step_applied_ || finite;
    return finish_step(s, finite);
  }

  int64_t current_step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }
  int64_t skipped_steps() const { return skipped_steps_; }
  torch::optim::AdamW& optimizer() { return optimizer_; }
  const TrainerOptions& options() const { return options_; }

 private:
  // Max / min tokens per expert of each MoE layer's summed `loads`, with one read from the device.
  static void expert_balance(const std::vector<at::Tensor>& loads, StepStats& s) {
    std::vector<int64_t> layers;
    std::vector<at::Tensor> extremes;
    for (size_t i = 0; i < loads.size(); ++i) {
      if (!loads[i].defined()) continue;
      layers.push_back(static_cast<int64_t>(i));
      extremes.push_back(at::stack({loads[i].max(), loads[i].min()}));  // (2)
    }
    if (layers.empty()) return;
    const auto host = at::stack(extremes).to(at::kCPU, at::kLong);  // (layers, 2)
    const auto* v = host.data_ptr<int64_t>();
    for (size_t i = 0; i < layers.size(); ++i)
      s.expert_balance.emplace_back(layers[i], static_cast<double>(v[2 * i]) /
                                                   static_cast<double>(std::max<int64_t>(v[2 * i + 1], 1)));
  }

  // The parameters the optimiser updates: those that take a gradient (DeepSeek's router bias moves
  // outside autograd and gets no AdamW state).
  static std::vector<at::Tensor> trainable(const torch::nn::Module& m) {
    std::vector<at::Tensor> out;
    for (const auto& p : m.parameters())
      if (p.requires_grad()) out.push_back(p);
    return out;
  }

  // Counts the step; a skipped one (non-finite loss or gradients) is counted as such, and too many
  // in a row stop training.
  StepStats finish_step(StepStats& s, bool applied) {
    if (applied) {
      consecutive_skips_ = 0;
    } else {
      s.skipped = true;
      ++skipped_steps_;
      if (++consecutive_skips_ >= options_.max_consecutive_skips)
        throw TrainingError(std::to_string(consecutive_skips_) +
                            " consecutive steps had a non-finite loss or gradient norm (last at step " +
                            std::to_string(step_) + "); stopping. Lower the learning rate or check the data.");
    }
    ++step_;
    return s;
  }

  // AdamW's per-parameter state, created (step 0, zero moments) on first use.
  torch::optim::AdamWParamState& adam_state(const at::Tensor& param) {
    auto& slot = optimizer_.state()[detail::state_key(optimizer_, param)];
    if (!slot) {
      auto fresh = std::make_unique<torch::optim::AdamWParamState>();
      fresh->step(0);
      fresh->exp_avg(at::zeros_like(param, at::MemoryFormat::Preserve));
      fresh->exp_avg_sq(at::zeros_like(param, at::MemoryFormat::Preserve));
      slot = std::move(fresh);
    }
    return static_cast<torch::optim::AdamWParamState&>(*slot);
  }

  // The AdamW update of every parameter that has a gradient. Both ways keep the moments and step
  // counts in the optimizer's per-parameter state, so checkpoints are the same either way.
  void apply_adamw(double lr) {
#if MINILLM_TORCH_AT_LEAST(2, 1)
    if (options_.fused_adamw && params_.front().is_cuda()) return fused_adamw(lr);
#endif
    optimizer_.step();
  }

#if MINILLM_TORCH_AT_LEAST(2, 1)
  // PyTorch's AdamW(fused=True): one multi-tensor kernel; the step counts go in as one small copy.
  void fused_adamw(double lr) {
    std::vector<at::Tensor> p, g, m, v;
    std::vector<float> steps;
    for (const auto& param : params_) {
      if (!param.grad().defined()) continue;
      auto& state = adam_state(param);
      state.step(state.step() + 1);
      p.push_back(param);
      g.push_back(param.grad());
      m.push_back(state.exp_avg());
      v.push_back(state.exp_avg_sq());
      steps.push_back(static_cast<float>(state.step()));
    }
    if (p.empty()) return;
    const auto step_tensors = at::tensor(steps).to(p.front().device()).unbind();
    at::_fused_adamw_(p, g, m, v, {}, step_tensors, lr, options_.beta1, options_.beta2, options_.weight_decay,
                      options_.eps, /*amsgrad=*/false, /*maximize=*/false);
  }
#endif

#if MINILLM_CUDA_GRAPHS
  // The recorded step: static copies of the micro-batches, the tensors AdamW updates (by address),
  // and the scalars that change per step (learning rate, a skip flag for the warm-up run).
  struct StepGraph {
    std::vector<int64_t> shapes;  // of the micro-batches it was recorded for
    std::vector<Batch> inputs;
    std::vector<at::Tensor> params, grads, exp_avg, exp_avg_sq, steps;
    std::vector<torch::optim::AdamWParamState*> states;  // whose host step counts follow the device's
    at::Tensor lr, skip, losses, stats;  // stats: loss, lm_loss, gradient norm
    CudaGraph graph;
  };

  static std::vector<int64_t> shapes_of(const std::vector<Batch>& batches) {
    std::vector<int64_t> key{static_cast<int64_t>(batches.size())};
    for (const auto& b : batches)
      for (const auto* t : b.tensors()) {
        key.push_back(t->defined() ? t->dim() : -1);
        if (!t->defined()) continue;
        key.push_back(static_cast<int64_t>(t->scalar_type()));
        for (const auto d : t->sizes()) key.push_back(d);
      }
    return key;
  }

  bool graph_step_wanted(const std::vector<Batch>& batches) {
    if (!options_.cuda_graph || !options_.fused_adamw || graph_off_ || !eager_step_applied_ ||
        !params_.front().is_cuda() || !capturable_training_of(model_))
      return false;
    if (graph_ && graph_->shapes != shapes_of(batches)) {  // shapes vary: eager from now on
      graph_.reset();
      graph_off_ = true;
      return false;
    }
    return true;
  }

  // Whether the recorded graph still updates the tensors the model and optimizer hold (loading
  // optimizer state replaces them).
  bool graph_current() {
    for (size_t i = 0; i < graph_->params.size(); ++i) {
      const auto& p = graph_->params[i];
      const auto it = optimizer_.state().find(detail::state_key(optimizer_, p));
      if (!p.grad().is_same(graph_->grads[i]) || it == optimizer_.state().end() ||
          it->second.get() != graph_->states[i] || !graph_->states[i]->exp_avg().is_same(graph_->exp_avg[i]))
        return false;
    }
    return true;
  }

  void record_graph(const std::vector<Batch>& batches) {
    auto g = std::make_unique<StepGraph>();
    const auto device = params_.front().device();
    g->shapes = shapes_of(batches);
    for (const auto& b : batches) {
      auto copy = b.to(device);
      for (auto* t : copy.tensors())
        if (t->defined()) *t = t->clone();
      g->inputs.push_back(copy);
    }
    for (const auto& p : params_) {
      if (!p.grad().defined()) continue;  // unused by the model: the eager path skips it too
      auto& state = adam_state(p);
      g->params.push_back(p);
      g->grads.push_back(p.grad());
      g->exp_avg.push_back(state.exp_avg());
      g->exp_avg_sq.push_back(state.exp_avg_sq());
      g->states.push_back(&state);
      g->steps.push_back(at::full({}, static_cast<double>(state.step()), p.options().dtype(at::kFloat)));
    }
    const auto scalar = at::TensorOptions().dtype(at::kFloat).device(device);
    g->lr = at::zeros({}, scalar);
    g->skip = at::ones({}, scalar.dtype(at::kBool));  // the warm-up run changes nothing
    g->losses = at::zeros({2}, scalar);
    g->stats = at::zeros({3}, scalar);
    auto* raw = g.get();
    g->graph.capture([this, raw] { record_step(*raw); }, 1, device);
    graph_ = std::move(g);
  }

  // What the graph holds, as the eager step does it; no value leaves the device.
  void record_step(StepGraph& g) {
    at::_foreach_zero_(g.grads);
    g.losses.zero_();
    const double scale = 1.0 / static_cast<double>(g.inputs.size());
    for (const auto& b : g.inputs) {
      const CausalLMOutput out = forward_batch(model_, b, options_.precision, /*ids_checked=*/true);
      g.losses.add_(at::stack({out.loss.detach(), out.lm_loss.detach()}).to(at::kFloat), scale);
      (out.loss * scale).backward();
    }
    const auto norm = at::stack(at::_foreach_norm(g.grads, 2)).norm();
    const auto found_inf = ((norm.isfinite() & g.losses.isfinite().all()).logical_not() | g.skip).to(at::kFloat);
    if (options_.clip > 0) at::_foreach_mul_(g.grads, ((norm + 1e-6).reciprocal() * options_.clip).clamp_max(1.0));
    at::_foreach_add_(g.steps, 1.0);
    at::_fused_adamw_(g.params, g.grads, g.exp_avg, g.exp_avg_sq, {}, g.steps, g.lr, options_.beta1, options_.beta2,
                      options_.weight_decay, options_.eps, /*amsgrad=*/false, /*maximize=*/false, {}, found_inf);
    at::_foreach_sub_(g.steps, std::vector<at::Tensor>(g.steps.size(), found_inf));  // a skipped step is no step
    g.stats.copy_(at::cat({g.losses, norm.view({1})}));
  }

  StepStats graph_step(const std::vector<Batch>& batches, StepStats& s) {
    const auto vocab = config_of(model_).vocab_size;
    for (const auto& b : batches) check_token_ids(b.input_ids, vocab);  // the graph cannot read them back
    if (!graph_ || !graph_current()) record_graph(batches);
    auto& g = *graph_;
    for (size_t i = 0; i < batches.size(); ++i) {
      const auto from = batches[i].tensors();
      const auto to = g.inputs[i].tensors();
      for (size_t f = 0; f < from.size(); ++f)
        if (from[f]->defined()) to[f]->copy_(*from[f]);  // the same fields are defined (shapes_of)
      s.tokens += batches[i].target_tokens();
    }
    g.lr.fill_(s.lr);
    g.skip.fill_(false);
    g.graph.replay();
    const at::Tensor stats = g.stats.to(at::kCPU, at::kDouble);
    const auto* v = stats.data_ptr<double>();
    s.loss = v[0];
    s.lm_loss = v[1];
    s.grad_norm = v[2];
    const bool applied = std::isfinite(s.loss) && std::isfinite(s.grad_norm);
    if (applied)
      for (auto* state : g.states) state->step(state->step() + 1);  // as the device counts did
    return finish_step(s, applied);
  }

  std::unique_ptr<StepGraph> graph_;
  bool graph_off_ = false;
#endif

  Model& model_;
  TrainerOptions options_;
  std::vector<at::Tensor> params_;
  torch::optim::AdamW optimizer_;
  int64_t step_ = 0, skipped_steps_ = 0, consecutive_skips_ = 0;
  bool eager_step_applied_ = false;  // the optimizer state and gradients a recorded step needs exist
};

}  // namespace minillm::train
