// Generator<Model>: text generation over any minillm model (CausalLM<A> or the registry's
// AnyCausalLM) with the preallocated KV cache: one prefill of the (left-padded) prompts, then one
// token per step. Rows of a batch keep their own positions (counted over real tokens), so a
// left-padded batch generates what each prompt generates alone. Sampling (sampling.hpp), stop
// token ids and stop strings, a streaming callback that only ever receives whole UTF-8
// characters, and cancellation (from the callback, per row, or from a flag, for all rows).
#pragma once

#include <algorithm>
#include <atomic>
#include <functional>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "minillm/causal_lm.hpp"
#include "minillm/core/autocast.hpp"
#include "minillm/infer/sampling.hpp"
#include "minillm/infer/static_decode.hpp"
#include "minillm/tokenizer/stream_decoder.hpp"

namespace minillm::infer {

struct GenerationOptions {
  SamplingOptions sampling;
  int64_t max_new_tokens = 256;
  std::vector<int32_t> stop_token_ids;   // generation of a row ends at any of these (not part of the output)
  std::vector<std::string> stop_strings;  // ... or when its text contains one of these (the text is cut before it)
  std::optional<uint64_t> seed;           // sampling seed; unset: a fresh one per call
  Precision precision = Precision::fp32;  // bf16: forward under autocast (useful on CUDA)
  // CUDA: decode through a CUDA graph of the step (recorded on first use per batch size and length
  // bucket of 256 and kept by the Generator), one launch per token instead of hundreds.
  bool cuda_graph = true;
  // Self-speculative decoding with the model's multi-token-prediction head as the draft (one
  // prompt, greedy, no repetition penalty): each step verifies the drafted token with the main
  // model and keeps up to two tokens. The output is the plain greedy output.
  bool speculative = false;
};

// The model gave non-finite logits (NaN or inf weights, or an overflow): nothing sensible can be
// generated from them.
struct GenerationError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// logits: (B, V) for generated token `token`: throws naming the row unless all are finite (one host read;
// the Generator folds the test into its read of the sampled ids). Argmax
// over NaN would otherwise pick an arbitrary id, and sampling would fail inside LibTorch.
inline void check_finite_logits(const at::Tensor& logits, int64_t token) {
  if (at::isfinite(logits).all().item<bool>()) return;
  const auto rows = at::isfinite(logits.reshape({-1, logits.size(-1)})).all(-1).logical_not().nonzero();  // (bad, 1)
  throw GenerationError("the model gave non-finite logits (NaN or inf) for generated token " + std::to_string(token) +
                        " of row " + std::to_string(rows[0][0].item<int64_t>()) +
                        ": its weights may be damaged (check them for NaN / inf)");
}

enum class FinishReason { stop, length, cancelled };

inline std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
  }
  return "unknown";
}

struct Generation {
  std::vector<int32_t> tokens;  // generated ids (without the stop token)
  std::string text;             // their text, cut before a stop string; special tokens left out
  FinishReason finish = FinishReason::length;
  int64_t drafted = 0;   // speculative decoding: tokens the MTP head drafted ...
  int64_t accepted = 0;  // ... and how many of them the main model confirmed
};

// Receives each new piece of text of row `row` as soon as it is whole (complete UTF-8 characters,
// never part of a stop string). Returning false stops that row (FinishReason::cancelled).
using StreamCallback = std::function<bool(size_t row, std::string_view piece)>;

namespace detail {

// The text of one row as it grows: holds back what could still become a stop string.
class StopStringFilter {
 public:
  explicit StopStringFilter(const std::vector<std::string>& stops) : stops_(&stops) {
    for (const auto& s : stops)
      if (s.empty()) throw std::invalid_argument("stop strings must not be empty");
  }

  // Appends `piece`; returns the text that may be emitted now and sets `stopped` when a stop
  // string appeared (the text then ends right before it).
  std::string push(std::string_view piece, bool& stopped) {
    text_ += piece;
    size_t cut = std::string::npos;
    for (const auto& s : *stops_) {
      const size_t from = emitted_ >= s.size() ? emitted_ - s.size() + 1 : 0;
      const auto at = text_.find(s, from);
      if (at != std::string::npos) cut = std::min(cut, at);
    }
    if (cut != std::string::npos) {
      text_.resize(std::max(cut, emitted_));
      stopped = true;
      return take(text_.size());
    }
    return take(text_.size() - held_back());
  }
  // Everything not yet emitted (at the end of generation).
  std::string finish() { return take(text_.size()); }
  const std::string& text() const { return text_; }

 private:
  // Length of the longest tail of the unemitted text that begins some stop string.
  size_t held_back() const {
    size_t hold = 0;
    for (const auto& s : *stops_)
      for (size_t k = std::min(s.size() - 1, text_.size() - emitted_); k > hold; --k)
        if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
          hold = k;
          break;
        }
    return hold;
  }
  std::string take(size_t end) {
    std::string out = text_.substr(emitted_, end - emitted_);
    emitted_ = end;
    return out;
  }

  const std::vector<std::string>* stops_;
  std::string text_;
  size_t emitted_ = 0;
};

}  // namespace detail

// One Generator runs one generate() at a time (it keeps the recorded CUDA decode step between calls).
template <class Model>
class Generator {
 public:
  Generator(Model& model, const tokenizer::BpeTokenizer& tokenizer) : model_(model), tokenizer_(tokenizer) {}

  // Generates for every prompt at once (left-padded into one batch). `cancel`, when set to true
  // by another thread, ends every row with FinishReason::cancelled after the current step.
  std::vector<Generation> generate(const std::vector<std::vector<int32_t>>& prompts, const GenerationOptions& opt,
                                   const StreamCallback& on_text = {}, const std::atomic<bool>* cancel = nullptr) {
    validate(prompts, opt);
    if (opt.speculative) return {generate_speculative(prompts.front(), opt, on_text, cancel)};
    const auto b = static_cast<int64_t>(prompts.size());
    int64_t longest = 0;
    for (const auto& p : prompts) longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
    // Reserved for the KV cache, mask and context: what the request can use, grown as it gets
    // there (a huge max_new_tokens reserves nothing absurd; a CUDA graph needs its whole length).
    const auto device = module_of(model_).parameters().front().device();
    const bool graphed = kCudaGraphs && opt.cuda_graph && device.is_cuda();
    const int64_t total = longest + opt.max_new_tokens;
    const int64_t capacity = graphed ? total : longest + std::min(opt.max_new_tokens, kInitialReserve);
    const auto long_cpu = at::TensorOptions().dtype(at::kLong);

    // Left padding: row r's prompt ends at column `longest`; its real tokens are marked in `mask`.
    auto ids = at::zeros({b, longest}, long_cpu);
    auto mask = at::zeros({b, capacity}, long_cpu);
    auto context = at::full({b, capacity}, -1, long_cpu);  // seen ids for the repetition penalty
    bool padded = false;
    for (int64_t r = 0; r < b; ++r) {
      const auto& p = prompts[static_cast<size_t>(r)];
      const auto n = static_cast<int64_t>(p.size());
      padded = padded || n != longest;
      const auto row = at::tensor(std::vector<int64_t>(p.begin(), p.end()), long_cpu);
      ids[r].narrow(0, longest - n, n).copy_(row);
      context[r].narrow(0, longest - n, n).copy_(row);
      mask[r].narrow(0, longest - n, capacity - (longest - n)).fill_(1);
    }
    mask = mask.to(device);
    context = context.to(device);

    at::NoGradGuard no_grad;
    auto& module = module_of(model_);
    const bool was_training = module.is_training();
    module.eval();
    std::optional<KVCache> own_cache;
    KVCache* cache = nullptr;
    if (graphed) {
      const int64_t bucket = (capacity + kGraphBucket - 1) / kGraphBucket * kGraphBucket;
      if (!graph_step_ || !graph_step_->fits(b, bucket, opt.precision))
        graph_step_ = std::make_unique<detail::StaticDecodeStep<Model>>(model_, b, bucket, opt.precision, true);
      cache = &graph_step_->cache();
      cache->reset();
      graph_step_->start(mask.to(at::kBool));
    } else {
      cache = &own_cache.emplace(make_cache_of(model_, b, capacity));
    }
    auto reserve = [&](int64_t needed) {  // doubles the reservation, up to `total`
      if (needed <= context.size(1)) return;
      const int64_t grown = std::min(total, std::max(needed, 2 * context.size(1)));
      const int64_t extra = grown - context.size(1);
      mask = at::cat({mask, at::ones({b, extra}, mask.options())}, 1);              // (B, grown)
      context = at::cat({context, at::full({b, extra}, -1, context.options())}, 1);  // (B, grown)
      cache->grow(grown);
    };
    auto generator = at::make_generator<at::CPUGeneratorImpl>(opt.seed ? *opt.seed : std::random_device{}());

    std::vector<Generation> out(static_cast<size_t>(b));
    std::vector<tokenizer::StreamDecoder> decoders(static_cast<size_t>(b), tokenizer::StreamDecoder(tokenizer_, true));
    std::vector<detail::StopStringFilter> filters(static_cast<size_t>(b), detail::StopStringFilter(opt.stop_strings));
    std::vector<bool> active(static_cast<size_t>(b), true);
    auto emit = [&](size_t r, const std::string& piece) {
      if (!piece.empty() && on_text && !on_text(r, piece)) {
        out[r].finish = FinishReason::cancelled;
        active[r] = false;
      }
    };
    auto end_row = [&](size_t r, FinishReason why) {
      bool stopped = false;
      emit(r, filters[r].push(decoders[r].flush(), stopped));
      emit(r, filters[r].finish());
      if (out[r].finish != FinishReason::cancelled) out[r].finish = why;
      active[r] = false;
    };

    auto step = [&](const at::Tensor& input, int64_t seen) {
      AutocastGuard autocast(device.type(), opt.precision);
      return forward_of(model_, input,
                        {.attention_mask = padded ? mask.narrow(1, 0, seen) : at::Tensor(),
                         .cache = cache,
                         .logits_to_keep = 1})
          .logits.select(1, -1);  // (B, V)
    };
    auto logits = step(ids.to(device), longest);
    for (int64_t i = 0; i < opt.max_new_tokens; ++i) {
      const int64_t seen = longest + i;
      // Non-finite logits are found in the same read as the sampled ids; sampling draws from
      // zeroed NaN/inf meanwhile (a multinomial over NaN throws inside LibTorch).
      const auto finite = at::isfinite(logits).all().to(at::kLong).view({1});
      const auto usable = opt.sampling.greedy() ? logits : at::nan_to_num(logits, 0.0, 0.0, kNegInf);
      const auto next = sample_next(drawable(usable), context.narrow(1, 0, seen), opt.sampling, generator);  // (B)
      const at::Tensor next_cpu = at::cat({next, finite}).to(at::kCPU);  // (B + 1): ids, then finite
      const auto* next_ids = next_cpu.data_ptr<int64_t>();
      if (next_ids[b] == 0) check_finite_logits(logits, i);  // throws, naming the row
      const bool cancelled = cancel != nullptr && cancel->load();
      for (size_t r = 0; r < static_cast<size_t>(b); ++r) {
        if (!active[r]) continue;
        if (cancelled) {
          end_row(r, FinishReason::cancelled);
          continue;
        }
        const auto id = static_cast<int32_t>(next_ids[r]);
        if (std::find(opt.stop_token_ids.begin(), opt.stop_token_ids.end(), id) != opt.stop_token_ids.end()) {
          end_row(r, FinishReason::stop);
          continue;
        }
        out[r].tokens.push_back(id);
        bool stopped = false;
        emit(r, filters[r].push(decoders[r].push(id), stopped));
        if (stopped) end_row(r, FinishReason::stop);
      }
      if (std::none_of(active.begin(), active.end(), [](bool a) { return a; }) || i + 1 == opt.max_new_tokens) break;
      reserve(seen + 1);
      context.narrow(1, seen, 1).copy_(next.unsqueeze(1));
      logits = graphed ? graph_step_->step(next, seen) : step(next.unsqueeze(1), seen + 1);
    }
    for (size_t r = 0; r < static_cast<size_t>(b); ++r) {
      if (active[r]) end_row(r, FinishReason::length);
      out[r].text = filters[r].text();
    }
    if (was_training) module.train();
    return out;
  }

  Generation generate(const std::vector<int32_t>& prompt, const GenerationOptions& opt, const StreamCallback& on_text = {},
                      const std::atomic<bool>* cancel = nullptr) {
    return std::move(generate(std::vector<std::vector<int32_t>>{prompt}, opt, on_text, cancel).front());
  }

  Model& model() { return model_; }
  const tokenizer::BpeTokenizer& tokenizer() const { return tokenizer_; }

 private:
  // Ids past the tokenizer's vocabulary (a checkpoint's padded embedding) have no text: never drawn.
  at::Tensor drawable(at::Tensor logits) const {  // (..., V)
    const auto decodable = static_cast<int64_t>(tokenizer_.vocab_size());
    if (logits.size(-1) <= decodable) return logits;
    logits = logits.clone();
    logits.narrow(-1, decodable, logits.size(-1) - decodable).fill_(kNegInf);
    return logits;
  }

  // Greedy decoding of one prompt with the MTP head drafting one token ahead. Each step runs the
  // main model on [last token, draft]: its first prediction is the next token; when it equals the
  // draft, its second prediction follows too. A rejected draft is dropped from the main cache.
  // The head then reads the main model's hidden states for the tokens just fixed and drafts again.
  Generation generate_speculative(const std::vector<int32_t>& prompt, const GenerationOptions& opt,
                                  const StreamCallback& on_text, const std::atomic<bool>* cancel) {
    const auto n = static_cast<int64_t>(prompt.size());
    const auto device = module_of(model_).parameters().front().device();
    const auto longs = at::TensorOptions().dtype(at::kLong).device(device);
    auto& module = module_of(model_);
    const bool was_training = module.is_training();
    module.eval();
    at::NoGradGuard no_grad;
    AutocastGuard autocast(device.type(), opt.precision);
    // Reserved as generation goes (as the batched path does), up to + the draft of the last step.
    const int64_t total = n + opt.max_new_tokens + 1;
    auto cache = make_cache_of(model_, 1, std::min(total, n + kInitialReserve));
    auto draft_cache = make_mtp_cache_of(model_, 1, cache.capacity());
    auto reserve = [&](int64_t needed) {
      if (needed <= cache.capacity()) return;
      const int64_t grown = std::min(total, std::max(needed, 2 * cache.capacity()));
      cache.grow(grown);
      draft_cache.grow(grown);
    };

    Generation out;
    tokenizer::StreamDecoder decoder(tokenizer_, true);
    detail::StopStringFilter filter(opt.stop_strings);
    bool active = true;
    auto emit = [&](const std::string& piece) {
      if (!piece.empty() && on_text && !on_text(0, piece)) {
        out.finish = FinishReason::cancelled;
        active = false;
      }
    };
    auto end = [&](FinishReason why) {
      bool stopped = false;
      emit(filter.push(decoder.flush(), stopped));
      emit(filter.finish());
      if (out.finish != FinishReason::cancelled) out.finish = why;
      active = false;
    };
    // Takes one generated token; false once the generation has ended.
    auto take = [&](int64_t id) {
      if (!active) return false;
      if (cancel != nullptr && cancel->load()) {
        end(FinishReason::cancelled);
        return false;
      }
      if (std::find(opt.stop_token_ids.begin(), opt.stop_token_ids.end(), id) != opt.stop_token_ids.end()) {
        end(FinishReason::stop);
        return false;
      }
      out.tokens.push_back(static_cast<int32_t>(id));
      bool stopped = false;
      emit(filter.push(decoder.push(static_cast<int32_t>(id)), stopped));
      if (stopped) end(FinishReason::stop);
      else if (static_cast<int64_t>(out.tokens.size()) == opt.max_new_tokens) end(FinishReason::length);
      return active;
    };

    const auto ids = at::tensor(std::vector<int64_t>(prompt.begin(), prompt.end()), longs).unsqueeze(0);  // (1, n)
    const auto first = forward_of(model_, ids, {.cache = &cache, .logits_to_keep = 1});
    check_finite_logits(first.logits, 0);
    at::Tensor next = drawable(first.logits.select(1, -1)).argmax(-1, /*keepdim=*/true);  // (1, 1)
    // The head drafts the most likely decodable token after the last pair (h[i], x[i+1]) it reads.
    auto draft_after = [&](const at::Tensor& next_ids, const at::Tensor& hidden) {  // -> (1, 1)
      return drawable(mtp_logits_of(model_, next_ids, hidden, &draft_cache).select(1, -1)).argmax(-1, /*keepdim=*/true);
    };
    // First it reads every prompt position's pair, the last one with the new token.
    at::Tensor draft = draft_after(at::cat({ids.narrow(1, 1, n - 1), next}, 1), first.hidden);
    bool going = take(next.item<int64_t>());
    while (going) {
      reserve(cache.length() + 2);
      const auto verify = forward_of(model_, at::cat({next, draft}, 1), {.cache = &cache});  // logits (1, 2, V)
      const at::Tensor predicted = drawable(verify.logits).argmax(-1);  // (1, 2)
      const auto finite = at::isfinite(verify.logits).all().to(at::kLong).view({1});
      const at::Tensor host = at::cat({predicted.view({-1}), draft.view({-1}), finite}).cpu();  // one read: a1, a2, draft, finite
      const auto* v = host.data_ptr<int64_t>();
      if (v[3] == 0) check_finite_logits(verify.logits, static_cast<int64_t>(out.tokens.size()));  // throws
      ++out.drafted;
      if (v[0] == v[2]) {
        ++out.accepted;
        going = take(v[0]) && take(v[1]);
        next = predicted.narrow(1, 1, 1);
        draft = draft_after(predicted, verify.hidden);
      } else {
        cache.truncate(cache.length() - 1);  // the rejected draft
        going = take(v[0]);
        next = predicted.narrow(1, 0, 1);
        draft = draft_after(next, verify.hidden.narrow(1, 0, 1));
      }
    }
    if (active) end(FinishReason::length);
    out.text = filter.text();
    if (was_training) module.train();
    return out;
  }

  void validate(const std::vector<std::vector<int32_t>>& prompts, const GenerationOptions& opt) const {
    opt.sampling.validate();
    if (prompts.empty()) throw std::invalid_argument("generate() needs at least one prompt");
    if (opt.speculative) {
      if (prompts.size() != 1)
        throw std::invalid_argument("speculative decoding takes one prompt, got " + std::to_string(prompts.size()));
      if (!opt.sampling.greedy() || opt.sampling.repetition_penalty != 1.0)
        throw std::invalid_argument("speculative decoding is greedy: set temperature 0 and no repetition penalty");
      if (!has_mtp_of(model_))
        throw std::invalid_argument("speculative decoding needs a model with a multi-token-prediction head (use_mtp)");
    }
    if (opt.max_new_tokens < 1)
      throw std::invalid_argument("max_new_tokens (" + std::to_string(opt.max_new_tokens) + ") must be at least 1");
    const auto& cfg = config_of(model_);
    for (size_t r = 0; r < prompts.size(); ++r) {
      const auto n = static_cast<int64_t>(prompts[r].size());
      if (n == 0) throw std::invalid_argument("prompt " + std::to_string(r) + " is empty");
      if (n + opt.max_new_tokens > cfg.max_position_embeddings)
        throw std::length_error("prompt " + std::to_string(r) + " (" + std::to_string(n) + " tokens) + max_new_tokens (" +
                                std::to_string(opt.max_new_tokens) + ") exceeds the model's context (" +
                                std::to_string(cfg.max_position_embeddings) + " tokens)");
    }
  }

  static constexpr int64_t kGraphBucket = 256;    // cache capacities of a recorded step: multiples of this
  static constexpr int64_t kInitialReserve = 64;   // eager decode: tokens reserved before growing

  Model& model_;
  const tokenizer::BpeTokenizer& tokenizer_;
  std::unique_ptr<detail::StaticDecodeStep<Model>> graph_step_;
};

}  // namespace minillm::infer
