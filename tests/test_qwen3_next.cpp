// Qwen3-Next: the gated delta rule (chunked == recurrent, restarts), Gated DeltaNet's fixed-size
// cache, hybrid layers, gated attention with partial rotary, the zero-centred norm, the gated shared
// expert and HF's pooled aux loss, packing, Mini-LLM's layouts (fixtures in tests/data/hf).
#include "helpers.hpp"

#include <fstream>
#include <set>

#include <torch/optim/adam.h>

using namespace minillm;
using nlohmann::json;

namespace {

// Random inputs of the delta rule as the layer makes them: L2-normalised q and k, beta in (0, 1),
// log decays g < 0.
struct DeltaInputs {
  at::Tensor q, k, v, g, beta, state;
};
DeltaInputs delta_inputs(int64_t b, int64_t h, int64_t t, int64_t dk, int64_t dv) {
  auto unit = [](const at::Tensor& x) { return x / x.norm(2, -1, true); };
  return {unit(at::randn({b, h, t, dk})), unit(at::randn({b, h, t, dk})), at::randn({b, h, t, dv}),
          -at::rand({b, h, t}) * 0.5, at::rand({b, h, t}), at::randn({b, h, dk, dv}) * 0.1};
}

}  // namespace

TEST_CASE("qwen3_next: the chunked delta rule equals the recurrent one for lengths 1, 63, 64, 65 and 200") {
  at::manual_seed(41);
  for (const int64_t t : {1, 63, 64, 65, 200}) {
    CAPTURE(t);
    const auto in = delta_inputs(2, 3, t, 8, 6);
    const auto [rec, rec_state] = attention::delta_rule_recurrent(in.q, in.k, in.v, in.g, in.beta, in.state);
    const auto [chk, chk_state] = attention::delta_rule_chunked(in.q, in.k, in.v, in.g, in.beta, in.state);
    CHECK(rec.sizes() == std::vector<int64_t>{2, 3, t, 6});
    CHECK(test::max_abs_diff(rec, chk) < 1e-4);
    CHECK(test::max_abs_diff(rec_state, chk_state) < 1e-4);
    // A small chunk: many chunks, the last one partial.
    const auto [small, small_state] = attention::delta_rule_chunked(in.q, in.k, in.v, in.g, in.beta, in.state, {}, 16);
    CHECK(test::max_abs_diff(rec, small) < 1e-4);
    CHECK(test::max_abs_diff(rec_state, small_state) < 1e-4);
  }
}

TEST_CASE("qwen3_next: a restart empties the state: each document of a row computes as if alone, in both forms") {
  at::manual_seed(42);
  const int64_t t = 150, start = 70;  // two documents: [0, 70) and [70, 150); the second spans chunks 1 and 2
  const auto in = delta_inputs(1, 2, t, 8, 6);
  auto restarts = at::zeros({1, t}, at::kBool);
  restarts[0][start] = true;
  const auto zero = at::zeros_like(in.state);
  for (const bool chunked : {false, true}) {
    CAPTURE(chunked);
    auto run = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                   const at::Tensor& beta, const at::Tensor& s, const at::Tensor& r) {
      return chunked ? attention::delta_rule_chunked(q, k, v, g, beta, s, r) : attention::delta_rule_recurrent(q, k, v, g, beta, s, r);
    };
    const auto [packed, packed_state] = run(in.q, in.k, in.v, in.g, in.beta, in.state, restarts);
    auto part = [&](const at::Tensor& x, int64_t from, int64_t n) { return x.narrow(2, from, n); };
    const auto [first, first_state] = run(part(in.q, 0, start), part(in.k, 0, start), part(in.v, 0, start),
                                          part(in.g, 0, start), part(in.beta, 0, start), in.state, {});
    const int64_t n = t - start;
    const auto [second, second_state] = run(part(in.q, start, n), part(in.k, start, n), part(in.v, start, n),
                                            part(in.g, start, n), part(in.beta, start, n), zero, {});
    CHECK(test::max_abs_diff(packed.narrow(2, 0, start), first) < 1e-4);
    CHECK(test::max_abs_diff(packed.narrow(2, start, n), second) < 1e-4);
    CHECK(test::max_abs_diff(packed_state, second_state) < 1e-4);
  }
}

TEST_CASE("qwen3_next: zero-centred RMSNorm is (1 + w) * x / rms(x), its weight starting at zero") {
  at::manual_seed(43);
  norm::ZeroCenteredRMSNormImpl n(6, 1e-6, {});
  CHECK(at::equal(n.weight, at::zeros({6})));
  {
    at::NoGradGuard g;
    n.weight.uniform_(-0.5, 0.5);
  }
  const auto x = at::randn({3, 6});
  const auto y = n.forward(x);
  for (int64_t r = 0; r < 3; ++r) {
    double ms = 0;
    for (int64_t i = 0; i < 6; ++i) ms += std::pow(x[r][i].item<double>(), 2) / 6.0;
    for (int64_t i = 0; i < 6; ++i) {
      const double want = x[r][i].item<double>() / std::sqrt(ms + 1e-6) * (1.0 + n.weight[i].item<double>());
      CHECK(y[r][i].item<double>() == doctest::Approx(want).epsilon(1e-5));
    }
  }
}

TEST_CASE("qwen3_next: partial rotary turns the head's leading dims by position, half-split, and leaves the rest") {
  auto c = test::small_config("qwen3_next");
  c.head_dim = 8;
  c.partial_rotary_factor = 0.5;  // 4 rotary dims: pairs (0, 2) and (1, 3)
  c.rope_theta = 100.0;
  REQUIRE(c.rotary_dim() == 4);
  position::RoPEImpl rope(c, {});
  const int64_t pos = 5;
  const auto pe = rope.encode(at::full({1, 1}, pos, at::kLong));
  const auto x = at::arange(1, 9, at::kFloat).view({1, 1, 1, 8});
  const auto y = position::RoPEImpl::rotate(x, pe);
  for (int64_t i = 0; i < 2; ++i) {
    const double angle = static_cast<double>(pos) * std::pow(100.0, -2.0 * static_cast<double>(i) / 4.0);
    const double a = x[0][0][0][i].item<double>(), b = x[0][0][0][i + 2].item<double>();
    CHECK(y[0][0][0][i].item<double>() == doctest::Approx(a * std::cos(angle) - b * std::sin(angle)).epsilon(1e-5));
    CHECK(y[0][0][0][i + 2].item<double>() == doctest::Approx(b * std::cos(angle) + a * std::sin(angle)).epsilon(1e-5));
  }
  CHECK(at::equal(y.narrow(-1, 4, 4), x.narrow(-1, 4, 4)));
}

TEST_CASE("qwen3_next: layer kinds follow layer_types or full_attention_interval, mlp_only_layers and decoder_sparse_step") {
  auto c = test::small_config("qwen3_next");
  c.num_hidden_layers = 4;
  c.layer_types = {};
  c.full_attention_interval = 2;
  c.mlp_only_layers = {1};
  CausalLM<arch::Qwen3Next> m(c);
  std::set<std::string> names;
  for (const auto& p : m->named_parameters()) names.insert(p.key());
  CHECK(names.count("model.layers.0.linear_attn.in_proj_qkvz.weight"));
  CHECK(names.count("model.layers.1.self_attn.q_proj.weight"));
  CHECK(names.count("model.layers.2.linear_attn.A_log"));
  CHECK(names.count("model.layers.3.self_attn.q_norm.weight"));
  CHECK(names.count("model.layers.1.mlp.gate_proj.weight"));  // dense: listed in mlp_only_layers
  CHECK(names.count("model.layers.0.mlp.shared_expert_gate.weight"));
  CHECK(names.count("model.layers.2.mlp.experts.3.down_proj.weight"));
  // The cache: fixed-size state for the linear layers, per-token keys and values for the full ones.
  const auto cache = m->make_cache(1, 100);
  CHECK(cache.bytes_per_token() == 2 * (2 * c.num_key_value_heads * c.head_dim * 4));
  CHECK(cache.state_bytes_per_row() == 2 * ((2 * 2 * 16 + 4 * 8) * 3 * 4 + 4 * 16 * 8 * 4));

  auto bad = c;
  bad.layer_types = {"linear_attention", "full_attention", "sliding_attention", "full_attention"};
  CHECK_MESSAGE_CONTAINS(test::message_of<ConfigError>([&] { CausalLM<arch::Qwen3Next>{bad}; }),
                         "layer_types[2] (\"sliding_attention\")");
  bad.layer_types = {"full_attention"};
  CHECK_MESSAGE_CONTAINS(test::message_of<ConfigError>([&] { CausalLM<arch::Qwen3Next>{bad}; }), "layer_types has 1 entries");
  bad = c;
  bad.mlp_only_layers = {7};
  CHECK_MESSAGE_CONTAINS(test::message_of<ConfigError>([&] { CausalLM<arch::Qwen3Next>{bad}; }), "mlp_only_layers names layer 7");
  bad = c;
  bad.linear_num_value_heads = 3;
  CHECK_MESSAGE_CONTAINS(test::message_of<ConfigError>([&] { CausalLM<arch::Qwen3Next>{bad}; }), "linear_num_value_heads (3)");
  // An architecture without hybrid mixers refuses linear layers rather than ignoring them.
  auto llama = test::small_config("llama");
  llama.layer_types = {"linear_attention", "full_attention"};
  CHECK_MESSAGE_CONTAINS(test::message_of<ConfigError>([&] { CausalLM<arch::Llama>{llama}; }), "hybrid token mixers");
}

TEST_CASE("qwen3_next: transformers' training objective (lm + coef * pooled aux loss) on the fixture") {
  const auto dir = test::data_dir() / "hf/qwen3_next_tiny";
  const auto expected = json::parse(std::ifstream(dir / "expected.json"));
  auto model = load_pretrained(dir);
  model->module().train();
  for (const auto& c : expected["cases"]) {
    const auto ids = test::ids_of(c["input_ids"]);
    CAPTURE(ids.sizes());
    const auto out = model->forward(ids, {.labels = ids});
    const auto& ref = c["train_mode"];
    CHECK(std::abs(out.loss.item<double>() - ref["loss"].get<double>()) <= 2e-4);
    CHECK(out.aux_loss.item<double>() ==
          doctest::Approx(ref["aux_loss"].get<double>() * model->config().router_aux_loss_coef).epsilon(1e-4));
  }
}

TEST_CASE_TEMPLATE("qwen3_next: cached decode of a left-padded batch equals the full forward of each prompt", A,
                   arch::Qwen3Next, arch::MiniQwen3Next) {
  at::manual_seed(44);
  auto c = test::small_config(A::name);
  CausalLM<A> m(c);
  test::perturb_norms(*m);
  m->eval();
  at::NoGradGuard g;
  // Row 0: 3 pads then a 67-token prompt (the chunked form, past one chunk); row 1: 70 tokens. Then
  // 4 decode steps (the recurrent form).
  const auto prompts = at::randint(3, 97, {2, 74}, at::kLong);
  auto mask = at::ones({2, 74}, at::kLong);
  mask[0].narrow(0, 0, 3).zero_();
  auto cache = m->make_cache(2, 74);
  std::vector<at::Tensor> steps = {m->forward(prompts.narrow(1, 0, 70), {.attention_mask = mask.narrow(1, 0, 70), .cache = &cache}).logits};
  for (int64_t t = 70; t < 74; ++t)
    steps.push_back(m->forward(prompts.narrow(1, t, 1), {.attention_mask = mask.narrow(1, 0, t + 1), .cache = &cache}).logits);
  const auto cached = at::cat(steps, 1);                                            // (2, 74, V)
  const auto alone0 = m->forward(prompts.narrow(0, 0, 1).narrow(1, 3, 71)).logits;  // (1, 71, V)
  const auto alone1 = m->forward(prompts.narrow(0, 1, 1)).logits;                   // (1, 74, V)
  CHECK(test::max_abs_diff(cached[0].narrow(0, 3, 71), alone0[0]) < 1e-4);
  CHECK(test::max_abs_diff(cached[1], alone1[0]) < 1e-4);
}

TEST_CASE("qwen3_next: a packed row gives each document the logits and loss it has alone") {
  at::manual_seed(45);
  auto c = test::small_config("qwen3_next");
  CausalLM<arch::Qwen3Next> m(c);
  test::perturb_norms(*m);
  m->eval();
  at::NoGradGuard g;
  const int64_t n1 = 30, n2 = 50;  // the second document crosses the 64-token chunk boundary
  const auto doc1 = at::randint(3, 97, {1, n1}, at::kLong), doc2 = at::randint(3, 97, {1, n2}, at::kLong);
  const auto ids = at::cat({doc1, doc2}, 1);
  const auto positions = at::cat({at::arange(n1, at::kLong), at::arange(n2, at::kLong)}).unsqueeze(0);
  auto segment = at::cat({at::zeros({n1}, at::kLong), at::ones({n2}, at::kLong)});
  const auto mask = (segment.unsqueeze(1).eq(segment.unsqueeze(0)) & at::ones({n1 + n2, n1 + n2}, at::kBool).tril())
                        .view({1, 1, n1 + n2, n1 + n2});
  auto labels = ids.clone();
  labels[0][n1] = kIgnoreIndex;  // the first token of document 2 is not a target of document 1
  const auto packed = m->forward(ids, {.labels = labels, .attention_mask = mask, .position_ids = positions});
  const auto alone1 = m->forward(doc1, {.labels = doc1});
  const auto alone2 = m->forward(doc2, {.labels = doc2});
  CHECK(test::max_abs_diff(packed.logits.narrow(1, 0, n1), alone1.logits) < 1e-4);
  CHECK(test::max_abs_diff(packed.logits.narrow(1, n1, n2), alone2.logits) < 1e-4);
  const double per_token = (alone1.lm_loss.item<double>() * (n1 - 1) + alone2.lm_loss.item<double>() * (n2 - 1)) /
                           static_cast<double>(n1 + n2 - 2);
  CHECK(packed.lm_loss.item<double>() == doctest::Approx(per_token).epsilon(1e-5));
}

TEST_CASE("qwen3_next: exact parameter counts of Mini-LLM's mini_qwen3_next and mini_llama3 (Mini-LLM's own count)") {
  for (const auto& [name, want] : {std::pair{"mini_qwen3_next", int64_t{162164376}}, std::pair{"mini_llama3", int64_t{100538112}}}) {
    CAPTURE(name);
    const auto c = preset_config(name);
    CHECK(report_parameters(make_model(c, at::TensorOptions().device(at::kMeta))->module(), c).total == want);
  }
}

TEST_CASE("qwen3_next: HF's and Mini-LLM's layouts round-trip through save_pretrained and load_pretrained") {
  at::manual_seed(46);
  for (const auto* arch_name : {"qwen3_next", "mini_qwen3_next", "mini_llama3"}) {
    CAPTURE(arch_name);
    auto model = make_model(test::small_config(arch_name));
    test::perturb_norms(model->module());
    model->module().eval();
    const auto dir = test::temp_dir("qwen3_next_layout");
    save_pretrained(*model, dir);
    const auto written = json::parse(std::ifstream(dir / "config.json"));
    io::SafetensorsFile file(dir / "model.safetensors");
    std::set<std::string> names;
    for (const auto& e : file.header().tensors) names.insert(e.name);
    if (std::string_view(arch_name) == "qwen3_next") {
      CHECK(written["architectures"] == json::array({"Qwen3NextForCausalLM"}));
      CHECK(written["layer_types"] == json::array({"linear_attention", "full_attention"}));
      CHECK(written["partial_rotary_factor"] == 0.5);
      CHECK(names.count("model.layers.0.mlp.experts.0.gate_proj.weight"));
      CHECK(names.count("model.layers.0.mlp.shared_expert.up_proj.weight"));
    } else if (std::string_view(arch_name) == "mini_qwen3_next") {
      CHECK(written["model_type"] == "mini_qwen3_next");
      CHECK(written["mlp_only_layers"] == json::array({0}));
      CHECK(names.count("model.layers.1.mlp.experts.gate_up_proj"));  // fused, as Mini-LLM's parameters are
      CHECK(names.count("model.layers.1.mlp.experts.down_proj"));
      CHECK(names.count("model.layers.1.mlp.shared_expert.w1.weight"));
      CHECK(names.count("model.layers.0.mlp.w2.weight"));
      CHECK_FALSE(names.count("model.layers.1.mlp.experts.0.gate_proj.weight"));
    } else {
      CHECK(written["architectures"] == json::array({"MiniLlama3ForCausalLM"}));
      CHECK(names.count("model.layers.1.mlp.w3.weight"));
    }
    auto back = load_pretrained(dir);
    back->module().eval();
    const auto ids = at::randint(0, 97, {2, 7}, at::kLong);
    CHECK(test::max_abs_diff(model->forward(ids).logits, back->forward(ids).logits) == 0.0);
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("qwen3_next: the qwen3_next_tiny preset overfits one batch") {
  at::manual_seed(47);
  auto c = presets::qwen3_next_tiny::config();
  c.vocab_size = 64;
  CausalLM<arch::Qwen3Next> m(c);
  const auto ids = at::randint(0, 64, {2, 32}, at::kLong);
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(3e-3));
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    opt.zero_grad();
    const auto out = m->forward(ids, {.labels = ids});
    out.loss.backward();
    opt.step();
    (step == 0 ? first : last) = out.lm_loss.item<double>();
  }
  MESSAGE("lm loss " << first << " -> " << last);
  CHECK(last < 0.1 * first);
}

