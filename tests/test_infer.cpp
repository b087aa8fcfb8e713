// Inference: sampling filters on hand-made logits, the KV cache for every preset, batched
// generation with left padding, stop strings and streaming.
#include "helpers.hpp"

#include <limits>

#include <minillm/infer/generator.hpp>
#include <minillm/tokenizer/bpe.hpp>

using namespace minillm;
using namespace minillm::infer;

namespace {

at::Tensor row(std::vector<float> v) { return at::tensor(v).unsqueeze(0); }  // (1, V)

std::vector<bool> kept(const at::Tensor& filtered) {
  std::vector<bool> out;
  for (int64_t i = 0; i < filtered.size(1); ++i) out.push_back(std::isfinite(filtered[0][i].item<float>()));
  return out;
}

}  // namespace

TEST_CASE("sampling: top-k keeps the k largest logits") {
  const auto x = row({1.0f, 4.0f, 3.0f, 2.0f, 0.5f});
  CHECK(kept(apply_top_k(x, 2)) == std::vector<bool>{false, true, true, false, false});
  CHECK(kept(apply_top_k(x, 0)) == std::vector<bool>(5, true));
  CHECK(kept(apply_top_k(x, 9)) == std::vector<bool>(5, true));
}

TEST_CASE("sampling: top-p keeps the smallest set whose mass reaches p") {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (as logs): p = 0.7 needs the first two, p = 0.85 three.
  const auto x = row({std::log(0.3f), std::log(0.05f), std::log(0.5f), std::log(0.15f)});
  CHECK(kept(apply_top_p(x, 0.7)) == std::vector<bool>{true, false, true, false});
  CHECK(kept(apply_top_p(x, 0.85)) == std::vector<bool>{true, false, true, true});
  CHECK(kept(apply_top_p(x, 0.1)) == std::vector<bool>{false, false, true, false});  // at least one
  CHECK(kept(apply_top_p(x, 1.0)) == std::vector<bool>(4, true));
}

TEST_CASE("sampling: min-p drops tokens below min_p times the top probability") {
  const auto x = row({std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)});
  CHECK(kept(apply_min_p(x, 0.2)) == std::vector<bool>{true, true, true, false});  // threshold 0.1
  CHECK(kept(apply_min_p(x, 0.5)) == std::vector<bool>{true, true, false, false});  // threshold 0.25
}

TEST_CASE("sampling: repetition penalty divides positive and multiplies negative logits of seen tokens") {
  const auto x = row({2.0f, -2.0f, 1.0f, -1.0f});
  const auto context = at::tensor(std::vector<int64_t>{0, 1, 1, -1}).unsqueeze(0);  // -1: padding
  const auto y = apply_repetition_penalty(x, context, 2.0);
  CHECK(y[0][0].item<float>() == doctest::Approx(1.0));
  CHECK(y[0][1].item<float>() == doctest::Approx(-4.0));
  CHECK(y[0][2].item<float>() == doctest::Approx(1.0));  // unseen: unchanged
  CHECK(y[0][3].item<float>() == doctest::Approx(-1.0));
}

TEST_CASE("sampling: the penalty applies before temperature; greedy ignores the filters; a seed repeats draws") {
  const auto x = row({2.0f, 1.9f, -3.0f});
  const auto context = at::tensor(std::vector<int64_t>{0}).unsqueeze(0);
  SamplingOptions o{.temperature = 0, .repetition_penalty = 1.5};
  auto g = at::make_generator<at::CPUGeneratorImpl>(1);
  CHECK(sample_next(x, context, o, g).item<int64_t>() == 1);  // 2.0 / 1.5 < 1.9
  const auto p = process_logits(x, context, {.temperature = 0.5, .repetition_penalty = 1.5});
  CHECK(p[0][0].item<float>() - p[0][1].item<float>() == doctest::Approx((2.0 / 1.5 - 1.9) / 0.5));
  SamplingOptions s{.temperature = 1.0};
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(7), g2 = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto wide = at::zeros({1, 50});
  for (int i = 0; i < 5; ++i)
    CHECK(sample_next(wide, {}, s, g1).item<int64_t>() == sample_next(wide, {}, s, g2).item<int64_t>());
  CHECK_MESSAGE_CONTAINS(test::message_of([] { SamplingOptions{.top_p = 1.5}.validate(); }), "top_p (1.5");
  CHECK_MESSAGE_CONTAINS(test::message_of([] { SamplingOptions{.temperature = -1}.validate(); }), "temperature (-1");
}

TEST_CASE("sampling: any valid temperature gives finite probabilities; a tiny one draws the top token") {
  const auto x = row({1.0f, 5.0f, 4.0f, -50.0f});  // 5 / 1e-38 overflows a float, 4 / 1e-38 does not
  auto g = at::make_generator<at::CPUGeneratorImpl>(3);
  for (const double t : {1e-45, 1e-38, 1e-30, 1e-8, 2.0}) {
    CAPTURE(t);
    const auto probs = process_logits(x, {}, {.temperature = t}).softmax(-1);
    CHECK(probs.isfinite().all().item<bool>());
    CHECK(probs.sum().item<float>() == doctest::Approx(1.0));
    if (t < 1e-6) CHECK(sample_next(x, {}, {.temperature = t, .top_p = 0.9}, g).item<int64_t>() == 1);
  }
}

TEST_CASE("generation: prefill + cached decode equals the full forward for every preset (2 layers, tolerance 1e-4)") {
  for (const auto& name : preset_names()) {
    CAPTURE(name);
    auto cfg = preset_config(name);
    cfg.num_hidden_layers = 2;
    cfg.first_k_dense_replace = std::min<int64_t>(cfg.first_k_dense_replace, 1);  // DeepSeek: one dense, one MoE layer
    if (!cfg.mlp_only_layers.empty()) cfg.mlp_only_layers = {0};                   // Qwen3-Next: likewise
    cfg.full_attention_interval = 2;  // Qwen3-Next: one linear, one full attention layer
    cfg.vocab_size = 512;  // the heads, kv heads, head_dim and norms are the preset's
    at::manual_seed(3);
    auto m = make_model(cfg);
    test::perturb_norms(m->module());
    m->module().eval();
    at::NoGradGuard g;
    const auto ids = at::randint(0, 512, {2, 9}, at::kLong);
    const auto full = m->forward(ids).logits;
    auto cache = m->make_cache(2, 9);
    std::vector<at::Tensor> pieces = {m->forward(ids.narrow(1, 0, 5), {.cache = &cache}).logits};
    for (int64_t t = 5; t < 9; ++t) pieces.push_back(m->forward(ids.narrow(1, t, 1), {.cache = &cache}).logits);
    CHECK(test::max_abs_diff(at::cat(pieces, 1), full) < 1e-4);
  }
}

TEST_CASE("generation: the fixed-shape decode step (what a CUDA graph replays) equals the cached decode for every "
          "preset, left padding included") {
  for (const auto& name : preset_names()) {
    CAPTURE(name);
    auto cfg = preset_config(name);
    cfg.num_hidden_layers = 2;
    cfg.first_k_dense_replace = std::min<int64_t>(cfg.first_k_dense_replace, 1);  // DeepSeek: one dense, one MoE layer
    if (!cfg.mlp_only_layers.empty()) cfg.mlp_only_layers = {0};                   // Qwen3-Next: likewise
    cfg.full_attention_interval = 2;  // Qwen3-Next: one linear, one full attention layer
    cfg.vocab_size = 512;
    at::manual_seed(4);
    auto m = make_model(cfg);
    test::perturb_norms(m->module());
    m->module().eval();
    at::NoGradGuard g;
    // Row 0: 5 prompt tokens; row 1: 3, left-padded by 2. Then 4 decode steps.
    const auto ids = at::randint(0, 512, {2, 9}, at::kLong);
    auto real = at::ones({2, 9}, at::kLong);
    real[1].narrow(0, 0, 2).fill_(0);
    auto dynamic = m->make_cache(2, 9);
    minillm::infer::detail::StaticDecodeStep<AnyCausalLM> fixed(*m, 2, 12, Precision::fp32, /*record_graph=*/false);
    fixed.start(real.to(at::kBool));
    m->forward(ids.narrow(1, 0, 5), {.attention_mask = real.narrow(1, 0, 5), .cache = &dynamic});
    m->forward(ids.narrow(1, 0, 5), {.attention_mask = real.narrow(1, 0, 5), .cache = &fixed.cache()});
    for (int64_t t = 5; t < 9; ++t) {
      CAPTURE(t);
      const auto expected =
          m->forward(ids.narrow(1, t, 1), {.attention_mask = real.narrow(1, 0, t + 1), .cache = &dynamic, .logits_to_keep = 1})
              .logits.select(1, -1);
      CHECK(test::max_abs_diff(fixed.step(ids.select(1, t), t), expected) < 1e-4);
    }
  }
}

TEST_CASE("generation: the CUDA-graph decode generates what the eager decode does (runs where CUDA graphs are available)") {
  if (!kCudaGraphs || !at::hasCUDA()) {
    MESSAGE("no CUDA graphs: skipped");
    return;
  }
  for (const auto* name : {"qwen3", "minimind2_moe"}) {
    CAPTURE(name);
    at::manual_seed(23);
    auto m = make_model(test::small_config(name), at::TensorOptions().device(at::kCUDA));
    test::perturb_norms(m->module());
    const tokenizer::BpeTokenizer& tok = test::minimind_tokenizer();
    Generator<AnyCausalLM> graphed(*m, tok), eager(*m, tok);
    // A left-padded batch, then single prompts of other lengths in the same recorded step's bucket.
    const std::vector<std::vector<std::vector<int32_t>>> calls = {
        {{5, 17, 33, 2, 80, 41, 9}, {12, 60}, {70, 3, 3, 91}}, {{8, 1, 44}}, {{90, 2, 7, 7, 7, 30, 11, 4}}};
    for (const auto& prompts : calls) {
      const GenerationOptions on{.sampling = {.temperature = 0}, .max_new_tokens = 20, .cuda_graph = true};
      auto off = on;
      off.cuda_graph = false;
      const auto a = graphed.generate(prompts, on), b = eager.generate(prompts, off);
      for (size_t r = 0; r < prompts.size(); ++r) CHECK(a[r].tokens == b[r].tokens);
    }
  }
}

TEST_CASE("generation: a left-padded batch generates exactly what each prompt generates alone (greedy)") {
  at::manual_seed(21);
  CausalLM<arch::Qwen3> m(test::small_config("qwen3"));
  test::perturb_norms(*m);
  tokenizer::BpeTokenizer tok = test::minimind_tokenizer();
  Generator<CausalLM<arch::Qwen3>> gen(m, tok);
  const std::vector<std::vector<int32_t>> prompts = {{5, 17, 33, 2, 80, 41, 9}, {12, 60}, {70, 3, 3, 91}};
  const GenerationOptions opt{.sampling = {.temperature = 0}, .max_new_tokens = 12};
  const auto together = gen.generate(prompts, opt);
  REQUIRE(together.size() == 3);
  for (size_t r = 0; r < prompts.size(); ++r) {
    CAPTURE(r);
    const auto alone = gen.generate(prompts[r], opt);
    CHECK(together[r].tokens == alone.tokens);
    CHECK(together[r].tokens.size() == 12);
    CHECK(together[r].finish == FinishReason::length);
  }
}

TEST_CASE("generation: stop token ids end a row; the context limit is checked before any work") {
  at::manual_seed(22);
  CausalLM<arch::Llama> m(test::small_config("llama"));
  const auto& tok = test::minimind_tokenizer();
  Generator<CausalLM<arch::Llama>> gen(m, tok);
  GenerationOptions opt{.sampling = {.temperature = 0}, .max_new_tokens = 8};
  const auto free_run = gen.generate({4, 5, 6}, opt);
  REQUIRE(free_run.tokens.size() == 8);
  opt.stop_token_ids = {free_run.tokens[3]};
  const auto stopped = gen.generate({4, 5, 6}, opt);
  const auto first = std::find(free_run.tokens.begin(), free_run.tokens.end(), free_run.tokens[3]) - free_run.tokens.begin();
  CHECK(stopped.tokens == std::vector<int32_t>(free_run.tokens.begin(), free_run.tokens.begin() + first));
  CHECK(stopped.finish == FinishReason::stop);
  opt.max_new_tokens = 126;  // context is 128
  CHECK_MESSAGE_CONTAINS(test::message_of<std::length_error>([&] { gen.generate({4, 5, 6}, opt); }),
                         "exceeds the model's context (128 tokens)");
}

TEST_CASE("generation: non-finite logits (damaged weights) are a clear error, greedy and sampled") {
  at::manual_seed(23);
  auto cfg = test::small_config("llama");
  cfg.tie_word_embeddings = false;
  CausalLM<arch::Llama> m(cfg);
  {
    at::NoGradGuard g;
    m->lm_head->weight[5][3].fill_(std::numeric_limits<float>::quiet_NaN());
  }
  Generator<CausalLM<arch::Llama>> gen(m, test::minimind_tokenizer());
  for (const double temperature : {0.0, 0.8}) {
    CAPTURE(temperature);
    const auto msg = test::message_of<GenerationError>(
        [&] { gen.generate({4, 5, 6}, {.sampling = {.temperature = temperature}, .max_new_tokens = 4, .seed = 1}); });
    CHECK_MESSAGE_CONTAINS(msg, "the model gave non-finite logits (NaN or inf) for generated token 0 of row 0");
  }
}

TEST_CASE("generation: stop strings cut the text, also across token boundaries, and are never streamed") {
  std::vector<std::string> stops = {"END", "。\n"};
  infer::detail::StopStringFilter f(stops);
  bool stopped = false;
  std::string streamed;
  for (const char* piece : {"床前", "明月光E", "N", "xyz。", "\n后面"}) {
    streamed += f.push(piece, stopped);
    if (stopped) break;
  }
  // "E" + "N" was held back until "x" showed it was no stop string; "。\n" then stopped.
  CHECK(stopped);
  CHECK(streamed == "床前明月光ENxyz");
  CHECK(f.text() == "床前明月光ENxyz");

  infer::detail::StopStringFilter g(stops);
  stopped = false;
  CHECK(g.push("abcEN", stopped) == "abc");
  CHECK(g.push("D tail", stopped) == "");
  CHECK(stopped);
  CHECK(g.text() == "abc");  // cut before "END"
  CHECK_MESSAGE_CONTAINS(test::message_of([] { std::vector<std::string> bad = {""}; infer::detail::StopStringFilter x(bad); }),
                         "must not be empty");
}

TEST_CASE("generation: streamed pieces are whole UTF-8 characters and add up to the text; false cancels") {
  at::manual_seed(23);
  auto cfg = test::small_config("llama");
  cfg.vocab_size = 6400;
  CausalLM<arch::Llama> m(cfg);
  const auto& tok = test::minimind_tokenizer();
  Generator<CausalLM<arch::Llama>> gen(m, tok);
  GenerationOptions opt{.sampling = {.temperature = 1.0}, .max_new_tokens = 40, .seed = 5};
  std::string joined;
  bool all_valid = true;
  const auto g = gen.generate(tok.encode("床前明月光"), opt, [&](size_t, std::string_view piece) {
    all_valid = all_valid && tokenizer::BpeTokenizer::to_valid_utf8(piece) == piece;
    joined += piece;
    return true;
  });
  CHECK(all_valid);
  CHECK(joined == g.text);
  CHECK(g.text == tok.decode(g.tokens, /*skip_special=*/true));
  // The same seed gives the same tokens; a callback returning false stops the row.
  CHECK(gen.generate(tok.encode("床前明月光"), opt).tokens == g.tokens);
  int calls = 0;
  const auto cancelled = gen.generate(tok.encode("床前明月光"), opt, [&](size_t, std::string_view) { return ++calls < 2; });
  CHECK(cancelled.finish == FinishReason::cancelled);
  CHECK(cancelled.tokens.size() < g.tokens.size());
}

TEST_CASE("generation: ids past the tokenizer's vocabulary (a padded checkpoint) are never drawn") {
  at::manual_seed(24);
  auto cfg = test::small_config("llama");
  cfg.vocab_size = 12000;  // the tokenizer has 6400: most of the mass lies past it
  CausalLM<arch::Llama> m(cfg);
  const auto& tok = test::minimind_tokenizer();
  Generator<CausalLM<arch::Llama>> gen(m, tok);
  for (const double t : {0.0, 1.0}) {
    CAPTURE(t);
    const auto g = gen.generate(tok.encode("床前明月光"), {.sampling = {.temperature = t}, .max_new_tokens = 16, .seed = 9});
    CHECK(!g.tokens.empty());
    for (const auto id : g.tokens) CHECK(id < static_cast<int32_t>(tok.vocab_size()));
  }
}

TEST_CASE("generation: the KV cache grows with the generation, not with max_new_tokens; grown, it decodes what one "
          "forward computes") {
  at::manual_seed(25);
  auto cfg = test::small_config("llama");
  cfg.max_position_embeddings = int64_t{1} << 40;  // a huge context
  CausalLM<arch::Llama> m(cfg);
  test::perturb_norms(*m);
  const auto& tok = test::minimind_tokenizer();
  Generator<CausalLM<arch::Llama>> gen(m, tok);
  const std::vector<int32_t> prompt = {40, 41, 42};
  // Reserving all of max_new_tokens up front would need terabytes; the callback ends it after 20 pieces.
  int pieces = 0;
  const auto endless = gen.generate(prompt, {.sampling = {.temperature = 1.0}, .max_new_tokens = (int64_t{1} << 40) - 3, .seed = 1},
                                    [&](size_t, std::string_view) { return ++pieces < 20; });
  CHECK(endless.finish == FinishReason::cancelled);
  CHECK(pieces == 20);
  // 150 greedy tokens cross the first reservation (64) and two growths: each is the full forward's argmax.
  const auto g = gen.generate(prompt, {.sampling = {.temperature = 0}, .max_new_tokens = 150});
  REQUIRE(g.tokens.size() == 150);
  std::vector<int64_t> all(prompt.begin(), prompt.end());
  all.insert(all.end(), g.tokens.begin(), g.tokens.end() - 1);
  at::NoGradGuard no_grad;
  m->eval();
  const auto argmax = m->forward(at::tensor(all).unsqueeze(0)).logits.argmax(-1)[0];  // (T)
  const auto expected = argmax.narrow(0, static_cast<int64_t>(prompt.size()) - 1, 150);
  CHECK(at::equal(expected, at::tensor(std::vector<int64_t>(g.tokens.begin(), g.tokens.end()))));
}
