// Trains small models of several architectures for a few steps, saves each as an HF directory
// (save_pretrained) and writes the ids and logits transformers must reproduce after loading it
// (scripts/gpu/check_hf_roundtrip.py).
//   minillm_train_and_export OUT_DIR
#include <fstream>
#include <iostream>

#include <torch/optim/adam.h>

#include <minillm/model.hpp>

namespace {

void train_and_export(minillm::ModelConfig cfg, const std::filesystem::path& dir) {
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
    train_and_export(small("qwen3_moe", false), out / "qwen3_moe");
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
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
