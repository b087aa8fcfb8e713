// The one place that lists every architecture and preset. Programs that learn the architecture
// only at run time (from config.json or a preset name) get a type-erased AnyCausalLM here; code
// that knows its architecture uses CausalLM<A> directly.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "minillm/presets.hpp"

namespace minillm {

using Architectures = std::tuple<arch::Llama, arch::Qwen2, arch::Qwen3, arch::MiniMind3, arch::MiniMind2MoE, arch::MiniMind3MoE,
                                 arch::Qwen3MoE, arch::ClassicNoPE, arch::DeepSeekV3, arch::MiniDeepSeekV3, arch::Qwen3Next,
                                 arch::MiniQwen3Next, arch::MiniLlama3>;
using Presets = std::tuple<presets::tiny, presets::small, presets::medium, presets::moe, presets::minimind2_small,
                           presets::minimind2, presets::minimind2_moe, presets::minimind3, presets::minimind3_moe,
                           presets::llama3_2_1b, presets::qwen3_0_6b, presets::mini_deepseekv3, presets::deepseek_tiny,
                           presets::mini_qwen3_next, presets::mini_llama3, presets::qwen3_next_tiny>;

namespace detail {
template <class Tuple>
std::vector<std::string> names_of() {
  return std::apply([](auto... t) { return std::vector<std::string>{std::string(decltype(t)::name)...}; }, Tuple{});
}
inline std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}
}  // namespace detail

inline std::vector<std::string> architecture_names() { return detail::names_of<Architectures>(); }
inline std::vector<std::string> preset_names() { return detail::names_of<Presets>(); }

namespace detail {
// HF config fields that change the math in ways no minillm architecture implements. A config that
// sets them is refused rather than computed wrongly.
inline void check_supported_hf_fields(const ModelConfig& c) {
  const auto& x = c.extra;
  auto is = [&](const char* key, auto pred) { return x.contains(key) && !x[key].is_null() && pred(x[key]); };
  auto fail = [&](const std::string& what) {
    throw ConfigError(what + " (model_type \"" + c.model_type + "\") is not supported by minillm's architectures");
  };
  if (is("attention_bias", [](const auto& v) { return v.is_boolean() && v.template get<bool>(); }))
    fail("attention_bias: true");
  if (is("mlp_bias", [](const auto& v) { return v.is_boolean() && v.template get<bool>(); })) fail("mlp_bias: true");
  if (is("hidden_act", [](const auto& v) { return !(v.is_string() && v.template get<std::string>() == "silu"); }))
    fail("hidden_act " + x["hidden_act"].dump());
  if (is("use_sliding_window", [](const auto& v) { return v.is_boolean() && v.template get<bool>(); }))
    fail("use_sliding_window: true");
}
}  // namespace detail

// The architecture a config describes: its explicit "minillm_arch", else derived from HF's
// model_type. MiniMind's model_type "minimind" covers two generations: MiniMind2 configs carry
// "n_routed_experts", MiniMind-3 configs do not; "use_moe" selects the MoE variant.
inline std::string resolve_architecture(const ModelConfig& c) {
  if (!c.architecture.empty()) return c.architecture;
  detail::check_supported_hf_fields(c);
  const auto& t = c.model_type;
  if (t == "llama" || t == "mistral") return "llama";
  if (t == "qwen2") return "qwen2";
  if (t == "qwen3") return "qwen3";
  if (t == "qwen3_moe") return "qwen3_moe";
  if (t == "deepseek_v3") return "deepseek_v3";
  if (t == "mini_deepseekv3") return "mini_deepseekv3";
  if (t == "qwen3_next") return "qwen3_next";
  if (t == "mini_qwen3_next") return "mini_qwen3_next";
  if (t == "mini_llama3") return "mini_llama3";
  if (t == "minimind") {
    const bool moe = c.extra.contains("use_moe") && c.extra["use_moe"].is_boolean() && c.extra["use_moe"].get<bool>();
    const bool mm2 = c.extra.contains("seq_aux") || c.extra.contains("scoring_func");
    if (mm2) return moe ? "minimind2_moe" : "llama";
    return moe ? "minimind3_moe" : "minimind3";
  }
  throw ConfigError("model_type \"" + t + "\" is not supported; supported: llama, mistral, qwen2, qwen3, qwen3_moe, minimind, " +
                    "deepseek_v3, mini_deepseekv3, qwen3_next, mini_qwen3_next, mini_llama3 " +
                    "(or set \"minillm_arch\" to one of: " + detail::join(architecture_names()) + ")");
}

// Calls f.template operator()<A>() for the architecture named `name`.
template <class F>
auto with_architecture(std::string_view name, F&& f) {
  using R = decltype(f.template operator()<arch::Llama>());
  std::optional<std::conditional_t<std::is_void_v<R>, int, R>> result;
  bool found = false;
  std::apply(
      [&](auto... a) {
        (
            [&] {
              using A = decltype(a);
              if (found || A::name != name) return;
              found = true;
              if constexpr (std::is_void_v<R>) {
                f.template operator()<A>();
              } else {
                result.emplace(f.template operator()<A>());
              }
            }(),
            ...);
      },
      Architectures{});
  if (!found)
    throw ConfigError("unknown architecture \"" + std::string(name) + "\"; known: " + detail::join(architecture_names()));
  if constexpr (!std::is_void_v<R>) return std::move(*result);
}

// The default config of the preset named `name` (its "architecture" field set).
inline ModelConfig preset_config(std::string_view name) {
  std::optional<ModelConfig> found;
  std::apply([&](auto... p) { ((decltype(p)::name == name ? void(found = decltype(p)::config()) : void()), ...); },
             Presets{});
  if (!found) throw ConfigError("unknown preset \"" + std::string(name) + "\"; known: " + detail::join(preset_names()));
  return *found;
}

// A model whose architecture is chosen at run time.
class AnyCausalLM {
 public:
  virtual ~AnyCausalLM() = default;
  virtual CausalLMOutput forward(const at::Tensor& input_ids, const ForwardOptions& options = {}) = 0;
  virtual torch::nn::Module& module() = 0;
  virtual const ModelConfig& config() const = 0;
  virtual std::string_view architecture() const = 0;
  virtual KVCache make_cache(int64_t batch, int64_t capacity) const = 0;
  virtual bool capturable_training() const = 0;  // see CausalLMImpl::capturable_training
  // Multi-token prediction (see CausalLMImpl::mtp_logits).
  virtual bool has_mtp() const = 0;
  virtual void drop_mtp() = 0;
  virtual KVCache make_mtp_cache(int64_t batch, int64_t capacity) const = 0;
  virtual at::Tensor mtp_logits(const at::Tensor& next_ids, const at::Tensor& hidden, KVCache* cache) = 0;
};

template <Architecture A>
class CausalLMHandle final : public AnyCausalLM {
 public:
  CausalLMHandle(const ModelConfig& c, const at::TensorOptions& options) : model(c, options) {}
  CausalLMOutput forward(const at::Tensor& ids, const ForwardOptions& o) override { return model->forward(ids, o); }
  torch::nn::Module& module() override { return *model; }
  const ModelConfig& config() const override { return model->config(); }
  std::string_view architecture() const override { return A::name; }
  KVCache make_cache(int64_t batch, int64_t capacity) const override { return model->make_cache(batch, capacity); }
  bool capturable_training() const override { return model->capturable_training(); }
  bool has_mtp() const override { return model->has_mtp(); }
  void drop_mtp() override { model->drop_mtp(); }
  KVCache make_mtp_cache(int64_t batch, int64_t capacity) const override { return model->make_mtp_cache(batch, capacity); }
  at::Tensor mtp_logits(const at::Tensor& next_ids, const at::Tensor& hidden, KVCache* cache) override {
    return model->mtp_logits(next_ids, hidden, cache);
  }

  CausalLM<A> model;
};

inline std::unique_ptr<AnyCausalLM> make_model(const ModelConfig& c, const at::TensorOptions& options = {}) {
  return with_architecture(resolve_architecture(c), [&]<class A>() -> std::unique_ptr<AnyCausalLM> {
    return std::make_unique<CausalLMHandle<A>>(c, options);
  });
}

}  // namespace minillm
