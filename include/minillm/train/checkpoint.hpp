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
#include <fstream>
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
  nlohmann::json run_setup = nlohmann::json::object();  // what the run was started with (seq_len, data, ...)
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

// The step a checkpoint directory's name says (checkpoint-NNNNNNNN), or -1 for other names.
inline int64_t checkpoint_step(const std::filesystem::path& dir) {
  const auto name = dir.filename().string();
  const std::string prefix = "checkpoint-";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size() ||
      name.find_first_not_of("0123456789", prefix.size()) != std::string::npos || name.size() > prefix.size() + 18)
    return -1;
  return std::stoll(name.substr(prefix.size()));
}

// trainer_state.json of a checkpoint, parsed and checked; errors name the file.
inline nlohmann::json read_trainer_state(const std::filesystem::path& dir) {
  const auto file = dir / "trainer_state.json";
  std::ifstream in(file);
  if (!in) throw CheckpointError(file.string() + ": missing (not a complete training checkpoint)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(file.string() + ": not valid JSON: " + e.what());
  }
  auto integer = [&](const nlohmann::json& v, const char* what) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      throw CheckpointError(file.string() + ": \"" + what + "\" must be a non-negative integer, got " + v.dump());
  };
  if (!j.is_object() || !j.contains("step") || !j.contains("skipped_steps") || !j.contains("data_cursor") ||
      !j["data_cursor"].is_object() || !j["data_cursor"].contains("epoch") || !j["data_cursor"].contains("position") ||
      !j.contains("adam_steps") || !j["adam_steps"].is_object())
    throw CheckpointError(file.string() + ": expected an object with step, skipped_steps, data_cursor {epoch, position} "
                          "and adam_steps");
  integer(j["step"], "step");
  integer(j["skipped_steps"], "skipped_steps");
  integer(j["data_cursor"]["epoch"], "data_cursor.epoch");
  integer(j["data_cursor"]["position"], "data_cursor.position");
  for (const auto& [name, v] : j["adam_steps"].items()) integer(v, ("adam_steps." + name).c_str());
  if (const auto named = checkpoint_step(dir); named >= 0 && j["step"].get<int64_t>() != named)
    throw CheckpointError(file.string() + ": step " + j["step"].dump() + " contradicts the directory name (step " +
                          std::to_string(named) + ")");
  if (j.contains("run_setup") && !j["run_setup"].is_object())
    throw CheckpointError(file.string() + ": \"run_setup\" must be an object");
  return j;
}

// Why a checkpoint directory cannot be resumed from ("" when it can): its trainer state is missing
// or damaged, or a file the model or optimizer needs is absent.
inline std::string checkpoint_problem(const std::filesystem::path& dir) {
  try {
    read_trainer_state(dir);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  for (const char* f : {"config.json", "optimizer.safetensors"})
    if (!std::filesystem::is_regular_file(dir / f)) return (dir / f).string() + ": missing";
  if (!std::filesystem::is_regular_file(dir / io::kWeightsFile) && !std::filesystem::is_regular_file(dir / io::kWeightsIndexFile))
    return dir.string() + ": no " + io::kWeightsFile + " or " + io::kWeightsIndexFile;
  return "";
}

// Where a resumed run continues: the newest checkpoint with nothing wrong, and the newer ones
// passed over, each with its problem (to be said on the console).
struct ResumePoint {
  std::filesystem::path dir;  // empty: no usable checkpoint
  std::vector<std::string> passed_over;
};

inline ResumePoint find_resume_point(const std::filesystem::path& out) {
  ResumePoint r;
  if (!std::filesystem::is_directory(out)) return r;
  std::vector<std::filesystem::path> dirs;
  for (const auto& e : std::filesystem::directory_iterator(out))
    if (e.is_directory() && checkpoint_step(e.path()) >= 0) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end(), [](const auto& a, const auto& b) { return checkpoint_step(a) > checkpoint_step(b); });
  for (const auto& d : dirs) {
    if (auto problem = checkpoint_problem(d); !problem.empty()) {
      r.passed_over.push_back(std::move(problem));
      continue;
    }
    r.dir = d;
    break;
  }
  return r;
}

// All complete checkpoints under `out`, oldest first.
inline std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& out) {
  std::vector<std::filesystem::path> found;
  if (!std::filesystem::is_directory(out)) return found;
  for (const auto& e : std::filesystem::directory_iterator(out)) {
    const auto name = e.path().filename().string();
    if (e.is_directory() && checkpoint_step(e.path()) >= 0 && std::filesystem::exists(e.path() / "trainer_state.json"))
      found.push_back(e.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

// Saves model, optimizer, RNG and data cursor as <out>/checkpoint-<step>/ and keeps the newest
// `keep_last` checkpoints (0: all) up to this one: retention never deletes the checkpoint just
// written, nor checkpoints of later steps (another run's; the programs refuse a used --out).
// `add_files(dir)` may write more files (tokenizer, generation config) into the directory before it
// is committed; `run_setup` is recorded in trainer_state.json for resume checks. Returns the
// checkpoint directory.
inline std::filesystem::path save_checkpoint(const std::filesystem::path& out, AnyCausalLM& model,
                                             Trainer<AnyCausalLM>& trainer, const data::DataCursor& cursor,
                                             int keep_last = 0,
                                             const std::function<void(const std::filesystem::path&)>& add_files = {},
                                             const nlohmann::json& run_setup = nlohmann::json::object()) {
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
                               {"adam_steps", adam_steps},
                               {"run_setup", run_setup}};
  io::write_text_file_atomic(tmp / "trainer_state.json", info.dump(2) + "\n");
  if (add_files) add_files(tmp);

  detail::retire(final_dir);  // a re-save of the same step
  std::filesystem::rename(tmp, final_dir);
  if (keep_last > 0) {
    auto all = list_checkpoints(out);
    std::erase_if(all, [&](const auto& d) { return checkpoint_step(d) > trainer.current_step(); });
    for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i) detail::retire(all[i]);
  }
  return final_dir;
}

// Restores what save_checkpoint wrote into `model` (same architecture and sizes) and `trainer`.
inline CheckpointInfo load_checkpoint(const std::filesystem::path& dir, AnyCausalLM& model,
                                      Trainer<AnyCausalLM>& trainer) {
  const auto info = read_trainer_state(dir);
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
  auto& opt = trainer.optimizer();
  opt.state().clear();
  try {
    io::SafetensorsFile state(dir / "optimizer.safetensors");
    for (const auto& p : model.module().named_parameters()) {
      if (!info["adam_steps"].contains(p.key())) continue;
      const auto exp_avg = state.tensor(p.key() + ".exp_avg"), exp_avg_sq = state.tensor(p.key() + ".exp_avg_sq");
      if (exp_avg.sizes() != p.value().sizes() || exp_avg_sq.sizes() != p.value().sizes())
        throw CheckpointError("optimizer state of " + p.key() + " has shape " + minillm::detail::shape_of(exp_avg) +
                              ", the parameter " + minillm::detail::shape_of(p.value()));
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(info["adam_steps"][p.key()].get<int64_t>());
      s->exp_avg(exp_avg.clone().to(p.value().device()));
      s->exp_avg_sq(exp_avg_sq.clone().to(p.value().device()));
      opt.state()[detail::state_key(opt, p.value())] = std::move(s);
    }
    auto generator = at::detail::getDefaultCPUGenerator();  // a handle sharing the global generator
    generator.set_state(state.tensor("rng.cpu").clone());
  } catch (const std::exception& e) {
    opt.state().clear();
    throw CheckpointError((dir / "optimizer.safetensors").string() + ": " + e.what());
  }
  CheckpointInfo r;
  r.step = info["step"].get<int64_t>();
  r.skipped = info["skipped_steps"].get<int64_t>();
  r.cursor = {info["data_cursor"]["epoch"].get<uint64_t>(), info["data_cursor"]["position"].get<uint64_t>()};
  if (info.contains("run_setup")) r.run_setup = info["run_setup"];
  trainer.set_step(r.step);
  return r;
}

}  // namespace minillm::train
