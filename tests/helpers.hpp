// Shared helpers for the test files.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <string>

#include <minillm/model.hpp>
#include <minillm/tokenizer/bpe.hpp>

namespace test {

// Runs `f`, requires it to throw E, and returns the message (so tests can check the named value).
template <class E = std::exception>
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("threw the wrong exception type: " << e.what());
    return {};
  }
  FAIL("did not throw");
  return {};
}

#define CHECK_MESSAGE_CONTAINS(msg, part) CHECK_MESSAGE((msg).find(part) != std::string::npos, "message: " << (msg))

// A small config every architecture can be built from: 2 layers, 4 query / 2 kv heads, 4 experts.
inline minillm::ModelConfig small_config(std::string_view arch) {
  minillm::ModelConfig c;
  c.architecture = std::string(arch);
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 96;
  c.max_position_embeddings = 128;
  c.num_experts = 4;
  c.num_experts_per_tok = 2;
  c.n_shared_experts = 1;
  c.moe_intermediate_size = 48;
  if (arch == "deepseek_v3" || arch == "mini_deepseekv3") {  // multi-head latent attention, 1 dense layer, 2 groups
    c.q_lora_rank = 24;
    c.kv_lora_rank = 16;
    c.qk_nope_head_dim = 16;
    c.qk_rope_head_dim = 8;
    c.v_head_dim = 12;
    c.first_k_dense_replace = 1;
    c.n_group = 2;
    c.topk_group = 1;
  }
  if (arch == "qwen3_next" || arch == "mini_qwen3_next") {  // one linear, one full layer; a dense first layer in Mini-LLM's
    c.layer_types = {"linear_attention", "full_attention"};
    c.linear_num_key_heads = 2;
    c.linear_num_value_heads = 4;
    c.linear_key_head_dim = 16;
    c.linear_value_head_dim = 8;
    c.linear_conv_kernel_dim = 4;
    c.n_shared_experts = 0;
    c.shared_expert_intermediate_size = 40;
    if (arch == "qwen3_next") c.partial_rotary_factor = 0.5;
    else c.mlp_only_layers = {0};
  }
  return c;
}

// Perturbs norm weights away from 1 so a norm applied in the wrong place shows.
inline void perturb_norms(torch::nn::Module& m) {
  at::NoGradGuard g;
  for (auto& p : m.named_parameters())
    if (p.value().dim() == 1) p.value().uniform_(0.5, 1.5);
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// A fixture's input_ids (a list of equal-length rows) as a (B, T) int64 tensor.
inline at::Tensor ids_of(const nlohmann::json& rows_json) {
  const auto rows = rows_json.get<std::vector<std::vector<int64_t>>>();
  auto ids = at::empty({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, at::kLong);
  for (size_t b = 0; b < rows.size(); ++b)
    for (size_t t = 0; t < rows[b].size(); ++t) ids[static_cast<int64_t>(b)][static_cast<int64_t>(t)] = rows[b][t];
  return ids;
}

// tests/data (copied fixtures; the suite needs nothing outside the repository).
inline std::filesystem::path data_dir() { return MINILLM_TEST_DATA_DIR; }

// MiniMind's 6400-token tokenizer from tests/data, loaded once.
inline const minillm::tokenizer::BpeTokenizer& minimind_tokenizer() {
  static const auto tok = minillm::tokenizer::BpeTokenizer::from_file(data_dir() / "tokenizer/minimind/tokenizer.json");
  return tok;
}

inline std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("minillm_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace test
