// ModelConfig: the runtime sizes of a model ("sizes are data"), read from and written to HF-style
// config.json. Which blocks a model is made of is its type (see arch.hpp); this struct only says
// how big they are.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "minillm/io/atomic_write.hpp"

namespace minillm {

// Thrown for invalid configurations and unreadable config files; the message names the value.
struct ConfigError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// YaRN context extension with MiniMind's constants (model/model_minimind.py: factor 16 over
// 2048 original positions, beta_fast 32, beta_slow 1, attention_factor 1.0).
struct RopeScaling {
  std::string type = "yarn";
  double factor = 16.0;
  int64_t original_max_position_embeddings = 2048;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double attention_factor = 1.0;
  // DeepSeek's YaRN: the softmax scale is multiplied by (0.1 * mscale_all_dim * ln(factor) + 1)^2
  // (multi-head latent attention only; 0 = off).
  double mscale_all_dim = 0.0;
  bool operator==(const RopeScaling&) const = default;
};

struct ModelConfig {
  std::string model_type = "llama";  // HF model_type
  std::string architecture;          // minillm architecture name ("minillm_arch"); "" = from model_type
  int64_t vocab_size = 6400;
  int64_t hidden_size = 512;
  int64_t num_hidden_layers = 8;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 2;
  int64_t head_dim = 0;  // 0 means hidden_size / num_attention_heads
  int64_t intermediate_size = 1408;
  int64_t max_position_embeddings = 32768;
  double rope_theta = 1e6;
  std::optional<RopeScaling> rope_scaling;
  double rms_norm_eps = 1e-5;
  bool tie_word_embeddings = true;
  double initializer_range = 0.02;
  // Mixture of experts (read only by MoE architectures).
  int64_t num_experts = 0;  // routed experts; HF "num_experts" / "num_local_experts", MiniMind2 "n_routed_experts"
  int64_t num_experts_per_tok = 2;
  int64_t n_shared_experts = 0;
  int64_t moe_intermediate_size = 0;  // 0 means intermediate_size
  bool norm_topk_prob = true;
  double router_aux_loss_coef = 0.01;  // MiniMind2 "aux_loss_alpha"
  // DeepSeek-V3 routing (read only by its router; Mini-LLM's names in quotes).
  int64_t first_k_dense_replace = 0;     // "num_dense_layers": layers [0, k) use the dense feed-forward
  int64_t n_group = 1;                   // "n_expert_groups"
  int64_t topk_group = 1;                // "n_limited_groups": groups kept per token
  double routed_scaling_factor = 1.0;    // "route_scale"
  double bias_update_speed = 0.0;        // aux-loss-free balancing step; 0 keeps the selection bias fixed (HF)
  double seq_aux_alpha = 0.0;            // sequence-wise aux loss weight ("use_seq_aux" false: 0)
  // Multi-head latent attention (DeepSeek-V2/V3; read only by its policy).
  int64_t q_lora_rank = 0;  // 0 (JSON null): a plain q projection
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;  // when set, also the rotary dimension
  int64_t v_head_dim = 0;
  bool rope_interleave = false;  // rotary pairs are adjacent dims (DeepSeek's checkpoints), not halves
  double partial_rotary_factor = 1.0;  // the leading fraction of each head the rotary embedding turns (Qwen3-Next 0.25)
  // Hybrid token mixers (Qwen3-Next; read only by architectures whose attention slot is per layer):
  // HF's layer_types ("linear_attention" / "full_attention" per layer), or, when empty, every
  // full_attention_interval-th layer full and the others linear.
  std::vector<std::string> layer_types;
  int64_t full_attention_interval = 4;
  // Gated DeltaNet linear attention (Qwen3-Next).
  int64_t linear_num_key_heads = 0;
  int64_t linear_num_value_heads = 0;
  int64_t linear_key_head_dim = 0;
  int64_t linear_value_head_dim = 0;
  int64_t linear_conv_kernel_dim = 4;
  // Dense vs MoE feed-forward per layer (Qwen3-MoE / Qwen3-Next; read by layers::SparseStep): layer
  // i is sparse unless listed in mlp_only_layers or (i + 1) is not a multiple of decoder_sparse_step.
  std::vector<int64_t> mlp_only_layers;
  int64_t decoder_sparse_step = 1;
  int64_t shared_expert_intermediate_size = 0;  // one gated shared expert (Qwen3-Next); 0 = none
  // Multi-token prediction of depth 1 (Mini-LLM's "use_mtp"), weighted by mtp_loss_lambda.
  bool use_mtp = false;
  double mtp_loss_lambda = 0.0001;
  // Fields this struct does not model (token ids, transformers_version, ...), kept verbatim so a
  // config survives a read/write round trip.
  nlohmann::json extra = nlohmann::json::object();

  int64_t resolved_head_dim() const {
    return head_dim > 0 ? head_dim : (num_attention_heads > 0 ? hidden_size / num_attention_heads : 0);
  }
  // Dimensions the rotary embedding turns: MLA's decoupled rope part, else the head's leading
  // partial_rotary_factor (HF: int(head_dim * factor)).
  int64_t rotary_dim() const {
    if (qk_rope_head_dim > 0) return qk_rope_head_dim;
    return static_cast<int64_t>(static_cast<double>(resolved_head_dim()) * partial_rotary_factor);
  }
  // Whether layer `layer` of a hybrid model uses full attention (else linear attention).
  bool full_attention_layer(int64_t layer) const {
    if (!layer_types.empty()) return layer_types.at(static_cast<size_t>(layer)) == "full_attention";
    return (layer + 1) % full_attention_interval == 0;
  }
  // The layer_types full_attention_interval implies (what configs written for HF spell out).
  std::vector<std::string> interval_layer_types() const {
    std::vector<std::string> types;
    for (int64_t i = 0; i < num_hidden_layers && full_attention_interval > 0; ++i)
      types.push_back((i + 1) % full_attention_interval == 0 ? "full_attention" : "linear_attention");
    return types;
  }
  int64_t resolved_moe_intermediate_size() const {
    return moe_intermediate_size > 0 ? moe_intermediate_size : intermediate_size;
  }

  // Checks the sizes every architecture relies on. Architectures add their own checks (MoE fields,
  // even head_dim for RoPE) through their policies' validate(); CausalLM runs all of them before
  // allocating anything.
  void validate() const;

  bool operator==(const ModelConfig&) const = default;
};

namespace detail {

template <class... Parts>
[[noreturn]] void config_fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw ConfigError(os.str());
}

inline void require_positive(std::string_view name, int64_t v) {
  if (v <= 0) config_fail(name, " (", v, ") must be positive");
}
inline void require_positive(std::string_view name, double v) {
  if (!(v > 0.0) || !std::isfinite(v)) config_fail(name, " (", v, ") must be a positive finite number");
}
inline void require_at_most(std::string_view name, int64_t v, int64_t limit) {
  if (v > limit) config_fail(name, " (", v, ") exceeds the supported maximum of ", limit);
}
// Upper bounds, far above any published model, so a corrupt or hostile config.json is refused with
// the field's name before anything is allocated (not by the allocator, or by building 1e9 modules).
struct ConfigLimits {
  static constexpr int64_t vocab_size = int64_t{1} << 24;               // 16,777,216 (largest real ~256k)
  static constexpr int64_t hidden_size = int64_t{1} << 16;              // 65,536 (largest real ~25k)
  static constexpr int64_t layers = 1024;                               // largest real ~160
  static constexpr int64_t heads = 1024;                                // attention and key/value heads
  static constexpr int64_t head_dim = 4096;                             // largest real 256
  static constexpr int64_t intermediate_size = int64_t{1} << 20;        // dense and MoE FFN widths
  static constexpr int64_t max_position_embeddings = int64_t{1} << 26;  // 67M positions (largest real ~10M)
  static constexpr int64_t experts = 4096;                              // routed and shared experts
  static constexpr int64_t expert_modules = int64_t{1} << 16;           // layers x experts (DeepSeek-V3: 15,677)
  static constexpr int64_t matrix_elements = int64_t{1} << 34;          // one weight matrix: 64 GiB in fp32
};

}  // namespace detail

inline void ModelConfig::validate() const {
  using detail::config_fail;
  using detail::require_positive;
  require_positive("vocab_size", vocab_size);
  require_positive("hidden_size", hidden_size);
  require_positive("num_hidden_layers", num_hidden_layers);
  require_positive("num_attention_heads", num_attention_heads);
  require_positive("num_key_value_heads", num_key_value_heads);
  require_positive("intermediate_size", intermediate_size);
  require_positive("max_position_embeddings", max_position_embeddings);
  require_positive("rope_theta", rope_theta);
  require_positive("rms_norm_eps", rms_norm_eps);
  if (head_dim < 0) config_fail("head_dim (", head_dim, ") must be positive, or 0 to derive it");
  if (head_dim == 0 && hidden_size % num_attention_heads != 0)
    config_fail("hidden_size (", hidden_size, ") must be divisible by num_attention_heads (",
                num_attention_heads, ") when head_dim is not set");
  if (num_attention_heads % num_key_value_heads != 0)
    config_fail("num_attention_heads (", num_attention_heads, ") must be divisible by num_key_value_heads (",
                num_key_value_heads, ")");
  if (!(partial_rotary_factor > 0.0 && partial_rotary_factor <= 1.0))
    config_fail("partial_rotary_factor (", partial_rotary_factor, ") must be in (0, 1]");
  if (initializer_range < 0.0 || !std::isfinite(initializer_range))
    config_fail("initializer_range (", initializer_range, ") must be a non-negative finite number");
  // Bounds: each size alone, then the largest matrices they make (no int64 overflow below: each
  // factor is bounded first).
  using Limits = detail::ConfigLimits;
  using detail::require_at_most;
  require_at_most("vocab_size", vocab_size, Limits::vocab_size);
  require_at_most("hidden_size", hidden_size, Limits::hidden_size);
  require_at_most("num_hidden_layers", num_hidden_layers, Limits::layers);
  require_at_most("num_attention_heads", num_attention_heads, Limits::heads);
  require_at_most("num_key_value_heads", num_key_value_heads, Limits::heads);
  require_at_most("head_dim", head_dim, Limits::head_dim);
  require_at_most("intermediate_size", intermediate_size, Limits::intermediate_size);
  require_at_most("moe_intermediate_size", moe_intermediate_size, Limits::intermediate_size);
  require_at_most("max_position_embeddings", max_position_embeddings, Limits::max_position_embeddings);
  require_at_most("num_experts", num_experts, Limits::experts);
  require_at_most("shared_expert_intermediate_size", shared_expert_intermediate_size, Limits::intermediate_size);
  for (const auto& [name, v] : {std::pair{"linear_num_key_heads", linear_num_key_heads},
                                std::pair{"linear_num_value_heads", linear_num_value_heads}})
    require_at_most(name, v, Limits::heads);
  for (const auto& [name, v] : {std::pair{"linear_key_head_dim", linear_key_head_dim},
                                std::pair{"linear_value_head_dim", linear_value_head_dim},
                                std::pair{"linear_conv_kernel_dim", linear_conv_kernel_dim}})
    require_at_most(name, v, Limits::head_dim);
  require_at_most("n_shared_experts", n_shared_experts, Limits::experts);
  // Multi-head latent attention's ranks and head parts (its policy checks that they are positive).
  for (const auto& [name, v] : {std::pair{"q_lora_rank", q_lora_rank}, std::pair{"kv_lora_rank", kv_lora_rank},
                                std::pair{"qk_nope_head_dim", qk_nope_head_dim}, std::pair{"qk_rope_head_dim", qk_rope_head_dim},
                                std::pair{"v_head_dim", v_head_dim}})
    require_at_most(name, v, Limits::hidden_size);
  for (const auto& [name, v] : {std::pair{"num_experts", num_experts}, std::pair{"n_shared_experts", n_shared_experts},
                                std::pair{"moe_intermediate_size", moe_intermediate_size}})
    if (v < 0) config_fail(name, " (", v, ") must not be negative");
  if (num_hidden_layers * (num_experts + n_shared_experts) > Limits::expert_modules)
    config_fail("num_hidden_layers x (num_experts + n_shared_experts) (", num_hidden_layers * (num_experts + n_shared_experts),
                " expert modules) exceeds the supported maximum of ", Limits::expert_modules);
  for (const auto& [what, elements] :
       {std::pair{"vocab_size x hidden_size", vocab_size * hidden_size},
        std::pair{"intermediate_size x hidden_size", intermediate_size * hidden_size},
        std::pair{"moe_intermediate_size x hidden_size", resolved_moe_intermediate_size() * hidden_size},
        std::pair{"num_attention_heads x head_dim x hidden_size", num_attention_heads * resolved_head_dim() * hidden_size}})
    if (elements > Limits::matrix_elements)
      config_fail(what, " (", elements, " elements) exceeds the supported maximum of ", Limits::matrix_elements,
                  " per weight matrix");
  if (rope_scaling) {
    const auto& s = *rope_scaling;
    if (s.type != "yarn")
      config_fail("rope_scaling.type (\"", s.type, "\") is not supported; supported: \"yarn\"");
    if (!(s.factor >= 1.0)) config_fail("rope_scaling.factor (", s.factor, ") must be at least 1");
    require_positive("rope_scaling.original_max_position_embeddings", s.original_max_position_embeddings);
    require_positive("rope_scaling.beta_slow", s.beta_slow);
    if (!(s.beta_fast > s.beta_slow))
      config_fail("rope_scaling.beta_fast (", s.beta_fast, ") must be greater than beta_slow (", s.beta_slow, ")");
    require_positive("rope_scaling.attention_factor", s.attention_factor);
  }
}

// ---- JSON ------------------------------------------------------------------------------------

namespace detail {

inline std::string json_type_name(const nlohmann::json& v) {
  return v.is_number_integer() ? "integer" : std::string(v.type_name());
}

inline void read_json_field(const nlohmann::json& j, const char* key, int64_t& out) {
  const auto& v = j.at(key);
  // Integers beyond int64 (as uint64, or as floats: casting those is undefined) are refused here.
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    config_fail("config field '", key, "' (", v.dump(), ") is out of range");
  } else if (v.is_number_integer()) {
    out = v.get<int64_t>();
  } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) {
    if (!(std::fabs(v.get<double>()) < 9.2e18)) config_fail("config field '", key, "' (", v.dump(), ") is out of range");
    out = static_cast<int64_t>(v.get<double>());
  } else {
    config_fail("config field '", key, "' must be an integer, got ", json_type_name(v), " ", v.dump());
  }
}
inline void read_json_field(const nlohmann::json& j, const char* key, double& out) {
  const auto& v = j.at(key);
  if (!v.is_number()) config_fail("config field '", key, "' must be a number, got ", json_type_name(v), " ", v.dump());
  out = v.get<double>();
}
inline void read_json_field(const nlohmann::json& j, const char* key, bool& out) {
  const auto& v = j.at(key);
  if (!v.is_boolean()) config_fail("config field '", key, "' must be true or false, got ", v.dump());
  out = v.get<bool>();
}
inline void read_json_field(const nlohmann::json& j, const char* key, std::string& out) {
  const auto& v = j.at(key);
  if (!v.is_string()) config_fail("config field '", key, "' must be a string, got ", v.dump());
  out = v.get<std::string>();
}

inline void read_json_field(const nlohmann::json& j, const char* key, std::vector<std::string>& out) {
  const auto& v = j.at(key);
  if (!v.is_array()) config_fail("config field '", key, "' must be a list of strings, got ", v.dump());
  out.clear();
  for (const auto& e : v) {
    if (!e.is_string()) config_fail("config field '", key, "' must be a list of strings, got the element ", e.dump());
    out.push_back(e.get<std::string>());
  }
}
inline void read_json_field(const nlohmann::json& j, const char* key, std::vector<int64_t>& out) {
  const auto& v = j.at(key);
  if (!v.is_array()) config_fail("config field '", key, "' must be a list of integers, got ", v.dump());
  out.clear();
  for (const auto& e : v) {
    if (!e.is_number_integer()) config_fail("config field '", key, "' must be a list of integers, got the element ", e.dump());
    out.push_back(e.get<int64_t>());
  }
}

// Reads `key` (or the first present alias) into `out` if present and not null; removes the key
// from `rest` so what remains there are the fields we do not model.
template <class T>
void take(const nlohmann::json& j, nlohmann::json& rest, std::initializer_list<const char*> keys, T& out) {
  bool taken = false;
  for (const char* key : keys) {
    if (!j.contains(key)) continue;
    if (!taken && !j.at(key).is_null()) {
      read_json_field(j, key, out);
      taken = true;
    }
    rest.erase(key);
  }
}

inline RopeScaling rope_scaling_from_json(const nlohmann::json& s) {
  if (!s.is_object()) config_fail("config field 'rope_scaling' must be an object or null, got ", s.dump());
  RopeScaling r;
  nlohmann::json ignored = s;
  take(s, ignored, {"rope_type", "type"}, r.type);
  take(s, ignored, {"factor"}, r.factor);
  take(s, ignored, {"original_max_position_embeddings"}, r.original_max_position_embeddings);
  take(s, ignored, {"beta_fast"}, r.beta_fast);
  take(s, ignored, {"beta_slow"}, r.beta_slow);
  take(s, ignored, {"attention_factor"}, r.attention_factor);
  take(s, ignored, {"mscale_all_dim"}, r.mscale_all_dim);
  return r;
}

}  // namespace detail

inline void to_json(nlohmann::json& j, const RopeScaling& r) {
  j = {{"type", r.type},
       {"factor", r.factor},
       {"original_max_position_embeddings", r.original_max_position_embeddings},
       {"beta_fast", r.beta_fast},
       {"beta_slow", r.beta_slow},
       {"attention_factor", r.attention_factor}};
  if (r.mscale_all_dim > 0.0) j["mscale_all_dim"] = r.mscale_all_dim;
}

inline void to_json(nlohmann::json& j, const ModelConfig& c) {
  j = c.extra.is_object() ? c.extra : nlohmann::json::object();
  j["model_type"] = c.model_type;
  if (!c.architecture.empty()) j["minillm_arch"] = c.architecture;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  // MLA has no single head_dim; HF's DeepseekV3Config sets it to the rotary part, and so do we.
  j["head_dim"] = c.kv_lora_rank > 0 ? c.qk_rope_head_dim : c.resolved_head_dim();
  j["intermediate_size"] = c.intermediate_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = c.rope_scaling ? nlohmann::json(*c.rope_scaling) : nlohmann::json(nullptr);
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["initializer_range"] = c.initializer_range;
  if (c.num_experts > 0) {
    j["num_experts"] = c.num_experts;
    j["num_experts_per_tok"] = c.num_experts_per_tok;
    j["n_shared_experts"] = c.n_shared_experts;
    j["moe_intermediate_size"] = c.resolved_moe_intermediate_size();
    j["norm_topk_prob"] = c.norm_topk_prob;
    j["router_aux_loss_coef"] = c.router_aux_loss_coef;
    j["first_k_dense_replace"] = c.first_k_dense_replace;
    j["n_group"] = c.n_group;
    j["topk_group"] = c.topk_group;
    j["routed_scaling_factor"] = c.routed_scaling_factor;
    j["bias_update_speed"] = c.bias_update_speed;
    j["seq_aux_alpha"] = c.seq_aux_alpha;
  }
  if (c.kv_lora_rank > 0) {
    j["q_lora_rank"] = c.q_lora_rank > 0 ? nlohmann::json(c.q_lora_rank) : nlohmann::json(nullptr);
    j["kv_lora_rank"] = c.kv_lora_rank;
    j["qk_nope_head_dim"] = c.qk_nope_head_dim;
    j["qk_rope_head_dim"] = c.qk_rope_head_dim;
    j["qk_head_dim"] = c.qk_nope_head_dim + c.qk_rope_head_dim;
    j["v_head_dim"] = c.v_head_dim;
    j["rope_interleave"] = c.rope_interleave;
  }
  if (c.partial_rotary_factor != 1.0) j["partial_rotary_factor"] = c.partial_rotary_factor;
  if (c.linear_num_value_heads > 0) {
    j["layer_types"] = c.layer_types.empty() ? c.interval_layer_types() : c.layer_types;
    if (c.full_attention_interval != 4) j["full_attention_interval"] = c.full_attention_interval;
    j["linear_num_key_heads"] = c.linear_num_key_heads;
    j["linear_num_value_heads"] = c.linear_num_value_heads;
    j["linear_key_head_dim"] = c.linear_key_head_dim;
    j["linear_value_head_dim"] = c.linear_value_head_dim;
    j["linear_conv_kernel_dim"] = c.linear_conv_kernel_dim;
  }
  // HF's defaults ([] and 1) are left out, except for hybrid models, whose Mini-LLM config reads a
  // missing mlp_only_layers as [0, 1, 2].
  if (c.num_experts > 0 && (!c.mlp_only_layers.empty() || c.linear_num_value_heads > 0))
    j["mlp_only_layers"] = c.mlp_only_layers;
  if (c.num_experts > 0 && c.decoder_sparse_step != 1) j["decoder_sparse_step"] = c.decoder_sparse_step;
  if (c.shared_expert_intermediate_size > 0) j["shared_expert_intermediate_size"] = c.shared_expert_intermediate_size;
  if (c.use_mtp) {
    j["use_mtp"] = true;
    j["mtp_loss_lambda"] = c.mtp_loss_lambda;
  }
}

// Reads HF field names (and the aliases MiniMind2 and transformers 5 use). Type errors name the
// field; sizes are not validated here (see ModelConfig::validate).
inline void from_json(const nlohmann::json& j, ModelConfig& c) {
  using detail::take;
  if (!j.is_object()) detail::config_fail("config must be a JSON object, got ", j.type_name());
  c = ModelConfig{};
  nlohmann::json rest = j;
  take(j, rest, {"model_type"}, c.model_type);
  take(j, rest, {"minillm_arch"}, c.architecture);
  take(j, rest, {"vocab_size"}, c.vocab_size);
  take(j, rest, {"hidden_size"}, c.hidden_size);
  take(j, rest, {"num_hidden_layers"}, c.num_hidden_layers);
  take(j, rest, {"num_attention_heads"}, c.num_attention_heads);
  c.num_key_value_heads = c.num_attention_heads;  // HF default when absent
  take(j, rest, {"num_key_value_heads"}, c.num_key_value_heads);
  take(j, rest, {"head_dim"}, c.head_dim);
  take(j, rest, {"intermediate_size"}, c.intermediate_size);
  take(j, rest, {"max_position_embeddings"}, c.max_position_embeddings);
  take(j, rest, {"rope_theta"}, c.rope_theta);
  take(j, rest, {"rms_norm_eps"}, c.rms_norm_eps);
  take(j, rest, {"tie_word_embeddings"}, c.tie_word_embeddings);
  take(j, rest, {"initializer_range"}, c.initializer_range);
  take(j, rest, {"num_experts", "n_routed_experts", "num_local_experts"}, c.num_experts);
  take(j, rest, {"num_experts_per_tok", "n_activated_experts"}, c.num_experts_per_tok);
  take(j, rest, {"n_shared_experts"}, c.n_shared_experts);
  take(j, rest, {"moe_intermediate_size"}, c.moe_intermediate_size);
  take(j, rest, {"norm_topk_prob"}, c.norm_topk_prob);
  take(j, rest, {"router_aux_loss_coef", "aux_loss_alpha"}, c.router_aux_loss_coef);
  take(j, rest, {"first_k_dense_replace", "num_dense_layers"}, c.first_k_dense_replace);
  take(j, rest, {"n_group", "n_expert_groups"}, c.n_group);
  take(j, rest, {"topk_group", "n_limited_groups"}, c.topk_group);
  take(j, rest, {"routed_scaling_factor", "route_scale"}, c.routed_scaling_factor);
  take(j, rest, {"bias_update_speed"}, c.bias_update_speed);
  take(j, rest, {"seq_aux_alpha"}, c.seq_aux_alpha);
  take(j, rest, {"q_lora_rank"}, c.q_lora_rank);  // null stays 0: no q compression
  take(j, rest, {"kv_lora_rank"}, c.kv_lora_rank);
  take(j, rest, {"qk_nope_head_dim"}, c.qk_nope_head_dim);
  take(j, rest, {"qk_rope_head_dim"}, c.qk_rope_head_dim);
  take(j, rest, {"v_head_dim"}, c.v_head_dim);
  take(j, rest, {"rope_interleave"}, c.rope_interleave);
  take(j, rest, {"partial_rotary_factor"}, c.partial_rotary_factor);
  take(j, rest, {"layer_types"}, c.layer_types);
  take(j, rest, {"full_attention_interval"}, c.full_attention_interval);
  // One spelling per model: an explicit list that the interval implies is kept as the interval.
  if (!c.layer_types.empty() && c.layer_types == c.interval_layer_types()) c.layer_types.clear();
  take(j, rest, {"linear_num_key_heads"}, c.linear_num_key_heads);
  take(j, rest, {"linear_num_value_heads"}, c.linear_num_value_heads);
  take(j, rest, {"linear_key_head_dim"}, c.linear_key_head_dim);
  take(j, rest, {"linear_value_head_dim"}, c.linear_value_head_dim);
  take(j, rest, {"linear_conv_kernel_dim"}, c.linear_conv_kernel_dim);
  take(j, rest, {"mlp_only_layers"}, c.mlp_only_layers);
  take(j, rest, {"decoder_sparse_step"}, c.decoder_sparse_step);
  take(j, rest, {"shared_expert_intermediate_size"}, c.shared_expert_intermediate_size);
  take(j, rest, {"use_mtp"}, c.use_mtp);
  take(j, rest, {"mtp_loss_lambda"}, c.mtp_loss_lambda);
  rest.erase("qk_head_dim");  // derived: nope + rope
  // Mini-LLM's switches for its two balancing mechanisms.
  if (j.contains("use_seq_aux") && j["use_seq_aux"].is_boolean() && !j["use_seq_aux"].get<bool>()) c.seq_aux_alpha = 0.0;
  rest.erase("use_seq_aux");
  if (j.contains("use_noaux_load_balance")) {
    if (!(j["use_noaux_load_balance"].is_boolean() && j["use_noaux_load_balance"].get<bool>()))
      detail::config_fail("use_noaux_load_balance ", j["use_noaux_load_balance"].dump(),
                          " is not supported: DeepSeek routing always adds the selection bias");
    rest.erase("use_noaux_load_balance");
  }
  if (j.contains("rope_scaling")) {
    if (!j["rope_scaling"].is_null()) c.rope_scaling = detail::rope_scaling_from_json(j["rope_scaling"]);
    rest.erase("rope_scaling");
  }
  // transformers 5 moved rope_theta and the scaling into "rope_parameters".
  if (j.contains("rope_parameters")) {
    const auto& p = j["rope_parameters"];
    if (p.is_object()) {
      nlohmann::json ignored = p;
      take(p, ignored, {"rope_theta"}, c.rope_theta);
      take(p, ignored, {"partial_rotary_factor"}, c.partial_rotary_factor);
      std::string type = "default";
      take(p, ignored, {"rope_type", "type"}, type);
      if (type != "default") c.rope_scaling = detail::rope_scaling_from_json(p);
    } else if (!p.is_null()) {
      detail::config_fail("config field 'rope_parameters' must be an object or null, got ", p.dump());
    }
    rest.erase("rope_parameters");
  }
  // Make the derived head_dim explicit, so what was read is what gets written.
  if (c.head_dim == 0 && c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0)
    c.head_dim = c.hidden_size / c.num_attention_heads;
  c.extra = std::move(rest);
}

inline ModelConfig load_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot open config file " + path.string());
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(path.string() + ": not valid JSON: " + e.what());
  }
  try {
    return j.get<ModelConfig>();
  } catch (const ConfigError& e) {
    throw ConfigError(path.string() + ": " + e.what());
  }
}

inline void save_config(const ModelConfig& c, const std::filesystem::path& path) {
  io::write_text_file_atomic(path, nlohmann::json(c).dump(2) + "\n");
}

}  // namespace minillm
