// ModelConfig: JSON round trip, HF field names and aliases, validation messages, the registry.
#include "helpers.hpp"

#include <fstream>

using minillm::ConfigError;
using minillm::ModelConfig;
using nlohmann::json;

TEST_CASE("config: every preset survives a JSON round trip") {
  for (const auto& name : minillm::preset_names()) {
    CAPTURE(name);
    const auto c = minillm::preset_config(name);
    const json j = c;
    const auto back = j.get<ModelConfig>();
    CHECK(back == c);
    CHECK(json(back) == j);
  }
}

TEST_CASE("config: unknown fields survive a file round trip") {
  const auto dir = test::temp_dir("config");
  const json original = {{"model_type", "qwen3"},      {"hidden_size", 64},   {"num_hidden_layers", 2},
                         {"num_attention_heads", 4},   {"num_key_value_heads", 2},
                         {"transformers_version", "5.17.0"}, {"architectures", {"Qwen3ForCausalLM"}},
                         {"custom", {{"nested", {1, 2, 3}}, {"flag", true}}}};
  std::ofstream(dir / "in.json") << original.dump();
  const auto c = minillm::load_config(dir / "in.json");
  CHECK(c.hidden_size == 64);
  minillm::save_config(c, dir / "out.json");
  CHECK_FALSE(std::filesystem::exists(dir / "out.json.tmp"));
  json written;
  std::ifstream(dir / "out.json") >> written;
  CHECK(written["transformers_version"] == "5.17.0");
  CHECK(written["architectures"] == json::array({"Qwen3ForCausalLM"}));
  CHECK(written["custom"] == original["custom"]);
  CHECK(minillm::load_config(dir / "out.json") == c);
  std::filesystem::remove_all(dir);
}

TEST_CASE("config: HF field names, transformers 5 rope_parameters and MiniMind2 aliases") {
  const auto llama = json::parse(R"({"model_type":"llama","hidden_size":64,"num_attention_heads":4,
      "num_key_value_heads":2,"head_dim":16,"rope_parameters":{"rope_theta":10000.0,"rope_type":"default"},
      "tie_word_embeddings":false,"rms_norm_eps":1e-6})")
                         .get<ModelConfig>();
  CHECK(llama.rope_theta == 10000.0);
  CHECK_FALSE(llama.rope_scaling.has_value());
  CHECK_FALSE(llama.tie_word_embeddings);
  CHECK_FALSE(llama.extra.contains("rope_parameters"));

  const auto yarn = json::parse(R"({"rope_theta":1e6,"rope_scaling":{"type":"yarn","factor":16,
      "original_max_position_embeddings":2048,"beta_fast":32,"beta_slow":1,"attention_factor":1.0}})")
                        .get<ModelConfig>();
  REQUIRE(yarn.rope_scaling.has_value());
  CHECK(yarn.rope_scaling->factor == 16.0);
  CHECK(yarn.rope_scaling->original_max_position_embeddings == 2048);

  const auto mm2 = json::parse(R"({"model_type":"minimind","n_routed_experts":4,"aux_loss_alpha":0.1,
      "seq_aux":true,"use_moe":true,"rope_parameters":null})")
                       .get<ModelConfig>();
  CHECK(mm2.num_experts == 4);
  CHECK(mm2.router_aux_loss_coef == 0.1);
  CHECK(minillm::resolve_architecture(mm2) == "minimind2_moe");

  const auto no_kv = json::parse(R"({"num_attention_heads":6})").get<ModelConfig>();
  CHECK(no_kv.num_key_value_heads == 6);  // HF default: MHA
}

TEST_CASE("config: registry resolves model_type to an architecture") {
  auto from = [](const char* text) { return minillm::resolve_architecture(json::parse(text).get<ModelConfig>()); };
  CHECK(from(R"({"model_type":"llama"})") == "llama");
  CHECK(from(R"({"model_type":"qwen2","use_sliding_window":false})") == "qwen2");
  CHECK(from(R"({"model_type":"qwen3"})") == "qwen3");
  CHECK(from(R"({"model_type":"qwen3_moe"})") == "qwen3_moe");
  CHECK(from(R"({"model_type":"minimind","use_moe":false,"num_experts":4})") == "minimind3");
  CHECK(from(R"({"model_type":"minimind","use_moe":true})") == "minimind3_moe");
  CHECK(from(R"({"model_type":"minimind","seq_aux":true,"use_moe":false})") == "llama");
  CHECK(from(R"({"model_type":"llama","minillm_arch":"classic_nope"})") == "classic_nope");
  CHECK(from(R"({"model_type":"qwen3_moe","num_local_experts":4,"mlp_only_layers":[],"decoder_sparse_step":1,
                 "hidden_act":"silu","attention_bias":false})") == "qwen3_moe");
  // Dense layers between MoE layers: qwen3_moe chooses its feed-forward per layer.
  CHECK(from(R"({"model_type":"qwen3_moe","mlp_only_layers":[0]})") == "qwen3_moe");
  CHECK(from(R"({"model_type":"qwen3_moe","decoder_sparse_step":2})") == "qwen3_moe");
  // Features that change the math and that no architecture implements are refused, not ignored.
  for (const char* bad : {R"({"model_type":"llama","attention_bias":true})", R"({"model_type":"llama","hidden_act":"gelu"})",
                          R"({"model_type":"qwen3","use_sliding_window":true})"}) {
    CAPTURE(bad);
    CHECK_MESSAGE_CONTAINS(test::message_of<ConfigError>([&] { from(bad); }), "is not supported");
  }
  // An architecture with one feed-forward kind refuses them when the model is built.
  CHECK_MESSAGE_CONTAINS(test::message_of<ConfigError>([&] {
                           auto c = json::parse(R"({"model_type":"qwen3","mlp_only_layers":[0]})").get<ModelConfig>();
                           minillm::make_model(c, at::TensorOptions().device(at::kMeta));
                         }),
                         "mlp_only_layers");
  const auto msg = test::message_of<ConfigError>([&] { from(R"({"model_type":"gpt9"})"); });
  CHECK_MESSAGE_CONTAINS(msg, "model_type \"gpt9\" is not supported");
  CHECK_MESSAGE_CONTAINS(test::message_of<ConfigError>([] { minillm::preset_config("huge"); }),
                         "unknown preset \"huge\"");
}

TEST_CASE("config: each invalid config is rejected with the value named") {
  struct Case {
    const char* arch;
    std::function<void(ModelConfig&)> edit;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"llama", [](auto& c) { c.num_attention_heads = 6, c.num_key_value_heads = 4, c.head_dim = 8; },
       "num_attention_heads (6) must be divisible by num_key_value_heads (4)"},
      {"llama", [](auto& c) { c.hidden_size = 100, c.num_attention_heads = 3, c.num_key_value_heads = 1, c.head_dim = 0; },
       "hidden_size (100) must be divisible by num_attention_heads (3)"},
      {"llama", [](auto& c) { c.vocab_size = 0; }, "vocab_size (0) must be positive"},
      {"llama", [](auto& c) { c.hidden_size = -5; }, "hidden_size (-5) must be positive"},
      {"llama", [](auto& c) { c.num_hidden_layers = 0; }, "num_hidden_layers (0) must be positive"},
      {"llama", [](auto& c) { c.num_key_value_heads = 0; }, "num_key_value_heads (0) must be positive"},
      {"llama", [](auto& c) { c.intermediate_size = 0; }, "intermediate_size (0) must be positive"},
      {"llama", [](auto& c) { c.rms_norm_eps = -1e-6; }, "rms_norm_eps (-1e-06) must be a positive finite number"},
      {"llama", [](auto& c) { c.rope_theta = 0; }, "rope_theta (0) must be a positive finite number"},
      {"llama", [](auto& c) { c.head_dim = 15; }, "head_dim (15) must be even"},
      {"llama", [](auto& c) { c.rope_scaling = minillm::RopeScaling{.factor = 0.5}; }, "rope_scaling.factor (0.5) must be at least 1"},
      {"llama", [](auto& c) { c.rope_scaling = minillm::RopeScaling{.beta_fast = 1, .beta_slow = 2}; },
       "rope_scaling.beta_fast (1) must be greater than beta_slow (2)"},
      {"llama", [](auto& c) { c.rope_scaling = minillm::RopeScaling{.type = "linear"}; },
       "rope_scaling.type (\"linear\") is not supported"},
      {"minimind3_moe", [](auto& c) { c.num_experts = 0; }, "num_experts (0) must be at least 1"},
      {"minimind3_moe", [](auto& c) { c.num_experts_per_tok = 5; },
       "num_experts_per_tok (5) must be between 1 and num_experts (4)"},
      {"minimind2_moe", [](auto& c) { c.n_shared_experts = -1; }, "n_shared_experts (-1) must not be negative"},
  };
  for (const auto& tc : cases) {
    CAPTURE(tc.expected);
    auto c = test::small_config(tc.arch);
    tc.edit(c);
    // make_model validates before constructing (and so before allocating) anything.
    const auto msg = test::message_of<ConfigError>([&] { minillm::make_model(c); });
    CHECK_MESSAGE_CONTAINS(msg, tc.expected);
  }
  // The same config is fine for an architecture that does not use the bad field.
  auto dense = test::small_config("llama");
  dense.num_experts = 0;
  CHECK_NOTHROW(minillm::make_model(dense));
}

TEST_CASE("config: sizes beyond the supported bounds are refused with the field named, before anything is built") {
  struct Case {
    std::function<void(ModelConfig&)> edit;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {[](auto& c) { c.vocab_size = 1'000'000'000'000; }, "vocab_size (1000000000000) exceeds the supported maximum of 16777216"},
      {[](auto& c) { c.num_hidden_layers = 1'000'000'000; }, "num_hidden_layers (1000000000) exceeds the supported maximum of 1024"},
      {[](auto& c) { c.hidden_size = 1 << 20; }, "hidden_size (1048576) exceeds the supported maximum of 65536"},
      {[](auto& c) { c.intermediate_size = 1 << 24; }, "intermediate_size (16777216) exceeds the supported maximum"},
      {[](auto& c) { c.max_position_embeddings = int64_t{1} << 40; }, "max_position_embeddings (1099511627776) exceeds"},
      {[](auto& c) { c.num_experts = 100000; }, "num_experts (100000) exceeds the supported maximum of 4096"},
      {[](auto& c) { c.head_dim = 1 << 16; }, "head_dim (65536) exceeds the supported maximum of 4096"},
      {[](auto& c) { c.num_hidden_layers = 1024, c.num_experts = 4096; },
       "num_hidden_layers x (num_experts + n_shared_experts) (4195328 expert modules) exceeds the supported maximum of 65536"},
      {[](auto& c) { c.vocab_size = 16'000'000, c.hidden_size = 4096, c.num_attention_heads = 32, c.head_dim = 128; },
       "vocab_size x hidden_size (65536000000 elements) exceeds the supported maximum of 17179869184 per weight matrix"},
  };
  for (const auto& tc : cases) {
    CAPTURE(tc.expected);
    auto c = test::small_config("llama");
    tc.edit(c);
    CHECK_MESSAGE_CONTAINS(test::message_of<ConfigError>([&] { c.validate(); }), tc.expected);
  }
  // Integers too large for int64 (as a float or as an unsigned) are refused while reading.
  CHECK_MESSAGE_CONTAINS(test::message_of<ConfigError>([] { json::parse(R"({"vocab_size":1e300})").get<ModelConfig>(); }),
                         "config field 'vocab_size' (1e+300) is out of range");
  CHECK_MESSAGE_CONTAINS(
      test::message_of<ConfigError>([] { json::parse(R"({"hidden_size":18446744073709551615})").get<ModelConfig>(); }),
      "config field 'hidden_size' (18446744073709551615) is out of range");
  // Every preset is within the bounds.
  for (const auto& name : minillm::preset_names()) CHECK_NOTHROW(minillm::preset_config(name).validate());
}

TEST_CASE("config: JSON type errors name the field and the file") {
  auto msg = test::message_of<ConfigError>([] { json::parse(R"({"hidden_size":"abc"})").get<ModelConfig>(); });
  CHECK_MESSAGE_CONTAINS(msg, "config field 'hidden_size' must be an integer, got string \"abc\"");
  msg = test::message_of<ConfigError>([] { json::parse(R"({"num_hidden_layers":2.5})").get<ModelConfig>(); });
  CHECK_MESSAGE_CONTAINS(msg, "'num_hidden_layers' must be an integer");
  msg = test::message_of<ConfigError>([] { json::parse(R"({"tie_word_embeddings":"yes"})").get<ModelConfig>(); });
  CHECK_MESSAGE_CONTAINS(msg, "'tie_word_embeddings' must be true or false");

  const auto dir = test::temp_dir("badjson");
  std::ofstream(dir / "config.json") << "{\"hidden_size\": 64,";
  msg = test::message_of<ConfigError>([&] { minillm::load_config(dir / "config.json"); });
  CHECK_MESSAGE_CONTAINS(msg, (dir / "config.json").string() + ": not valid JSON");
  msg = test::message_of<ConfigError>([&] { minillm::load_config(dir / "missing.json"); });
  CHECK_MESSAGE_CONTAINS(msg, "cannot open config file");
  std::filesystem::remove_all(dir);
}
