// minillm-eval: run a checkpoint on token ids.
//   minillm-eval --model DIR --ids "302 171 301" --logits-out logits.f32   full-sequence logits, float32 [T, V]
//   minillm-eval --model DIR --ids "302 171 301" --greedy 12              12 greedy token ids
//   minillm-eval --model DIR --text val.jsonl                              perplexity over a text or jsonl file
//   minillm-eval --model DIR --ids "302 171 301" --objective              the training objective for labels = ids (JSON)
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

#include <minillm/eval/perplexity.hpp>
#include <minillm/infer/generator.hpp>
#include <minillm/model.hpp>

#include "stdout_status.hpp"

namespace {

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  std::istringstream in(text);
  std::string tok;
  while (in >> tok) {
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != tok.size() || v < 0) throw std::invalid_argument("--ids: \"" + tok + "\" is not a token id");
    ids.push_back(v);
  }
  if (ids.empty()) throw std::invalid_argument("--ids: no token ids given");
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Run a checkpoint directory (HF layout) on token ids: write logits or greedy-decode."};
  std::string model_dir, ids_text, logits_out, device = "cpu";
  int greedy = 0, threads = 0;
  bool objective = false;
  app.add_option("--model", model_dir, "checkpoint directory (config.json + model.safetensors)")->required();
  std::string text_file, tokenizer_path;
  int64_t window = 0, max_docs = 0;
  auto* ids_opt = app.add_option("--ids", ids_text, "space-separated token ids of one sequence");
  auto* text_opt = app.add_option("--text", text_file, "report perplexity over this text or .jsonl file")->check(CLI::ExistingFile);
  ids_opt->excludes(text_opt);
  app.add_option("--tokenizer", tokenizer_path, "tokenizer.json or its directory (default: the model directory)");
  app.add_option("--window", window, "tokens per forward for --text (default: max_position_embeddings, at most 1024)")
      ->check(CLI::Range(int64_t{1}, std::numeric_limits<int64_t>::max()));
  app.add_option("--max-docs", max_docs, "evaluate at most this many documents (0: all)")
      ->check(CLI::Range(int64_t{0}, std::numeric_limits<int64_t>::max()));
  app.add_option("--logits-out", logits_out, "write the full-sequence logits as raw little-endian float32 [T, V]");
  app.add_option("--greedy", greedy, "print this many greedy continuation ids")->check(CLI::NonNegativeNumber);
  app.add_flag("--objective", objective,
               "print the training objective for labels = ids as one JSON line: loss, lm_loss, and mtp_loss / aux_loss "
               "where the architecture has them (training mode, as a training step computes it)");
  app.add_option("--device", device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--threads", threads, "CPU threads (default: all cores)")->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    minillm::set_num_threads(threads);
    const bool text_mode = !text_file.empty();
    if (!text_mode && ids_text.empty()) throw std::invalid_argument("give --ids (with --logits-out / --greedy) or --text");
    if (!text_mode && logits_out.empty() && greedy == 0 && !objective)
      throw std::invalid_argument("nothing to do: give --logits-out, --greedy N and/or --objective");
    const auto dev = minillm::device_from_name(device);
    auto model = minillm::load_pretrained(model_dir, at::TensorOptions().device(dev));
    model->module().eval();
    at::NoGradGuard no_grad;
    if (text_mode) {
      const auto w = window > 0 ? window : std::min<int64_t>(model->config().max_position_embeddings, 1024);
      const std::filesystem::path tp = tokenizer_path.empty() ? model_dir : tokenizer_path;
      const auto tok_file = std::filesystem::is_directory(tp) ? tp / "tokenizer.json" : tp;
      const auto tok = minillm::tokenizer::BpeTokenizer::from_file(tok_file);
      const auto [bos, eos] = minillm::document_markers(tok_file.parent_path(), tok);
      const auto r = minillm::text_perplexity(*model, tok, bos, eos, text_file, w, max_docs, [](const auto& p) {
        std::cerr << "\r" << p.documents << " documents, " << p.tokens << " tokens, loss " << p.loss << std::flush;
      });
      std::cerr << '\n';
      std::cout << "documents " << r.documents << "  tokens " << r.tokens << "  loss " << r.loss << "  perplexity "
                << r.perplexity << '\n';
      return stdout_status(0);
    }
    const auto ids = parse_ids(ids_text);
    const auto input = at::tensor(ids, at::kLong).unsqueeze(0).to(dev);  // (1, T)

    if (objective) {
      // Training mode, as a step computes it: MoE aux losses and the MTP head take part. (A router
      // whose training forward moves its selection bias moves it here too; nothing is saved.)
      model->module().train();
      const auto out = model->forward(input, {.labels = input});
      model->module().eval();
      nlohmann::json j = {{"loss", out.loss.item<double>()}, {"lm_loss", out.lm_loss.item<double>()}};
      if (out.mtp_loss.defined()) j["mtp_loss"] = out.mtp_loss.item<double>();
      if (out.aux_loss.defined()) j["aux_loss"] = out.aux_loss.item<double>();
      std::cout << j.dump() << '\n';
    }

    if (!logits_out.empty()) {
      const auto logits = model->forward(input).logits[0].to(at::kFloat).cpu().contiguous();  // (T, V)
      const auto tmp = logits_out + ".tmp";
      {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(static_cast<const char*>(logits.data_ptr()), static_cast<std::streamsize>(logits.numel() * 4));
        if (!out) throw std::runtime_error("cannot write " + tmp);
      }
      std::filesystem::rename(tmp, logits_out);
      std::cerr << "wrote logits [" << logits.size(0) << ", " << logits.size(1) << "] to " << logits_out << '\n';
    }
    if (greedy > 0) {
      const int64_t capacity = static_cast<int64_t>(ids.size()) + greedy;
      if (capacity > model->config().max_position_embeddings)
        throw std::invalid_argument("prompt (" + std::to_string(ids.size()) + ") + --greedy (" + std::to_string(greedy) +
                                    ") exceeds max_position_embeddings (" +
                                    std::to_string(model->config().max_position_embeddings) + ")");
      auto cache = model->make_cache(1, capacity);
      auto logits = model->forward(input, {.cache = &cache, .logits_to_keep = 1}).logits;
      for (int i = 0; i < greedy; ++i) {
        minillm::infer::check_finite_logits(logits[0], i);
        const auto next = logits[0][-1].argmax().item<int64_t>();
        std::cout << (i ? " " : "") << next;
        if (i + 1 < greedy)
          logits = model->forward(at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong).device(dev)),
                                  {.cache = &cache, .logits_to_keep = 1})
                       .logits;
      }
      std::cout << '\n';
    }
    return stdout_status(0);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
}
