// Perplexity of a model over a text corpus: each document is wrapped as bos + text + eos
// (MiniMind's pretraining format) and scored in windows of at most `window` predicted tokens.
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "minillm/data/text_corpus.hpp"
#include "minillm/registry.hpp"
#include "minillm/tokenizer/document_markers.hpp"

namespace minillm {

struct PerplexityResult {
  int64_t documents = 0;
  int64_t tokens = 0;  // predicted tokens
  double loss = 0;     // mean negative log-likelihood (nats)
  double perplexity = 0;
};

inline PerplexityResult text_perplexity(AnyCausalLM& model, const tokenizer::BpeTokenizer& tok, int32_t bos, int32_t eos,
                                        const std::filesystem::path& file, int64_t window, int64_t max_docs = 0,
                                        const std::function<void(const PerplexityResult&)>& progress = {}) {
  if (window < 1) throw std::invalid_argument("window (" + std::to_string(window) + ") must be positive");
  if (max_docs < 0) throw std::invalid_argument("max_docs (" + std::to_string(max_docs) + ") must not be negative (0: all)");
  at::NoGradGuard no_grad;
  const auto device = model.module().parameters().front().device();
  PerplexityResult r;
  double nll = 0;
  data::for_each_text(file, [&](std::string&& text) {
    std::vector<int64_t> ids = {bos};
    for (const auto id : tok.encode(text)) ids.push_back(id);
    ids.push_back(eos);
    for (size_t start = 0; start + 1 < ids.size(); start += static_cast<size_t>(window)) {
      const auto n = std::min(static_cast<size_t>(window) + 1, ids.size() - start);  // n - 1 predictions
      const auto chunk = at::tensor(std::vector<int64_t>(ids.begin() + static_cast<long>(start),
                                                         ids.begin() + static_cast<long>(start + n)),
                                    at::kLong)
                             .unsqueeze(0)
                             .to(device);
      nll += model.forward(chunk, {.labels = chunk}).lm_loss.item<double>() * static_cast<double>(n - 1);
      r.tokens += static_cast<int64_t>(n - 1);
    }
    ++r.documents;
    if (progress && r.documents % 200 == 0) progress({r.documents, r.tokens, nll / r.tokens, std::exp(nll / r.tokens)});
    return max_docs == 0 || r.documents < max_docs;
  });
  if (r.tokens == 0) throw data::DataError(file.string() + ": no text to evaluate");
  r.loss = nll / static_cast<double>(r.tokens);
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace minillm
