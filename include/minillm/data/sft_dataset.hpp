// Supervised fine-tuning data: MiniMind's jsonl, one {"conversations": [{"role", "content",
// "reasoning_content"?}, ...]} per line, rendered with a chat template and tokenized; the loss
// covers only the assistant spans (tokenizer::render_chat_for_training, sft_labels). Examples longer than seq_len are cut;
// one left without an assistant token is dropped (and counted).
//
// Batches come in two layouts:
//   padded  one conversation per row, right-padded to the longest row of the batch (causal
//           attention never looks right, so padding needs no mask; its labels are -100)
//   packed  whole conversations placed back to back in rows of seq_len (Mini-LLM's packing):
//           positions restart at each conversation and a block-diagonal causal mask keeps them
//           from attending to each other
// Conversations are visited in a seeded order per epoch; the cursor resumes it exactly.
#pragma once

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "minillm/data/batch.hpp"
#include "minillm/data/text_corpus.hpp"
#include "minillm/tokenizer/jinja_templates.hpp"

namespace minillm::data {

struct SftOptions {
  int64_t seq_len = 512;  // tokens per row; longer conversations are cut
  bool pack = false;
  uint64_t seed = 42;
  tokenizer::ChatTemplate chat_template = tokenizer::builtin_chat_template("minimind3");
  size_t max_examples = 0;  // 0: all
  std::function<void(size_t lines)> progress;  // called every few thousand lines while loading
};

class SftDataset {
 public:
  SftDataset(const std::vector<std::filesystem::path>& files, const tokenizer::BpeTokenizer& tok, SftOptions options)
      : options_(std::move(options)) {
    if (options_.seq_len < 2) throw DataError("seq_len (" + std::to_string(options_.seq_len) + ") must be at least 2");
    if (files.empty()) throw DataError("no SFT files given");
    offsets_.push_back(0);
    std::vector<std::string> rendered;
    std::vector<std::vector<jinja::Span>> spans;
    auto flush = [&] {
      const auto encoded = tok.encode_batch(rendered);
      for (size_t i = 0; i < encoded.size(); ++i) add(tok, encoded[i], spans[i]);
      rendered.clear();
      spans.clear();
    };
    size_t lines = 0;
    for (const auto& file : files) {
      for_each_conversation(file, [&](std::vector<tokenizer::ChatMessage>&& messages) {
        auto r = tokenizer::render_chat_for_training(messages, options_.chat_template);
        rendered.push_back(std::move(r.text));
        spans.push_back(std::move(r.assistant_spans));
        if (rendered.size() == 4096) flush();
        if (++lines % 20000 == 0 && options_.progress) options_.progress(lines);
        return options_.max_examples == 0 || lines < options_.max_examples;
      });
      if (options_.max_examples != 0 && lines >= options_.max_examples) break;
    }
    flush();
    if (size() == 0)
      throw DataError("no usable conversation in the SFT files (" + std::to_string(dropped_) +
                      " had no assistant token within seq_len " + std::to_string(options_.seq_len) + ")");
    order_ = EpochOrder(size(), options_.seed, "conversations");
  }

  // Reads `path` and calls fn(messages) per conversation; stops early when fn returns false.
  // A bad line throws DataError naming file:line.
  static void for_each_conversation(const std::filesystem::path& path,
                                    const std::function<bool(std::vector<tokenizer::ChatMessage>&&)>& fn) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw DataError("cannot open " + path.string());
    std::string line;
    for (uint64_t line_no = 1; std::getline(in, line); ++line_no) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const auto where = path.string() + ":" + std::to_string(line_no);
      nlohmann::ordered_json j;
      try {
        j = nlohmann::ordered_json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw DataError(where + ": not valid JSON (" + e.what() + ")");
      }
      if (!j.is_object() || !j.contains("conversations"))
        throw DataError(where + ": expected an object with a \"conversations\" array");
      std::vector<tokenizer::ChatMessage> messages;
      try {
        messages = tokenizer::chat_messages_from_json(j["conversations"]);
      } catch (const std::exception& e) {
        throw DataError(where + ": conversations: " + e.what());
      }
      try {
        if (!fn(std::move(messages))) return;
      } catch (const tokenizer::TokenizerError& e) {  // the chat template refused this conversation
        throw DataError(where + ": " + e.what());
      } catch (const jinja::TemplateError& e) {
        throw DataError(where + ": " + e.what());
      }
    }
  }

  uint64_t size() const { return offsets_.size() - 1; }
  uint64_t dropped() const { return dropped_; }
  uint64_t num_tokens() const { return tokens_.size(); }
  const DataCursor& cursor() const { return order_.cursor(); }
  void set_cursor(const DataCursor& c) { order_.set_cursor(c); }

  // Example i (in file order): its token ids and labels.
  std::pair<std::vector<int32_t>, std::vector<int64_t>> example(uint64_t i) const {
    const auto b = offsets_.at(i), e = offsets_.at(i + 1);
    std::vector<int32_t> ids(tokens_.begin() + static_cast<long>(b), tokens_.begin() + static_cast<long>(e));
    std::vector<int64_t> labels(ids.size());
    for (size_t k = 0; k < ids.size(); ++k) labels[k] = trained_[b + k] ? ids[k] : kIgnoreIndex;
    return {std::move(ids), std::move(labels)};
  }

  // The next `rows` rows of training data (padded or packed, as configured), in the seeded order.
  Batch next_batch(int64_t rows) {
    std::vector<std::vector<uint64_t>> groups(static_cast<size_t>(rows));
    for (auto& g : groups) {
      int64_t used = 0;
      do {  // an epoch boundary closes a row
        const auto i = order_.peek();
        const auto n = static_cast<int64_t>(offsets_[i + 1] - offsets_[i]);
        if (!g.empty() && used + n > options_.seq_len) break;
        g.push_back(order_.next());
        used += n;
      } while (options_.pack && !order_.epoch_done());
    }
    return make_batch(groups);
  }

  // Conversations [first, first + rows) in file order, one per row (validation: the same batches every time).
  Batch batch_in_order(uint64_t first, int64_t rows) const {
    std::vector<std::vector<uint64_t>> groups;
    for (uint64_t i = first; i < std::min<uint64_t>(size(), first + static_cast<uint64_t>(rows)); ++i) groups.push_back({i});
    if (groups.empty()) throw DataError("validation batch starts past the last conversation (" + std::to_string(size()) + ")");
    return make_batch(groups);
  }

 private:
  void add(const tokenizer::BpeTokenizer& tok, std::vector<int32_t> ids, const std::vector<jinja::Span>& spans) {
    auto labels = tokenizer::sft_labels(tok, ids, spans);
    if (static_cast<int64_t>(ids.size()) > options_.seq_len) {
      ids.resize(static_cast<size_t>(options_.seq_len));
      labels.resize(ids.size());
    }
    // The loss needs a trained token after the first position (labels are compared shifted by one).
    if (std::none_of(labels.begin() + 1, labels.end(), [](int64_t l) { return l != kIgnoreIndex; })) {
      ++dropped_;
      return;
    }
    tokens_.insert(tokens_.end(), ids.begin(), ids.end());
    for (const auto l : labels) trained_.push_back(l != kIgnoreIndex);
    offsets_.push_back(tokens_.size());
  }

  // Rows of examples -> tensors. A row of several examples (packing) gets positions restarting at
  // each example and a mask that lets a token see only earlier tokens of its own example.
  Batch make_batch(const std::vector<std::vector<uint64_t>>& groups) const {
    const auto rows = static_cast<int64_t>(groups.size());
    int64_t width = 0;
    bool packed = false;
    for (const auto& g : groups) {
      int64_t n = 0;
      for (const auto i : g) n += static_cast<int64_t>(offsets_[i + 1] - offsets_[i]);
      width = std::max(width, n);
      packed = packed || g.size() > 1;
    }
    if (options_.pack) width = options_.seq_len;
    auto ids = at::zeros({rows, width}, at::kLong);
    auto labels = at::full({rows, width}, kIgnoreIndex, at::kLong);
    auto segment = at::full({rows, width}, -1, at::kLong);  // which example each position belongs to
    auto positions = at::zeros({rows, width}, at::kLong);
    auto* id = ids.data_ptr<int64_t>();
    auto* label = labels.data_ptr<int64_t>();
    auto* seg = segment.data_ptr<int64_t>();
    auto* pos = positions.data_ptr<int64_t>();
    for (int64_t r = 0; r < rows; ++r) {
      int64_t col = 0;
      for (size_t k = 0; k < groups[static_cast<size_t>(r)].size(); ++k) {
        const auto i = groups[static_cast<size_t>(r)][k];
        for (auto t = offsets_[i]; t < offsets_[i + 1]; ++t, ++col) {
          const auto at = r * width + col;
          id[at] = tokens_[t];
          label[at] = trained_[t] ? tokens_[t] : kIgnoreIndex;
          seg[at] = static_cast<int64_t>(k);
          pos[at] = static_cast<int64_t>(t - offsets_[i]);
        }
      }
      for (; col < width; ++col) pos[r * width + col] = col;  // padding: never trained on
    }
    Batch b{.input_ids = ids, .labels = labels};
    if (packed) {
      const auto same = segment.unsqueeze(2).eq(segment.unsqueeze(1));                     // (B, T, T)
      const auto causal = at::ones({width, width}, at::kBool).tril().unsqueeze(0);          // (1, T, T)
      b.attention_mask = (same & causal).unsqueeze(1);                                      // (B, 1, T, T)
      b.position_ids = positions;
    }
    return b;
  }

  SftOptions options_;
  std::vector<int32_t> tokens_;
  std::vector<uint8_t> trained_;  // per token: part of an assistant span
  std::vector<uint64_t> offsets_;
  uint64_t dropped_ = 0;
  EpochOrder order_{0, 0, "conversations"};
};

}  // namespace minillm::data
