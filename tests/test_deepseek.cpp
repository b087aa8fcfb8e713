// DeepSeek-V3: multi-head latent attention (absorbed == expanded, the latent cache), group-limited
// routing with the selection bias, aux-loss-free balancing, the sequence-wise aux loss, multi-token
// prediction, Mini-LLM's checkpoint layout and training objective (fixtures in tests/data/hf).
#include "helpers.hpp"

#include <fstream>
#include <set>

#include <torch/optim/adam.h>

#include <minillm/infer/generator.hpp>

using namespace minillm;
using nlohmann::json;

namespace {

// A router over 8 experts in 4 groups whose gate computes logits = x (C = E = 8, W = identity).
ModelConfig router_config() {
  auto c = test::small_config("mini_deepseekv3");
  c.hidden_size = 8;
  c.num_experts = 8;
  c.num_experts_per_tok = 2;
  c.n_group = 4;
  c.topk_group = 2;
  c.routed_scaling_factor = 2.5;
  return c;
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// Group-limited top-k written out with loops: the reference the router is checked against.
struct HandRouting {
  std::vector<int64_t> experts;  // chosen, by descending biased score
  std::vector<double> weights;
};
HandRouting route_by_hand(const std::vector<double>& logits, const std::vector<double>& bias, const ModelConfig& c) {
  const auto e = static_cast<size_t>(c.num_experts), per = e / static_cast<size_t>(c.n_group);
  std::vector<double> s(e), choice(e);
  for (size_t i = 0; i < e; ++i) {
    s[i] = sigmoid(logits[i]);
    choice[i] = s[i] + bias[i];
  }
  std::vector<std::pair<double, size_t>> groups;  // (sum of the top 2, group)
  for (size_t g = 0; g < static_cast<size_t>(c.n_group); ++g) {
    std::vector<double> v(choice.begin() + static_cast<std::ptrdiff_t>(g * per),
                          choice.begin() + static_cast<std::ptrdiff_t>((g + 1) * per));
    std::sort(v.rbegin(), v.rend());
    groups.push_back({v[0] + v[1], g});
  }
  std::sort(groups.rbegin(), groups.rend());
  std::vector<std::pair<double, size_t>> candidates;
  for (size_t k = 0; k < static_cast<size_t>(c.topk_group); ++k)
    for (size_t i = 0; i < per; ++i) candidates.push_back({choice[groups[k].second * per + i], groups[k].second * per + i});
  std::sort(candidates.rbegin(), candidates.rend());
  HandRouting r;
  double sum = 0;
  for (size_t k = 0; k < static_cast<size_t>(c.num_experts_per_tok); ++k) {
    r.experts.push_back(static_cast<int64_t>(candidates[k].second));
    sum += s[candidates[k].second];
  }
  for (auto x : r.experts) r.weights.push_back(s[static_cast<size_t>(x)] / (sum + 1e-20) * c.routed_scaling_factor);
  return r;
}

void check_routing(moe::DeepSeekRouterImpl<moe::DeepSeekFlavor::hf>& router, const std::vector<double>& logits,
                   const ModelConfig& c, const HandRouting& expected) {
  const auto x = at::tensor(std::vector<float>(logits.begin(), logits.end())).view({1, 8});
  const auto r = router.route(x);
  // Order within the k chosen does not matter: compare sorted by expert id.
  std::vector<std::pair<int64_t, double>> got, want;
  for (int64_t k = 0; k < c.num_experts_per_tok; ++k) {
    got.push_back({r.indices[0][k].item<int64_t>(), r.weights[0][k].item<double>()});
    want.push_back({expected.experts[static_cast<size_t>(k)], expected.weights[static_cast<size_t>(k)]});
  }
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  for (size_t k = 0; k < got.size(); ++k) {
    CHECK(got[k].first == want[k].first);
    CHECK(got[k].second == doctest::Approx(want[k].second).epsilon(1e-6));
  }
}

}  // namespace

TEST_CASE("deepseek: group-limited routing equals a hand computation; the bias changes the choice, not the weights") {
  const auto c = router_config();
  moe::DeepSeekRouterImpl<moe::DeepSeekFlavor::hf> router(c, {});
  {
    at::NoGradGuard g;
    router.weight.copy_(at::eye(8));
  }
  router.eval();
  // Groups {0,1} {2,3} {4,5} {6,7}. Unbiased, groups 0 and 2 win and experts 0 and 4 are chosen.
  const std::vector<double> logits = {2.0, 0.5, 0.1, 0.2, 1.5, 0.4, -1.0, 0.3};
  std::vector<double> bias(8, 0.0);
  const auto plain = route_by_hand(logits, bias, c);
  CHECK(plain.experts == std::vector<int64_t>{0, 4});
  check_routing(router, logits, c, plain);
  // A bias on expert 3 lifts group 1 over group 2 and expert 3 over expert 4; weights stay the
  // unbiased scores of the chosen experts.
  bias[3] = 0.6;
  {
    at::NoGradGuard g;
    router.e_score_correction_bias.copy_(at::tensor(std::vector<float>(bias.begin(), bias.end())));
  }
  const auto biased = route_by_hand(logits, bias, c);
  CHECK(biased.experts == std::vector<int64_t>{3, 0});  // by biased score
  CHECK(biased.weights[0] == doctest::Approx(sigmoid(0.2) / (sigmoid(2.0) + sigmoid(0.2)) * 2.5));
  check_routing(router, logits, c, biased);
}

TEST_CASE("deepseek: aux-loss-free balancing moves the bias by speed * sign(mean load - load) per training forward") {
  auto c = router_config();
  c.n_group = 1;
  c.topk_group = 1;
  c.bias_update_speed = 0.01;
  moe::DeepSeekRouterImpl<moe::DeepSeekFlavor::mini_llm> router(c, {});
  {
    at::NoGradGuard g;
    router.weight.copy_(at::eye(8));
  }
  router.train();
  // Three tokens; loads by hand: step 1 picks {0,1}, {0,2}, {0,1} -> expert 0: 3, 1: 2, 2: 1, others 0.
  const auto x = at::tensor({3.0F, 2.0F, 1.0F, 0.F, 0.F, 0.F, 0.F, 0.F,  //
                             3.0F, 1.0F, 2.0F, 0.F, 0.F, 0.F, 0.F, 0.F,  //
                             3.0F, 2.0F, 0.5F, 0.F, 0.F, 0.F, 0.F, 0.F})
                     .view({3, 8});
  router.route(x);
  // mean load 6/8 = 0.75: experts 0-2 are above it (-0.01), 3-7 below (+0.01).
  std::vector<double> expected = {-0.01, -0.01, -0.01, 0.01, 0.01, 0.01, 0.01, 0.01};
  for (int64_t i = 0; i < 8; ++i) CHECK(router.e_score_correction_bias[i].item<double>() == doctest::Approx(expected[static_cast<size_t>(i)]));
  // Step 2: a token with equal scores picks two of the raised experts 3..7 (which two is topk's tie
  // break, so the expected bias follows the loads it chose).
  const auto second = router.route(at::zeros({1, 8}));
  std::vector<double> load(8, 0.0);
  for (int64_t k = 0; k < 2; ++k) load[static_cast<size_t>(second.indices[0][k].item<int64_t>())] += 1;
  CHECK(load[0] + load[1] + load[2] == 0);  // the lowered experts are not chosen
  for (size_t i = 0; i < 8; ++i) {
    const double mean = 2.0 / 8.0;
    expected[i] += 0.01 * (mean > load[i] ? 1.0 : mean < load[i] ? -1.0 : 0.0);
    CHECK(router.e_score_correction_bias[static_cast<int64_t>(i)].item<double>() == doctest::Approx(expected[i]));
  }
  router.eval();
  router.route(x);  // inference never moves it
  CHECK(router.e_score_correction_bias[0].item<double>() == doctest::Approx(expected[0]));
}

TEST_CASE("deepseek: absorbed and expanded latent attention give the same output") {
  at::manual_seed(30);
  const auto c = test::small_config("deepseek_v3");
  attention::LatentAttentionImpl<norm::RMSNormHF, position::RoPE> attn(c, 0, {});
  AttentionContext ctx;
  const int64_t b = 2, t = 3, s = 7, h = c.num_attention_heads;
  const auto q_nope = at::randn({b, h, t, c.qk_nope_head_dim});
  const auto q_rope = at::randn({b, h, t, c.qk_rope_head_dim});
  const auto latent = at::randn({b, 1, s, c.kv_lora_rank});
  const auto k_rope = at::randn({b, 1, s, c.qk_rope_head_dim});
  for (const bool masked : {false, true}) {
    CAPTURE(masked);
    ctx.mask = masked ? at::rand({b, 1, t, s}).gt(0.3) | attention::causal_mask(t, s, at::kCPU) : at::Tensor();
    const auto expanded = attn.expanded(q_nope, q_rope, latent, k_rope, ctx);  // (B, H, T, v)
    const auto absorbed = attn.absorbed(q_nope, q_rope, latent, k_rope, ctx);
    CHECK(expanded.sizes() == std::vector<int64_t>{b, h, t, c.v_head_dim});
    CHECK(test::max_abs_diff(expanded, absorbed) < 1e-5);
  }
}

TEST_CASE_TEMPLATE("deepseek: cached decode of a left-padded batch equals the full forward of each prompt", A,
                   arch::DeepSeekV3, arch::MiniDeepSeekV3) {
  at::manual_seed(31);
  auto c = test::small_config(A::name);
  c.rope_interleave = std::string_view(A::name) == "deepseek_v3";
  CausalLM<A> m(c);
  test::perturb_norms(*m);
  m->eval();
  at::NoGradGuard g;
  // Row 0: 3 pads then a 5-token prompt; row 1: an 8-token prompt. Then 4 decode steps.
  const auto prompts = at::randint(3, 97, {2, 12}, at::kLong);
  auto mask = at::ones({2, 12}, at::kLong);
  mask[0].narrow(0, 0, 3).zero_();
  auto cache = m->make_cache(2, 12);
  CHECK(cache.bytes_per_token() == c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 4);
  std::vector<at::Tensor> steps = {m->forward(prompts.narrow(1, 0, 8), {.attention_mask = mask.narrow(1, 0, 8), .cache = &cache}).logits};
  for (int64_t t = 8; t < 12; ++t)
    steps.push_back(m->forward(prompts.narrow(1, t, 1), {.attention_mask = mask.narrow(1, 0, t + 1), .cache = &cache}).logits);
  const auto cached = at::cat(steps, 1);  // (2, 12, V)
  const auto alone0 = m->forward(prompts.narrow(0, 0, 1).narrow(1, 3, 9)).logits;  // (1, 9, V)
  const auto alone1 = m->forward(prompts.narrow(0, 1, 1)).logits;                   // (1, 12, V)
  CHECK(test::max_abs_diff(cached[0].narrow(0, 3, 9), alone0[0]) < 1e-5);
  CHECK(test::max_abs_diff(cached[1], alone1[0]) < 1e-5);
}

TEST_CASE("deepseek: Mini-LLM's training objective and router biases after one training forward") {
  const auto dir = test::data_dir() / "hf/mini_deepseekv3_tiny";
  const auto expected = json::parse(std::ifstream(dir / "expected.json"));
  for (const auto& c : expected["cases"]) {
    auto model = load_pretrained(dir);  // fresh: the training forward moves the biases
    REQUIRE(model->config().use_mtp);
    model->module().train();
    const auto ids = test::ids_of(c["input_ids"]);
    const auto out = model->forward(ids, {.labels = ids});
    const auto& ref = c["train_mode"];
    CHECK(out.loss.item<double>() == doctest::Approx(ref["loss"].get<double>()).epsilon(2e-5));
    CHECK(out.mtp_loss.item<double>() == doctest::Approx(ref["total_mtp_loss"].get<double>()).epsilon(1e-4));
    CHECK(out.aux_loss.item<double>() == doctest::Approx(ref["total_seq_aux_loss"].get<double>()).epsilon(1e-4));
    const auto params = model->module().named_parameters();
    for (const auto& [name, values] : ref["gate_bias_after"].items()) {
      CAPTURE(name);
      // Our name for Mini-LLM's gate.bias.
      const auto ours = name.substr(0, name.size() - std::string("bias").size()) + "e_score_correction_bias";
      const auto* bias = params.find(ours);
      REQUIRE(bias != nullptr);
      const auto want = at::tensor(values.get<std::vector<float>>());
      CHECK(test::max_abs_diff(*bias, want) < 1e-6);
    }
  }
}

TEST_CASE("deepseek: the MTP loss equals the head written out by hand, and leaves with drop_mtp") {
  at::manual_seed(32);
  auto c = test::small_config("mini_deepseekv3");
  c.use_mtp = true;
  c.mtp_loss_lambda = 0.3;
  c.seq_aux_alpha = 0.01;
  CausalLM<arch::MiniDeepSeekV3> m(c);
  test::perturb_norms(*m);
  const auto ids = at::randint(0, 97, {2, 9}, at::kLong);
  const auto out = m->forward(ids, {.labels = ids});
  REQUIRE(out.mtp_loss.defined());
  CHECK(out.loss.item<double>() ==
        doctest::Approx((out.lm_loss + out.mtp_loss + out.aux_loss).item<double>()).epsilon(1e-6));
  // By hand: position t reads h[t] and emb(x[t+1]) and predicts x[t+2]; positions restart at 0.
  auto& mtp = *m->mtp;
  const int64_t n = 8;
  const auto joined = at::cat({mtp.input_norm->forward(m->model->embed_tokens->forward(ids.narrow(1, 1, n))),
                               mtp.hidden_norm->forward(out.hidden.narrow(1, 0, n))},
                              -1);
  AttentionContext ctx;
  ctx.position = m->model->rotary_emb->encode(at::arange(n, at::kLong).unsqueeze(0).expand({2, n}));
  const auto h = mtp.output_norm->forward(mtp.transformer_block->forward(mtp.linear_proj->forward(joined), ctx));
  const auto logp = at::log_softmax(at::linear(h, m->head_weight()), -1);  // (2, 8, V)
  double nll = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t + 2 < 9; ++t) nll -= logp[b][t][ids[b][t + 2].item<int64_t>()].item<double>();
  CHECK(out.mtp_loss.item<double>() == doctest::Approx(0.3 * nll / 14.0).epsilon(1e-5));
  // The MTP block's feed-forward is the dense kind, and eval mode computes no MTP loss.
  CHECK(std::holds_alternative<std::shared_ptr<ffn::SwiGLUImpl>>(mtp.transformer_block->mlp));
  m->eval();
  CHECK_FALSE(m->forward(ids, {.labels = ids}).mtp_loss.defined());
  const auto before = m->forward(ids).logits;
  m->drop_mtp();
  CHECK_FALSE(m->config().use_mtp);
  for (const auto& p : m->named_parameters()) CHECK(p.key().rfind("mtp.", 0) != 0);
  CHECK(test::max_abs_diff(before, m->forward(ids).logits) == 0.0);
}

TEST_CASE("deepseek: both checkpoint layouts round-trip through save_pretrained and load_pretrained") {
  for (const auto* fixture : {"deepseek_v3_tiny", "mini_deepseekv3_tiny"}) {
    CAPTURE(fixture);
    auto model = load_pretrained(test::data_dir() / "hf" / fixture);
    model->module().eval();
    const auto dir = test::temp_dir("deepseek_layout");
    save_pretrained(*model, dir);
    const auto written = json::parse(std::ifstream(dir / "config.json"));
    const auto original = json::parse(std::ifstream(test::data_dir() / "hf" / fixture / "config.json"));
    CHECK(written["model_type"] == original["model_type"]);
    CHECK(written["architectures"] == original["architectures"]);
    // The same tensor names as the reference wrote.
    io::SafetensorsFile ours(dir / "model.safetensors"), theirs(test::data_dir() / "hf" / fixture / "model.safetensors");
    std::set<std::string> our_names, their_names;
    for (const auto& e : ours.header().tensors) our_names.insert(e.name);
    for (const auto& e : theirs.header().tensors) their_names.insert(e.name);
    CHECK(our_names == their_names);
    if (std::string_view(fixture) == "mini_deepseekv3_tiny") {
      for (const auto* field : {"num_dense_layers", "n_routed_experts", "n_activated_experts", "n_expert_groups",
                                "n_limited_groups", "route_scale", "use_mtp", "mtp_loss_lambda", "bias_update_speed",
                                "seq_aux_alpha", "q_lora_rank", "kv_lora_rank"})
        CHECK_MESSAGE(written[field] == original[field], field);
    } else {
      for (const auto* field : {"first_k_dense_replace", "n_routed_experts", "num_experts_per_tok", "n_group",
                                "topk_group", "routed_scaling_factor", "rope_interleave", "q_lora_rank"})
        CHECK_MESSAGE(written.value(field, json()) == original[field], field);
    }
    auto back = load_pretrained(dir);
    back->module().eval();
    const auto ids = at::randint(0, 512, {2, 7}, at::kLong);
    CHECK(test::max_abs_diff(model->forward(ids).logits, back->forward(ids).logits) == 0.0);
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("deepseek: exact parameter counts of mini_deepseekv3 (Mini-LLM's own count)") {
  auto c = preset_config("mini_deepseekv3");
  auto m = make_model(c, at::TensorOptions().device(at::kMeta));
  const auto r = report_parameters(m->module(), c);
  CHECK(r.total == 174948040);
  c.use_mtp = false;
  CHECK(report_parameters(make_model(c, at::TensorOptions().device(at::kMeta))->module(), c).total == 164744520);
}

TEST_CASE("deepseek: the deepseek_tiny preset overfits one batch") {
  at::manual_seed(33);
  auto c = presets::deepseek_tiny::config();
  c.vocab_size = 64;
  CausalLM<arch::MiniDeepSeekV3> m(c);
  REQUIRE(m->mtp);
  const auto ids = at::randint(0, 64, {2, 32}, at::kLong);
  std::vector<at::Tensor> trained;
  for (const auto& p : m->parameters())
    if (p.requires_grad()) trained.push_back(p);
  torch::optim::Adam opt(trained, torch::optim::AdamOptions(3e-3));
  double first = 0, last = 0;
  for (int step = 0; step < 80; ++step) {
    opt.zero_grad();
    const auto out = m->forward(ids, {.labels = ids});
    out.loss.backward();
    opt.step();
    (step == 0 ? first : last) = out.lm_loss.item<double>();
  }
  MESSAGE("lm loss " << first << " -> " << last);
  CHECK(last < 0.1 * first);
}

TEST_CASE("deepseek: self-speculative decoding with the MTP head gives the plain greedy output") {
  at::manual_seed(34);
  auto c = test::small_config("mini_deepseekv3");
  c.use_mtp = true;
  CausalLM<arch::MiniDeepSeekV3> m(c);
  // Teach both heads a cycle of 12 tokens, so that drafts are often right (and sometimes not).
  const auto cycle = (at::arange(48, at::kLong) % 12 + 20).view({1, 48});
  std::vector<at::Tensor> trained;
  for (const auto& p : m->parameters())
    if (p.requires_grad()) trained.push_back(p);
  torch::optim::Adam opt(trained, torch::optim::AdamOptions(1e-2));
  for (int step = 0; step < 40; ++step) {
    opt.zero_grad();
    m->forward(cycle, {.labels = cycle}).loss.backward();
    opt.step();
  }
  infer::Generator<CausalLM<arch::MiniDeepSeekV3>> gen(m, test::minimind_tokenizer());
  infer::GenerationOptions plain{.sampling = {.temperature = 0}, .max_new_tokens = 24};
  auto speculative = plain;
  speculative.speculative = true;
  int64_t drafted = 0, accepted = 0;
  for (const auto& prompt : {std::vector<int32_t>{20, 21, 22, 23}, std::vector<int32_t>{5, 70, 33}, std::vector<int32_t>{9}}) {
    const auto a = gen.generate(prompt, plain);
    const auto b = gen.generate(prompt, speculative);
    CHECK(a.tokens == b.tokens);
    CHECK(a.text == b.text);
    CHECK(b.tokens.size() == 24);
    drafted += b.drafted;
    accepted += b.accepted;
  }
  MESSAGE("trained head: drafted " << drafted << ", accepted " << accepted);
  CHECK(accepted > 0);  // the accepting branch ran
  // A scrambled head drafts badly: the rejecting branch runs, the output stays the same.
  {
    at::NoGradGuard g;
    m->mtp->linear_proj->weight.normal_(0.0, 1.0);
  }
  drafted = accepted = 0;
  for (const auto& prompt : {std::vector<int32_t>{20, 21, 22, 23}, std::vector<int32_t>{5, 70, 33}}) {
    const auto b = gen.generate(prompt, speculative);
    CHECK(gen.generate(prompt, plain).tokens == b.tokens);
    drafted += b.drafted;
    accepted += b.accepted;
  }
  MESSAGE("scrambled head: drafted " << drafted << ", accepted " << accepted);
  CHECK(accepted < drafted);
  // Only where it applies: one prompt, greedy, a model with an MTP head.
  speculative.sampling.temperature = 0.7;
  CHECK_MESSAGE_CONTAINS(test::message_of<std::invalid_argument>([&] { gen.generate({1, 2}, speculative); }), "greedy");
}
