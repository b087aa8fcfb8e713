// One concept per policy slot, built from small named pieces so a compiler error names the piece
// that is missing. A policy opts in with `using policy_category = <slot>_tag;` and provides its
// module type; shipped policies have a static_assert next to them.
//
// Slot       policy provides                           module contract
// norm       module                                    Module(dim, eps, options); forward(x) -> x
// position   module                                    Module(cfg, options); encode(positions) -> PositionEncoding;
//                                                      static rotate(x (B,T,H,D), PositionEncoding) -> x
// attention  template <Norm, Position> module          Module(cfg, layer, options); forward(x, AttentionContext);
//                                                      make_cache(batch, capacity, options) -> LayerCache
// ffn        module                                    Module(cfg, options) or Module(cfg, layer, options);
//                                                      forward(x) -> x
// router     module                                    Module(cfg, options); route(x (N,C)) -> Routing;
//                                                      aux_loss(Routing, batch, seq) -> scalar
// An architecture bundles one policy per slot (norm, position, attention, ffn); MoE is an ffn
// policy made of a router policy and an expert (ffn) policy. The attention and ffn slots may name
// several kinds with PerLayer<Rule, Kinds...>: the type fixes which kinds exist, the config which
// layer uses which (DeepSeek-V3's first dense layers, hybrid linear/full attention).
#pragma once

#include <concepts>
#include <cstddef>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "minillm/attention/context.hpp"
#include "minillm/config.hpp"
#include "minillm/core/torch.hpp"

namespace minillm {

struct norm_tag {};
struct position_tag {};
struct attention_tag {};
struct ffn_tag {};
struct router_tag {};

template <class P, class Tag>
concept policy_of = requires { typename P::policy_category; } && std::derived_from<typename P::policy_category, Tag>;

template <class M>
concept torch_module = std::derived_from<M, torch::nn::Module>;

template <class M>
concept maps_tensor_to_tensor = requires(M& m, const at::Tensor& x) {
  { m.forward(x) } -> std::same_as<at::Tensor>;
};

template <class M>
concept built_from_config = std::constructible_from<M, const ModelConfig&, const at::TensorOptions&>;

// ---- norm ----
template <class M>
concept norm_module = torch_module<M> && maps_tensor_to_tensor<M> &&
                      std::constructible_from<M, int64_t, double, const at::TensorOptions&>;
template <class P>
concept NormPolicy = policy_of<P, norm_tag> && norm_module<typename P::module>;

// ---- position ----
template <class M>
concept encodes_positions = requires(M& m, const at::Tensor& positions) {
  { m.encode(positions) } -> std::same_as<PositionEncoding>;
};
template <class M>
concept rotates_heads = requires(const at::Tensor& x, const PositionEncoding& pe) {
  { M::rotate(x, pe) } -> std::same_as<at::Tensor>;
};
template <class M>
concept position_module = torch_module<M> && built_from_config<M> && encodes_positions<M> && rotates_heads<M>;
template <class P>
concept PositionPolicy = policy_of<P, position_tag> && position_module<typename P::module>;

// ---- attention ----
template <class M>
concept attends_in_context = requires(M& m, const at::Tensor& x, const AttentionContext& ctx) {
  { m.forward(x, ctx) } -> std::same_as<at::Tensor>;
};
// Each attention policy says what its layer caches between forwards (see LayerCache).
template <class M>
concept makes_layer_cache = requires(const M& m, int64_t n, const at::TensorOptions& o) {
  { m.make_cache(n, n, o) } -> std::same_as<LayerCache>;
};
template <class M>
concept built_for_layer = std::constructible_from<M, const ModelConfig&, int64_t, const at::TensorOptions&>;
template <class M>
concept attention_module = torch_module<M> && attends_in_context<M> && makes_layer_cache<M> && built_for_layer<M>;
template <class P, class Norm, class Position>
concept AttentionPolicy = policy_of<P, attention_tag> && NormPolicy<Norm> && PositionPolicy<Position> &&
                          attention_module<typename P::template module<Norm, Position>>;

// ---- feed-forward (dense or mixture of experts) ----
template <class M>
concept ffn_module = torch_module<M> && maps_tensor_to_tensor<M> && (built_from_config<M> || built_for_layer<M>);
template <class P>
concept FfnPolicy = policy_of<P, ffn_tag> && ffn_module<typename P::module>;

// An expert is an ffn whose sizes are given directly (routed experts may be narrower than the
// dense intermediate size).
template <class P>
concept ExpertPolicy =
    FfnPolicy<P> && std::constructible_from<typename P::module, int64_t, int64_t, double, const at::TensorOptions&>;

// ---- router ----
struct Routing {
  at::Tensor weights;  // (N, k) mixing weights of the chosen experts
  at::Tensor indices;  // (N, k) int64 expert ids
  at::Tensor probs;    // (N, E) router probabilities over all experts (for the aux loss)
};
template <class M>
concept routes_tokens = requires(M& m, const at::Tensor& x, const Routing& r, int64_t n) {
  { m.route(x) } -> std::same_as<Routing>;
  { m.aux_loss(r, n, n) } -> std::same_as<at::Tensor>;
};
template <class M>
concept router_module = torch_module<M> && built_from_config<M> && routes_tokens<M>;
template <class P>
concept RouterPolicy = policy_of<P, router_tag> && router_module<typename P::module>;

// ---- optional hooks ----
// A policy may check the sizes it relies on; CausalLM calls every hook before allocating.
template <class P>
concept validates_config = requires(const ModelConfig& c) { P::validate(c); };

template <class P>
void validate_policy(const ModelConfig& c) {
  if constexpr (validates_config<P>) P::validate(c);
}

// A module that contributes an auxiliary loss (MoE load balancing) after its forward.
template <class M>
concept has_aux_loss = requires(M& m) {
  { m.aux_loss() } -> std::same_as<at::Tensor>;
};

// A module may say that its training forward reads a value back to the host (MoE routing's
// per-expert token counts), so a training step through it cannot be recorded as a CUDA graph:
// `bool reads_host_in_training() const`.
template <class M>
bool reads_host_in_training(const M& m) {
  if constexpr (requires { m.reads_host_in_training(); }) return m.reads_host_in_training();
  else return false;
}

// ---- per-layer choice ----
// PerLayer<Rule, Kinds...> in the attention or ffn slot: layer i uses Kinds[Rule::kind(cfg, i)].
// Rule::kind must give a valid index for every layer (CausalLM checks it before allocating);
// Rule::validate(cfg), if present, checks the fields the rule reads.
struct per_layer_tag {};
template <class Rule, class... Kinds>
struct PerLayer {
  using policy_category = per_layer_tag;
  using rule = Rule;
  using kinds = std::tuple<Kinds...>;
};

template <class P>
struct slot_kinds {
  using type = std::tuple<P>;
};
template <class Rule, class... Kinds>
struct slot_kinds<PerLayer<Rule, Kinds...>> {
  using type = std::tuple<Kinds...>;
};
template <class P>
using slot_kinds_t = typename slot_kinds<P>::type;

template <class Rule>
concept layer_rule = requires(const ModelConfig& c, int64_t layer) {
  { Rule::kind(c, layer) } -> std::convertible_to<size_t>;
};
template <class P>
concept per_layer = policy_of<P, per_layer_tag> && layer_rule<typename P::rule>;

// Which kind layer `layer` of a slot uses (always 0 for a single policy).
template <class P>
size_t slot_kind(const ModelConfig& c, int64_t layer) {
  if constexpr (per_layer<P>) return static_cast<size_t>(P::rule::kind(c, layer));
  else return 0;
}

template <class Kinds>
struct all_ffn_policies;
template <class... K>
struct all_ffn_policies<std::tuple<K...>> : std::bool_constant<(FfnPolicy<K> && ...)> {};
template <class Kinds, class Norm, class Position>
struct all_attention_policies;
template <class... K, class Norm, class Position>
struct all_attention_policies<std::tuple<K...>, Norm, Position>
    : std::bool_constant<(AttentionPolicy<K, Norm, Position> && ...)> {};

template <class P>
concept FfnSlot = FfnPolicy<P> || (per_layer<P> && all_ffn_policies<slot_kinds_t<P>>::value);
template <class P, class Norm, class Position>
concept AttentionSlot = AttentionPolicy<P, Norm, Position> ||
                        (per_layer<P> && all_attention_policies<slot_kinds_t<P>, Norm, Position>::value);

// ---- architecture ----
template <class A>
concept names_all_slots = requires {
  typename A::norm;
  typename A::position;
  typename A::attention;
  typename A::ffn;
  { A::name } -> std::convertible_to<std::string_view>;
};
template <class A>
concept Architecture = names_all_slots<A> && NormPolicy<typename A::norm> && PositionPolicy<typename A::position> &&
                       AttentionSlot<typename A::attention, typename A::norm, typename A::position> &&
                       FfnSlot<typename A::ffn>;

}  // namespace minillm
