// Trains small models of several architectures for a few steps, saves each as an HF directory
// (save_pretrained) and writes the ids and logits transformers must reproduce after loading it
// (scripts/gpu/check_hf_roundtrip.py).
//   minillm_train_and_export OUT_DIR
#include <fstream>
#include <iostream>

#include <torch/optim/adam.h>

#include <minillm/model.hpp>

namespace {

// with_train_loss: also record the training-mode objective (lm + aux) on the same ids, for the
// architectures whose reference computes the same objective.
void train_and_export(minillm::ModelConfig cfg, const std::filesystem::path& dir, bool with_train_loss = false) {
  at::manual_seed(7);
  auto model = minillm::make_model(cfg);
  const auto batch = at::randint(0, cfg.vocab_size, {4, 32}, at::kLong);
  std::vector<at::Tensor> trained;  // DeepSeek's router bias moves outside autograd
  for (const auto& p : model->module().parameters())
    if (p.requires_grad()) trained.push_back(p);
  torch::optim::Adam opt(trained, torch::optim::AdamOptions(1e-3));
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    const auto loss = model->forward(batch, {.labels = batch}).loss;
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  model->module().eval();
  minillm::save_pretrained(*model, dir);
  const auto ids = at::randint(0, cfg.vocab_size, {2, 11}, at::kLong);
  const auto logits = model->forward(ids).logits.contiguous();  // (2, 11, V)
  nlohmann::json j = {{"input_ids", std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel())},
                      {"shape", logits.sizes().vec()}};
  if (with_train_loss) {
    model->module().train();
    j["train_loss"] = model->forward(ids, {.labels = ids}).loss.item<double>();
    model->module().eval();
  }
  std::ofstream(dir / "minillm_ids.json") << j.dump() << '\n';
  std::ofstream(dir / "minillm_logits.f32", std::ios::binary)
      .write(static_cast<const char*>(logits.data_ptr()), static_cast<std::streamsize>(logits.numel() * 4));
  std::cout << dir.filename().string() << ": " << cfg.architecture << ", loss " << first << " -> " << last << '\n';
}

minillm::ModelConfig small(std::string arch, bool tied) {
  auto c = minillm::preset_config("tiny");
  c.architecture = std::move(arch);
  c.vocab_size = 300;
  c.hidden_size = 64;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.tie_word_embeddings = tied;
  c.num_experts = 4;
  c.num_experts_per_tok = 2;
  c.moe_intermediate_size = 64;
  c.rms_norm_eps = 1e-6;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " OUT_DIR\n";
    return 2;
  }
  const std::filesystem::path out = argv[1];
  try {
    train_and_export(small("llama", false), out / "llama");
    train_and_export(small("minimind3", true), out / "minimind3");
    train_and_export(small("qwen3_moe", false), out / "qwen3_moe", true);
    auto mm3moe = small("minimind3_moe", true);
    mm3moe.num_experts_per_tok = 1;
    train_and_export(mm3moe, out / "minimind3_moe");
    // DeepSeek-V3 in HF's layout (interleaved rope, q LoRA, 2 dense layers of 3, 8 experts in 4 groups)
    // and in Mini-LLM's (with MTP, aux-free balancing moving the biases while it trains).
    for (const auto* arch : {"deepseek_v3", "mini_deepseekv3"}) {
      auto ds = minillm::preset_config("deepseek_tiny");
      ds.architecture = arch;
      ds.vocab_size = 300;
      ds.num_hidden_layers = 3;
      ds.first_k_dense_replace = 2;
      ds.rope_interleave = std::string_view(arch) == "deepseek_v3";
      ds.use_mtp = std::string_view(arch) == "mini_deepseekv3";
      ds.tie_word_embeddings = ds.use_mtp;
      if (!ds.use_mtp) ds.bias_update_speed = ds.seq_aux_alpha = 0.0;  // transformers trains neither
      train_and_export(ds, out / arch);
    }
    // Qwen3-Next in HF's layout (3 linear + 1 full layer, partial rotary, a dense layer) and
    // Mini-LLM's (fused experts, w1/w2/w3), and Mini-LLM's Llama-3.
    for (const auto* arch : {"qwen3_next", "mini_qwen3_next"}) {
      auto qn = minillm::preset_config("qwen3_next_tiny");
      qn.architecture = arch;
      qn.model_type = arch;
      qn.vocab_size = 300;
      qn.hidden_size = 64;
      qn.head_dim = 16;
      qn.linear_key_head_dim = qn.linear_value_head_dim = 16;
      qn.moe_intermediate_size = qn.shared_expert_intermediate_size = 32;
      qn.mlp_only_layers = {2};
      qn.partial_rotary_factor = std::string_view(arch) == "qwen3_next" ? 0.25 : 1.0;  // Mini-LLM turns whole heads
      qn.tie_word_embeddings = std::string_view(arch) == "mini_qwen3_next";
      train_and_export(qn, out / arch, true);
    }
    auto llama3 = small("mini_llama3", true);
    llama3.model_type = "mini_llama3";
    train_and_export(llama3, out / "mini_llama3", true);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
