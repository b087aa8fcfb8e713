// CausalLM: token embedding, decoder blocks, final norm and LM head (tied to the embedding or its
// own), with the next-token cross-entropy loss (ignore index -100) plus any MoE aux loss.
// Parameter names are HF's (model.embed_tokens.weight, model.layers.0.self_attn.q_proj.weight,
// model.norm.weight, lm_head.weight) so checkpoints map one to one.
#pragma once

#include <algorithm>
#include <array>
#include <vector>

#include "minillm/attention/kernels.hpp"
#include "minillm/block.hpp"
#include "minillm/core/cross_entropy.hpp"
#include "minillm/core/layers.hpp"
#include "minillm/core/threads.hpp"

namespace minillm {

inline constexpr int64_t kIgnoreIndex = -100;

struct ForwardOptions {
  at::Tensor labels;          // (B, T) int64; loss compares logits[:, t] with labels[:, t + 1]
  at::Tensor attention_mask;  // (B, S) 1 = token, 0 = padding (S = cached + T), or bool (B, 1, T, S) full mask
  at::Tensor position_ids;    // (B, T) int64; default: from the padding mask, else cache length + arange(T)
  KVCache* cache = nullptr;   // when set: each layer appends what its attention policy caches and attends over it
  // A fixed-shape cached step (what a CUDA graph records): int64 (T) cache columns on the device for
  // the new tokens. Attention then spans the cache's whole capacity under `attention_mask`, which
  // must be bool (B, 1, T, capacity); position_ids must be given; the cache's length() stays.
  at::Tensor cache_slots;
  int64_t logits_to_keep = 0; // 0: logits for every position; n: only the last n
  AttentionKernel kernel = AttentionKernel::automatic;
  // The caller has checked that input_ids lie in the vocabulary; skips the check's read back to the
  // host, which a CUDA graph capture does not allow.
  bool ids_checked = false;
};

struct CausalLMOutput {
  at::Tensor logits;    // (B, T', V), T' = T or logits_to_keep
  at::Tensor loss;      // lm_loss + mtp_loss + aux_loss (the training objective); undefined without labels
  at::Tensor lm_loss;   // mean cross entropy over non-ignored labels
  at::Tensor mtp_loss;  // mtp_loss_lambda * the MTP head's cross entropy for token t+2 (training mode, MTP only)
  at::Tensor aux_loss;  // sum of MoE load-balancing losses (training mode, MoE only)
  at::Tensor hidden;    // (B, T, C) the last layer's output before the final norm (what the MTP head reads)
  // Training mode, one per layer: tokens per routed expert, int64 (E); undefined for dense layers.
  std::vector<at::Tensor> expert_load;
};

// Throws std::out_of_range naming the first bad id unless every id lies in [0, vocab) (one read
// back from the device).
inline void check_token_ids(const at::Tensor& ids, int64_t vocab) {
  if (ids.numel() == 0) return;
  const auto range = at::stack({ids.min(), ids.max()}).cpu();
  const auto lo = range[0].item<int64_t>(), hi = range[1].item<int64_t>();
  if (lo < 0 || hi >= vocab)
    throw std::out_of_range("token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary [0, " +
                            std::to_string(vocab) + ")");
}

namespace detail {
// Validates a slot: its rule, and every kind some layer (or a multi-token-prediction block, which
// uses kind 0) actually uses.
template <class Slot>
void validate_slot(const ModelConfig& c, std::string_view slot) {
  if constexpr (per_layer<Slot>) {
    validate_policy<typename Slot::rule>(c);
    using Kinds = slot_kinds_t<Slot>;
    constexpr size_t count = std::tuple_size_v<Kinds>;
    std::array<bool, count> used{};
    used[0] = c.use_mtp;
    for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
      const size_t k = slot_kind<Slot>(c, layer);
      if (k >= count)
        config_fail(slot, " kind ", k, " chosen for layer ", layer, " does not exist (the architecture names ", count,
                    ")");
      used[k] = true;
    }
    [&]<size_t... I>(std::index_sequence<I...>) {
      ((used[I] ? validate_policy<std::tuple_element_t<I, Kinds>>(c) : void()), ...);
    }(std::make_index_sequence<count>{});
  } else {
    validate_policy<Slot>(c);
    // Per-layer fields that only a per-layer slot can honour.
    if (slot == "ffn" && (!c.mlp_only_layers.empty() || c.decoder_sparse_step != 1))
      config_fail("mlp_only_layers / decoder_sparse_step (dense layers between MoE layers) need an architecture whose "
                  "feed-forward slot is chosen per layer");
    if (slot == "attention" && std::any_of(c.layer_types.begin(), c.layer_types.end(),
                                           [](const std::string& t) { return t != "full_attention"; }))
      config_fail("layer_types other than \"full_attention\" need an architecture with hybrid token mixers");
  }
}
}  // namespace detail

// Runs every check an architecture needs on a config; throws ConfigError naming the bad value.
template <Architecture A>
void validate_for(const ModelConfig& c) {
  c.validate();
  validate_policy<typename A::norm>(c);
  validate_policy<typename A::position>(c);
  detail::validate_slot<typename A::attention>(c, "attention");
  detail::validate_slot<typename A::ffn>(c, "ffn");
}

template <Architecture A>
class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const ModelConfig& c, const at::TensorOptions& options) {
    embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, c.initializer_range, options));
    layers_list = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      layers.push_back(std::make_shared<BlockImpl<A>>(c, i, options));
      layers_list->push_back(layers.back());
    }
    norm = register_module("norm", std::make_shared<typename A::norm::module>(c.hidden_size, c.rms_norm_eps, options));
    rotary_emb = register_module("rotary_emb", std::make_shared<typename A::position::module>(c, options));
  }

  // ids: (B, T) -> the last layer's output (B, T, C), before the final norm
  at::Tensor forward(const at::Tensor& ids, const AttentionContext& ctx) {
    auto h = embed_tokens->forward(ids);
    for (auto& layer : layers) h = layer->forward(h, ctx);
    return h;
  }

  Embedding embed_tokens{nullptr};
  std::vector<std::shared_ptr<BlockImpl<A>>> layers;
  std::shared_ptr<typename A::norm::module> norm;
  std::shared_ptr<typename A::position::module> rotary_emb;

 private:
  torch::nn::ModuleList layers_list{nullptr};
};

// Multi-token prediction of depth 1 (DeepSeek-V3, as Mini-LLM builds it): from the main model's
// pre-norm hidden state h[t] and the embedding of the next token x[t+1], one more decoder block
// predicts x[t+2] through the shared LM head:
//   out = output_norm(block(linear_proj(cat(input_norm(emb(x[t+1])), hidden_norm(h[t])))))
// The block uses the first kind of each PerLayer slot (DeepSeek-V3: the dense feed-forward).
template <Architecture A>
class MultiTokenPredictionImpl : public torch::nn::Module {
 public:
  using Norm = typename A::norm::module;
  MultiTokenPredictionImpl(const ModelConfig& c, const at::TensorOptions& options) {
    hidden_norm = register_module("hidden_norm", std::make_shared<Norm>(c.hidden_size, c.rms_norm_eps, options));
    input_norm = register_module("input_norm", std::make_shared<Norm>(c.hidden_size, c.rms_norm_eps, options));
    output_norm = register_module("output_norm", std::make_shared<Norm>(c.hidden_size, c.rms_norm_eps, options));
    linear_proj =
        register_module("linear_proj", Linear(2 * c.hidden_size, c.hidden_size, false, c.initializer_range, options));
    transformer_block = register_module("transformer_block", std::make_shared<BlockImpl<A>>(c, 0, 0, 0, options));
  }

  // next_embeds: (B, T, C) embeddings of x[t+1]; hidden: (B, T, C) main h[t] -> (B, T, C) normed output.
  at::Tensor forward(const at::Tensor& next_embeds, const at::Tensor& hidden, const AttentionContext& ctx) {
    const auto joined = at::cat({input_norm->forward(next_embeds), hidden_norm->forward(hidden)}, -1);  // (B, T, 2C)
    return output_norm->forward(transformer_block->forward(linear_proj->forward(joined), ctx));
  }

  std::shared_ptr<Norm> hidden_norm, input_norm, output_norm;
  Linear linear_proj{nullptr};
  std::shared_ptr<BlockImpl<A>> transformer_block;
};

template <Architecture A>
class CausalLMImpl : public torch::nn::Module {
 public:
  using architecture = A;

  explicit CausalLMImpl(ModelConfig c, const at::TensorOptions& options = {}) : config_(std::move(c)) {
    validate_for<A>(config_);  // before any allocation
    if (config_.architecture.empty()) config_.architecture = std::string(A::name);
    detail::ensure_default_threads();
    model = register_module("model", std::make_shared<DecoderImpl<A>>(config_, options));
    if (!config_.tie_word_embeddings)
      lm_head = register_module(
          "lm_head", Linear(config_.hidden_size, config_.vocab_size, false, config_.initializer_range, options));
    if (config_.use_mtp) mtp = register_module("mtp", std::make_shared<MultiTokenPredictionImpl<A>>(config_, options));
  }

  // Drops the multi-token-prediction module (Mini-LLM's remove_mtp_module after pretraining): its
  // weights are freed and no longer saved, and the config says use_mtp false.
  void drop_mtp() {
    if (!mtp) return;
    unregister_module("mtp");
    mtp = nullptr;
    config_.use_mtp = false;
  }

  CausalLMOutput forward(const at::Tensor& input_ids, const ForwardOptions& opt = {}) {
    check_input_ids(input_ids, !opt.ids_checked);
    const int64_t b = input_ids.size(0), t = input_ids.size(1);
    const int64_t past = opt.cache != nullptr ? opt.cache->length() : 0;
    const bool slotted = opt.cache_slots.defined();
    if (opt.cache != nullptr) {
      if (opt.cache->batch() != b || opt.cache->num_layers() != config_.num_hidden_layers)
        throw std::invalid_argument("KV cache shape (batch " + std::to_string(opt.cache->batch()) + ", layers " +
                                    std::to_string(opt.cache->num_layers()) + ") does not match the input (batch " +
                                    std::to_string(b) + ") and model (layers " +
                                    std::to_string(config_.num_hidden_layers) + ")");
      if (!slotted) opt.cache->check_room(t);
    }
    if (slotted) check_slotted_step(opt, b, t);

    AttentionContext ctx;
    ctx.cache = opt.cache;
    ctx.cache_slots = opt.cache_slots;
    ctx.kernel = opt.kernel;
    const int64_t keys = slotted ? opt.cache->capacity() : past + t;
    ctx.mask = attention_mask(opt.attention_mask, b, t, keys, input_ids.device());
    const auto positions = opt.position_ids.defined() ? opt.position_ids
                                                      : default_positions(opt.attention_mask, b, t, past, input_ids.device());
    ctx.position = model->rotary_emb->encode(positions);
    if (opt.position_ids.defined() || (opt.attention_mask.defined() && opt.attention_mask.dim() == 2))
      ctx.restarts = positions.eq(0);  // once for every layer that keeps state

    CausalLMOutput out;
    out.hidden = model->forward(input_ids, ctx);  // (B, T, C), before the final norm
    if (opt.cache != nullptr && !slotted) opt.cache->advance(t);

    auto hidden = model->norm->forward(out.hidden);
    if (opt.logits_to_keep > 0 && opt.logits_to_keep < t) hidden = hidden.narrow(1, t - opt.logits_to_keep, opt.logits_to_keep);
    out.logits = at::linear(hidden, head_weight());  // (B, T', V)
    out.aux_loss = collect_aux_loss();
    if (is_training())
      for (const auto& layer : model->layers) out.expert_load.push_back(layer->expert_load());
    if (opt.labels.defined()) {
      if (opt.logits_to_keep > 0 && opt.logits_to_keep < t)
        throw std::invalid_argument("labels need logits for every position; do not combine them with logits_to_keep");
      if (opt.labels.sizes() != input_ids.sizes())
        throw std::invalid_argument("labels shape " + shape_string(opt.labels) + " must equal input_ids shape " +
                                    shape_string(input_ids));
      // Position i predicts labels[i + 1]: shift the labels (the last position gets no target)
      // rather than slicing the logits, whose slice and copy cost more than the loss itself.
      const auto target = at::cat({opt.labels.narrow(1, 1, t - 1), at::full({b, 1}, kIgnoreIndex, opt.labels.options())}, 1)
                              .reshape({-1});
      out.lm_loss = cross_entropy(out.logits.reshape({-1, config_.vocab_size}), target, kIgnoreIndex);
      out.loss = out.lm_loss;
      if (mtp && is_training() && t > 2) {
        out.mtp_loss = mtp_loss(input_ids, opt, out.hidden) * config_.mtp_loss_lambda;
        out.loss = out.loss + out.mtp_loss;
      }
      if (out.aux_loss.defined()) out.loss = out.loss + out.aux_loss;
    }
    return out;
  }

  bool has_mtp() const { return mtp != nullptr; }

  // A cache for the MTP head's own attention (its one block), for speculative decoding.
  KVCache make_mtp_cache(int64_t batch, int64_t capacity) const {
    if (!mtp) throw std::logic_error("this model has no multi-token-prediction module (config use_mtp is false)");
    const auto options = model->embed_tokens->weight.options().requires_grad(false);
    return KVCache({mtp->transformer_block->make_cache(batch, capacity, options)}, capacity);
  }

  // Logits (B, N, V) of the MTP head for the token after each of next_ids (B, N), read with the
  // main model's pre-norm hidden states (B, N, C) of the positions before them. With `cache`
  // (make_mtp_cache) the head attends over its earlier calls, at positions counted by the cache,
  // and the cache advances by N.
  at::Tensor mtp_logits(const at::Tensor& next_ids, const at::Tensor& hidden, KVCache* cache = nullptr) {
    const int64_t b = next_ids.size(0), n = next_ids.size(1);
    const int64_t past = cache != nullptr ? cache->length() : 0;
    if (cache != nullptr) cache->check_room(n);
    AttentionContext ctx;
    ctx.cache = cache;
    ctx.position = model->rotary_emb->encode(default_positions(at::Tensor(), b, n, past, next_ids.device()));
    auto logits = at::linear(mtp_hidden(next_ids, hidden, ctx), head_weight());  // (B, N, V)
    if (cache != nullptr) cache->advance(n);
    return logits;
  }

  // The MTP head: next_ids (B, N) are the tokens x[t+1] after the positions whose pre-norm hidden
  // states (B, N, C) the main model gave. Returns (B, N, C) normed states; their logits
  // (at::linear with head_weight()) predict the token after each of next_ids.
  at::Tensor mtp_hidden(const at::Tensor& next_ids, const at::Tensor& hidden, const AttentionContext& ctx) {
    if (!mtp) throw std::logic_error("this model has no multi-token-prediction module (config use_mtp is false)");
    return mtp->forward(model->embed_tokens->forward(next_ids), hidden, ctx);
  }

  const ModelConfig& config() const { return config_; }

  // Whether a training step reads nothing back to the host (where the model now is), so it can be
  // recorded as a CUDA graph.
  bool capturable_training() const {
    return std::none_of(model->layers.begin(), model->layers.end(), [](const auto& l) { return l->reads_host_in_training(); }) &&
           (!mtp || !mtp->transformer_block->reads_host_in_training());
  }

  // (V, C): the LM head, or the embedding when tied.
  const at::Tensor& head_weight() const { return lm_head ? lm_head->weight : model->embed_tokens->weight; }

  // One LayerCache per layer, each as its attention policy defines it, in the embedding's dtype.
  KVCache make_cache(int64_t batch, int64_t capacity) const {
    if (batch <= 0 || capacity <= 0)
      throw std::invalid_argument("cache batch (" + std::to_string(batch) + ") and capacity (" +
                                  std::to_string(capacity) + ") must be positive");
    const auto options = model->embed_tokens->weight.options().requires_grad(false);
    std::vector<LayerCache> layers;
    for (const auto& layer : model->layers) layers.push_back(layer->make_cache(batch, capacity, options));
    return KVCache(std::move(layers), capacity);
  }

  std::shared_ptr<DecoderImpl<A>> model;
  Linear lm_head{nullptr};  // null when tie_word_embeddings
  std::shared_ptr<MultiTokenPredictionImpl<A>> mtp;  // null unless config use_mtp

 private:
  static std::string shape_string(const at::Tensor& x) {
    std::ostringstream os;
    os << x.sizes();
    return os.str();
  }

  void check_input_ids(const at::Tensor& ids, bool check_values) const {
    if (ids.dim() != 2 || ids.scalar_type() != at::kLong)
      throw std::invalid_argument("input_ids must be a (batch, time) int64 tensor, got " + shape_string(ids) + " " +
                                  std::string(c10::toString(ids.scalar_type())));
    if (ids.size(1) == 0) throw std::invalid_argument("input_ids must hold at least one token");
    if (check_values) check_token_ids(ids, config_.vocab_size);
  }

  static void check_slotted_step(const ForwardOptions& opt, int64_t b, int64_t t) {
    if (opt.cache == nullptr) throw std::invalid_argument("cache_slots need a cache");
    if (opt.cache_slots.dim() != 1 || opt.cache_slots.size(0) != t || opt.cache_slots.scalar_type() != at::kLong)
      throw std::invalid_argument("cache_slots must be int64 (" + std::to_string(t) + "), got " +
                                  shape_string(opt.cache_slots));
    const int64_t c = opt.cache->capacity();
    if (!opt.attention_mask.defined() || opt.attention_mask.dim() != 4)
      throw std::invalid_argument("a step with cache_slots needs a (" + std::to_string(b) + ", 1, " + std::to_string(t) +
                                  ", " + std::to_string(c) + ") attention_mask over the cache's capacity");
    if (!opt.position_ids.defined()) throw std::invalid_argument("a step with cache_slots needs position_ids");
  }

  // Bool (B, 1, T, S) mask with causality folded in, or undefined for plain causal attention.
  // S = s keys: the cached ones and the T new ones (all of the cache's capacity for a slotted step).
  static at::Tensor attention_mask(const at::Tensor& given, int64_t b, int64_t t, int64_t s, const at::Device& device) {
    if (!given.defined()) return s == t ? at::Tensor() : attention::causal_mask(t, s, device).expand({b, 1, t, s});
    at::Tensor mask;
    if (given.dim() == 2) {
      if (given.size(0) != b || given.size(1) != s)
        throw std::invalid_argument("attention_mask shape " + shape_string(given) + " must be (batch " + std::to_string(b) +
                                    ", cached + new tokens " + std::to_string(s) + ")");
      mask = attention::causal_mask(t, s, device).unsqueeze(0).unsqueeze(0) &
             given.to(at::kBool).view({b, 1, 1, s});  // (B, 1, T, S)
    } else if (given.dim() == 4) {
      if (given.size(0) != b || given.size(1) != 1 || given.size(2) != t || given.size(3) != s)
        throw std::invalid_argument("attention_mask shape " + shape_string(given) + " must be (" + std::to_string(b) +
                                    ", 1, " + std::to_string(t) + ", " + std::to_string(s) + ")");
      mask = given.to(at::kBool);
    } else {
      throw std::invalid_argument("attention_mask must be (batch, keys) or (batch, 1, queries, keys), got " +
                                  shape_string(given));
    }
    // A query with no visible key (a padding position) would produce NaN; let it see every key.
    // Its output is never used.
    return mask | mask.any(-1, /*keepdim=*/true).logical_not();
  }

  // Padding-aware positions: each row counts only its real tokens (so left padding does not shift
  // positions); without a 2-D mask, positions continue from the cache.
  static at::Tensor default_positions(const at::Tensor& mask, int64_t b, int64_t t, int64_t past, const at::Device& device) {
    if (mask.defined() && mask.dim() == 2) {
      const auto counted = (mask.to(at::kLong).cumsum(1) - 1).clamp_min(0);  // (B, S)
      return counted.narrow(1, past, t);
    }
    return (at::arange(past, past + t, at::TensorOptions().dtype(at::kLong).device(device))).unsqueeze(0).expand({b, t});
  }

  at::Tensor collect_aux_loss() {
    std::vector<at::Tensor> shares;
    for (auto& layer : model->layers) {
      auto aux = layer->aux_loss();
      if (aux.defined()) shares.push_back(std::move(aux));
    }
    return shares.empty() ? at::Tensor() : BlockImpl<A>::combine_aux(shares);
  }

  // Cross entropy of the MTP head: position t (reading h[t] and x[t+1]) predicts labels[t+2].
  // Positions restart at 0 as in Mini-LLM unless position_ids are given; a padding or packing mask
  // is narrowed to the tokens the head reads.
  at::Tensor mtp_loss(const at::Tensor& ids, const ForwardOptions& opt, const at::Tensor& hidden) {
    const int64_t b = ids.size(0), n = ids.size(1) - 1;
    AttentionContext ctx;
    ctx.kernel = opt.kernel;
    const auto& mask = opt.attention_mask;
    if (mask.defined()) {
      const auto narrowed = mask.dim() == 2 ? mask.narrow(1, 1, n) : mask.narrow(2, 1, n).narrow(3, 1, n);
      ctx.mask = attention_mask(narrowed, b, n, n, ids.device());
    }
    const auto positions = opt.position_ids.defined() ? opt.position_ids.narrow(1, 1, n)
                                                      : default_positions(at::Tensor(), b, n, 0, ids.device());
    ctx.position = model->rotary_emb->encode(positions);
    const auto out = mtp_hidden(ids.narrow(1, 1, n), hidden.narrow(1, 0, n), ctx);  // (B, N, C)
    const auto logits = at::linear(out, head_weight());                            // (B, N, V)
    const auto target = at::cat({opt.labels.narrow(1, 2, n - 1), at::full({b, 1}, kIgnoreIndex, opt.labels.options())}, 1)
                            .reshape({-1});
    return cross_entropy(logits.reshape({-1, config_.vocab_size}), target, kIgnoreIndex);
  }

  ModelConfig config_;
};

template <Architecture A>
using CausalLM = torch::nn::ModuleHolder<CausalLMImpl<A>>;

// One way for code templated on the model (Trainer, Generator) to reach either a CausalLM<A> (a
// ModuleHolder: `m->`) or the registry's type-erased AnyCausalLM (a plain object: `m.`).
namespace detail {
template <class M>
constexpr bool is_holder = requires(M& m) { m.operator->(); };
template <class M>
auto& model_impl(M& m) {
  if constexpr (is_holder<M>) return *m;
  else return m;
}
}  // namespace detail

template <class M>
torch::nn::Module& module_of(M& m) {
  if constexpr (detail::is_holder<M>) return *m;
  else return m.module();
}
template <class M>
CausalLMOutput forward_of(M& m, const at::Tensor& ids, const ForwardOptions& o) {
  return detail::model_impl(m).forward(ids, o);
}
template <class M>
const ModelConfig& config_of(M& m) {
  return detail::model_impl(m).config();
}
template <class M>
KVCache make_cache_of(M& m, int64_t batch, int64_t capacity) {
  return detail::model_impl(m).make_cache(batch, capacity);
}
template <class M>
bool has_mtp_of(M& m) {
  return detail::model_impl(m).has_mtp();
}
template <class M>
KVCache make_mtp_cache_of(M& m, int64_t batch, int64_t capacity) {
  return detail::model_impl(m).make_mtp_cache(batch, capacity);
}
template <class M>
at::Tensor mtp_logits_of(M& m, const at::Tensor& next_ids, const at::Tensor& hidden, KVCache* cache) {
  return detail::model_impl(m).mtp_logits(next_ids, hidden, cache);
}
template <class M>
bool capturable_training_of(M& m) {
  return detail::model_impl(m).capturable_training();
}

}  // namespace minillm
