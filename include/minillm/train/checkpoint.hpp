// Training checkpoints: a directory per save, <out>/checkpoint-NNNNNNNN/, holding the HF-layout
// model (config.json, model.safetensors), the AdamW state (optimizer.safetensors: each
// parameter's exp_avg and exp_avg_sq under its name, plus the CPU RNG state) and
// trainer_state.json (step, skipped steps, data cursor, per-parameter Adam step counts).
// A save writes checkpoint-N.tmp/ and renames it when complete, so a crash mid-save leaves the
// earlier checkpoints untouched and never a half-written one under a checkpoint name; deleting one
// (keep-last-K) renames it away first, for the same reason. Loading
// all of it back continues the run exactly as if it had not stopped.
#pragma once

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "minillm/data/batch.hpp"
#include "minillm/io/pretrained.hpp"
#include "minillm/train/trainer.hpp"

namespace minillm::train {

struct CheckpointInfo {
  int64_t step = 0;
  int64_t skipped = 0;
  data::DataCursor cursor;
};

namespace detail {

inline std::string checkpoint_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "checkpoint-%08lld", static_cast<long long>(step));
  return name;
}

// Deletes a checkpoint directory: renamed out of the listing first (atomic), so a crash during the
// deletion never leaves a listed checkpoint with files missing.
inline void retire(const std::filesystem::path& dir) {
  if (!std::filesystem::exists(dir)) return;
  auto doomed = dir;
  doomed += ".old";
  std::filesystem::remove_all(doomed);  // left by an earlier crash
  std::filesystem::rename(dir, doomed);
  std::filesystem::remove_all(doomed);
}

}  // namespace detail

// All complete checkpoints under `out`, oldest first.
inline std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& out) {
  std::vector<std::filesystem::path> found;
  if (!std::filesystem::is_directory(out)) return found;
  for (const auto& e : std::filesystem::directory_iterator(out)) {
    const auto name = e.path().filename().string();
    if (e.is_directory() && name.rfind("checkpoint-", 0) == 0 && name.find('.') == std::string::npos &&
        std::filesystem::exists(e.path() / "trainer_state.json"))
      found.push_back(e.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// Saves model, optimizer, RNG and data cursor as <out>/checkpoint-<step>/ and keeps the newest
// `keep_last` checkpoints (0: all). `add_files(dir)` may write more files (tokenizer, generation
// config) into the directory before it is committed. Returns the checkpoint directory.
inline std::filesystem::path save_checkpoint(const std::filesystem::path& out, AnyCausalLM& model,
                                             Trainer<AnyCausalLM>& trainer, const data::DataCursor& cursor,
                                             int keep_last = 0,
                                             const std::function<void(const std::filesystem::path&)>& add_files = {}) {
  const auto final_dir = out / detail::checkpoint_name(trainer.current_step());
  auto tmp = final_dir;
  tmp += ".tmp";
  std::filesystem::remove_all(tmp);
  std::filesystem::create_directories(tmp);
  save_pretrained(model, tmp);

  auto& opt = trainer.optimizer();
  io::NamedTensors state;
  nlohmann::json adam_steps = nlohmann::json::object();
  for (const auto& p : model.module().named_parameters()) {
    const auto it = opt.state().find(detail::state_key(opt, p.value()));
    if (it == opt.state().end()) continue;  // never updated (e.g. an unused expert)
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    state.emplace_back(p.key() + ".exp_avg", s.exp_avg());
    state.emplace_back(p.key() + ".exp_avg_sq", s.exp_avg_sq());
    adam_steps[p.key()] = s.step();
  }
  state.emplace_back("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  io::save_safetensors(tmp / "optimizer.safetensors", state);
  const nlohmann::json info = {{"step", trainer.current_step()},
                               {"skipped_steps", trainer.skipped_steps()},
                               {"data_cursor", {{"epoch", cursor.epoch}, {"position", cursor.position}}},
                               {"adam_steps", adam_steps}};
  io::write_text_file_atomic(tmp / "trainer_state.json", info.dump(2) + "\n");
  if (add_files) add_files(tmp);

  detail::retire(final_dir);  // a re-save of the same step
  std::filesystem::rename(tmp, final_dir);
  if (keep_last > 0) {
    auto all = list_checkpoints(out);
    for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) detail::retire(all[i]);
  }
  return final_dir;
}

// Restores what save_checkpoint wrote into `model` (same architecture and sizes) and `trainer`.
inline CheckpointInfo load_checkpoint(const std::filesystem::path& dir, AnyCausalLM& model,
                                      Trainer<AnyCausalLM>& trainer) {
  std::ifstream in(dir / "trainer_state.json");
  if (!in) throw CheckpointError(dir.string() + ": no trainer_state.json (not a training checkpoint)");
  const auto info = nlohmann::json::parse(in);
  const auto cfg = load_config(dir / "config.json");
  for (const auto& [field, ours, theirs] :
       {std::tuple{"hidden_size", model.config().hidden_size, cfg.hidden_size},
        std::tuple{"num_hidden_layers", model.config().num_hidden_layers, cfg.num_hidden_layers},
        std::tuple{"vocab_size", model.config().vocab_size, cfg.vocab_size}})
    if (ours != theirs)
      throw CheckpointError(dir.string() + ": checkpoint " + field + " (" + std::to_string(theirs) +
                            ") contradicts the model being trained (" + std::to_string(ours) + ")");
  try {
    load_state(model.module(), model.config(), io::load_safetensors_dir(dir));
  } catch (const std::exception& e) {
    throw CheckpointError(dir.string() + ": " + e.what());
  }
  io::SafetensorsFile state(dir / "optimizer.safetensors");
  auto& opt = trainer.optimizer();
  opt.state().clear();
  for (const auto& p : model.module().named_parameters()) {
    if (!info["adam_steps"].contains(p.key())) continue;
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(info["adam_steps"][p.key()].get<int64_t>());
    s->exp_avg(state.tensor(p.key() + ".exp_avg").clone().to(p.value().device()));
    s->exp_avg_sq(state.tensor(p.key() + ".exp_avg_sq").clone().to(p.value().device()));
    opt.state()[detail::state_key(opt, p.value())] = std::move(s);
  }
  auto generator = at::detail::getDefaultCPUGenerator();  // a handle sharing the global generator
  generator.set_state(state.tensor("rng.cpu").clone());
  CheckpointInfo r;
  r.step = info["step"].get<int64_t>();
  r.skipped = info["skipped_steps"].get<int64_t>();
  r.cursor = {info["data_cursor"]["epoch"].get<uint64_t>(), info["data_cursor"]["position"].get<uint64_t>()};
  trainer.set_step(r.step);
  return r;
}

}  // namespace minillm::train
