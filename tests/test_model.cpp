// Whole models: exact parameter counts, parameter names, causality, gradients, learning, the KV
// cache hook, padding, and bad input.
#include "helpers.hpp"

#include <torch/optim/adam.h>

using namespace minillm;

#define ALL_ARCHITECTURES \
  arch::Llama, arch::Qwen2, arch::Qwen3, arch::MiniMind3, arch::MiniMind2MoE, arch::MiniMind3MoE, arch::Qwen3MoE, \
      arch::ClassicNoPE, arch::DeepSeekV3, arch::MiniDeepSeekV3, arch::Qwen3Next, arch::MiniQwen3Next, arch::MiniLlama3

namespace {
int64_t count_parameters(const ModelConfig& c) {
  auto m = make_model(c, at::TensorOptions().device(at::kMeta));  // shapes only, nothing allocated
  return report_parameters(m->module(), c).total;
}
}  // namespace

TEST_CASE("model: exact parameter counts of the MiniMind presets") {
  CHECK(count_parameters(presets::minimind2_small::config()) == 25'829'888);
  CHECK(count_parameters(presets::minimind2::config()) == 104'030'976);
  CHECK(count_parameters(presets::minimind2_moe::config()) == 145'029'760);
  CHECK(count_parameters(presets::minimind3::config()) == 63'912'192);
  CHECK(count_parameters(presets::minimind3_moe::config()) == 198'416'640);
  // Seed 003: MiniMind's train_pretrain.py default, 512x8 with 4 routed + 1 shared experts, top-2.
  auto seed = presets::minimind2_moe::config();
  seed.hidden_size = 512;
  seed.head_dim = 64;
  seed.intermediate_size = 1408;
  seed.moe_intermediate_size = 1408;
  CHECK(count_parameters(seed) == 95'052'288);
}

TEST_CASE("model: active parameters per token for MoE") {
  const auto c = presets::minimind3_moe::config();
  auto m = make_model(c, at::TensorOptions().device(at::kMeta));
  const auto r = report_parameters(m->module(), c);
  CHECK(r.total == 198'416'640);
  CHECK(r.active_per_token == 63'936'768);  // 63.91M dense + the 8 routers
}

TEST_CASE("model: parameter names are HF's (pinned for minimind3 and minimind2_moe)") {
  const std::vector<std::string> layer0 = {
      "model.layers.0.input_layernorm.weight",          "model.layers.0.self_attn.q_proj.weight",
      "model.layers.0.self_attn.k_proj.weight",         "model.layers.0.self_attn.v_proj.weight",
      "model.layers.0.self_attn.o_proj.weight",         "model.layers.0.self_attn.q_norm.weight",
      "model.layers.0.self_attn.k_norm.weight",         "model.layers.0.post_attention_layernorm.weight",
      "model.layers.0.mlp.gate_proj.weight",            "model.layers.0.mlp.up_proj.weight",
      "model.layers.0.mlp.down_proj.weight"};
  std::vector<std::string> expected = {"model.embed_tokens.weight"};
  for (int layer = 0; layer < 8; ++layer)
    for (const auto& name : layer0)  // "model.layers.0." -> "model.layers.<layer>."
      expected.push_back("model.layers." + std::to_string(layer) + name.substr(std::string("model.layers.0").size()));
  expected.push_back("model.norm.weight");  // tied: no lm_head.weight

  auto m = make_model(presets::minimind3::config(), at::TensorOptions().device(at::kMeta));
  CHECK(m->module().named_parameters().keys() == expected);

  auto moe = make_model(presets::minimind2_moe::config(), at::TensorOptions().device(at::kMeta));
  const auto keys = moe->module().named_parameters().keys();
  const std::vector<std::string> moe_mlp0 = {
      "model.layers.0.mlp.gate.weight",
      "model.layers.0.mlp.experts.0.gate_proj.weight", "model.layers.0.mlp.experts.0.up_proj.weight",
      "model.layers.0.mlp.experts.0.down_proj.weight", "model.layers.0.mlp.experts.1.gate_proj.weight",
      "model.layers.0.mlp.experts.1.up_proj.weight",   "model.layers.0.mlp.experts.1.down_proj.weight",
      "model.layers.0.mlp.experts.2.gate_proj.weight", "model.layers.0.mlp.experts.2.up_proj.weight",
      "model.layers.0.mlp.experts.2.down_proj.weight", "model.layers.0.mlp.experts.3.gate_proj.weight",
      "model.layers.0.mlp.experts.3.up_proj.weight",   "model.layers.0.mlp.experts.3.down_proj.weight",
      "model.layers.0.mlp.shared_experts.0.gate_proj.weight", "model.layers.0.mlp.shared_experts.0.up_proj.weight",
      "model.layers.0.mlp.shared_experts.0.down_proj.weight"};
  const auto first = std::find(keys.begin(), keys.end(), moe_mlp0.front());
  REQUIRE(first != keys.end());
  CHECK(std::vector<std::string>(first, first + static_cast<long>(moe_mlp0.size())) == moe_mlp0);

  auto untied = presets::tiny::config();
  untied.tie_word_embeddings = false;
  CHECK(make_model(untied, at::TensorOptions().device(at::kMeta))->module().named_parameters().keys().back() ==
        "lm_head.weight");
}

TEST_CASE_TEMPLATE("model: causality - a later token never changes earlier logits", A, ALL_ARCHITECTURES) {
  at::manual_seed(10);
  CausalLM<A> m(test::small_config(A::name));
  test::perturb_norms(*m);
  m->eval();
  auto ids = at::randint(0, 97, {2, 12}, at::kLong);
  const auto before = m->forward(ids).logits;
  ids.index_put_({at::indexing::Slice(), 7}, (ids.index({at::indexing::Slice(), 7}) + 1) % 97);
  const auto after = m->forward(ids).logits;
  // Not bit-exact for MoE: the changed tokens may route elsewhere, so the experts' GEMMs see other
  // row counts, and BLAS may round a row differently at another shape (seen: 1.2e-7).
  CHECK(test::max_abs_diff(before.narrow(1, 0, 7), after.narrow(1, 0, 7)) < 1e-6);
  CHECK(test::max_abs_diff(before.narrow(1, 7, 5), after.narrow(1, 7, 5)) > 1e-4);
}

TEST_CASE_TEMPLATE("model: prefill + step-by-step decode through the KV cache equals the full forward", A,
                   ALL_ARCHITECTURES) {
  at::manual_seed(11);
  CausalLM<A> m(test::small_config(A::name));
  test::perturb_norms(*m);
  m->eval();
  at::NoGradGuard g;
  const auto ids = at::randint(0, 97, {2, 10}, at::kLong);
  const auto full = m->forward(ids).logits;
  for (auto kernel : {AttentionKernel::math, AttentionKernel::fused}) {
    auto cache = m->make_cache(2, 16);
    std::vector<at::Tensor> pieces = {m->forward(ids.narrow(1, 0, 4), {.cache = &cache, .kernel = kernel}).logits};
    for (int64_t t = 4; t < 10; ++t)
      pieces.push_back(m->forward(ids.narrow(1, t, 1), {.cache = &cache, .kernel = kernel}).logits);
    CHECK(cache.length() == 10);
    CHECK(test::max_abs_diff(at::cat(pieces, 1), full) < 1e-5);
  }
}

TEST_CASE_TEMPLATE("model: math and fused attention give the same logits", A, ALL_ARCHITECTURES) {
  at::manual_seed(12);
  CausalLM<A> m(test::small_config(A::name));
  m->eval();
  const auto ids = at::randint(0, 97, {3, 11}, at::kLong);
  CHECK(test::max_abs_diff(m->forward(ids, {.kernel = AttentionKernel::math}).logits,
                           m->forward(ids, {.kernel = AttentionKernel::fused}).logits) < 1e-5);
}

TEST_CASE("model: a left-padded row gives the logits of the same prompt alone") {
  at::manual_seed(13);
  CausalLM<arch::Qwen3> m(test::small_config("qwen3"));
  test::perturb_norms(*m);
  m->eval();
  const auto prompt = at::randint(3, 97, {1, 6}, at::kLong);
  const auto alone = m->forward(prompt).logits;                                  // (1, 6, V)
  const auto padded = at::cat({at::zeros({1, 3}, at::kLong), prompt}, 1);        // 3 pads on the left
  const auto mask = at::cat({at::zeros({1, 3}, at::kLong), at::ones({1, 6}, at::kLong)}, 1);
  const auto batch = at::cat({padded, at::randint(3, 97, {1, 9}, at::kLong)}, 0);
  const auto batch_mask = at::cat({mask, at::ones({1, 9}, at::kLong)}, 0);
  const auto out = m->forward(batch, {.attention_mask = batch_mask}).logits;    // (2, 9, V)
  CHECK(test::max_abs_diff(out[0].narrow(0, 3, 6), alone[0]) < 1e-5);
  CHECK_FALSE(at::isnan(out).any().item<bool>());
}

TEST_CASE("model: finite loss and gradients for every preset") {
  for (const auto& name : preset_names()) {
    CAPTURE(name);
    auto c = preset_config(name);
    // The two >500M shapes keep their widths and vocabularies but only 2 of their identical
    // layers, so the suite stays within CI's memory.
    if (c.num_hidden_layers > 8 && c.hidden_size >= 1024) c.num_hidden_layers = 2;
    at::manual_seed(14);
    auto m = make_model(c);
    const auto ids = at::randint(0, c.vocab_size, {1, 8}, at::kLong);
    const auto out = m->forward(ids, {.labels = ids});
    REQUIRE(out.loss.defined());
    CHECK(std::isfinite(out.loss.item<double>()));
    out.loss.backward();
    int64_t with_grad = 0;
    for (const auto& p : m->module().named_parameters()) {
      if (!p.value().requires_grad()) continue;  // DeepSeek's router bias moves outside autograd
      const auto& g = p.value().grad();
      if (!g.defined()) {
        // Only a routed expert that no token chose may be left without a gradient.
        CHECK_MESSAGE(p.key().find(".mlp.experts.") != std::string::npos, p.key());
        continue;
      }
      ++with_grad;
      CHECK_MESSAGE(at::isfinite(g).all().item<bool>(), p.key());
    }
    CHECK(with_grad > 0);
  }
}

TEST_CASE("model: MoE adds its aux loss to the training objective, in training mode only") {
  at::manual_seed(15);
  CausalLM<arch::MiniMind3MoE> m(test::small_config("minimind3_moe"));
  const auto ids = at::randint(0, 97, {2, 8}, at::kLong);
  auto out = m->forward(ids, {.labels = ids});
  REQUIRE(out.aux_loss.defined());
  CHECK(out.aux_loss.item<double>() > 0.0);
  CHECK(out.loss.item<double>() == doctest::Approx((out.lm_loss + out.aux_loss).item<double>()));
  m->eval();
  out = m->forward(ids, {.labels = ids});
  CHECK_FALSE(out.aux_loss.defined());
  CHECK(out.loss.item<double>() == out.lm_loss.item<double>());
}

TEST_CASE("model: labels of -100 are ignored") {
  at::manual_seed(16);
  CausalLM<arch::Llama> m(test::small_config("llama"));
  const auto ids = at::randint(0, 97, {1, 8}, at::kLong);
  auto labels = ids.clone();
  labels.narrow(1, 0, 5).fill_(kIgnoreIndex);
  const auto out = m->forward(ids, {.labels = labels});
  // By hand: mean over the 3 targets at positions 5..7 predicted from logits 4..6.
  const auto logp = at::log_softmax(out.logits[0], -1);
  double expected = 0;
  for (int t = 5; t < 8; ++t) expected -= logp[t - 1][ids[0][t].item<int64_t>()].item<double>() / 3;
  CHECK(out.lm_loss.item<double>() == doctest::Approx(expected).epsilon(1e-5));
}

TEST_CASE("model: chunked cross entropy equals the plain fp32 one in loss and gradient (fp32 and bf16 logits)") {
  at::manual_seed(18);
  auto target = at::randint(0, 37, {23}, at::kLong);
  target.narrow(0, 3, 4).fill_(kIgnoreIndex);
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    for (const int64_t chunk_values : {int64_t{37 * 5}, int64_t{37 * 23}, int64_t{1} << 25}) {  // 5-row chunks (a partial last one), one, default
      const std::string dtype_name = c10::toString(dtype);
      CAPTURE(dtype_name);
      CAPTURE(chunk_values);
      const auto base = (at::randn({23, 37}) * 3).to(dtype);
      const auto a = base.clone().requires_grad_(true), b = base.clone().requires_grad_(true);
      const auto ours = cross_entropy(a, target, kIgnoreIndex, chunk_values);
      const auto plain = at::cross_entropy_loss(b.to(at::kFloat), target, {}, at::Reduction::Mean, kIgnoreIndex);
      CHECK(ours.item<double>() == doctest::Approx(plain.item<double>()).epsilon(1e-6));
      (ours * 2.5).backward();
      (plain * 2.5).backward();
      CHECK((a.grad().scalar_type() == dtype));
      CHECK(test::max_abs_diff(a.grad().to(at::kFloat), b.grad().to(at::kFloat)) < (dtype == at::kFloat ? 1e-7 : 1e-3));
      CHECK(a.grad().narrow(0, 3, 4).abs().max().item<double>() == 0.0);  // ignored rows get no gradient
    }
  }
  const auto none = at::full({4}, kIgnoreIndex, at::kLong);
  CHECK(std::isnan(cross_entropy(at::randn({4, 37}), none, kIgnoreIndex).item<double>()));
}

TEST_CASE("model: the tiny preset overfits one batch") {
  at::manual_seed(17);
  auto c = presets::tiny::config();
  c.vocab_size = 64;
  Tiny m(c);
  const auto ids = at::randint(0, 64, {2, 32}, at::kLong);
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(3e-3));
  double first = 0, last = 0;
  for (int step = 0; step < 80; ++step) {
    opt.zero_grad();
    const auto loss = m->forward(ids, {.labels = ids}).loss;
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  MESSAGE("loss " << first << " -> " << last);
  CHECK(last < 0.1 * first);
}

TEST_CASE("model: bad input is rejected with the value named") {
  CausalLM<arch::Llama> m(test::small_config("llama"));
  auto msg = test::message_of<std::out_of_range>([&] { m->forward(at::full({1, 3}, 97, at::kLong)); });
  CHECK_MESSAGE_CONTAINS(msg, "token id 97 is outside the vocabulary [0, 97)");
  msg = test::message_of<std::invalid_argument>([&] { m->forward(at::zeros({3}, at::kLong)); });
  CHECK_MESSAGE_CONTAINS(msg, "input_ids must be a (batch, time) int64 tensor");
  const auto ids = at::zeros({1, 4}, at::kLong);
  msg = test::message_of<std::invalid_argument>([&] { m->forward(ids, {.labels = at::zeros({1, 5}, at::kLong)}); });
  CHECK_MESSAGE_CONTAINS(msg, "labels shape [1, 5] must equal input_ids shape [1, 4]");
  msg = test::message_of<std::invalid_argument>([&] { m->forward(ids, {.attention_mask = at::ones({1, 3})}); });
  CHECK_MESSAGE_CONTAINS(msg, "attention_mask shape [1, 3] must be (batch 1, cached + new tokens 4)");
  auto cache = m->make_cache(1, 5);
  m->forward(ids, {.cache = &cache});
  msg = test::message_of<std::length_error>([&] { m->forward(ids, {.cache = &cache}); });
  CHECK_MESSAGE_CONTAINS(msg, "KV cache full: length (4) + new tokens (4) exceeds capacity (5)");
}

TEST_CASE("model: the library uses every core by default") {
  CausalLM<arch::Llama> m(test::small_config("llama"));
  const char* env = std::getenv("OMP_NUM_THREADS");
  const int expected = env != nullptr && std::atoi(env) > 0 ? std::atoi(env)
                                                             : static_cast<int>(std::thread::hardware_concurrency());
#if TORCH_VERSION_MAJOR >= 2
  // LibTorch 2.x starts with a thread per physical core already and the library keeps that.
  CHECK(at::get_num_threads() > (expected > 1 ? 1 : 0));
#else
  // Debian's 1.13 starts with one thread; the library raises it.
  CHECK(at::get_num_threads() == expected);
#endif
}

TEST_CASE("model: CUDA forward equals CPU forward (runs where CUDA is available)") {
  if (!at::hasCUDA()) {
    MESSAGE("no CUDA device: skipped");
    return;
  }
  at::manual_seed(18);
  CausalLM<arch::MiniMind3MoE> cpu(test::small_config("minimind3_moe"));
  CausalLM<arch::MiniMind3MoE> gpu(test::small_config("minimind3_moe"), at::TensorOptions().device(at::kCUDA));
  {
    at::NoGradGuard g;
    auto src = cpu->named_parameters();
    for (auto& p : gpu->named_parameters()) p.value().copy_(src[p.key()]);
  }
  cpu->eval();
  gpu->eval();
  const auto ids = at::randint(0, 97, {2, 9}, at::kLong);
  const auto ref = cpu->forward(ids).logits;
  for (auto kernel : {AttentionKernel::math, AttentionKernel::fused})
    CHECK(test::max_abs_diff(gpu->forward(ids.to(at::kCUDA), {.kernel = kernel}).logits.cpu(), ref) < 1e-4);
}
