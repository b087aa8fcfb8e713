// minillm-tokenizer: train, use and inspect byte-level BPE tokenizers (HF tokenizer.json format).
//   minillm-tokenizer train --input corpus.jsonl --vocab-size 6400 --output out/tokenizer
//   echo "床前明月光" | minillm-tokenizer encode --tokenizer out/tokenizer
//   echo "1968 294"   | minillm-tokenizer decode --tokenizer out/tokenizer
//   minillm-tokenizer chat --template minimind3 --generation-prompt < conversation.json
//   minillm-tokenizer shard --tokenizer out/tokenizer --input corpus.jsonl --output corpus.bin
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <sstream>

#include <minillm/data/text_corpus.hpp>
#include <minillm/data/token_shard.hpp>
#include <minillm/tokenizer/document_markers.hpp>
#include <minillm/io/atomic_write.hpp>
#include <minillm/tokenizer/jinja_templates.hpp>
#include <minillm/tokenizer/trainer.hpp>

#include "stdout_status.hpp"

namespace tk = minillm::tokenizer;

namespace {

std::filesystem::path tokenizer_file(const std::string& path) {
  std::filesystem::path p = path;
  return std::filesystem::is_directory(p) ? p / "tokenizer.json" : p;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// tokenizer_config.json for transformers' PreTrainedTokenizerFast, with the chat template.
void write_tokenizer_config(const std::filesystem::path& dir, tk::ChatFormat format) {
  const bool llama = format == tk::ChatFormat::llama3;
  nlohmann::ordered_json c = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                              {"add_bos_token", false},
                              {"add_eos_token", false},
                              {"bos_token", llama ? "<|begin_of_text|>" : "<|im_start|>"},
                              {"eos_token", llama ? "<|eot_id|>" : "<|im_end|>"},
                              {"pad_token", "<|endoftext|>"},
                              {"unk_token", "<|endoftext|>"},
                              {"clean_up_tokenization_spaces", false},
                              {"model_max_length", 32768},
                              {"chat_template", std::string(tk::jinja_template(format))}};
  minillm::io::write_text_file_atomic(dir / "tokenizer_config.json", c.dump(2) + "\n");
}

int train(const std::vector<std::string>& inputs, size_t vocab, uint64_t min_freq, std::vector<std::string> specials,
          const std::string& format_name, double max_mb, unsigned threads, const std::string& output) {
  const auto format = tk::chat_format_from_name(format_name);
  if (specials.empty()) {
    specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
                "<tool_response>", "</tool_response>"};
    if (format == tk::ChatFormat::llama3) specials = {"<|endoftext|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> texts;
  uint64_t total = 0;
  const auto limit = static_cast<uint64_t>(max_mb * 1e6);
  for (const auto& in : inputs) {
    minillm::data::for_each_text(in, [&](std::string&& t) {
      total += t.size();
      texts.push_back(std::move(t));
      if (texts.size() % 20000 == 0) std::cerr << "\rreading: " << total / 1000000 << " MB" << std::flush;
      return limit == 0 || total < limit;
    });
    if (limit != 0 && total >= limit) break;
  }
  std::cerr << "\rread " << texts.size() << " texts, " << total / 1e6 << " MB in " << seconds_since(t0) << " s\n";
  if (total == 0) throw std::invalid_argument("--input: no text to train on (the files are empty)");
  const auto t1 = std::chrono::steady_clock::now();
  const auto counts = tk::count_words(texts, threads);
  texts.clear();
  texts.shrink_to_fit();
  std::cerr << "counted " << counts.size() << " distinct words in " << seconds_since(t1) << " s\n";
  if (counts.empty()) throw std::invalid_argument("--input: no words to train on (the text is only whitespace?)");
  const auto t2 = std::chrono::steady_clock::now();
  tk::TrainerOptions opt;
  opt.vocab_size = vocab;
  opt.min_frequency = min_freq;
  opt.special_tokens = specials;
  const auto tok = tk::train_bpe(counts, opt, [&](size_t done, size_t wanted) {
    std::cerr << "\rmerges: " << done << "/" << wanted << " (" << (wanted ? 100 * done / wanted : 100) << "%) "
              << static_cast<int>(seconds_since(t2)) << " s" << std::flush;
  });
  std::cerr << "\ntrained " << tok.vocab_size() << " tokens (" << tok.merges().size() << " merges) in "
            << seconds_since(t2) << " s; total " << seconds_since(t0) << " s\n";
  std::filesystem::create_directories(output);
  tok.save(std::filesystem::path(output) / "tokenizer.json");
  write_tokenizer_config(output, format);
  std::cerr << "wrote " << output << "/tokenizer.json and tokenizer_config.json\n";
  return 0;
}

int encode(const std::string& path, bool jsonl, unsigned threads, bool stats) {
  const auto tok = tk::BpeTokenizer::from_file(tokenizer_file(path));
  std::string line;
  uint64_t n = 0;
  std::vector<std::string> texts;
  while (std::getline(std::cin, line)) {
    ++n;
    std::string text = line;
    if (jsonl) {
      try {
        const auto j = nlohmann::json::parse(line);
        if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) throw std::invalid_argument("no \"text\" string");
        text = j["text"].get<std::string>();
      } catch (const std::exception& e) {
        throw std::invalid_argument("stdin line " + std::to_string(n) + ": " + e.what());
      }
    }
    try {
      tk::unicode::require_valid_utf8(text);
    } catch (const tk::TokenizerError& e) {
      throw std::invalid_argument("stdin line " + std::to_string(n) + ": " + e.what());
    }
    texts.push_back(std::move(text));
  }
  // Encoding is timed on its own (reading and printing excluded) for --stats.
  const auto t0 = std::chrono::steady_clock::now();
  const auto all = tok.encode_batch(texts, threads);
  const double secs = seconds_since(t0);
  uint64_t bytes = 0, tokens = 0;
  for (size_t k = 0; k < texts.size(); ++k) {
    bytes += texts[k].size();
    tokens += all[k].size();
    std::string out;
    for (size_t i = 0; i < all[k].size(); ++i) {
      if (i > 0) out += ' ';
      out += std::to_string(all[k][i]);
    }
    std::cout << out << '\n';
  }
  if (stats)
    std::cerr << "encoded " << texts.size() << " texts, " << bytes / 1e6 << " MB, " << tokens << " tokens in " << secs
              << " s: " << bytes / 1e6 / secs << " MB/s (" << (threads ? threads : std::thread::hardware_concurrency())
              << " threads)\n";
  return 0;
}

int decode(const std::string& path, bool skip_special) {
  const auto tok = tk::BpeTokenizer::from_file(tokenizer_file(path));
  std::string line;
  uint64_t n = 0;
  while (std::getline(std::cin, line)) {
    ++n;
    std::vector<int32_t> ids;
    std::istringstream in(line);
    std::string word;
    while (in >> word) {
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(word, &used);
      } catch (const std::exception&) {
      }
      if (used != word.size() || v < 0 || v > INT32_MAX)
        throw std::invalid_argument("stdin line " + std::to_string(n) + ": \"" + word + "\" is not a token id");
      ids.push_back(static_cast<int32_t>(v));
    }
    try {
      std::cout << tok.decode(ids, skip_special) << '\n';
    } catch (const tk::TokenizerError& e) {
      throw std::invalid_argument("stdin line " + std::to_string(n) + ": " + e.what());
    }
  }
  return 0;
}

// Pre-tokenizes text / jsonl files into one shard: documents as bos + text + eos, encoded in chunks
// of `chunk` texts on all cores, so memory stays bounded whatever the corpus size.
int shard(const std::string& path, const std::vector<std::string>& inputs, const std::string& output, size_t chunk,
          unsigned threads) {
  const auto tok_file = tokenizer_file(path);
  const auto tok = tk::BpeTokenizer::from_file(tok_file);
  const auto [bos, eos] = minillm::document_markers(tok_file.parent_path(), tok);
  uint64_t total_bytes = 0, done_bytes = 0;
  for (const auto& in : inputs) {
    // Writing the shard over an input (the same file under any name) would destroy the corpus.
    std::error_code ec;
    if (std::filesystem::weakly_canonical(in) == std::filesystem::weakly_canonical(output) ||
        std::filesystem::equivalent(in, output, ec))
      throw std::invalid_argument("--output " + output + " is the input file " + in + ": give another path");
    total_bytes += std::filesystem::file_size(in);
  }
  minillm::data::ShardWriter writer(output, tok.vocab_size());
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> texts;
  auto flush = [&] {
    for (auto& ids : tok.encode_batch(texts, threads)) {
      ids.insert(ids.begin(), bos);
      ids.push_back(eos);
      writer.add_document(ids);
    }
    texts.clear();
    const double secs = seconds_since(t0);
    std::cerr << "\rshard: " << done_bytes / 1000000 << "/" << total_bytes / 1000000 << " MB, "
              << writer.header().documents << " documents, " << writer.header().tokens << " tokens, "
              << (secs > 0 ? done_bytes / 1e6 / secs : 0.0) << " MB/s" << std::flush;
  };
  for (const auto& in : inputs) {
    minillm::data::for_each_text(in, [&](std::string&& t) {
      done_bytes += t.size();
      texts.push_back(std::move(t));
      if (texts.size() >= chunk) flush();
      return true;
    });
  }
  flush();
  writer.finish();
  std::cerr << "\nwrote " << output << ": " << writer.header().documents << " documents, " << writer.header().tokens
            << " tokens (" << writer.header().token_bytes * 8 << "-bit ids) in " << seconds_since(t0) << " s\n";
  return 0;
}

int chat(const std::string& format_name, bool generation_prompt, bool open_thinking, const std::string& tokenizer) {
  std::stringstream buf;
  buf << std::cin.rdbuf();
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(buf.str());
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("stdin is not valid JSON: ") + e.what());
  }
  tk::ChatOptions opt{.add_generation_prompt = generation_prompt, .open_thinking = open_thinking};
  const auto& messages = j.is_object() && j.contains("messages") ? j["messages"]
                         : j.is_object() && j.contains("conversations") ? j["conversations"] : j;
  if (j.is_object() && j.contains("tools")) opt.tools = j["tools"];
  const auto text = tk::render_chat(tk::chat_messages_from_json(messages), tk::chat_format_from_name(format_name), opt);
  if (tokenizer.empty()) {
    std::cout << text;
    return 0;
  }
  const auto tok = tk::BpeTokenizer::from_file(tokenizer_file(tokenizer));
  const auto ids = tok.encode(text);
  const auto labels = tk::sft_labels(tok, ids, tk::chat_format_from_name(format_name));
  nlohmann::json out = {{"text", text}, {"ids", ids}, {"labels", labels}};
  std::cout << out.dump() << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train, use and inspect byte-level BPE tokenizers (HF tokenizer.json)."};
  app.require_subcommand(1);

  auto* tr = app.add_subcommand("train", "train a tokenizer on text / jsonl files");
  std::vector<std::string> inputs, specials;
  size_t vocab = 6400;
  uint64_t min_freq = 2;
  std::string output, format = "minimind3";
  double max_mb = 0;
  unsigned threads = 0;
  tr->add_option("--input", inputs, "text or .jsonl files (jsonl: \"text\" or \"conversations\")")->required()->check(CLI::ExistingFile);
  tr->add_option("--vocab-size", vocab, "vocabulary size, special tokens included")->check(CLI::Range(260, 1 << 20));
  tr->add_option("--min-frequency", min_freq, "stop when the best pair occurs fewer times");
  tr->add_option("--special-tokens", specials, "special tokens, first ids (default: ChatML's and the think/tool tags)")->delimiter(',');
  tr->add_option("--chat-template", format, "chat template for tokenizer_config.json")->check(CLI::IsMember({"minimind3", "minimind2", "llama3"}));
  tr->add_option("--max-mb", max_mb, "read at most this many MB of text (0: all)")->check(CLI::NonNegativeNumber);
  tr->add_option("--threads", threads, "counting threads (0: all cores)");
  tr->add_option("--output", output, "output directory")->required();

  auto* en = app.add_subcommand("encode", "stdin text -> one line of space-separated ids per input line");
  std::string tok_path;
  bool jsonl = false;
  en->add_option("--tokenizer", tok_path, "tokenizer.json or a directory holding it")->required()->check(CLI::ExistingPath);
  en->add_flag("--jsonl", jsonl, "each input line is a JSON object whose \"text\" is encoded");
  bool stats = false;
  en->add_option("--threads", threads, "encoding threads (0: all cores)");
  en->add_flag("--stats", stats, "print encoding throughput (MB/s) to stderr");

  auto* de = app.add_subcommand("decode", "stdin lines of ids -> text");
  bool skip_special = false;
  de->add_option("--tokenizer", tok_path, "tokenizer.json or a directory holding it")->required()->check(CLI::ExistingPath);
  de->add_flag("--skip-special", skip_special, "leave special tokens out");

  auto* ch = app.add_subcommand("chat", "render a conversation (JSON on stdin) through a chat template");
  bool gen = false, think = false;
  std::string chat_tok;
  ch->add_option("--template", format, "minimind3, minimind2 or llama3")->check(CLI::IsMember({"minimind3", "minimind2", "llama3"}));
  ch->add_flag("--generation-prompt", gen, "end with the assistant's opening");
  ch->add_flag("--open-thinking", think, "minimind3: leave the <think> block open");
  ch->add_option("--tokenizer", chat_tok, "also print ids and SFT labels (JSON)")->check(CLI::ExistingPath);

  auto* sh = app.add_subcommand("shard", "pre-tokenize text / jsonl files into a token shard (bos + text + eos per document)");
  std::vector<std::string> shard_inputs;
  std::string shard_out;
  size_t chunk = 8192;
  sh->add_option("--tokenizer", tok_path, "tokenizer.json or a directory holding it")->required()->check(CLI::ExistingPath);
  sh->add_option("--input", shard_inputs, "text or .jsonl files")->required()->check(CLI::ExistingFile);
  sh->add_option("--output", shard_out, "shard file to write (.bin)")->required();
  sh->add_option("--chunk", chunk, "texts encoded per batch (bounds memory)")->check(CLI::PositiveNumber);
  sh->add_option("--threads", threads, "encoding threads (0: all cores)");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*tr) return train(inputs, vocab, min_freq, specials, format, max_mb, threads, output);
    if (*en) return stdout_status(encode(tok_path, jsonl, threads, stats));
    if (*de) return stdout_status(decode(tok_path, skip_special));
    if (*ch) return stdout_status(chat(format, gen, think, chat_tok));
    if (*sh) return shard(tok_path, shard_inputs, shard_out, chunk, threads);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
