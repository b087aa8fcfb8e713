// hello_minillm: the whole path in one file, against the installed package.
//  1. compose an architecture of your own from the library's policies;
//  2. train a byte-level BPE tokenizer on a text;
//  3. train the model on it for a few hundred steps;
//  4. generate text greedily with the library's Generator (KV cache, stop string, streamed
//     UTF-8-safe pieces).
#include <iostream>

#include <torch/optim/adamw.h>

#include <minillm/infer/generator.hpp>
#include <minillm/model.hpp>
#include <minillm/tokenizer/trainer.hpp>

// 1. Structure is a type: LayerNorm, rotary positions, QK-normed grouped-query attention, GELU MLP.
struct MyArch {
  static constexpr std::string_view name = "my_arch";
  using norm = minillm::norm::LayerNorm;
  using position = minillm::position::RoPE;
  using attention = minillm::attention::GroupedQuery<minillm::attention::QKNorm::on>;
  using ffn = minillm::ffn::GeluMLP;
};
static_assert(minillm::Architecture<MyArch>);

int main() {
  const std::string text =
      "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"
      "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n"
      "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。\n";

  // 2. A tokenizer trained on the text itself.
  minillm::tokenizer::TrainerOptions topt;
  topt.vocab_size = 3 + 256 + 64;
  const auto tok = minillm::tokenizer::train_bpe(minillm::tokenizer::count_words({text}), topt);
  const auto ids32 = tok.encode(text);
  const std::vector<int64_t> ids(ids32.begin(), ids32.end());

  // 3. Sizes are data.
  minillm::ModelConfig cfg;
  cfg.vocab_size = static_cast<int64_t>(tok.vocab_size());
  cfg.hidden_size = 96;
  cfg.num_hidden_layers = 2;
  cfg.num_attention_heads = 4;
  cfg.num_key_value_heads = 2;
  cfg.head_dim = 24;
  cfg.intermediate_size = 256;
  cfg.max_position_embeddings = 256;
  at::manual_seed(0);
  minillm::CausalLM<MyArch> model(cfg);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0.0));
  const auto batch = at::tensor(ids, at::kLong).unsqueeze(0);  // (1, T)
  for (int step = 0; step <= 200; ++step) {
    opt.zero_grad();
    const auto loss = model->forward(batch, {.labels = batch}).loss;
    loss.backward();
    opt.step();
    if (step % 50 == 0) std::cout << "step " << step << " loss " << loss.item<double>() << '\n';
  }

  // 4. Greedy generation from the first tokens to the end of the line, streamed. The prompt ends
  //    on a character boundary: BPE may split a 3-byte character between two tokens.
  size_t prompt_len = 2;
  while (tok.decode({ids32.begin(), ids32.begin() + static_cast<std::ptrdiff_t>(prompt_len)}).find("\xEF\xBF\xBD") !=
         std::string::npos)
    ++prompt_len;  // U+FFFD: a cut character
  const std::vector<int32_t> prompt(ids32.begin(), ids32.begin() + static_cast<std::ptrdiff_t>(prompt_len));
  minillm::infer::Generator<minillm::CausalLM<MyArch>> generator(model, tok);
  std::string generated = tok.decode(prompt);
  std::cout << "generated: " << generated << std::flush;
  const auto result = generator.generate(prompt, {.sampling = {.temperature = 0}, .max_new_tokens = 60, .stop_strings = {"\n"}},
                                         [](size_t, std::string_view piece) {
                                           std::cout << piece << std::flush;  // never half a character
                                           return true;
                                         });
  generated += result.text + "\n";
  std::cout << '\n';
  // The model memorised the poems: its continuation must be the first line.
  const bool ok = result.finish == minillm::infer::FinishReason::stop && generated == text.substr(0, text.find('\n') + 1);
  std::cout << (ok ? "continuation matches the training text\n" : "continuation differs from the training text\n");
  return ok ? 0 : 1;
}
