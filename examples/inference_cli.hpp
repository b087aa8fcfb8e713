// What minillm-chat and minillm-serve share: loading a checkpoint directory with its tokenizer and
// chat template, the sampling flags, and turning a conversation into a prompt that fits the
// model's context (oldest turns dropped first).
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <memory>

#include <minillm/infer/generator.hpp>
#include <minillm/model.hpp>
#include <minillm/tokenizer/document_markers.hpp>
#include <minillm/tokenizer/jinja_templates.hpp>

namespace inference_cli {

namespace tk = minillm::tokenizer;

struct Options {
  std::string model_dir, tokenizer_dir, template_name, device = "cpu", precision = "fp32";
  int threads = 0;
  bool cuda_graph = true, speculative = false;
  int64_t max_new_tokens = 512;
  std::optional<uint64_t> seed;
  minillm::infer::SamplingOptions sampling{.temperature = 0.85, .top_p = 0.85};

  void add_to(CLI::App& app) {
    app.add_option("--model", model_dir, "checkpoint directory (config.json, model.safetensors, tokenizer files)")
        ->required()
        ->check(CLI::ExistingDirectory);
    app.add_option("--tokenizer", tokenizer_dir, "tokenizer directory (default: --model)")->check(CLI::ExistingDirectory);
    app.add_option("--template", template_name, "chat template: minimind3, minimind2, llama3 (default: the tokenizer's)");
    app.add_option("--max-new-tokens", max_new_tokens, "tokens per answer at most")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--temperature", sampling.temperature, "0: greedy")->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--top-k", sampling.top_k, "keep the k most likely tokens (0: off)")->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--top-p", sampling.top_p, "nucleus mass (1: off)")->check(CLI::Range(0.0, 1.0))->capture_default_str();
    app.add_option("--min-p", sampling.min_p, "drop tokens below min_p x the top probability (0: off)")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    app.add_option("--repetition-penalty", sampling.repetition_penalty, "> 1 discourages repeats (HF's rule; applied before temperature)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--seed", seed, "sampling seed (default: random)");
    app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
    app.add_option("--precision", precision, "fp32 or bf16 (autocast)")->check(CLI::IsMember({"fp32", "bf16"}))->capture_default_str();
    app.add_option("--threads", threads, "CPU threads (0: all cores)")->check(CLI::NonNegativeNumber);
    app.add_flag("--cuda-graph,!--no-cuda-graph", cuda_graph,
                 "CUDA: decode through a recorded CUDA graph of the step (default: on)")
        ->capture_default_str();
    app.add_flag("--speculative", speculative,
                 "greedy decoding with the model's multi-token-prediction head drafting one token ahead (models with "
                 "use_mtp; needs --temperature 0); the output is the plain greedy output");
  }
};

// A loaded checkpoint ready to generate.
struct Session {
  std::unique_ptr<minillm::AnyCausalLM> model;
  tk::BpeTokenizer tokenizer;
  tk::ChatTemplate chat_template = tk::builtin_chat_template("minimind3");
  std::vector<int32_t> stop_ids;  // eos and the formats' end-of-turn tokens the vocabulary has
  std::string name;               // the model's name for /v1/models: the directory's name
  minillm::Precision precision = minillm::Precision::fp32;

  minillm::infer::GenerationOptions generation(const Options& o) const {
    minillm::infer::GenerationOptions g;
    g.sampling = o.sampling;
    g.max_new_tokens = o.max_new_tokens;
    g.stop_token_ids = stop_ids;
    g.seed = o.seed;
    g.precision = precision;
    g.cuda_graph = o.cuda_graph;
    // Per request (the server's sampling may differ): speculative where greedy.
    g.speculative = o.speculative && g.sampling.greedy() && g.sampling.repetition_penalty == 1.0;
    return g;
  }
  int64_t context() const { return model->config().max_position_embeddings; }

  // The token ids of `messages` rendered with the generation prompt. Drops the oldest turns after
  // the system prompt until `max_new_tokens` more fit the context; throws std::length_error when
  // even the last message alone does not fit.
  std::vector<int32_t> prompt(std::vector<tk::ChatMessage> messages, int64_t max_new_tokens, bool think,
                              size_t* dropped = nullptr) const {
    const tk::ChatOptions opt{.add_generation_prompt = true, .open_thinking = think};
    const size_t first = !messages.empty() && messages.front().role == "system" ? 1 : 0;
    size_t removed = 0;
    while (true) {
      auto ids = tk::encode_chat(tokenizer, messages, chat_template, opt);  // the messages' text never becomes a control token
      if (static_cast<int64_t>(ids.size()) + max_new_tokens <= context()) {
        if (dropped != nullptr) *dropped = removed;
        return ids;
      }
      if (messages.size() <= first + 1)
        throw std::length_error("the prompt (" + std::to_string(ids.size()) + " tokens) + max_new_tokens (" +
                                std::to_string(max_new_tokens) + ") does not fit the model's context (" +
                                std::to_string(context()) + " tokens)");
      messages.erase(messages.begin() + static_cast<long>(first));
      ++removed;
    }
  }
};

inline Session load_session(const Options& o) {
  Session s;
  const std::filesystem::path tok_dir = o.tokenizer_dir.empty() ? o.model_dir : o.tokenizer_dir;
  if (!std::filesystem::exists(tok_dir / "tokenizer.json"))
    throw std::invalid_argument(tok_dir.string() + " has no tokenizer.json; pass --tokenizer DIR");
  s.tokenizer = tk::BpeTokenizer::from_file(tok_dir / "tokenizer.json");
  s.chat_template = tk::chat_template_of(tok_dir, o.template_name);
  s.model = minillm::load_pretrained(o.model_dir, at::TensorOptions().device(minillm::device_from_name(o.device)));
  if (s.model->config().vocab_size < static_cast<int64_t>(s.tokenizer.vocab_size()))
    throw std::invalid_argument(o.model_dir + ": vocab_size (" + std::to_string(s.model->config().vocab_size) +
                                ") is smaller than the tokenizer's vocabulary (" + std::to_string(s.tokenizer.vocab_size()) + ")");
  s.stop_ids.push_back(minillm::document_markers(tok_dir, s.tokenizer).second);
  for (const char* t : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>"})
    if (const auto id = s.tokenizer.token_to_id(t); id && std::find(s.stop_ids.begin(), s.stop_ids.end(), *id) == s.stop_ids.end())
      s.stop_ids.push_back(*id);
  s.name = std::filesystem::weakly_canonical(o.model_dir).filename().string();
  s.precision = minillm::precision_from_name(o.precision);
  o.sampling.validate();
  if (o.speculative && !s.model->has_mtp())
    throw std::invalid_argument("--speculative: " + o.model_dir + " has no multi-token-prediction head (use_mtp)");
  if (o.speculative && !o.sampling.greedy())
    throw std::invalid_argument("--speculative decodes greedily: add --temperature 0");
  return s;
}

}  // namespace inference_cli
