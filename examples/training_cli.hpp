// What minillm-pretrain and minillm-sft share: the model source (preset, config.json or a
// checkpoint to start from), the optimiser, schedule, precision and loop options, resuming, and
// Ctrl-C handling (save a checkpoint, then exit).
#pragma once

#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <iostream>

#include <minillm/model.hpp>
#include <minillm/tokenizer/bpe.hpp>
#include <minillm/train/loop.hpp>

namespace training_cli {

inline std::atomic<bool> stop_requested{false};

struct Options {
  std::string preset, config_path, init_dir, tokenizer, out, device = "cpu", schedule = "minimind_cosine", precision = "fp32";
  int64_t steps = 1000, batch = 16, seq_len = 256, accumulation = 1, warmup = 0, eval_interval = 100,
          eval_batches = 20, save_interval = 500, log_interval = 10;
  int keep_last = 3, threads = 0;
  double lr = 5e-4, min_lr_ratio = 0.1, clip = 1.0, weight_decay = 0.01;
  uint64_t seed = 42;
  bool resume = false, cuda_graph = true, drop_mtp = false;

  // `init_help` set: the program may start from a checkpoint (--init DIR).
  void add_to(CLI::App& app, const char* init_help = nullptr) {
    auto* p = app.add_option("--preset", preset, "model preset (minillm-info --list)");
    auto* c = app.add_option("--config", config_path, "model config.json instead of a preset")->check(CLI::ExistingFile);
    p->excludes(c);
    if (init_help != nullptr) {
      auto* i = app.add_option("--init", init_dir, init_help)->check(CLI::ExistingDirectory);
      i->excludes(p)->excludes(c);
    }
    app.add_option("--tokenizer", tokenizer, "tokenizer directory (its vocabulary sets vocab_size)")
        ->required()
        ->check(CLI::ExistingDirectory);
    app.add_option("--out", out, "output directory (checkpoints, metrics.jsonl, tb/)")->required();
    app.add_option("--steps", steps, "optimiser steps in all")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--batch-size", batch, "rows per micro-batch")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--seq-len", seq_len, "tokens per row")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--accumulation", accumulation, "micro-batches per optimiser step")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--lr", lr, "peak learning rate")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--schedule", schedule, "minimind_cosine, warmup_cosine or constant")
        ->check(CLI::IsMember({"minimind_cosine", "warmup_cosine", "constant"}))
        ->capture_default_str();
    app.add_option("--warmup", warmup, "warmup steps (warmup_cosine)")->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--min-lr-ratio", min_lr_ratio, "final lr / peak lr (warmup_cosine)")->check(CLI::Range(0.0, 1.0))->capture_default_str();
    app.add_option("--clip", clip, "max gradient norm (0: off)")->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--weight-decay", weight_decay, "AdamW weight decay")->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--seed", seed, "seed for weights and data order")->capture_default_str();
    app.add_option("--eval-interval", eval_interval, "steps between validations (0: off)")->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--eval-batches", eval_batches, "validation batches")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--save-interval", save_interval, "steps between checkpoints (always one at the end)")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--keep-last", keep_last, "checkpoints to keep (0: all)")->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--log-interval", log_interval, "steps between console lines")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_flag("--resume", resume, "continue from the newest checkpoint in --out, exactly");
    app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
    app.add_option("--precision", precision, "fp32, or bf16 (autocast; fp32 master weights and optimizer state)")
        ->check(CLI::IsMember({"fp32", "bf16"}))
        ->capture_default_str();
    app.add_option("--threads", threads, "CPU threads (0: all cores)")->check(CLI::NonNegativeNumber);
    app.add_flag("--drop-mtp", drop_mtp,
                 "train without the multi-token-prediction module: drop it from the starting model (as Mini-LLM does "
                 "after pretraining) so it is neither trained nor saved");
    app.add_flag("--cuda-graph,!--no-cuda-graph", cuda_graph,
                 "CUDA: replay the training step as a recorded CUDA graph while batch shapes repeat (default: on)")
        ->capture_default_str();
  }

  at::Device torch_device() const { return minillm::device_from_name(device); }

  // The model to train: with --resume, the newest checkpoint's architecture (maybe_resume then
  // loads its state); else --init's weights, or a fresh --preset / --config model sized to the
  // tokenizer.
  std::unique_ptr<minillm::AnyCausalLM> make_model(const minillm::tokenizer::BpeTokenizer& tok) const {
    auto model = build_model(tok);
    if (drop_mtp) model->drop_mtp();
    return model;
  }

 private:
  std::unique_ptr<minillm::AnyCausalLM> build_model(const minillm::tokenizer::BpeTokenizer& tok) const {
    const auto vocab = static_cast<int64_t>(tok.vocab_size());
    at::manual_seed(seed);
    if (const auto all = minillm::train::list_checkpoints(out); resume && !all.empty()) {
      auto cfg = minillm::load_config(all.back() / "config.json");
      if (!preset.empty() || !config_path.empty()) {
        const auto asked = preset.empty() ? minillm::load_config(config_path) : minillm::preset_config(preset);
        if (asked.hidden_size != cfg.hidden_size || asked.num_hidden_layers != cfg.num_hidden_layers)
          throw std::invalid_argument((all.back() / "config.json").string() + ": the checkpoint (hidden_size " +
                                      std::to_string(cfg.hidden_size) + ", " + std::to_string(cfg.num_hidden_layers) +
                                      " layers) contradicts the requested model (hidden_size " +
                                      std::to_string(asked.hidden_size) + ", " + std::to_string(asked.num_hidden_layers) +
                                      " layers)");
      }
      check_seq_len(cfg);
      cfg.architecture = minillm::resolve_architecture(cfg);
      return minillm::make_model(cfg, at::TensorOptions().device(torch_device()));
    }
    if (!init_dir.empty()) {
      auto model = minillm::load_pretrained(init_dir, at::TensorOptions().device(torch_device()));
      if (model->config().vocab_size < vocab)
        throw std::invalid_argument(init_dir + ": the checkpoint's vocab_size (" + std::to_string(model->config().vocab_size) +
                                    ") is smaller than the tokenizer's vocabulary (" + std::to_string(vocab) + ")");
      check_seq_len(model->config());
      return model;
    }
    if (preset.empty() && config_path.empty()) throw std::invalid_argument("give --preset NAME or --config FILE");
    auto cfg = preset.empty() ? minillm::load_config(config_path) : minillm::preset_config(preset);
    if (!config_path.empty() && cfg.vocab_size != vocab)
      throw std::invalid_argument(config_path + ": vocab_size (" + std::to_string(cfg.vocab_size) +
                                  ") contradicts the tokenizer's vocabulary (" + std::to_string(vocab) + ")");
    cfg.vocab_size = vocab;
    check_seq_len(cfg);
    cfg.architecture = minillm::resolve_architecture(cfg);
    return minillm::make_model(cfg, at::TensorOptions().device(torch_device()));
  }


 public:
  minillm::train::TrainerOptions trainer_options() const {
    minillm::train::TrainerOptions t;
    t.schedule = {minillm::train::lr_schedule_from_name(schedule), lr, steps, warmup, min_lr_ratio};
    t.accumulation = accumulation;
    t.clip = clip;
    t.weight_decay = weight_decay;
    t.precision = minillm::precision_from_name(precision);
    t.cuda_graph = cuda_graph;
    return t;
  }

  minillm::train::LoopOptions loop_options() const {
    minillm::train::LoopOptions o;
    o.out = out;
    o.tokenizer_dir = tokenizer;
    o.steps = steps;
    o.batch_size = batch;
    o.log_interval = log_interval;
    o.eval_interval = eval_interval;
    o.save_interval = save_interval;
    o.keep_last = keep_last;
    o.device = torch_device();
    o.stop = &stop_requested;
    return o;
  }

  // With --resume: restores the newest checkpoint in --out and returns its data cursor.
  std::optional<minillm::data::DataCursor> maybe_resume(minillm::AnyCausalLM& model,
                                                        minillm::train::Trainer<minillm::AnyCausalLM>& trainer) const {
    if (!resume) return std::nullopt;
    const auto all = minillm::train::list_checkpoints(out);
    if (all.empty()) throw std::invalid_argument("--resume: no checkpoint in " + out);
    const auto info = minillm::train::load_checkpoint(all.back(), model, trainer);
    std::cerr << "resumed from " << all.back().string() << " at step " << info.step << '\n';
    return info.cursor;
  }

 private:
  void check_seq_len(const minillm::ModelConfig& cfg) const {
    if (seq_len > cfg.max_position_embeddings)
      throw std::invalid_argument("--seq-len (" + std::to_string(seq_len) + ") exceeds max_position_embeddings (" +
                                  std::to_string(cfg.max_position_embeddings) + ")");
  }
};

// The first Ctrl-C asks the loop to save and stop; a second one ends the process at once.
inline void install_stop_handler() {
  std::signal(SIGINT, [](int) {
    if (stop_requested.exchange(true)) std::_Exit(130);
  });
  std::signal(SIGTERM, [](int) { stop_requested.store(true); });
}

inline void print_model(minillm::AnyCausalLM& model) {
  const auto report = minillm::report_parameters(model.module(), model.config());
  std::cerr << model.architecture() << ": " << minillm::with_commas(report.total) << " parameters\n";
}

}  // namespace training_cli
