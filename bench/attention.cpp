// Attention variants, forward + backward of one layer: MHA / GQA / MQA by kv-head count, QK-norm
// on/off, math path vs LibTorch's fused op, at minimind2_small width. CPU, or CUDA with
// MINILLM_BENCH_DEVICE=cuda (bf16 autocast there unless MINILLM_BENCH_PRECISION=fp32).
//   build/bench/minillm_bench_attention --benchmark_format=json
#include <minillm/model.hpp>

#include "common.hpp"

namespace {

using namespace minillm;

template <attention::QKNorm Q>
void attention_fwd_bwd(benchmark::State& state) {
  const int64_t kv_heads = state.range(0), batch = state.range(1), seq = state.range(2);
  const auto kernel = static_cast<AttentionKernel>(state.range(3));
  const auto device = bench::device();
  ModelConfig c = presets::minimind2_small::config();
  c.num_key_value_heads = kv_heads;
  c.max_position_embeddings = std::max(c.max_position_embeddings, seq);
  const auto options = at::TensorOptions().device(device);
  using Attn = attention::GroupedQuery<Q>::template module<arch::Llama::norm, arch::Llama::position>;
  Attn attn(c, 0, options);
  position::RoPEImpl rope(c, options);
  const auto x = at::randn({batch, seq, c.hidden_size}, options).requires_grad_(true);
  AttentionContext ctx;
  ctx.position = rope.encode(at::arange(seq, options.dtype(at::kLong)).unsqueeze(0).expand({batch, seq}));
  ctx.kernel = kernel;
  bench::timed(state, device, [&] {
    at::Tensor y;
    {
      AutocastGuard autocast(device.type(), bench::precision());
      y = attn.forward(x, ctx);
    }
    y.to(at::kFloat).sum().backward();
  });
  state.SetItemsProcessed(state.iterations() * batch * seq);
  state.SetLabel(std::string(kv_heads == c.num_attention_heads ? "MHA" : kv_heads == 1 ? "MQA" : "GQA") +
                 (Q == attention::QKNorm::on ? "+qknorm" : "") + (kernel == AttentionKernel::math ? "/math" : "/fused"));
}

void args(benchmark::internal::Benchmark* b) {
  for (int64_t kv : {8, 2, 1})
    for (auto [batch, seq] : {std::pair<int64_t, int64_t>{4, 128}, {4, 512}, {32, 512}})
      for (auto k : {AttentionKernel::math, AttentionKernel::fused}) b->Args({kv, batch, seq, static_cast<int64_t>(k)});
  b->ArgNames({"kv_heads", "batch", "seq", "kernel"})->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(attention_fwd_bwd<attention::QKNorm::off>)->Apply(args);
BENCHMARK(attention_fwd_bwd<attention::QKNorm::on>)->Apply(args);

}  // namespace

int main(int argc, char** argv) { return bench::main(argc, argv); }
