// minillm_bench_model: whole-model speed of one preset on one device, printed as one JSON line per
// measurement so scripts/gpu-bench.sh can set it beside HF transformers' figures.
//   training: Trainer steps (forward, backward, clipping, AdamW) on random ids: tokens/s, ms per
//             step, the forward+backward share, peak CUDA memory, MFU;
//   decode:   batch-1 greedy generation through the Generator (KV cache): tokens/s.
//   build/bench/minillm_bench_model --preset minimind2_small --device cuda --precision bf16
#include <CLI/CLI.hpp>

#include <chrono>
#include <iostream>

#include <nlohmann/json.hpp>

#include <minillm/infer/generator.hpp>
#include <minillm/model.hpp>
#include <minillm/train/trainer.hpp>

#ifdef MINILLM_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace {

using namespace minillm;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Peak bytes held by tensors on the CUDA device since the last reset (torch.cuda.max_memory_allocated).
struct PeakMemory {
  explicit PeakMemory(const at::Device& d) : cuda(d.is_cuda()), index(d.has_index() ? d.index() : 0) {
#ifdef MINILLM_CUDA
    if (cuda) c10::cuda::CUDACachingAllocator::resetPeakStats(index);
#endif
  }
  double gib() const {
#ifdef MINILLM_CUDA
    if (cuda) {
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
      return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0 * 1024.0);  // 0: aggregate pool
    }
#endif
    return 0;
  }
  bool cuda;
  c10::DeviceIndex index;
};

// Matmul FLOPs per trained token, PaLM's count: 6 x (weights of every matmul, the LM head
// included, embeddings lookups excluded) + 12 x layers x attention width x sequence length.
double train_flops_per_token(AnyCausalLM& model, int64_t seq) {
  const auto& c = model.config();
  double matmul_params = 0;
  for (const auto& p : model.module().named_parameters()) {
    if (p.value().dim() != 2 || p.key().find("embed_tokens") != std::string::npos) continue;
    matmul_params += static_cast<double>(p.value().numel());
  }
  if (c.tie_word_embeddings) matmul_params += static_cast<double>(c.vocab_size * c.hidden_size);
  return 6 * matmul_params + 12.0 * static_cast<double>(c.num_hidden_layers * c.num_attention_heads * c.head_dim * seq);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Training and decoding speed of one model on one device, as JSON lines"};
  std::string preset = "minimind2_small", device_name = "cpu", precision_name = "bf16", what = "train,decode";
  int64_t vocab = 6400, batch = 32, seq = 512, steps = 20, warmup = 5, prompt_len = 16, new_tokens = 256;
  std::string tokenizer_path = MINILLM_TOKENIZER_JSON;  // MiniMind's 6400 tokens
  bool moe = false, cuda_graph = true;
  double peak_tflops = 989.4;  // H100/H200 SXM dense bf16, the datasheet figure MFU is quoted against
  app.add_option("--preset", preset, "preset name")->capture_default_str();
  app.add_option("--vocab", vocab, "vocabulary size")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("--cuda-graph,!--no-cuda-graph", cuda_graph,
               "CUDA: replay training and decode steps as CUDA graphs (default: on)")
      ->capture_default_str();
  app.add_flag("--moe", moe, "make the preset a mixture of experts: 4 routed + 1 shared, top-2, same ffn width");
  app.add_option("--device", device_name, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  app.add_option("--precision", precision_name, "fp32, or bf16 (training: autocast over fp32 weights; decode: bf16 weights)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--what", what, "train, decode or both (comma-separated)")->capture_default_str();
  app.add_option("--batch", batch, "training batch size")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seq", seq, "training sequence length")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--steps", steps, "timed training steps")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--prompt", prompt_len, "decode prompt length")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--new-tokens", new_tokens, "tokens to decode")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--tokenizer", tokenizer_path, "tokenizer.json for decoding")->capture_default_str();
  app.add_option("--peak-tflops", peak_tflops, "the device's peak for MFU")->check(CLI::PositiveNumber)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    const auto device = device_from_name(device_name);
    if (device.is_cpu()) set_num_threads();
    const auto precision = precision_from_name(precision_name);
    auto cfg = preset_config(preset);
    cfg.vocab_size = vocab;
    cfg.max_position_embeddings = std::max(cfg.max_position_embeddings, std::max(seq, prompt_len + new_tokens));
    std::string label = preset;
    if (moe) {
      cfg = presets::with_minimind2_experts(cfg);
      cfg.architecture = std::string(arch::MiniMind2MoE::name);
      label += "+moe";
    }
    const nlohmann::json common = {{"impl", "minillm"},         {"model", label},
                                   {"device", device_name},     {"precision", precision_name},
                                   {"cuda_graph", cuda_graph && kCudaGraphs && device.is_cuda()}};

    if (what.find("train") != std::string::npos) {
      at::manual_seed(0);
      auto model = make_model(cfg, at::TensorOptions().device(device));
      train::Trainer<AnyCausalLM> trainer(*model, {.precision = precision, .cuda_graph = cuda_graph});
      const auto ids = at::randint(0, vocab, {batch, seq}, at::TensorOptions().dtype(at::kLong).device(device));
      const std::vector<at::Tensor> micro{ids};
      for (int64_t i = 0; i < warmup; ++i) trainer.step(micro);
      synchronize(device);
      PeakMemory peak(device);
      auto start = Clock::now();
      for (int64_t i = 0; i < steps; ++i) trainer.step(micro);
      synchronize(device);
      const double step_s = seconds_since(start) / static_cast<double>(steps);
      // An eager forward + backward (no clipping, no optimiser): what the host costs without a graph.
      start = Clock::now();
      for (int64_t i = 0; i < steps; ++i) train::forward_batch(*model, data::Batch{.input_ids = ids}, precision).loss.backward();
      synchronize(device);
      const double fwd_bwd_s = seconds_since(start) / static_cast<double>(steps);
      const double tokens_per_s = static_cast<double>(batch * seq) / step_s;
      auto row = common;
      row.update({{"what", "train"},
                  {"batch", batch},
                  {"seq", seq},
                  {"tokens_per_s", tokens_per_s},
                  {"step_ms", step_s * 1e3},
                  {"fwd_bwd_ms", fwd_bwd_s * 1e3},
                  {"peak_gib", peak.gib()},
                  {"mfu", device.is_cuda() ? tokens_per_s * train_flops_per_token(*model, seq) / (peak_tflops * 1e12) : 0.0}});
      std::cout << row.dump() << std::endl;
    }

    if (what.find("decode") != std::string::npos) {
      at::manual_seed(0);
      auto model = make_model(cfg, at::TensorOptions().device(device));
      if (precision == Precision::bf16) model->module().to(at::kBFloat16);
      const auto tokenizer = tokenizer::BpeTokenizer::from_file(tokenizer_path);
      if (static_cast<int64_t>(tokenizer.vocab_size()) != vocab)
        throw std::invalid_argument("decode: --vocab (" + std::to_string(vocab) + ") differs from the tokenizer's " +
                                    std::to_string(tokenizer.vocab_size()) + " tokens (" + tokenizer_path + ")");
      infer::Generator<AnyCausalLM> generator(*model, tokenizer);
      std::vector<int32_t> prompt;
      for (int64_t i = 0; i < prompt_len; ++i) prompt.push_back(static_cast<int32_t>((i * 37 + 11) % vocab));
      const infer::GenerationOptions opt{.sampling = {.temperature = 0}, .max_new_tokens = new_tokens, .cuda_graph = cuda_graph};
      generator.generate(prompt, opt);  // warm-up (records the decode graph)
      synchronize(device);
      const auto start = Clock::now();
      const auto out = generator.generate(prompt, opt);
      synchronize(device);
      const double s = seconds_since(start);
      auto row = common;
      row.update({{"what", "decode"},
                  {"prompt", prompt_len},
                  {"new_tokens", static_cast<int64_t>(out.tokens.size())},
                  {"tokens_per_s", static_cast<double>(out.tokens.size()) / s}});
      std::cout << row.dump() << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "minillm_bench_model: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
