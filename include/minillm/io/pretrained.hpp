// HF checkpoint directories: config.json + model.safetensors (or shards) + tokenizer files.
// load_pretrained builds the architecture the config names (through the registry) and copies the
// weights in with a strict report of missing and unexpected keys; save_pretrained writes a
// directory transformers loads (model_type chosen by the architecture's math, see hf_export).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "minillm/io/safetensors.hpp"
#include "minillm/registry.hpp"

namespace minillm {

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct LoadReport {
  std::vector<std::string> missing;     // model parameters the checkpoint lacks
  std::vector<std::string> unexpected;  // checkpoint tensors the model has no place for
  std::vector<std::string> ignored;     // known extras: rotary buffers, a tied lm_head
};

// Another implementation's names for our parameters and config fields. Modules carry HF's names;
// an architecture whose reference implementation names things otherwise lists its layout here, and
// load_state / save_pretrained translate at the boundary (load: either naming; save: theirs).
struct CheckpointLayout {
  std::vector<std::pair<std::string, std::string>> segments;       // (ours, theirs): one dotted name segment
  std::vector<std::pair<std::string, std::string>> config_fields;  // (ours, theirs)
  nlohmann::json config_constants = nlohmann::json::object();      // fields their loader needs, as they are
  std::string class_name;                                          // config.json "architectures"
  // Routed experts stored fused per layer: experts.gate_up_proj (E, 2I, C), experts.down_proj (E, C, I).
  bool fused_experts = false;
};

// The layout an architecture's checkpoints use, or nullptr for HF's names.
inline const CheckpointLayout* checkpoint_layout(std::string_view architecture) {
  if (architecture == "deepseek_v3") {
    // transformers' DeepseekV3Config names the routed experts its own way.
    static const CheckpointLayout hf_deepseek{.config_fields = {{"num_experts", "n_routed_experts"}},
                                              .class_name = "DeepseekV3ForCausalLM"};
    return &hf_deepseek;
  }
  if (architecture == "mini_deepseekv3") {
    // Mini-LLM (mini_models/attention/mla.py, ffn/swiglu.py, mini_deepseekv3/).
    static const CheckpointLayout mini_llm{
        .segments = {{"q_proj", "wq"},
                     {"q_a_proj", "wq_a"},
                     {"q_a_layernorm", "q_norm"},
                     {"q_b_proj", "wq_b"},
                     {"kv_a_proj_with_mqa", "wkv_a"},
                     {"kv_a_layernorm", "kv_norm"},
                     {"kv_b_proj", "wkv_b"},
                     {"o_proj", "wo"},
                     {"gate_proj", "w1"},
                     {"down_proj", "w2"},
                     {"up_proj", "w3"},
                     {"e_score_correction_bias", "bias"}},
        .config_fields = {{"first_k_dense_replace", "num_dense_layers"},
                          {"num_experts", "n_routed_experts"},
                          {"num_experts_per_tok", "n_activated_experts"},
                          {"n_group", "n_expert_groups"},
                          {"topk_group", "n_limited_groups"},
                          {"routed_scaling_factor", "route_scale"}},
        .config_constants = {{"use_noaux_load_balance", true}, {"attention_bias", false}},
        .class_name = "MiniDeepSeekV3ForCausalLM"};
    return &mini_llm;
  }
  if (architecture == "mini_qwen3_next" || architecture == "mini_llama3") {
    // Mini-LLM (mini_models/ffn/swiglu.py; mini_qwen3_next's experts are fused parameters).
    static const CheckpointLayout qwen3_next{.segments = {{"gate_proj", "w1"}, {"down_proj", "w2"}, {"up_proj", "w3"}},
                                             .class_name = "MiniQwen3NextForCausalLM",
                                             .fused_experts = true};
    static const CheckpointLayout llama3{.segments = {{"gate_proj", "w1"}, {"down_proj", "w2"}, {"up_proj", "w3"}},
                                         .class_name = "MiniLlama3ForCausalLM"};
    return architecture == "mini_llama3" ? &llama3 : &qwen3_next;
  }
  return nullptr;
}

namespace detail {
// Renames each dotted segment of `key` found in the layout (ours -> theirs, or back).
inline std::string rename_segments(const std::string& key, const CheckpointLayout& layout, bool to_theirs) {
  std::string out;
  size_t start = 0;
  while (start <= key.size()) {
    const size_t end = std::min(key.find('.', start), key.size());
    std::string segment = key.substr(start, end - start);
    for (const auto& [ours, theirs] : layout.segments) {
      if (segment == (to_theirs ? ours : theirs)) {
        segment = to_theirs ? theirs : ours;
        break;
      }
    }
    out += (start ? "." : "") + segment;
    start = end + 1;
  }
  return out;
}

inline std::string list_some(const std::vector<std::string>& v, size_t n = 8) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < n; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > n) s += ", ... (" + std::to_string(v.size()) + " in all)";
  return s;
}

inline std::string shape_of(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

// transformers 5 stores Qwen3-MoE experts fused per layer: experts.gate_up_proj (E, 2I, H) and
// experts.down_proj (E, H, I). Split them into the per-expert HF 4.x names our modules use.
inline void split_fused_experts(std::map<std::string, at::Tensor>& t) {
  static const std::regex fused(R"((.*\.mlp\.experts)\.(gate_up_proj|down_proj)$)");
  std::vector<std::string> keys;
  for (const auto& [k, v] : t) keys.push_back(k);
  for (const auto& k : keys) {
    std::smatch m;
    if (!std::regex_match(k, m, fused)) continue;
    const auto w = t.at(k);
    const std::string prefix = m[1];
    for (int64_t e = 0; e < w.size(0); ++e) {
      const auto pe = prefix + "." + std::to_string(e) + ".";
      if (m[2] == "gate_up_proj") {
        const auto halves = w[e].chunk(2, 0);  // (2I, H) -> gate (I, H), up (I, H)
        t[pe + "gate_proj.weight"] = halves[0];
        t[pe + "up_proj.weight"] = halves[1];
      } else {
        t[pe + "down_proj.weight"] = w[e];  // (H, I)
      }
    }
    t.erase(k);
  }
}

// The inverse of split_fused_experts, on our names: each layer's experts.N.{gate,up,down}_proj.weight
// become experts.gate_up_proj (E, 2I, C) and experts.down_proj (E, C, I), in place of the first.
inline void fuse_experts(io::NamedTensors& tensors) {
  static const std::regex expert(R"((.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$)");
  std::map<std::string, std::map<std::string, std::vector<at::Tensor>>> layers;  // prefix -> part -> per expert
  io::NamedTensors out;
  for (auto& [k, v] : tensors) {
    std::smatch m;
    if (!std::regex_match(k, m, expert)) {
      out.emplace_back(k, v);
      continue;
    }
    auto& parts = layers[m[1]];
    const bool first = parts.empty();
    auto& list = parts[m[3]];
    const auto e = static_cast<size_t>(std::stoll(m[2]));
    if (list.size() <= e) list.resize(e + 1);
    list[e] = v;
    if (first) out.emplace_back(std::string(m[1]) + ".gate_up_proj", at::Tensor());  // filled below
  }
  for (auto& [k, v] : out) {
    if (v.defined()) continue;
    const auto prefix = k.substr(0, k.size() - std::string(".gate_up_proj").size());
    auto& parts = layers.at(prefix);
    std::vector<at::Tensor> gate_up;
    for (size_t e = 0; e < parts["gate_proj"].size(); ++e) gate_up.push_back(at::cat({parts["gate_proj"][e], parts["up_proj"][e]}, 0));
    v = at::stack(gate_up);  // (E, 2I, C)
  }
  for (auto& [prefix, parts] : layers) out.emplace_back(prefix + ".down_proj", at::stack(parts["down_proj"]));  // (E, C, I)
  tensors = std::move(out);
}

// Compares the parameter shapes `cfg` implies (the model built on the meta device: no memory) with
// the checkpoint's tensors (views of the mapped files), before anything is allocated. A mismatch
// names the parameter, both shapes, and the config fields whose value the differing sizes are.
// A checkpoint's tensors under our parameter names: fused experts split, another layout's names
// (the architecture's CheckpointLayout) translated.
inline void to_our_names(std::map<std::string, at::Tensor>& tensors, std::string_view architecture) {
  split_fused_experts(tensors);
  if (const auto* layout = checkpoint_layout(architecture)) {
    std::map<std::string, at::Tensor> renamed;
    for (auto& [k, v] : tensors) renamed.emplace(rename_segments(k, *layout, false), std::move(v));
    tensors = std::move(renamed);
  }
}

inline void check_shapes_before_loading(const ModelConfig& cfg, std::map<std::string, at::Tensor> tensors,
                                        const std::filesystem::path& config_file) {
  std::unique_ptr<AnyCausalLM> meta;
  try {
    meta = make_model(cfg, at::TensorOptions().device(at::kMeta));
  } catch (const ConfigError& e) {
    throw ConfigError(config_file.string() + ": " + e.what());
  }
  to_our_names(tensors, meta->architecture());
  const nlohmann::json fields = meta->config();
  for (const auto& p : meta->module().named_parameters()) {
    const auto it = tensors.find(p.key());
    if (it == tensors.end() || it->second.sizes() == p.value().sizes()) continue;  // missing keys: load_state's report
    std::string named;
    for (int64_t d = 0; d < p.value().dim(); ++d) {
      const auto want = p.value().size(d);
      if (d < it->second.dim() && it->second.size(d) == want) continue;
      for (const auto& [key, v] : fields.items())
        if (v.is_number_integer() && v.get<int64_t>() == want) named += (named.empty() ? "" : ", ") + key + " " + std::to_string(want);
    }
    throw CheckpointError(config_file.string() + " does not match the weights: " + p.key() + " is " +
                          shape_of(it->second) + " in the checkpoint, the config makes it " + shape_of(p.value()) +
                          (named.empty() ? "" : " (" + named + ")"));
  }
}

}  // namespace detail

// Copies `tensors` into the module's parameters (converting dtype and device). Throws on a shape
// mismatch; with `strict`, also when any key is missing or unexpected.
inline LoadReport load_state(torch::nn::Module& module, const ModelConfig& c, std::map<std::string, at::Tensor> tensors,
                             bool strict = true) {
  detail::to_our_names(tensors, c.architecture);
  LoadReport r;
  at::NoGradGuard no_grad;
  for (auto& p : module.named_parameters()) {
    auto it = tensors.find(p.key());
    if (it == tensors.end()) {
      r.missing.push_back(p.key());
      continue;
    }
    if (it->second.sizes() != p.value().sizes())
      throw CheckpointError("shape mismatch for " + p.key() + ": checkpoint " + detail::shape_of(it->second) +
                            ", model " + detail::shape_of(p.value()) + " (does config.json match the weights?)");
    p.value().copy_(it->second);
    tensors.erase(it);
  }
  for (const auto& [k, v] : tensors) {
    const bool tied_head = k == "lm_head.weight" && c.tie_word_embeddings;
    const bool rotary_buffer = k.find("rotary_emb.inv_freq") != std::string::npos;
    (tied_head || rotary_buffer ? r.ignored : r.unexpected).push_back(k);
  }
  if (strict && (!r.missing.empty() || !r.unexpected.empty())) {
    std::string msg = "checkpoint does not match the model";
    if (!r.missing.empty()) msg += "; missing: " + detail::list_some(r.missing);
    if (!r.unexpected.empty()) msg += "; unexpected: " + detail::list_some(r.unexpected);
    throw CheckpointError(msg);
  }
  return r;
}

// Loads an HF-layout checkpoint directory into the architecture its config names.
inline std::unique_ptr<AnyCausalLM> load_pretrained(const std::filesystem::path& dir,
                                                    const at::TensorOptions& options = {}, bool strict = true,
                                                    LoadReport* report = nullptr) {
  if (!std::filesystem::is_directory(dir)) throw CheckpointError(dir.string() + ": not a checkpoint directory");
  auto cfg = load_config(dir / "config.json");
  cfg.architecture = resolve_architecture(cfg);
  std::map<std::string, at::Tensor> tensors;
  try {
    tensors = io::load_safetensors_dir(dir);
  } catch (const std::exception& e) {
    throw CheckpointError(dir.string() + ": " + e.what());
  }
  detail::check_shapes_before_loading(cfg, tensors, dir / "config.json");
  auto model = make_model(cfg, options);
  try {
    auto r = load_state(model->module(), model->config(), std::move(tensors), strict);
    if (report != nullptr) *report = std::move(r);
  } catch (const std::exception& e) {
    throw CheckpointError(dir.string() + ": " + e.what());
  }
  return model;
}

// The HF model_type and class whose math equals an architecture's, for configs transformers loads.
// MiniMind-3 differs from Qwen3 only in RMSNorm rounding below fp32; MiniMind2's MoE (shared
// experts, per-sequence aux loss) has no transformers class and keeps MiniMind's own model_type.
inline std::pair<std::string, std::string> hf_export(std::string_view arch) {
  if (arch == "llama") return {"llama", "LlamaForCausalLM"};
  if (arch == "qwen2") return {"qwen2", "Qwen2ForCausalLM"};
  if (arch == "qwen3" || arch == "minimind3") return {"qwen3", "Qwen3ForCausalLM"};
  if (arch == "qwen3_moe" || arch == "minimind3_moe") return {"qwen3_moe", "Qwen3MoeForCausalLM"};
  if (arch == "minimind2_moe") return {"minimind", "MiniMindForCausalLM"};
  if (arch == "qwen3_next") return {"qwen3_next", "Qwen3NextForCausalLM"};
  return {"minillm", ""};
}

// Writes config.json and the weights (as `dtype`) into `dir`; each file is replaced atomically.
inline void save_pretrained(AnyCausalLM& model, const std::filesystem::path& dir, at::ScalarType dtype = at::kFloat,
                            uint64_t max_shard_bytes = 5'000'000'000ULL) {
  std::filesystem::create_directories(dir);
  auto cfg = model.config();
  cfg.architecture = std::string(model.architecture());
  auto [model_type, cls] = hf_export(cfg.architecture);
  const auto* layout = checkpoint_layout(cfg.architecture);
  if (layout != nullptr) {
    model_type = cfg.architecture;
    cls = layout->class_name;
  }
  cfg.model_type = model_type;
  nlohmann::json j = cfg;
  if (!cls.empty()) j["architectures"] = {cls};
  if (layout != nullptr) {
    for (const auto& [ours, theirs] : layout->config_fields) {
      if (!j.contains(ours)) continue;
      j[theirs] = j[ours];
      j.erase(ours);
    }
    j.update(layout->config_constants);
  }
  const char* dtype_name = dtype == at::kBFloat16 ? "bfloat16" : dtype == at::kHalf ? "float16" : "float32";
  j["dtype"] = dtype_name;        // transformers 5
  j["torch_dtype"] = dtype_name;  // transformers 4
  io::write_text_file_atomic(dir / "config.json", j.dump(2) + "\n");
  io::NamedTensors tensors;
  for (const auto& p : model.module().named_parameters()) tensors.emplace_back(p.key(), p.value().to(dtype));
  if (layout != nullptr) {
    if (layout->fused_experts) detail::fuse_experts(tensors);
    for (auto& [k, v] : tensors)
      if (!k.ends_with(".experts.gate_up_proj") && !k.ends_with(".experts.down_proj")) k = detail::rename_segments(k, *layout, true);
  }
  io::save_safetensors_dir(dir, tensors, max_shard_bytes);
}

}  // namespace minillm
