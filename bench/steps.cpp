// Whole-model steps per preset on random weights: a training step (forward, backward, AdamW) in
// fp32 and bf16 autocast, and batch-1 greedy decoding through the Generator (KV cache). CPU, or
// CUDA with MINILLM_BENCH_DEVICE=cuda. (minillm_bench_model measures one model at the GPU
// benchmark's sizes, with peak memory and MFU.)
//   build/bench/minillm_bench_steps --benchmark_filter=decode --benchmark_format=json
#include <minillm/infer/generator.hpp>
#include <minillm/model.hpp>
#include <minillm/train/trainer.hpp>

#include "common.hpp"

namespace {

using namespace minillm;

const char* const kPresets[] = {"tiny", "minimind2_small"};

std::unique_ptr<AnyCausalLM> model_for(int64_t preset) {
  auto cfg = preset_config(kPresets[preset]);
  cfg.vocab_size = 6400;  // MiniMind's tokenizer
  at::manual_seed(0);
  return make_model(cfg, at::TensorOptions().device(bench::device()));
}

void train_step(benchmark::State& state) {
  auto model = model_for(state.range(0));
  const auto precision = static_cast<Precision>(state.range(1));
  const int64_t batch = 8, seq = 256;
  train::Trainer<AnyCausalLM> trainer(*model, {.precision = precision});
  const auto ids = at::randint(0, 6400, {batch, seq + 1}, at::TensorOptions().dtype(at::kLong).device(bench::device()));
  bench::timed(state, bench::device(), [&] { trainer.step(std::vector<at::Tensor>{ids}); });
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations() * batch * seq), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(kPresets[state.range(0)]) + (precision == Precision::bf16 ? "/bf16" : "/fp32"));
}

void decode(benchmark::State& state) {
  auto model = model_for(state.range(0));
  const auto tok = tokenizer::BpeTokenizer::from_file(MINILLM_TOKENIZER_JSON);  // MiniMind's 6400 tokens
  infer::Generator<AnyCausalLM> gen(*model, tok);
  const std::vector<int32_t> prompt = {1, 20, 300, 40, 500, 60, 700, 80};
  const infer::GenerationOptions opt{.sampling = {.temperature = 0}, .max_new_tokens = 128};
  int64_t tokens = 0;  // no stop ids: every call generates max_new_tokens
  bench::timed(state, bench::device(), [&] { tokens = static_cast<int64_t>(gen.generate(prompt, opt).tokens.size()); });
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations() * tokens), benchmark::Counter::kIsRate);
  state.SetLabel(kPresets[state.range(0)]);
}

}  // namespace

BENCHMARK(train_step)->ArgsProduct({{0, 1}, {0, 1}})->ArgNames({"preset", "bf16"})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(decode)->ArgsProduct({{0, 1}})->ArgNames({"preset"})->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) { return bench::main(argc, argv); }
