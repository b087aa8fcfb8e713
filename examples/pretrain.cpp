// minillm-pretrain: pretrain a model on token shards (minillm-tokenizer shard).
//   minillm-pretrain --preset tiny --tokenizer tok/ --data train.bin --val val.bin --out runs/tiny --steps 2000
//   minillm-pretrain ... --resume        continue from the newest checkpoint in --out, exactly
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <minillm/model.hpp>
#include <minillm/tokenizer/bpe.hpp>
#include <minillm/train/checkpoint.hpp>

namespace {

std::string duration(double seconds) {
  const auto s = static_cast<long long>(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  else std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  return buf;
}

// Mean loss over the first `batches` windows of the validation stream (the same windows every time).
double validation_loss(minillm::AnyCausalLM& model, const minillm::data::PackedWindows& val, int64_t batches,
                       const at::Device& dev) {
  at::NoGradGuard no_grad;
  model.module().eval();
  double sum = 0;
  const auto n = std::min<uint64_t>(static_cast<uint64_t>(batches), val.num_windows());
  for (uint64_t i = 0; i < n; ++i) {
    const auto ids = val.window(i).to(dev);
    sum += model.forward(ids, {.labels = ids}).lm_loss.item<double>();
  }
  model.module().train();
  return sum / static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Pretrain a minillm model on token shards, with checkpoints that resume exactly."};
  std::string preset, config_path, tokenizer, out, device = "cpu", schedule = "minimind_cosine";
  std::vector<std::string> train_shards, val_shards;
  int64_t steps = 1000, batch = 16, seq_len = 256, accumulation = 1, warmup = 0, eval_interval = 100, eval_batches = 20,
          save_interval = 500, log_interval = 10;
  int keep_last = 3, threads = 0;
  double lr = 5e-4, min_lr_ratio = 0.1, clip = 1.0, weight_decay = 0.01;
  uint64_t seed = 42;
  bool resume = false;
  auto* p = app.add_option("--preset", preset, "model preset (minillm-info --list)");
  auto* c = app.add_option("--config", config_path, "model config.json instead of a preset")->check(CLI::ExistingFile);
  p->excludes(c);
  app.add_option("--tokenizer", tokenizer, "tokenizer directory (its vocabulary sets vocab_size)")->required()->check(CLI::ExistingDirectory);
  app.add_option("--data", train_shards, "training token shards")->required()->check(CLI::ExistingFile);
  app.add_option("--val", val_shards, "validation token shards")->check(CLI::ExistingFile);
  app.add_option("--out", out, "output directory (checkpoints, metrics.jsonl)")->required();
  app.add_option("--steps", steps, "optimiser steps in all")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", batch, "sequences per micro-batch")->check(CLI::PositiveNumber);
  app.add_option("--seq-len", seq_len, "tokens per sequence")->check(CLI::PositiveNumber);
  app.add_option("--accumulation", accumulation, "micro-batches per optimiser step")->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "peak learning rate")->check(CLI::PositiveNumber);
  app.add_option("--schedule", schedule, "minimind_cosine, warmup_cosine or constant")
      ->check(CLI::IsMember({"minimind_cosine", "warmup_cosine", "constant"}));
  app.add_option("--warmup", warmup, "warmup steps (warmup_cosine)")->check(CLI::NonNegativeNumber);
  app.add_option("--min-lr-ratio", min_lr_ratio, "final lr / peak lr (warmup_cosine)")->check(CLI::Range(0.0, 1.0));
  app.add_option("--clip", clip, "max gradient norm (0: off)")->check(CLI::NonNegativeNumber);
  app.add_option("--weight-decay", weight_decay, "AdamW weight decay")->check(CLI::NonNegativeNumber);
  app.add_option("--seed", seed, "seed for weights and data order");
  app.add_option("--eval-interval", eval_interval, "steps between validations (0: off)")->check(CLI::NonNegativeNumber);
  app.add_option("--eval-batches", eval_batches, "validation windows")->check(CLI::PositiveNumber);
  app.add_option("--save-interval", save_interval, "steps between checkpoints (always one at the end)")->check(CLI::PositiveNumber);
  app.add_option("--keep-last", keep_last, "checkpoints to keep (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--log-interval", log_interval, "steps between console lines")->check(CLI::PositiveNumber);
  app.add_flag("--resume", resume, "continue from the newest checkpoint in --out");
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", threads, "CPU threads (0: all cores)")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    minillm::set_num_threads(threads);
    if (preset.empty() && config_path.empty()) throw std::invalid_argument("give --preset NAME or --config FILE");
    const auto dev = device == "cuda" ? at::Device(at::kCUDA) : at::Device(at::kCPU);
    if (dev.is_cuda() && !at::hasCUDA()) throw std::runtime_error("--device cuda: this LibTorch build has no CUDA device");
    const auto tok = minillm::tokenizer::BpeTokenizer::from_file(std::filesystem::path(tokenizer) / "tokenizer.json");
    auto cfg = preset.empty() ? minillm::load_config(config_path) : minillm::preset_config(preset);
    const auto vocab = static_cast<int64_t>(tok.vocab_size());
    if (!config_path.empty() && cfg.vocab_size != vocab)
      throw std::invalid_argument(config_path + ": vocab_size (" + std::to_string(cfg.vocab_size) +
                                  ") contradicts the tokenizer's vocabulary (" + std::to_string(vocab) + ")");
    cfg.vocab_size = vocab;
    if (seq_len > cfg.max_position_embeddings)
      throw std::invalid_argument("--seq-len (" + std::to_string(seq_len) + ") exceeds max_position_embeddings (" +
                                  std::to_string(cfg.max_position_embeddings) + ")");
    cfg.architecture = minillm::resolve_architecture(cfg);

    at::manual_seed(seed);
    auto model = minillm::make_model(cfg, at::TensorOptions().device(dev));
    minillm::train::TrainerOptions topt;
    topt.schedule = {minillm::train::lr_schedule_from_name(schedule), lr, steps, warmup, min_lr_ratio};
    topt.accumulation = accumulation;
    topt.clip = clip;
    topt.weight_decay = weight_decay;
    minillm::train::Trainer<minillm::AnyCausalLM> trainer(*model, topt);
    std::vector<std::filesystem::path> train_paths(train_shards.begin(), train_shards.end());
    minillm::data::PackedWindows data(train_paths, seq_len, seed);
    std::optional<minillm::data::PackedWindows> val;
    if (!val_shards.empty()) val.emplace(std::vector<std::filesystem::path>(val_shards.begin(), val_shards.end()), seq_len, seed);
    for (const auto& s : train_shards)
      if (minillm::data::TokenShard(s).header().vocab_size != static_cast<uint64_t>(vocab))
        throw std::invalid_argument(s + ": shard was made with a vocabulary of " +
                                    std::to_string(minillm::data::TokenShard(s).header().vocab_size) +
                                    " tokens, the tokenizer has " + std::to_string(vocab));

    std::filesystem::create_directories(out);
    if (resume) {
      const auto all = minillm::train::list_checkpoints(out);
      if (all.empty()) throw std::invalid_argument("--resume: no checkpoint in " + out);
      const auto info = minillm::train::load_checkpoint(all.back(), *model, trainer);
      data.set_cursor(info.cursor);
      std::cerr << "resumed from " << all.back().string() << " at step " << info.step << '\n';
    }
    const auto report = minillm::report_parameters(model->module(), model->config());
    std::cerr << model->architecture() << ": " << minillm::with_commas(report.total) << " parameters; "
              << data.num_tokens() << " training tokens (" << data.num_windows() << " windows of " << seq_len
              << "); " << steps << " steps of " << batch * accumulation * seq_len << " tokens\n";

    std::ofstream metrics(std::filesystem::path(out) / "metrics.jsonl", std::ios::app);
    auto save = [&] {
      const auto dir = minillm::train::save_checkpoint(out, *model, trainer, data.cursor(), keep_last);
      for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
        if (std::filesystem::exists(std::filesystem::path(tokenizer) / f))
          std::filesystem::copy_file(std::filesystem::path(tokenizer) / f, dir / f,
                                     std::filesystem::copy_options::overwrite_existing);
      return dir;
    };
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t first_step = trainer.current_step();
    int64_t tokens = 0;
    while (trainer.current_step() < steps) {
      std::vector<at::Tensor> micro;
      for (int64_t i = 0; i < accumulation; ++i) micro.push_back(data.next_batch(batch).to(dev));
      const auto s = trainer.step(micro);
      tokens += s.tokens;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double tok_s = tokens / std::max(secs, 1e-9);
      nlohmann::json m = {{"step", s.step + 1}, {"loss", s.loss}, {"lm_loss", s.lm_loss}, {"lr", s.lr},
                          {"grad_norm", s.grad_norm}, {"tokens_per_s", tok_s}, {"skipped", s.skipped}};
      const int64_t done = s.step + 1;
      if (done % log_interval == 0 || done == steps) {
        const double eta = (steps - done) * secs / static_cast<double>(done - first_step);
        std::fprintf(stderr, "step %lld/%lld | loss %.4f | lr %.2e | grad %.2f | %.0f tok/s | ETA %s%s\n",
                     static_cast<long long>(done), static_cast<long long>(steps), s.loss, s.lr, s.grad_norm, tok_s,
                     duration(eta).c_str(), s.skipped ? " | SKIPPED (non-finite)" : "");
      }
      if (val && eval_interval > 0 && (done % eval_interval == 0 || done == steps)) {
        const double vl = validation_loss(*model, *val, eval_batches, dev);
        m["val_loss"] = vl;
        m["val_perplexity"] = std::exp(vl);
        std::fprintf(stderr, "step %lld | validation loss %.4f | perplexity %.2f\n", static_cast<long long>(done), vl,
                     std::exp(vl));
      }
      metrics << m.dump() << '\n' << std::flush;
      if (done % save_interval == 0 && done != steps) std::cerr << "saved " << save().string() << '\n';
    }
    std::cerr << "saved " << save().string() << " (" << trainer.skipped_steps() << " skipped steps)\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
