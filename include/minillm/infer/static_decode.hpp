// The decode step with fixed shapes, which the Generator replays as a CUDA graph: each row's new
// token is written into the KV cache at a column held on the device, and attention spans the whole
// capacity under a mask built on the device from that column. Every step uses the same tensors,
// so on CUDA it is recorded once (per batch size and capacity) and replayed with one launch per
// token; without CUDA graphs it runs eagerly (the test of the recorded logic on every machine).
#pragma once

#include <memory>
#include <stdexcept>
#include <vector>

#include "minillm/causal_lm.hpp"
#include "minillm/core/autocast.hpp"
#include "minillm/core/cuda_graph.hpp"

namespace minillm::infer::detail {

template <class Model>
class StaticDecodeStep {
 public:
  // `record_graph`: record the step as a CUDA graph on its first use (CUDA builds, CUDA models).
  StaticDecodeStep(Model& model, int64_t batch, int64_t capacity, Precision precision, bool record_graph)
      : model_(model),
        cache_(make_cache_of(model, batch, capacity)),
        precision_(precision),
        weights_(weight_addresses(model)),
        record_graph_(record_graph) {
    const auto device = module_of(model).parameters().front().device();
    const auto longs = at::TensorOptions().dtype(at::kLong).device(device);
    if (record_graph && !(kCudaGraphs && device.is_cuda()))
      throw std::invalid_argument("a CUDA graph needs a CUDA model and a LibTorch with CUDA graphs (2.4 or newer)");
    ids_ = at::zeros({batch, 1}, longs);
    column_ = at::zeros({1}, longs);
    real_ = at::zeros({batch, capacity}, longs.dtype(at::kBool));
    columns_ = at::arange(capacity, longs);
  }

  // Whether this step serves `batch` rows in a cache of `capacity` at `precision`, with the
  // model still holding the weights it was built over (a recorded graph reads them by address).
  bool fits(int64_t batch, int64_t capacity, Precision precision) const {
    return cache_.batch() == batch && cache_.capacity() == capacity && precision_ == precision &&
           weights_ == weight_addresses(model_);
  }

  KVCache& cache() { return cache_; }

  // For one generation: `real` (B, S <= capacity) marks the columns holding (or going to hold)
  // tokens of each row, 0 at its left padding.
  void start(const at::Tensor& real) {
    real_.zero_();
    real_.narrow(1, 0, real.size(1)).copy_(real);
  }

  // Logits (B, V) of the next token after `tokens` (B) int64, which are written at cache column
  // `column`. The ids must lie in the vocabulary (they come from sampling). The result is
  // overwritten by the next step.
  const at::Tensor& step(const at::Tensor& tokens, int64_t column) {
    if (column < 0 || column >= cache_.capacity())
      throw std::length_error("decode column " + std::to_string(column) + " is outside the KV cache's capacity (" +
                              std::to_string(cache_.capacity()) + ")");
    ids_.copy_(tokens.view({-1, 1}));
    column_.fill_(column);
#if MINILLM_CUDA_GRAPHS
    if (record_graph_) {
      if (!graph_.captured()) graph_.capture([this] { run(); }, 1, ids_.device());
      graph_.replay();
      return logits_;
    }
#endif
    run();
    return logits_;
  }

 private:
  static std::vector<const void*> weight_addresses(Model& model) {
    std::vector<const void*> out;
    for (const auto& p : module_of(model).parameters()) out.push_back(p.data_ptr());
    return out;
  }

  void run() {
    AutocastGuard autocast(ids_.device().type(), precision_);
    const int64_t b = ids_.size(0), c = cache_.capacity();
    const auto visible = real_ & columns_.le(column_);  // (B, C): causal over the real columns
    // Each row's position counts its real tokens before the column, as CausalLM's default does.
    const auto positions = visible.sum(1, /*keepdim=*/true) - 1;  // (B, 1)
    logits_ = forward_of(model_, ids_,
                         {.attention_mask = visible.view({b, 1, 1, c}),
                          .position_ids = positions,
                          .cache = &cache_,
                          .cache_slots = column_,
                          .logits_to_keep = 1,
                          .ids_checked = true})
                  .logits.select(1, -1);
  }

  Model& model_;
  KVCache cache_;
  Precision precision_;
  std::vector<const void*> weights_;
  bool record_graph_;
  at::Tensor ids_, column_, real_, columns_, logits_;
#if MINILLM_CUDA_GRAPHS
  CudaGraph graph_;
#endif
};

}  // namespace minillm::infer::detail
