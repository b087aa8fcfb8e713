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
  bool resume = false, overwrite = false, cuda_graph = true, drop_mtp = false;
  // What the run is started with, recorded in every checkpoint and compared on --resume (see
  // record_setup); and the checkpoint --resume continues from (see prepare_output).
  nlohmann::json setup = nlohmann::json::object();
  std::filesystem::path resume_dir;

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
    auto* r = app.add_flag("--resume", resume, "continue from the newest complete checkpoint in --out, exactly");
    app.add_flag("--overwrite", overwrite,
                 "start afresh in a used --out: delete its checkpoints, metrics.jsonl and tb/ first (without it, or "
                 "--resume, a non-empty --out is refused)")
        ->excludes(r);
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
    if (resume) {
      auto cfg = minillm::load_config(resume_dir / "config.json");
      if (!preset.empty() || !config_path.empty()) {
        const auto asked = preset.empty() ? minillm::load_config(config_path) : minillm::preset_config(preset);
        if (asked.hidden_size != cfg.hidden_size || asked.num_hidden_layers != cfg.num_hidden_layers)
          throw std::invalid_argument((resume_dir / "config.json").string() + ": the checkpoint (hidden_size " +
                                      std::to_string(cfg.hidden_size) + ", " + std::to_string(cfg.num_hidden_layers) +
                                      " layers) contradicts the requested model (hidden_size " +
                                      std::to_string(asked.hidden_size) + ", " + std::to_string(asked.num_hidden_layers) +
                                      " layers)");
      }
      if (cfg.vocab_size < vocab)
        throw std::invalid_argument((resume_dir / "config.json").string() + ": vocab_size (" + std::to_string(cfg.vocab_size) +
                                    ") is smaller than the tokenizer's vocabulary (" + std::to_string(vocab) + ")");
      check_seq_len(cfg);
      cfg.architecture = minillm::resolve_architecture(cfg);
      // The checkpoint's config against its weights' headers, before the model is allocated.
      minillm::detail::check_shapes_before_loading(cfg, minillm::io::load_safetensors_dir(resume_dir), resume_dir / "config.json");
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
    o.run_setup = setup;
    return o;
  }

  // Records what fixes the data order (a resumed data cursor only means the same thing under the
  // same order): --seq-len, --seed, the data files (canonical path and size) and `data_options`
  // (program-specific, e.g. SFT packing); and what may change between runs (batch shape).
  void record_setup(const std::vector<std::string>& data_files, const nlohmann::json& data_options = nlohmann::json::object()) {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : data_files)
      files.push_back({{"file", std::filesystem::weakly_canonical(f).string()}, {"bytes", std::filesystem::file_size(f)}});
    setup = {{"data_order", {{"seq_len", seq_len}, {"seed", seed}, {"data", files}, {"options", data_options}}},
             {"batch", {{"batch_size", batch}, {"accumulation", accumulation}}}};
  }

  // Before anything is built: with --resume, finds the newest complete checkpoint (saying which
  // newer ones are passed over, and why); without it, refuses a used --out unless --overwrite, which
  // deletes what an earlier run wrote there (so keep-last cannot delete this run's checkpoints as
  // "older" ones, and metrics.jsonl starts empty).
  void prepare_output() {
    namespace fs = std::filesystem;
    if (resume) {
      auto point = minillm::train::find_resume_point(out);
      for (const auto& why : point.passed_over) std::cerr << "resume: passing over a damaged checkpoint: " << why << '\n';
      if (point.dir.empty())
        throw std::invalid_argument("--resume: no complete checkpoint in " + out +
                                    (point.passed_over.empty() ? "" : " (see the lines above)"));
      resume_dir = point.dir;
      return;
    }
    if (!fs::exists(out)) return;
    if (!fs::is_directory(out)) throw std::invalid_argument("--out " + out + " exists and is not a directory");
    if (fs::is_empty(out)) return;
    if (!overwrite)
      throw std::invalid_argument("--out " + out + " is not empty (an earlier run's checkpoints or metrics?): give --resume to "
                                  "continue that run, --overwrite to replace it, or another --out");
    for (const auto& e : fs::directory_iterator(out)) {
      const auto name = e.path().filename().string();
      if (name == "metrics.jsonl" || name == "tb" || (name.rfind("checkpoint-", 0) == 0 && e.is_directory())) {
        std::cerr << "--overwrite: deleting " << e.path().string() << '\n';
        fs::remove_all(e.path());
      }
    }
  }

  // With --resume: restores the checkpoint prepare_output chose and returns its data cursor. A run
  // setup that contradicts the checkpoint's is refused (data order) or warned about (batch shape).
  std::optional<minillm::data::DataCursor> maybe_resume(minillm::AnyCausalLM& model,
                                                        minillm::train::Trainer<minillm::AnyCausalLM>& trainer) const {
    if (!resume) return std::nullopt;
    const auto info = minillm::train::load_checkpoint(resume_dir, model, trainer);
    const auto state_file = (resume_dir / "trainer_state.json").string();
    if (info.step > steps)
      throw std::invalid_argument("--steps (" + std::to_string(steps) + ") is below the step of " + state_file + " (" +
                                  std::to_string(info.step) + "): give --steps beyond it to continue");
    const auto& was = info.run_setup;
    if (!was.contains("data_order")) {
      std::cerr << "resume: " << state_file << " records no run setup (an older checkpoint): --seq-len, --seed and --data "
                << "are not checked against it\n";
    } else if (was["data_order"] != setup["data_order"]) {
      throw std::invalid_argument(state_file + ": the run was started with " + was["data_order"].dump() +
                                  "; this one has " + setup["data_order"].dump() +
                                  " (the data cursor would point into other data): resume with the same --seq-len, "
                                  "--seed and --data, or start a new run");
    }
    if (was.contains("batch") && was["batch"] != setup["batch"])
      std::cerr << "resume: warning: batch shape " << setup["batch"].dump() << " differs from the checkpoint's "
                << was["batch"].dump() << ": the run continues, but not as the original would have\n";
    std::cerr << "resumed from " << resume_dir.string() << " at step " << info.step << '\n';
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
