// Policies one by one: norms, RoPE/YaRN, attention kernels, GQA, the MoE router and experts.
#include "helpers.hpp"

#include <cmath>

using namespace minillm;

TEST_CASE("norm: RMSNorm computes in fp32 with both rounding orders") {
  at::manual_seed(0);
  const int64_t dim = 32;
  const double eps = 1e-6;
  norm::RMSNormImpl<norm::Rounding::multiply_then_cast> mtc(dim, eps, {});
  norm::RMSNormImpl<norm::Rounding::cast_then_multiply> ctm(dim, eps, {});
  {
    at::NoGradGuard g;
    mtc.weight.uniform_(0.5, 1.5);
    ctm.weight.copy_(mtc.weight);
  }
  const auto x = at::randn({4, 7, dim}) * 3.0;
  const auto xd = x.to(at::kDouble);
  const auto normed = xd * at::rsqrt(xd.pow(2).mean(-1, true) + eps);  // reference in double
  const auto w = mtc.weight.to(at::kDouble);

  SUBCASE("fp32: both orders equal the formula") {
    CHECK(test::max_abs_diff(mtc.forward(x), w * normed) < 1e-5);
    CHECK(test::max_abs_diff(ctm.forward(x), w * normed) < 1e-5);
  }
  SUBCASE("bf16: the orders differ as the references do") {
    const auto xb = x.to(at::kBFloat16);
    const auto nb = xb.to(at::kDouble) * at::rsqrt(xb.to(at::kDouble).pow(2).mean(-1, true) + eps);
    const auto out_mtc = mtc.forward(xb), out_ctm = ctm.forward(xb);
    CHECK((out_mtc.scalar_type() == at::kBFloat16));  // MiniMind-3: cast last
    CHECK((out_ctm.scalar_type() == at::kFloat));     // HF: bf16 * fp32 weight promotes
    // MiniMind-3: bf16(w * n); HF: w * bf16(n).
    CHECK(test::max_abs_diff(out_mtc, (w * nb).to(at::kBFloat16)) <= 0.02);
    CHECK(test::max_abs_diff(out_ctm, w * nb.to(at::kBFloat16).to(at::kDouble)) < 1e-5);
    CHECK(test::max_abs_diff(out_mtc, out_ctm) > 0.0);
  }
}

TEST_CASE("norm: LayerNorm equals the formula") {
  at::manual_seed(1);
  norm::LayerNormImpl ln(16, 1e-5, {});
  {
    at::NoGradGuard g;
    ln.weight.uniform_(0.5, 1.5);
    ln.bias.uniform_(-0.5, 0.5);
  }
  const auto x = at::randn({3, 16}).to(at::kDouble);
  const auto mean = x.mean(-1, true);
  const auto var = (x - mean).pow(2).mean(-1, true);
  const auto expected = (x - mean) / at::sqrt(var + 1e-5) * ln.weight.to(at::kDouble) + ln.bias.to(at::kDouble);
  CHECK(test::max_abs_diff(ln.forward(x.to(at::kFloat)), expected) < 1e-5);
}

namespace {
at::Tensor rope_at(position::RoPEImpl& rope, const at::Tensor& v, int64_t pos) {  // v: (D) -> (D)
  const auto pe = rope.encode(at::full({1, 1}, pos, at::kLong));
  return position::RoPEImpl::rotate(v.view({1, 1, 1, -1}), pe).view({-1});
}
}  // namespace

TEST_CASE("position: RoPE scores depend only on the relative position") {
  at::manual_seed(2);
  auto c = test::small_config("llama");
  c.rope_theta = 10000.0;
  position::RoPEImpl rope(c, {});
  const auto q = at::randn({16}), k = at::randn({16});
  const double base = at::dot(rope_at(rope, q, 3), rope_at(rope, k, 1)).item<double>();
  for (auto [m, n] : {std::pair{10, 8}, {57, 55}, {100, 98}}) {
    CAPTURE(m);
    CHECK(at::dot(rope_at(rope, q, m), rope_at(rope, k, n)).item<double>() == doctest::Approx(base).epsilon(1e-4));
  }
  // A different offset gives a different score, position 0 is the identity, norms are kept.
  CHECK(std::abs(at::dot(rope_at(rope, q, 9), rope_at(rope, k, 1)).item<double>() - base) > 1e-3);
  CHECK(test::max_abs_diff(rope_at(rope, q, 0), q) < 1e-7);
  CHECK(rope_at(rope, q, 77).norm().item<double>() == doctest::Approx(q.norm().item<double>()).epsilon(1e-5));
}

TEST_CASE("position: YaRN ramp bounds and frequencies follow MiniMind's formula") {
  const RopeScaling s;  // MiniMind's constants
  CHECK(position::yarn_correction_range(64, 1e6, s) == std::pair<int64_t, int64_t>{5, 14});
  CHECK(position::yarn_correction_range(96, 1e6, s) == std::pair<int64_t, int64_t>{8, 21});

  auto c = presets::minimind3::config();  // head_dim 96, max positions 32768 > 2048: YaRN applies
  const auto [plain, f1] = position::rope_inverse_frequencies(c);
  c.rope_scaling = s;
  const auto [scaled, f2] = position::rope_inverse_frequencies(c);
  CHECK(f2 == 1.0);
  const auto ratio = (scaled / plain).to(at::kDouble);
  for (int64_t i = 0; i < 48; ++i) {
    CAPTURE(i);
    const double expected = i <= 8 ? 1.0 : i >= 21 ? 1.0 / 16.0 : 1.0 - (i - 8) / 13.0 * (1.0 - 1.0 / 16.0);
    CHECK(ratio[i].item<double>() == doctest::Approx(expected).epsilon(1e-5));
  }
  // Not applied when the model's context does not exceed the original one.
  c.max_position_embeddings = 2048;
  CHECK(test::max_abs_diff(position::rope_inverse_frequencies(c).first, plain) == 0.0);
}

namespace {
// Attention by definition, in double, one query at a time.
at::Tensor naive_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  const int64_t b = q.size(0), h = q.size(1), t = q.size(2), d = q.size(3), hkv = k.size(1), s = k.size(2);
  auto out = at::zeros({b, h, t, d}, at::kDouble);
  const auto qd = q.to(at::kDouble), kd = k.to(at::kDouble), vd = v.to(at::kDouble);
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t hi = 0; hi < h; ++hi)
      for (int64_t i = 0; i < t; ++i) {
        const auto kv = hi / (h / hkv);
        std::vector<double> w(static_cast<size_t>(s));
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < s; ++j) {
          const bool ok = mask.defined() ? mask[bi][0][i][j].item<bool>() : j <= s - t + i;
          w[j] = ok ? at::dot(qd[bi][hi][i], kd[bi][kv][j]).item<double>() / std::sqrt(double(d)) : -INFINITY;
          mx = std::max(mx, w[j]);
        }
        for (auto& x : w) sum += (x = std::exp(x - mx));
        for (int64_t j = 0; j < s; ++j) out[bi][hi][i] += w[j] / sum * vd[bi][kv][j];
      }
  return out;
}
}  // namespace

TEST_CASE("attention: math and fused kernels agree with the definition") {
  at::manual_seed(3);
  const auto q = at::randn({2, 4, 5, 8}), k = at::randn({2, 2, 7, 8}), v = at::randn({2, 2, 7, 8});
  SUBCASE("causal, no cache (T == S)") {
    const auto ks = k.narrow(2, 0, 5), vs = v.narrow(2, 0, 5);
    const auto ref = naive_attention(q, ks, vs, {});
    CHECK(test::max_abs_diff(attention::attention_math(q, ks, vs, {}), ref) < 1e-5);
    CHECK(test::max_abs_diff(attention::attention_fused(q, ks, vs, {}), ref) < 1e-5);
  }
  SUBCASE("causal over cached keys (S > T)") {
    const auto ref = naive_attention(q, k, v, {});
    CHECK(test::max_abs_diff(attention::attention_math(q, k, v, {}), ref) < 1e-5);
    CHECK(test::max_abs_diff(attention::attention_fused(q, k, v, {}), ref) < 1e-5);
  }
  SUBCASE("explicit mask with padding") {
    auto mask = attention::causal_mask(5, 7, q.device()).expand({2, 1, 5, 7}).clone();
    mask.index_put_({1, at::indexing::Slice(), at::indexing::Slice(), at::indexing::Slice(0, 2)}, false);
    const auto ref = naive_attention(q, k, v, mask);
    CHECK(test::max_abs_diff(attention::attention_math(q, k, v, mask), ref) < 1e-5);
    CHECK(test::max_abs_diff(attention::attention_fused(q, k, v, mask), ref) < 1e-5);
  }
}

TEST_CASE("attention: GQA with kv heads == heads is MHA") {
  at::manual_seed(4);
  auto c = test::small_config("llama");
  c.num_key_value_heads = c.num_attention_heads;
  using Attn = arch::Llama::attention::module<arch::Llama::norm, arch::Llama::position>;
  Attn attn(c, 0, {});
  position::RoPEImpl rope(c, {});
  const auto x = at::randn({2, 6, c.hidden_size});
  AttentionContext ctx;
  ctx.position = rope.encode(at::arange(6).unsqueeze(0).expand({2, 6}));
  const auto got = attn.forward(x, ctx);
  // Multi-head attention written out: every head has its own key and value projection.
  const int64_t h = c.num_attention_heads, d = c.head_dim;
  auto heads = [&](const at::Tensor& y) { return y.view({2, 6, h, d}); };
  const auto q = position::RoPEImpl::rotate(heads(attn.q_proj->forward(x)), ctx.position).transpose(1, 2);
  const auto k = position::RoPEImpl::rotate(heads(attn.k_proj->forward(x)), ctx.position).transpose(1, 2);
  const auto v = heads(attn.v_proj->forward(x)).transpose(1, 2);
  const auto mha = naive_attention(q, k, v, {}).to(at::kFloat).transpose(1, 2).reshape({2, 6, h * d});
  CHECK(test::max_abs_diff(got, attn.o_proj->forward(mha)) < 1e-5);
}

TEST_CASE("attention: GQA equals MHA with each kv head repeated for its query group") {
  at::manual_seed(5);
  const auto gqa_cfg = test::small_config("llama");  // 4 query heads, 2 kv heads
  auto mha_cfg = gqa_cfg;
  mha_cfg.num_key_value_heads = 4;
  CausalLM<arch::Llama> gqa(gqa_cfg), mha(mha_cfg);
  test::perturb_norms(*gqa);
  {
    at::NoGradGuard g;
    auto src = gqa->named_parameters();
    for (auto& p : mha->named_parameters()) {
      auto w = src[p.key()];
      if (p.key().find("k_proj") != std::string::npos || p.key().find("v_proj") != std::string::npos)
        w = w.view({2, 16, -1}).repeat_interleave(2, 0).reshape(p.value().sizes());  // kv head h/2 -> head h
      p.value().copy_(w);
    }
  }
  const auto ids = at::randint(0, gqa_cfg.vocab_size, {2, 9}, at::kLong);
  CHECK(test::max_abs_diff(gqa->forward(ids).logits, mha->forward(ids).logits) < 1e-5);
}

TEST_CASE("moe: router weights and aux losses match a hand computation") {
  ModelConfig c;
  c.hidden_size = 2;
  c.num_experts = 3;
  c.num_experts_per_tok = 2;
  c.router_aux_loss_coef = 0.1;
  const std::vector<std::vector<double>> gate = {{1, 0}, {0, 1}, {1, 1}};
  const std::vector<std::vector<double>> xs = {{1, 2}, {0.5, -1}, {2, 0}, {-1, 1.5}};  // 2 sequences of 2 tokens
  const auto x = at::tensor({1.0f, 2.0f, 0.5f, -1.0f, 2.0f, 0.0f, -1.0f, 1.5f}).view({4, 2});

  // By hand: softmax over gate logits, the two largest, renormalised.
  std::vector<std::vector<double>> p(4, std::vector<double>(3));
  std::vector<std::array<int, 2>> top(4);
  for (int n = 0; n < 4; ++n) {
    double z = 0;
    for (int e = 0; e < 3; ++e) z += p[n][e] = std::exp(gate[e][0] * xs[n][0] + gate[e][1] * xs[n][1]);
    for (auto& v : p[n]) v /= z;
    std::array<int, 3> order = {0, 1, 2};
    std::sort(order.begin(), order.end(), [&](int a, int b) { return p[n][a] > p[n][b]; });
    top[n] = {order[0], order[1]};
  }
  std::vector<double> mean_p(3, 0.0);
  for (int n = 0; n < 4; ++n)
    for (int e = 0; e < 3; ++e) mean_p[e] += p[n][e] / 4;

  for (bool normalize : {true, false}) {
    CAPTURE(normalize);
    c.norm_topk_prob = normalize;
    moe::SoftmaxTopKImpl<moe::AuxLoss::batch> router(c, {});
    {
      at::NoGradGuard g;
      router.weight.copy_(at::tensor({1.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f}).view({3, 2}));
    }
    const auto r = router.route(x);
    for (int n = 0; n < 4; ++n) {
      const double s = normalize ? p[n][top[n][0]] + p[n][top[n][1]] : 1.0;
      for (int slot = 0; slot < 2; ++slot) {
        CHECK(r.indices[n][slot].item<int64_t>() == top[n][slot]);
        CHECK(r.weights[n][slot].item<double>() == doctest::Approx(p[n][top[n][slot]] / s).epsilon(1e-6));
      }
    }
    // Batch form: E * sum_{slot,e} (share of tokens whose slot picks e) * mean_p[e] * coef.
    double batch = 0;
    for (int slot = 0; slot < 2; ++slot)
      for (int e = 0; e < 3; ++e) {
        double share = 0;
        for (int n = 0; n < 4; ++n) share += (top[n][slot] == e) / 4.0;
        batch += share * mean_p[e];
      }
    batch *= 3 * 0.1;
    CHECK(router.aux_loss(r, 2, 2).item<double>() == doctest::Approx(batch).epsilon(1e-6));

    // Sequence form (MiniMind2 seq_aux): per sequence, count(e) / (T*k/E) * mean_t p, averaged.
    moe::SoftmaxTopKImpl<moe::AuxLoss::sequence> seq_router(c, {});
    {
      at::NoGradGuard g;
      seq_router.weight.copy_(router.weight);
    }
    double seq = 0;
    for (int b = 0; b < 2; ++b)
      for (int e = 0; e < 3; ++e) {
        double count = 0, mp = 0;
        for (int t = 0; t < 2; ++t) {
          const int n = b * 2 + t;
          count += (top[n][0] == e) + (top[n][1] == e);
          mp += p[n][e] / 2;
        }
        seq += count / (2.0 * 2 / 3) * mp / 2;  // / 2: mean over sequences
      }
    seq *= 0.1;
    CHECK(seq_router.aux_loss(seq_router.route(x), 2, 2).item<double>() == doctest::Approx(seq).epsilon(1e-6));
  }
}

TEST_CASE("moe: output is the weighted sum of the chosen experts plus the shared expert") {
  at::manual_seed(6);
  const auto c = test::small_config("minimind2_moe");
  using MoE = arch::MiniMind2MoE::ffn::module;
  MoE moe(c, {});
  const auto x = at::randn({2, 5, c.hidden_size});
  const auto y = moe.forward(x);
  CHECK(moe.aux_loss().defined());
  const auto flat = x.view({10, -1});
  const auto r = moe.gate->route(flat);
  for (int64_t n = 0; n < 10; ++n) {
    auto expected = moe.shared[0]->forward(flat[n]);
    for (int64_t slot = 0; slot < c.num_experts_per_tok; ++slot) {
      const auto e = r.indices[n][slot].item<int64_t>();
      expected = expected + r.weights[n][slot] * moe.experts[static_cast<size_t>(e)]->forward(flat[n]);
    }
    CHECK(test::max_abs_diff(y.view({10, -1})[n], expected) < 1e-5);
  }
  moe.eval();
  moe.forward(x);
  CHECK_FALSE(moe.aux_loss().defined());  // aux loss is a training-time term
}
