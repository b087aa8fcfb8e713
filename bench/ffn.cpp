// Feed-forward variants, forward + backward of one layer at minimind2_small width (hidden 512,
// ffn 1408): SwiGLU, GELU MLP, and mixtures of 4 SwiGLU experts with top-1 or top-2 routing, with
// and without a shared expert. CPU, or CUDA with MINILLM_BENCH_DEVICE=cuda (bf16 autocast there).
//   build/bench/minillm_bench_ffn --benchmark_format=json
#include <minillm/model.hpp>

#include "common.hpp"

namespace {

using namespace minillm;

template <class Ffn>
void ffn_fwd_bwd(benchmark::State& state, const char* name, int64_t top_k, int64_t shared) {
  const int64_t batch = state.range(0), seq = state.range(1);
  const auto device = bench::device();
  ModelConfig c = presets::minimind2_small::config();
  c.num_experts = 4;
  c.num_experts_per_tok = top_k;
  c.n_shared_experts = shared;
  const auto options = at::TensorOptions().device(device);
  at::manual_seed(0);
  typename Ffn::module ffn(c, options);
  ffn.train();  // MoE: routing statistics and the aux loss are computed as in training
  const auto x = at::randn({batch, seq, c.hidden_size}, options).requires_grad_(true);
  bench::timed(state, device, [&] {
    at::Tensor y;
    {
      AutocastGuard autocast(device.type(), bench::precision());
      y = ffn.forward(x);
    }
    y.to(at::kFloat).sum().backward();
  });
  state.SetItemsProcessed(state.iterations() * batch * seq);
  state.SetLabel(name);
}

void sizes(benchmark::internal::Benchmark* b) {
  for (auto [batch, seq] : {std::pair<int64_t, int64_t>{4, 128}, {4, 512}, {32, 512}}) b->Args({batch, seq});
  b->ArgNames({"batch", "seq"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Registered at run time: BENCHMARK_CAPTURE cannot take a template-id.
template <class Ffn>
void add(const char* id, const char* label, int64_t top_k, int64_t shared) {
  benchmark::RegisterBenchmark((std::string("ffn_fwd_bwd/") + id).c_str(),
                               [=](benchmark::State& state) { ffn_fwd_bwd<Ffn>(state, label, top_k, shared); })
      ->Apply(sizes);
}

}  // namespace

int main(int argc, char** argv) {
  using MoE = moe::MixtureOfExperts<>;
  add<ffn::SwiGLU>("swiglu", "SwiGLU", 0, 0);
  add<ffn::GeluMLP>("gelu", "GELU", 0, 0);
  add<MoE>("moe_top1", "MoE 4 top-1", 1, 0);
  add<MoE>("moe_top2", "MoE 4 top-2", 2, 0);
  add<MoE>("moe_top1_shared", "MoE 4 top-1 + shared", 1, 1);
  add<MoE>("moe_top2_shared", "MoE 4 top-2 + shared", 2, 1);
  return bench::main(argc, argv);
}
