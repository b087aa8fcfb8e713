// The training loop the programs share (minillm-pretrain, minillm-sft): steps the Trainer over a
// data source, validates at intervals, logs a console line (step, loss, lr, grad norm, tokens/s,
// ETA), one JSON line per step to <out>/metrics.jsonl and TensorBoard scalars to <out>/tb/, and
// saves checkpoints (with the tokenizer files, so each is a complete HF directory) at intervals,
// at the end, and when asked to stop (Ctrl-C).
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>

#include "minillm/tokenizer/document_markers.hpp"
#include "minillm/train/checkpoint.hpp"
#include "minillm/train/tensorboard.hpp"

namespace minillm::train {

// Where batches come from: the next micro-batch of `rows` rows, and the cursor to save.
struct DataSource {
  std::function<Batch(int64_t rows)> next_batch;
  std::function<data::DataCursor()> cursor;
};

struct LoopOptions {
  std::filesystem::path out;            // checkpoints, metrics.jsonl, tb/
  std::filesystem::path tokenizer_dir;  // its files are copied into every checkpoint
  int64_t steps = 1000;                 // optimiser steps in all (a resumed run continues to this)
  int64_t batch_size = 16;              // rows per micro-batch
  int64_t log_interval = 10;
  int64_t eval_interval = 100;  // 0: never
  int64_t save_interval = 500;
  int keep_last = 3;
  at::Device device = at::kCPU;
  const std::atomic<bool>* stop = nullptr;  // set (e.g. by SIGINT): save a checkpoint and return
  nlohmann::json run_setup = nlohmann::json::object();  // recorded in each checkpoint's trainer_state.json
};

struct LoopResult {
  int64_t step = 0;
  double loss = 0;
  std::optional<double> val_loss;
  double tokens_per_s = 0;
  std::filesystem::path checkpoint;
  bool stopped_early = false;
};

// Token-weighted mean cross entropy of `model` over batches(0) .. batches(n - 1), in eval mode.
inline double mean_loss(AnyCausalLM& model, const std::function<Batch(size_t)>& batches, size_t n,
                        const at::Device& device, Precision precision) {
  at::NoGradGuard no_grad;
  model.module().eval();
  double sum = 0, tokens = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto b = batches(i).to(device);
    const auto count = static_cast<double>(b.target_tokens());
    sum += forward_batch(model, b, precision).lm_loss.item<double>() * count;
    tokens += count;
  }
  model.module().train();
  return sum / std::max(tokens, 1.0);
}

namespace detail {
inline std::string duration(double seconds) {
  const auto s = static_cast<long long>(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  else std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  return buf;
}
}  // namespace detail

// Saves a checkpoint with the tokenizer files and `generation_config` (so it is a complete HF directory).
inline std::filesystem::path save_training_checkpoint(AnyCausalLM& model, Trainer<AnyCausalLM>& trainer,
                                                      const data::DataCursor& cursor, const LoopOptions& o,
                                                      const nlohmann::json& generation_config) {
  return save_checkpoint(
      o.out, model, trainer, cursor, o.keep_last,
      [&](const std::filesystem::path& dir) {
        if (o.tokenizer_dir.empty()) return;
        for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
          if (std::filesystem::exists(o.tokenizer_dir / f))
            std::filesystem::copy_file(o.tokenizer_dir / f, dir / f, std::filesystem::copy_options::overwrite_existing);
        io::write_text_file_atomic(dir / "generation_config.json", generation_config.dump(2) + "\n");
      },
      o.run_setup);
}

// Keeps the lines of a metrics.jsonl up to `last_step` (replacing the file atomically), so a run
// resumed at that step logs each step once. Lines that do not parse (a write cut off by a kill) go.
inline void truncate_metrics(const std::filesystem::path& path, int64_t last_step) {
  if (!std::filesystem::exists(path)) return;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::string line, kept;
  size_t dropped = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= last_step) {
      kept += line;
      kept += '\n';
    } else {
      ++dropped;
    }
  }
  in.close();
  if (dropped > 0) io::write_text_file_atomic(path, kept);
}

// generation_config.json for checkpoints: the tokenizer's bos / eos ids.
inline nlohmann::json generation_config(const std::filesystem::path& tokenizer_dir) {
  if (tokenizer_dir.empty()) return nlohmann::json::object();
  const auto tok = tokenizer::BpeTokenizer::from_file(tokenizer_dir / "tokenizer.json");
  const auto [bos, eos] = document_markers(tokenizer_dir, tok);
  return {{"bos_token_id", bos}, {"eos_token_id", eos}};
}

inline LoopResult run_training(AnyCausalLM& model, Trainer<AnyCausalLM>& trainer, const DataSource& data,
                               const std::function<double()>& validate, const LoopOptions& o) {
  std::filesystem::create_directories(o.out);
  truncate_metrics(o.out / "metrics.jsonl", trainer.current_step());
  std::ofstream metrics(o.out / "metrics.jsonl", std::ios::app);
  if (!metrics) throw std::runtime_error("cannot write " + (o.out / "metrics.jsonl").string());
  TensorBoardWriter tb(o.out / "tb");
  const auto gen_config = generation_config(o.tokenizer_dir);
  const auto accumulation = trainer.options().accumulation;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first_step = trainer.current_step();
  int64_t tokens = 0;
  LoopResult r;
  while (trainer.current_step() < o.steps) {
    if (o.stop != nullptr && o.stop->load()) {
      r.stopped_early = true;
      break;
    }
    std::vector<Batch> micro;
    for (int64_t i = 0; i < accumulation; ++i) micro.push_back(data.next_batch(o.batch_size).to(o.device));
    const auto s = trainer.step(micro);
    tokens += s.tokens;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tok_s = static_cast<double>(tokens) / std::max(secs, 1e-9);
    const int64_t done = s.step + 1;
    nlohmann::json m = {{"step", done}, {"loss", s.loss}, {"lm_loss", s.lm_loss}, {"lr", s.lr},
                        {"grad_norm", s.grad_norm}, {"tokens_per_s", tok_s}, {"skipped", s.skipped}};
    tb.scalar("train/loss", done, s.loss);
    tb.scalar("train/lr", done, s.lr);
    tb.scalar("train/grad_norm", done, s.grad_norm);
    tb.scalar("train/tokens_per_s", done, tok_s);
    if (s.mtp_loss != 0.0) {
      m["mtp_loss"] = s.mtp_loss;
      tb.scalar("train/mtp_loss", done, s.mtp_loss);
    }
    if (s.aux_loss != 0.0) {
      m["aux_loss"] = s.aux_loss;
      tb.scalar("train/aux_loss", done, s.aux_loss);
    }
    if (!s.expert_balance.empty()) {
      auto& balance = m["expert_balance"] = nlohmann::json::object();
      for (const auto& [layer, ratio] : s.expert_balance) {
        balance[std::to_string(layer)] = ratio;
        tb.scalar("ExpertBalance/Layer_" + std::to_string(layer) + "/max_min_ratio", done, ratio);
      }
    }
    if (done % o.log_interval == 0 || done == o.steps) {
      const double eta = static_cast<double>(o.steps - done) * secs / static_cast<double>(done - first_step);
      std::fprintf(stderr, "step %lld/%lld | loss %.4f | lr %.2e | grad %.2f | %.0f tok/s | ETA %s%s\n",
                   static_cast<long long>(done), static_cast<long long>(o.steps), s.loss, s.lr, s.grad_norm, tok_s,
                   detail::duration(eta).c_str(), s.skipped ? " | SKIPPED (non-finite)" : "");
    }
    if (validate && o.eval_interval > 0 && (done % o.eval_interval == 0 || done == o.steps)) {
      const double vl = validate();
      m["val_loss"] = vl;
      m["val_perplexity"] = std::exp(vl);
      tb.scalar("val/loss", done, vl);
      std::fprintf(stderr, "step %lld | validation loss %.4f | perplexity %.2f\n", static_cast<long long>(done), vl,
                   std::exp(vl));
      r.val_loss = vl;
    }
    metrics << m.dump() << '\n' << std::flush;
    r.loss = s.loss;
    r.tokens_per_s = tok_s;
    if (done % o.save_interval == 0 && done != o.steps)
      std::fprintf(stderr, "saved %s\n", save_training_checkpoint(model, trainer, data.cursor(), o, gen_config).c_str());
  }
  r.step = trainer.current_step();
  r.checkpoint = save_training_checkpoint(model, trainer, data.cursor(), o, gen_config);
  std::fprintf(stderr, "saved %s (%lld skipped steps)%s\n", r.checkpoint.c_str(),
               static_cast<long long>(trainer.skipped_steps()), r.stopped_early ? " — stopped early; --resume continues" : "");
  return r;
}

}  // namespace minillm::train
