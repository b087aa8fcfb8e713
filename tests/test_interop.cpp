// safetensors reading/writing and validation, HF checkpoint directories, and logits parity with
// the reference implementations (fixtures in tests/data/hf).
#include "helpers.hpp"

#include <fstream>

#include <minillm/eval/perplexity.hpp>

using namespace minillm;
using nlohmann::json;

#ifndef MINILLM_TEST_DATA_DIR
#error "MINILLM_TEST_DATA_DIR must point at tests/data"
#endif

namespace {

using test::data_dir;

std::vector<uint8_t> read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const std::filesystem::path& p, const std::vector<uint8_t>& b) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A safetensors file from a header (JSON text) and a data section of `data_bytes` bytes.
std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes, uint64_t claimed_len = 0) {
  const uint64_t n = claimed_len ? claimed_len : header.size();
  std::string f(8, '\0');
  for (int i = 0; i < 8; ++i) f[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i));
  f += header;
  f.append(data_bytes, '\x5a');
  return {f.begin(), f.end()};
}

std::string parse_error(const std::vector<uint8_t>& f) {
  return test::message_of<io::SafetensorsError>([&] { io::parse_safetensors_header(f.data(), f.size(), "t.safetensors"); });
}

}  // namespace

TEST_CASE("safetensors: every dtype round-trips through a file, views stay valid after the file is gone") {
  const auto dir = test::temp_dir("st");
  at::manual_seed(20);
  io::NamedTensors tensors = {
      {"f32", at::randn({3, 5})},
      {"f16", at::randn({4}).to(at::kHalf)},
      {"bf16", at::randn({2, 3}).to(at::kBFloat16)},
      {"f64", at::randn({2}, at::kDouble)},
      {"i64", at::randint(-100, 100, {7}, at::kLong)},
      {"i32", at::randint(-100, 100, {3}, at::kInt)},
      {"i16", at::randint(-100, 100, {3}, at::kShort)},
      {"i8", at::randint(-100, 100, {5}, at::kChar)},
      {"u8", at::randint(0, 255, {6}, at::kByte)},
      {"bool", at::randint(0, 2, {4}).to(at::kBool)},
      {"empty", at::empty({0, 4})},
      {"noncontiguous", at::randn({4, 6}).t()},
  };
  io::save_safetensors(dir / "a.safetensors", tensors, {{"format", "pt"}});
  CHECK_FALSE(std::filesystem::exists(dir / "a.safetensors.tmp"));
  std::map<std::string, at::Tensor> loaded;
  {
    io::SafetensorsFile f(dir / "a.safetensors");
    CHECK(f.header().metadata.at("format") == "pt");
    CHECK(f.header().data_offset % 8 == 0);
    for (const auto& [name, t] : tensors) loaded[name] = f.tensor(name);
  }
  std::filesystem::remove_all(dir);  // the mapping outlives the file and the reader
  for (const auto& [name, t] : tensors) {
    CAPTURE(name);
    CHECK((loaded[name].scalar_type() == t.scalar_type()));
    CHECK(loaded[name].sizes() == t.sizes());
    CHECK(at::equal(loaded[name], t));
  }
  loaded["f32"].add_(1.0);  // copy-on-write mapping: views are writable
}

TEST_CASE("safetensors: sharded directories round-trip through the index") {
  const auto dir = test::temp_dir("shards");
  io::NamedTensors tensors;
  for (int i = 0; i < 5; ++i) tensors.emplace_back("w" + std::to_string(i), at::randn({64, 64}));  // 16 KiB each
  io::save_safetensors_dir(dir, tensors, /*max_shard_bytes=*/40'000);
  CHECK(std::filesystem::exists(dir / "model.safetensors.index.json"));
  CHECK(std::filesystem::exists(dir / "model-00003-of-00003.safetensors"));
  CHECK_FALSE(std::filesystem::exists(dir / "model.safetensors"));
  auto back = io::load_safetensors_dir(dir);
  CHECK(back.size() == 5);
  for (const auto& [name, t] : tensors) CHECK(at::equal(back.at(name), t));
  std::filesystem::remove_all(dir);
}

TEST_CASE("safetensors: corrupt and hostile files give clear errors") {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK_NOTHROW(io::parse_safetensors_header(make_file(ok, 8).data(), 8 + ok.size() + 8, "t"));

  CHECK_MESSAGE_CONTAINS(parse_error({1, 2, 3}), "file too small (3 bytes)");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file(ok, 8, 1ULL << 40)), "header length (1099511627776 bytes) exceeds the limit");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file(ok, 0, ok.size() + 100)), "exceeds the file size");
  auto truncated = make_file(ok, 8);
  truncated.resize(truncated.size() - 3);
  CHECK_MESSAGE_CONTAINS(parse_error(truncated), "tensor 'a' ends at byte 8 but the data section holds 5 bytes");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file("{\"a\": [1,", 0)), "header is not valid JSON");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file("[1,2]", 0)), "header must be a JSON object");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8)),
                         "unsupported dtype \"F33\"");
  CHECK_MESSAGE_CONTAINS(
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            12)),
      "tensor 'b' overlaps the previous tensor");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)),
                         "tensor 'a' has 8 bytes but its shape and dtype need 12");
  CHECK_MESSAGE_CONTAINS(
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8)),
      "need more than 2^64");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)),
                         "begin offset 8 after end 0");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)),
                         "not a non-negative integer");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
                         "gap in the data section before tensor 'a'");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file(ok, 16)), "data section holds 16 bytes but the tensors cover 8");
  CHECK_MESSAGE_CONTAINS(parse_error(make_file(R"({"__metadata__":{"k":1}})", 0)), "value of 'k' is not a string");

  const auto dir = test::temp_dir("badst");
  write_bytes(dir / "model.safetensors", make_file(ok, 4));
  write_bytes(dir / "config.json", {'{', '}'});
  const auto msg = test::message_of<CheckpointError>([&] { load_pretrained(dir); });
  CHECK_MESSAGE_CONTAINS(msg, "model.safetensors: tensor 'a' ends at byte 8");
  CHECK_MESSAGE_CONTAINS(test::message_of<io::SafetensorsError>([&] { io::SafetensorsFile(dir / "none"); }),
                         "cannot open");
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoint: strict loading reports missing and unexpected keys, shapes must match") {
  const auto dir = test::temp_dir("strict");
  auto cfg = test::small_config("llama");
  auto model = make_model(cfg);
  save_pretrained(*model, dir);
  auto weights = io::load_safetensors_dir(dir);
  auto copy = make_model(cfg);

  auto partial = weights;
  partial.erase("model.norm.weight");
  partial["model.extra.weight"] = at::zeros({1});
  const auto msg = test::message_of<CheckpointError>([&] { load_state(copy->module(), cfg, partial); });
  CHECK_MESSAGE_CONTAINS(msg, "missing: model.norm.weight");
  CHECK_MESSAGE_CONTAINS(msg, "unexpected: model.extra.weight");
  const auto report = load_state(copy->module(), cfg, partial, /*strict=*/false);
  CHECK(report.missing == std::vector<std::string>{"model.norm.weight"});

  auto wrong = weights;
  wrong["model.embed_tokens.weight"] = at::zeros({5, 64});
  CHECK_MESSAGE_CONTAINS(test::message_of<CheckpointError>([&] { load_state(copy->module(), cfg, wrong); }),
                         "shape mismatch for model.embed_tokens.weight: checkpoint [5, 64], model [97, 64]");

  // A config that contradicts the weights is caught through load_pretrained before the model is
  // built, naming the parameter, both shapes and the field.
  auto j = json::parse(std::ifstream(dir / "config.json"));
  j["intermediate_size"] = 100;
  std::ofstream(dir / "config.json") << j.dump();
  CHECK_MESSAGE_CONTAINS(test::message_of<CheckpointError>([&] { load_pretrained(dir); }),
                         (dir / "config.json").string() + " does not match the weights: model.layers.0.mlp.gate_proj.weight "
                         "is [96, 64] in the checkpoint, the config makes it [100, 64] (intermediate_size 100)");
  std::filesystem::remove_all(dir);
}

TEST_CASE("checkpoint: config.json sizes are checked against the weights' headers before anything is allocated") {
  const auto dir = test::temp_dir("hostile_config");
  auto cfg = test::small_config("llama");
  save_pretrained(*make_model(cfg), dir);
  auto j = json::parse(std::ifstream(dir / "config.json"));
  // 2,000,000 x 64 fp32 would be 512 MB allocated before the old shape check; now refused first.
  j["vocab_size"] = 2000000;
  std::ofstream(dir / "config.json") << j.dump();
  auto msg = test::message_of<CheckpointError>([&] { load_pretrained(dir); });
  CHECK_MESSAGE_CONTAINS(msg, "model.embed_tokens.weight is [97, 64] in the checkpoint, the config makes it [2000000, 64] "
                              "(vocab_size 2000000)");
  // Beyond the bounds: refused by validation, naming the field and the file, before any build.
  j["vocab_size"] = 1e12;
  std::ofstream(dir / "config.json") << j.dump();
  msg = test::message_of<ConfigError>([&] { load_pretrained(dir); });
  CHECK_MESSAGE_CONTAINS(msg, (dir / "config.json").string() + ": vocab_size (1000000000000) exceeds the supported maximum");
  std::filesystem::remove_all(dir);
}

TEST_CASE_TEMPLATE("checkpoint: save_pretrained then load_pretrained gives identical logits", A, arch::Llama,
                   arch::MiniMind3, arch::MiniMind2MoE, arch::Qwen3MoE, arch::ClassicNoPE) {
  const auto dir = test::temp_dir("roundtrip");
  at::manual_seed(21);
  auto cfg = test::small_config(A::name);
  cfg.tie_word_embeddings = std::string_view(A::name) != "llama";
  auto model = make_model(cfg);
  test::perturb_norms(model->module());
  model->module().eval();
  save_pretrained(*model, dir);
  const auto written = json::parse(std::ifstream(dir / "config.json"));
  CHECK(written["minillm_arch"] == A::name);
  auto back = load_pretrained(dir);
  back->module().eval();
  CHECK(back->architecture() == A::name);
  const auto ids = at::randint(0, 97, {2, 7}, at::kLong);
  CHECK(test::max_abs_diff(model->forward(ids).logits, back->forward(ids).logits) == 0.0);
  std::filesystem::remove_all(dir);
}

namespace {
at::Tensor read_logits(const std::filesystem::path& file, const std::vector<int64_t>& shape) {
  const auto bytes = read_bytes(file);
  auto t = at::empty(shape, at::kFloat);
  REQUIRE(bytes.size() == static_cast<size_t>(t.numel()) * 4);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}
}  // namespace

TEST_CASE("parity: logits and greedy tokens match the reference implementations' fixtures") {
  int fixtures = 0;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir() / "hf")) {
    const auto dir = entry.path();
    CAPTURE(dir.filename().string());
    ++fixtures;
    LoadReport report;
    auto model = load_pretrained(dir, {}, true, &report);
    model->module().eval();
    at::NoGradGuard g;
    const auto expected = json::parse(std::ifstream(dir / "expected.json"));
    for (const auto& c : expected["cases"]) {
      const auto ids = test::ids_of(c["input_ids"]);
      const auto ref = read_logits(dir / c["logits_file"].get<std::string>(), c["logits_shape"].get<std::vector<int64_t>>());
      const double diff = test::max_abs_diff(model->forward(ids).logits, ref);
      MESSAGE(dir.filename().string() << " " << c["logits_file"].get<std::string>() << ": max |diff| = " << diff);
      CHECK(diff <= 1e-4);
      // Greedy continuation of row 0, each token from a full forward (as the fixture was made).
      auto seq = ids.narrow(0, 0, 1);
      std::vector<int64_t> greedy;
      for (int i = 0; i < 12; ++i) {
        const auto next = model->forward(seq).logits[0][-1].argmax().item<int64_t>();
        greedy.push_back(next);
        seq = at::cat({seq, at::full({1, 1}, next, at::kLong)}, 1);
      }
      CHECK(greedy == c["greedy_first_row"].get<std::vector<int64_t>>());
    }
  }
  CHECK(fixtures >= 3);
}

TEST_CASE("checkpoint: transformers 5's fused expert tensors load as per-expert weights") {
  const auto dir = data_dir() / "hf" / "qwen3_moe_tiny";
  auto reference = load_pretrained(dir);
  auto tensors = io::load_safetensors_dir(dir);
  for (int layer = 0; layer < 2; ++layer) {  // fuse: gate_up (E, 2I, H), down (E, H, I)
    const auto p = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    std::vector<at::Tensor> gate_up, down;
    for (int e = 0; e < 4; ++e) {
      const auto pe = p + std::to_string(e) + ".";
      gate_up.push_back(at::cat({tensors.at(pe + "gate_proj.weight"), tensors.at(pe + "up_proj.weight")}, 0));
      down.push_back(tensors.at(pe + "down_proj.weight"));
      for (const char* w : {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}) tensors.erase(pe + w);
    }
    tensors[p + "gate_up_proj"] = at::stack(gate_up);
    tensors[p + "down_proj"] = at::stack(down);
  }
  auto fused = make_model(reference->config());
  load_state(fused->module(), fused->config(), tensors);
  reference->module().eval();
  fused->module().eval();
  const auto ids = at::randint(0, 512, {1, 9}, at::kLong);
  CHECK(test::max_abs_diff(reference->forward(ids).logits, fused->forward(ids).logits) == 0.0);
}

TEST_CASE("checkpoint: weights saved as bf16 load into an fp32 model") {
  const auto dir = test::temp_dir("bf16");
  auto model = make_model(test::small_config("qwen3"));
  save_pretrained(*model, dir, at::kBFloat16);
  CHECK(json::parse(std::ifstream(dir / "config.json"))["torch_dtype"] == "bfloat16");
  auto back = load_pretrained(dir);
  auto params = model->module().named_parameters();
  for (const auto& p : back->module().named_parameters()) {
    CHECK((p.value().scalar_type() == at::kFloat));
    CHECK(at::equal(p.value(), params[p.key()].to(at::kBFloat16).to(at::kFloat)));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("eval: perplexity counts every predicted token and is the vocabulary size for uniform logits") {
  const auto dir = test::temp_dir("ppl");
  const auto tok = tokenizer::BpeTokenizer::from_file(data_dir() / "tokenizer" / "minimind" / "tokenizer.json");
  const auto [bos, eos] = document_markers(data_dir() / "tokenizer" / "minimind", tok);
  CHECK(bos == 1);
  CHECK(eos == 2);
  {
    std::ofstream out(dir / "docs.jsonl");
    out << R"({"text":"床前明月光，疑是地上霜。"})" << '\n' << R"({"text":"Hello world, a longer document to cut."})" << '\n';
  }
  auto cfg = test::small_config("llama");
  cfg.vocab_size = 6400;
  auto model = make_model(cfg);
  {
    at::NoGradGuard g;
    model->module().named_parameters()["model.embed_tokens.weight"].zero_();  // tied head: every logit 0
  }
  const auto r = text_perplexity(*model, tok, bos, eos, dir / "docs.jsonl", /*window=*/4);
  const auto expected_tokens = tok.encode("床前明月光，疑是地上霜。").size() + 1 + tok.encode("Hello world, a longer document to cut.").size() + 1;
  CHECK(r.documents == 2);
  CHECK(r.tokens == static_cast<int64_t>(expected_tokens));
  CHECK(r.perplexity == doctest::Approx(6400.0).epsilon(1e-4));
  std::filesystem::remove_all(dir);
}
