// A pre-norm residual decoder block:
//   h   = x + self_attn(input_layernorm(x))
//   out = h + mlp(post_attention_layernorm(h))
// When the architecture's attention or ffn slot is a PerLayer choice, the block holds the kind its
// layer uses (registered under the same name, so checkpoints keep HF's names).
#pragma once

#include <optional>
#include <utility>
#include <variant>

#include "minillm/concepts.hpp"

namespace minillm {

namespace detail {

template <class Kinds>
struct ffn_variant;
template <class... K>
struct ffn_variant<std::tuple<K...>> {
  using type = std::variant<std::shared_ptr<typename K::module>...>;
};
template <class Kinds, class Norm, class Position>
struct attention_variant;
template <class... K, class Norm, class Position>
struct attention_variant<std::tuple<K...>, Norm, Position> {
  using type = std::variant<std::shared_ptr<typename K::template module<Norm, Position>>...>;
};

// The variant holding kind `index` of `Kinds`, built by make.template operator()<Kind>().
template <class Variant, class Kinds, class Make>
Variant make_kind(size_t index, std::string_view slot, Make&& make) {
  std::optional<Variant> out;
  [&]<size_t... I>(std::index_sequence<I...>) {
    ((I == index ? void(out.emplace(std::in_place_index<I>, make.template operator()<std::tuple_element_t<I, Kinds>>()))
                 : void()),
     ...);
  }(std::make_index_sequence<std::tuple_size_v<Kinds>>{});
  if (!out)
    config_fail(slot, " kind ", index, " does not exist (the architecture names ", std::tuple_size_v<Kinds>, ")");
  return std::move(*out);
}

// The name a token mixer is registered under (and so its checkpoint prefix): "self_attn" unless
// the module names its own (Qwen3-Next's linear layers: "linear_attn").
template <class M>
constexpr std::string_view attention_module_name() {
  if constexpr (requires { M::module_name; }) return M::module_name;
  else return "self_attn";
}

template <class M>
std::shared_ptr<M> make_ffn_module(const ModelConfig& c, int64_t layer, const at::TensorOptions& options) {
  if constexpr (built_for_layer<M>) return std::make_shared<M>(c, layer, options);
  else return std::make_shared<M>(c, options);
}

}  // namespace detail

template <Architecture A>
class BlockImpl : public torch::nn::Module {
 public:
  using Norm = typename A::norm::module;
  using AttentionKinds = slot_kinds_t<typename A::attention>;
  using FfnKinds = slot_kinds_t<typename A::ffn>;
  using Attention = typename detail::attention_variant<AttentionKinds, typename A::norm, typename A::position>::type;
  using Ffn = typename detail::ffn_variant<FfnKinds>::type;

  BlockImpl(const ModelConfig& c, int64_t layer, const at::TensorOptions& options)
      : BlockImpl(c, layer, slot_kind<typename A::attention>(c, layer), slot_kind<typename A::ffn>(c, layer), options) {}

  // With the kinds given: a multi-token-prediction block picks its own (see CausalLM).
  BlockImpl(const ModelConfig& c, int64_t layer, size_t attention_kind, size_t ffn_kind, const at::TensorOptions& options) {
    input_layernorm = register_module("input_layernorm", std::make_shared<Norm>(c.hidden_size, c.rms_norm_eps, options));
    self_attn = detail::make_kind<Attention, AttentionKinds>(attention_kind, "attention", [&]<class K>() {
      using M = typename K::template module<typename A::norm, typename A::position>;
      return register_module(std::string(detail::attention_module_name<M>()), std::make_shared<M>(c, layer, options));
    });
    post_attention_layernorm =
        register_module("post_attention_layernorm", std::make_shared<Norm>(c.hidden_size, c.rms_norm_eps, options));
    mlp = detail::make_kind<Ffn, FfnKinds>(ffn_kind, "ffn", [&]<class K>() {
      return register_module("mlp", detail::make_ffn_module<typename K::module>(c, layer, options));
    });
  }

  at::Tensor forward(const at::Tensor& x, const AttentionContext& ctx) {  // (B, T, C)
    const auto normed = input_layernorm->forward(x);
    const auto h = x + std::visit([&](auto& m) { return m->forward(normed, ctx); }, self_attn);
    const auto normed_h = post_attention_layernorm->forward(h);
    return h + std::visit([&](auto& m) { return m->forward(normed_h); }, mlp);
  }

  LayerCache make_cache(int64_t batch, int64_t capacity, const at::TensorOptions& options) const {
    return std::visit([&](const auto& m) { return m->make_cache(batch, capacity, options); }, self_attn);
  }

  // The feed-forward's auxiliary loss from the last training forward (undefined if it has none).
  at::Tensor aux_loss() {
    return std::visit(
        [](auto& m) {
          if constexpr (has_aux_loss<std::remove_reference_t<decltype(*m)>>) return m->aux_loss();
          else return at::Tensor();
        },
        mlp);
  }

  // The model's aux loss from every layer's aux_loss(), as the feed-forward kind that has one
  // combines them (an architecture's MoE kinds share one router).
  static at::Tensor combine_aux(const std::vector<at::Tensor>& layers) {
    std::optional<at::Tensor> out;
    [&]<size_t... I>(std::index_sequence<I...>) {
      (
          [&] {
            using M = typename std::tuple_element_t<I, FfnKinds>::module;
            if constexpr (requires { M::combine_aux(layers); })
              if (!out) out = M::combine_aux(layers);
          }(),
          ...);
    }(std::make_index_sequence<std::tuple_size_v<FfnKinds>>{});
    return out ? *out : at::stack(layers).sum();
  }

  bool reads_host_in_training() const {
    return std::visit([](const auto& m) { return minillm::reads_host_in_training(*m); }, mlp);
  }

  // Tokens per routed expert in the feed-forward's last routed forward: int64 (E) on the CPU, or
  // undefined for a dense feed-forward.
  at::Tensor expert_load() const {
    return std::visit(
        [](const auto& m) {
          if constexpr (requires { m->expert_load(); }) return m->expert_load();
          else return at::Tensor();
        },
        mlp);
  }

  std::shared_ptr<Norm> input_layernorm;
  Attention self_attn;  // registered as attention_module_name() of the kind
  std::shared_ptr<Norm> post_attention_layernorm;
  Ffn mlp;
};

// TORCH_MODULE does not take class templates; this is its equivalent.
template <Architecture A>
using Block = torch::nn::ModuleHolder<BlockImpl<A>>;

}  // namespace minillm
