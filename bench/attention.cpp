// Attention variants, forward + backward on the CPU: MHA / GQA / MQA by kv-head count, QK-norm on/off, math path vs LibTorch's fused op.
//   build/bench/minillm_bench_attention --benchmark_format=json
#include <benchmark/benchmark.h>

#include <minillm/model.hpp>

namespace {

using namespace minillm;

template <attention::QKNorm Q>
void attention_fwd_bwd(benchmark::State& state) {
  const int64_t kv_heads = state.range(0), seq = state.range(1);
  const auto kernel = static_cast<AttentionKernel>(state.range(2));
  ModelConfig c = presets::minimind2_small::config();
  c.num_key_value_heads = kv_heads;
  using Attn = attention::GroupedQuery<Q>::template module<arch::Llama::norm, arch::Llama::position>;
  Attn attn(c, 0, {});
  position::RoPEImpl rope(c, {});
  const int64_t batch = 4;
  const auto x = at::randn({batch, seq, c.hidden_size}).requires_grad_(true);
  AttentionContext ctx;
  ctx.position = rope.encode(at::arange(seq).unsqueeze(0).expand({batch, seq}));
  ctx.kernel = kernel;
  for (auto _ : state) {
    attn.forward(x, ctx).sum().backward();
  }
  state.SetItemsProcessed(state.iterations() * batch * seq);
  state.SetLabel(std::string(kv_heads == 8 ? "MHA" : kv_heads == 1 ? "MQA" : "GQA") +
                 (kernel == AttentionKernel::math ? "/math" : "/fused"));
}

void args(benchmark::internal::Benchmark* b) {
  for (int64_t kv : {8, 2, 1})
    for (int64_t seq : {128, 512})
      for (auto k : {AttentionKernel::math, AttentionKernel::fused}) b->Args({kv, seq, static_cast<int64_t>(k)});
  b->ArgNames({"kv_heads", "seq", "kernel"})->Unit(benchmark::kMillisecond);
}

BENCHMARK(attention_fwd_bwd<attention::QKNorm::off>)->Apply(args);
BENCHMARK(attention_fwd_bwd<attention::QKNorm::on>)->Apply(args);

}  // namespace

int main(int argc, char** argv) {
  minillm::set_num_threads();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
