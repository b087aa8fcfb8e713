// The gated delta rule (Gated DeltaNet, Qwen3-Next's linear attention), per head with a state S of
// shape (dk, dv):
//   S_t = exp(g_t) S_{t-1};  S_t += k_t (beta_t (v_t - k_t^T S_t))^T;  o_t = S_t^T q_t / sqrt(dk)
// Two forms that must agree (tests/ check it): the recurrent one, token by token (decode), and the
// chunked one (training, prefill): within a chunk of C tokens the rule is a unit lower-triangular
// system solved at once, and only the state crosses chunks, so the cost grows linearly with the
// length. `restarts` (bool (B, T), optional) marks tokens that begin a new document: the state is
// zeroed before them, so packed documents do not see each other.
// All tensors are fp32: q, k (B, H, T, dk) L2-normalised, v (B, H, T, dv), g and beta (B, H, T),
// state (B, H, dk, dv). Each returns the output (B, H, T, dv) and the state after the last token.
#pragma once

#include <cmath>
#include <utility>
#include <vector>

#include "minillm/core/torch.hpp"

namespace minillm::attention {

inline std::pair<at::Tensor, at::Tensor> delta_rule_recurrent(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                              const at::Tensor& g, const at::Tensor& beta, at::Tensor state,
                                                              const at::Tensor& restarts = {}) {
  const int64_t t = q.size(2);
  const auto scaled_q = q * (1.0 / std::sqrt(static_cast<double>(q.size(3))));
  const auto decay = g.exp();  // (B, H, T)
  const auto kept = restarts.defined() ? restarts.logical_not().to(at::kFloat) : at::Tensor();  // (B, T)
  std::vector<at::Tensor> outs;
  outs.reserve(static_cast<size_t>(t));
  for (int64_t i = 0; i < t; ++i) {
    auto s_decay = decay.select(2, i).unsqueeze(-1).unsqueeze(-1);  // (B, H, 1, 1)
    if (kept.defined()) s_decay = s_decay * kept.select(1, i).view({-1, 1, 1, 1});
    state = state * s_decay;
    const auto k_i = k.select(2, i);                                         // (B, H, dk)
    const auto remembered = k_i.unsqueeze(-2).matmul(state).squeeze(-2);     // (B, H, dv)
    const auto delta = (v.select(2, i) - remembered) * beta.select(2, i).unsqueeze(-1);  // (B, H, dv)
    state = state + k_i.unsqueeze(-1) * delta.unsqueeze(-2);                 // (B, H, dk, dv)
    outs.push_back(scaled_q.select(2, i).unsqueeze(-2).matmul(state).squeeze(-2));  // (B, H, dv)
  }
  return {at::stack(outs, 2), state};  // (B, H, T, dv)
}

inline std::pair<at::Tensor, at::Tensor> delta_rule_chunked(const at::Tensor& q_in, const at::Tensor& k_in,
                                                            const at::Tensor& v_in, const at::Tensor& g_in,
                                                            const at::Tensor& beta_in, at::Tensor state,
                                                            const at::Tensor& restarts = {}, int64_t chunk = 64) {
  const int64_t b = q_in.size(0), h = q_in.size(1), t = q_in.size(2), dk = q_in.size(3), dv = v_in.size(3);
  const int64_t pad = (chunk - t % chunk) % chunk, n = (t + pad) / chunk;
  // Padding at the end: k = beta = 0 writes nothing and g = 0 decays nothing, so neither the outputs
  // nor the final state change.
  auto padded = [&](const at::Tensor& x) {
    if (pad == 0) return x;
    return x.dim() == 4 ? at::constant_pad_nd(x, {0, 0, 0, pad}) : at::constant_pad_nd(x, {0, pad});
  };
  const auto q = (padded(q_in) * (1.0 / std::sqrt(static_cast<double>(dk)))).view({b, h, n, chunk, dk});
  const auto k = padded(k_in).view({b, h, n, chunk, dk});
  const auto v = padded(v_in).view({b, h, n, chunk, dv});
  const auto beta = padded(beta_in).view({b, h, n, chunk, 1});
  const auto g = padded(g_in).view({b, h, n, chunk}).cumsum(-1);  // (B, H, N, C) log decay since the chunk began
  const auto k_beta = k * beta;                                    // (B, H, N, C, dk)

  const auto opts = q.options().dtype(at::kBool);
  const auto lower = at::ones({chunk, chunk}, opts).tril();  // j <= i
  // decay[i, j] = exp(g_i - g_j) for j <= i: how much of token j's write survives to token i.
  auto decay = (g.unsqueeze(-1) - g.unsqueeze(-2)).masked_fill(lower.logical_not(), 0.0).exp().masked_fill(
      lower.logical_not(), 0.0);  // (B, H, N, C, C)
  auto carried_in = g.exp().unsqueeze(-1);  // (B, H, N, C, 1): the state at the chunk's start, decayed to each token
  at::Tensor same_last;                     // (B, 1, N, C, 1): token in the chunk's last token's document
  at::Tensor carried_to_end;                // (B, 1, N, 1, 1): the chunk's start state reaches its end
  if (restarts.defined()) {
    const auto seg = padded(restarts.to(at::kLong)).cumsum(1).view({b, 1, n, chunk});  // document index
    const auto before = at::cat({at::zeros({b, 1, 1}, seg.options()), seg.select(-1, chunk - 1).narrow(2, 0, n - 1)}, 2)
                            .unsqueeze(-1);  // (B, 1, N, 1): document of the token before each chunk
    const auto carries = seg.eq(before).to(at::kFloat);                                 // (B, 1, N, C)
    decay = decay * seg.unsqueeze(-1).eq(seg.unsqueeze(-2)).to(at::kFloat);             // across documents: 0
    carried_in = carried_in * carries.unsqueeze(-1);
    same_last = seg.eq(seg.narrow(-1, chunk - 1, 1)).to(at::kFloat).unsqueeze(-1);
    carried_to_end = carries.narrow(-1, chunk - 1, 1).unsqueeze(-1);
  }

  // Within a chunk the corrected values u solve (I + A) u = beta v, A = strictly lower
  // (k_beta k^T * decay); the same system maps the carried-in state's reads (k_beta exp(g)).
  const auto a = (k_beta.matmul(k.transpose(-1, -2)) * decay).masked_fill(lower.logical_not() | at::eye(chunk, opts), 0.0);
  const auto eye = at::eye(chunk, q.options());
  const auto solved = at::linalg_solve_triangular(a + eye, at::cat({v * beta, k_beta * carried_in}, -1), /*upper=*/false,
                                                  /*left=*/true, /*unitriangular=*/true);  // (B, H, N, C, dv + dk)
  const auto values = solved.narrow(-1, 0, dv);
  const auto state_reads = solved.narrow(-1, dv, dk);
  const auto q_decayed = q * carried_in;  // (B, H, N, C, dk)
  const auto scores = q.matmul(k.transpose(-1, -2)) * decay;  // (B, H, N, C, C), zero above the diagonal

  std::vector<at::Tensor> outs;
  outs.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto fresh = values.select(2, i) - state_reads.select(2, i).matmul(state);  // (B, H, C, dv)
    outs.push_back(q_decayed.select(2, i).matmul(state) + scores.select(2, i).matmul(fresh));
    const auto g_i = g.select(2, i);                          // (B, H, C)
    const auto g_end = g_i.narrow(-1, chunk - 1, 1);          // (B, H, 1)
    auto written = (g_end - g_i).exp().unsqueeze(-1);         // (B, H, C, 1)
    auto kept = g_end.exp().unsqueeze(-1);                    // (B, H, 1, 1)
    if (restarts.defined()) {
      written = written * same_last.select(2, i);
      kept = kept * carried_to_end.select(2, i);
    }
    state = state * kept + (k.select(2, i) * written).transpose(-1, -2).matmul(fresh);  // (B, H, dk, dv)
  }
  return {at::stack(outs, 2).view({b, h, n * chunk, dv}).narrow(2, 0, t), state};
}

}  // namespace minillm::attention
