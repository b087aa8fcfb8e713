// Byte-level BPE: parity with HF tokenizers on MiniMind's tokenizer, decoding, bad input.
#include <doctest/doctest.h>

#include <fstream>

#include <minillm/tokenizer/bpe.hpp>
#include <minillm/tokenizer/stream_decoder.hpp>
#include <minillm/tokenizer/trainer.hpp>
#include <minillm/tokenizer/chat_template.hpp>

#include <map>

using minillm::tokenizer::BpeTokenizer;
using minillm::tokenizer::TokenizerError;
using nlohmann::json;

namespace {
const std::filesystem::path kDir = std::filesystem::path(MINILLM_TEST_DATA_DIR) / "tokenizer" / "minimind";
const BpeTokenizer& minimind() {
  static const auto tok = BpeTokenizer::from_file(kDir / "tokenizer.json");
  return tok;
}
}  // namespace

TEST_CASE("tokenizer: ids and decoded text identical to HF tokenizers for every fixture case") {
  std::ifstream in(kDir / "cases.jsonl");
  std::string line;
  int cases = 0;
  while (std::getline(in, line)) {
    const auto c = json::parse(line);
    const auto text = c["text"].get<std::string>();
    CAPTURE(text);
    const auto ids = minimind().encode(text);
    CHECK(ids == c["ids"].get<std::vector<int32_t>>());
    CHECK(minimind().decode(ids) == c["decoded"].get<std::string>());
    CHECK(minimind().decode(ids) == text);  // decode(encode(x)) == x
    ++cases;
  }
  CHECK(cases == 33);
}

TEST_CASE("tokenizer: special tokens are matched whole and can be skipped when decoding") {
  const auto ids = minimind().encode("<|im_start|>user\nhi<|im_end|>\n");
  CHECK(ids.front() == 1);
  CHECK(std::count(ids.begin(), ids.end(), 2) == 1);
  CHECK(minimind().decode(ids) == "<|im_start|>user\nhi<|im_end|>\n");
  CHECK(minimind().decode(ids, /*skip_special=*/true) == "user\nhi\n");
  // <think> is an added token but not special: kept when skipping specials.
  const auto think = minimind().encode("<think>x</think>");
  CHECK(think.front() == minimind().token_to_id("<think>").value());
  CHECK(minimind().decode(think, true) == "<think>x</think>");
}

TEST_CASE("tokenizer: bad input gives clear errors") {
  auto msg = [](auto f) {
    try {
      f();
    } catch (const TokenizerError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(msg([] { minimind().encode("ok \xff bad"); }) == "input is not valid UTF-8: bad byte 0xff at offset 3");
  CHECK(msg([] { minimind().encode("\xe4\xbd"); }).find("offset 0") != std::string::npos);  // cut sequence
  CHECK(msg([] { minimind().decode({6400}); }).find("token id 6400 is not in the vocabulary") != std::string::npos);
  CHECK(msg([] { BpeTokenizer::from_file("/nonexistent.json"); }).find("cannot open tokenizer file") != std::string::npos);
  // A cut multi-byte character decodes to U+FFFD, as HF's lossy decoding does.
  const auto ids = minimind().encode("你");
  REQUIRE(ids.size() >= 1);
  const auto bytes = minimind().decode_bytes(ids);
  CHECK(BpeTokenizer::to_valid_utf8(bytes.substr(0, 2)) == "\xEF\xBF\xBD");
}

TEST_CASE("tokenizer: save and load round trip, copies work") {
  const auto path = std::filesystem::temp_directory_path() / "minillm_tok_roundtrip.json";
  minimind().save(path);
  const auto back = BpeTokenizer::from_file(path);
  const BpeTokenizer copy = back;
  const std::string text = "床前明月光 Hello, world! <|im_end|> 123";
  CHECK(back.encode(text) == minimind().encode(text));
  CHECK(copy.encode(text) == minimind().encode(text));
  CHECK(back.vocab_size() == 6400);
  std::filesystem::remove(path);
}

TEST_CASE("tokenizer: the streaming decoder never splits a multi-byte character") {
  using minillm::tokenizer::StreamDecoder;
  const std::string text = "床前明月光，疑是地上霜。🌙 Hello ✓ café — 举头望明月 <|im_end|>";
  const auto ids = minimind().encode(text);
  std::string streamed;
  int pieces_with_partial_bytes = 0;
  StreamDecoder dec(minimind());
  for (const auto id : ids) {
    const auto piece = dec.push(id);
    CHECK(BpeTokenizer::to_valid_utf8(piece) == piece);  // every piece is valid UTF-8 on its own
    if (piece.empty()) ++pieces_with_partial_bytes;
    streamed += piece;
  }
  streamed += dec.flush();
  CHECK(streamed == text);
  CHECK(pieces_with_partial_bytes > 0);  // this text does cut characters across tokens
  // Single bytes fed one by one: nothing is emitted until the character is complete.
  const auto emoji = minimind().encode("🌙");
  StreamDecoder one(minimind());
  std::string got;
  for (size_t i = 0; i + 1 < emoji.size(); ++i) got += one.push(emoji[i]);
  CHECK(got.empty());
  CHECK(one.push(emoji.back()) == "🌙");
}

TEST_CASE("tokenizer: training merges the most frequent pair first and round-trips text") {
  using namespace minillm::tokenizer;
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back("low lower lowest newer newest 床前明月光 " + std::to_string(i % 7) + "\n");
  const auto counts = count_words(texts, 2);
  CHECK(counts.at(" lower") == 200);
  CHECK(counts.at(" 0") == 29);
  TrainerOptions opt;
  opt.vocab_size = 3 + 256 + 10;
  size_t last_done = 0;
  const auto tok = train_bpe(counts, opt, [&](size_t done, size_t) { last_done = done; });
  CHECK(tok.vocab_size() == opt.vocab_size);
  CHECK(last_done == 10);
  CHECK(tok.token_to_id("<|im_end|>").value() == 2);
  // By hand: "we" occurs in lower, lowest, newer, newest (800 times), "lo" in low, lower, lowest (600).
  REQUIRE(tok.merges().size() == 10);
  CHECK(tok.merges()[0] == std::pair<std::string, std::string>{"w", "e"});
  CHECK(tok.merges()[1] == std::pair<std::string, std::string>{"l", "o"});
  for (const auto& t : {std::string("lowest newer 床前明月光 9"), std::string("unseen words ünïcödé\ttabs")})
    CHECK(tok.decode(tok.encode(t)) == t);

  // With room for every merge, each frequent word becomes one token; rare ones stop at min_frequency.
  opt.vocab_size = 1000;
  const auto full = train_bpe(counts, opt);
  CHECK(full.encode(" lowest").size() == 1);
  CHECK(full.encode(" 床前明月光").size() == 1);
  CHECK(full.vocab_size() < 1000);  // ran out of pairs
  opt.min_frequency = 1000;
  CHECK(train_bpe(counts, opt).vocab_size() == 3 + 256);
}

TEST_CASE("chat: every rendering equals transformers' apply_chat_template") {
  using namespace minillm::tokenizer;
  const auto dir = std::filesystem::path(MINILLM_TEST_DATA_DIR) / "chat";
  std::map<std::string, nlohmann::ordered_json> convs;
  for (const auto& c : nlohmann::ordered_json::parse(std::ifstream(dir / "conversations.json")))
    convs[c["name"].get<std::string>()] = c;
  const auto expected = json::parse(std::ifstream(dir / "expected.json"));
  int checked = 0;
  for (const auto& r : expected["results"]) {
    const auto& conv = convs.at(r["name"].get<std::string>());
    ChatOptions opt;
    opt.add_generation_prompt = r["options"].value("add_generation_prompt", false);
    opt.open_thinking = r["options"].value("open_thinking", false);
    if (conv.contains("tools")) opt.tools = conv["tools"];
    CAPTURE(r["name"].get<std::string>());
    CAPTURE(r["format"].get<std::string>());
    CAPTURE(r["options"].dump());
    const auto text = render_chat(chat_messages_from_json(conv["messages"]),
                                  chat_format_from_name(r["format"].get<std::string>()), opt);
    CHECK(text == r["text"].get<std::string>());
    ++checked;
  }
  CHECK(checked == 45);
}

TEST_CASE("chat: SFT labels cover exactly the assistant spans, through <|im_end|>\\n") {
  using namespace minillm::tokenizer;
  const std::vector<ChatMessage> msgs = {{"system", "你是诗人。"}, {"user", "床前明月光"}, {"assistant", "疑是地上霜。"},
                                         {"user", "下一句"}, {"assistant", "举头望明月。"}};
  const auto text = render_chat(msgs, ChatFormat::minimind3);
  const auto ids = minimind().encode(text);
  const auto labels = sft_labels(minimind(), ids, ChatFormat::minimind3);
  REQUIRE(labels.size() == ids.size());
  // Decode the labelled runs: exactly the two assistant bodies with their closing marker.
  std::vector<std::string> spans;
  std::vector<int32_t> run;
  for (size_t i = 0; i <= ids.size(); ++i) {
    if (i < ids.size() && labels[i] != -100) {
      CHECK(labels[i] == ids[i]);
      run.push_back(ids[i]);
    } else if (!run.empty()) {
      spans.push_back(minimind().decode(run));
      run.clear();
    }
  }
  CHECK(spans == std::vector<std::string>{"<think>\n\n</think>\n\n疑是地上霜。<|im_end|>\n",
                                          "<think>\n\n</think>\n\n举头望明月。<|im_end|>\n"});
  // An unfinished assistant turn (generation prompt) is labelled to the end.
  const auto prompt = minimind().encode(render_chat({{"user", "hi"}}, ChatFormat::minimind3, {.add_generation_prompt = true}));
  const auto open_labels = sft_labels(minimind(), prompt, ChatFormat::minimind3);
  CHECK(open_labels.back() == prompt.back());
}

TEST_CASE("chat: bad messages are rejected with the index named") {
  using namespace minillm::tokenizer;
  auto err = [](const char* text) {
    try {
      chat_messages_from_json(nlohmann::ordered_json::parse(text));
    } catch (const TokenizerError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(err(R"({"role":"user"})") == "messages must be a JSON array");
  CHECK(err(R"([{"role":"user","content":"a"},{"content":"b"}])") == "message 1 has no \"role\" string");
  CHECK(err(R"([{"role":"robot","content":"a"}])") == "message 0 has unknown role \"robot\" (system, user, assistant, tool)");
  CHECK(err(R"([{"role":"user","content":5}])") == "message 0: \"content\" must be a string");
}

// --- tokenizer.json pipelines as HF tokenizers defines them ---------------------------------

namespace {
const std::filesystem::path kTokData = std::filesystem::path(MINILLM_TEST_DATA_DIR) / "tokenizer";

// MiniMind's tokenizer.json with a pipeline's parts put in (as scripts/tokenizer/pipeline-fixtures.sh does).
json with_pipeline(const std::string& name) {
  auto base = json::parse(std::ifstream(kDir / "tokenizer.json"));
  const auto spec = json::parse(std::ifstream(kTokData / "pipelines" / (name + ".json")));
  for (const auto& [key, value] : spec.items()) {
    if (key == "added_tokens") {
      for (const auto& t : value) base[key].push_back(t);
    } else if (key == "model") {
      base[key].update(value);
    } else {
      base[key] = value;
    }
  }
  return base;
}

// Every line of an expected file (made by HF tokenizers): ids without and with special tokens,
// decoded text, and decode(encode(x)) == x wherever HF's holds.
int check_expected(const BpeTokenizer& tok, const std::filesystem::path& expected) {
  std::ifstream in(expected);
  REQUIRE(in.good());
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const auto c = json::parse(line);
    const auto text = c["text"].get<std::string>();
    CAPTURE(expected.filename().string());
    CAPTURE(text);
    const auto ids = tok.encode(text);
    CHECK(ids == c["ids"].get<std::vector<int32_t>>());
    CHECK(tok.encode(text, /*add_special_tokens=*/true) == c["ids_special"].get<std::vector<int32_t>>());
    CHECK(tok.decode(c["ids"].get<std::vector<int32_t>>()) == c["decoded"].get<std::string>());
    if (c["decoded"] == text) CHECK(tok.decode(ids) == text);
    ++n;
  }
  return n;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const TokenizerError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST_CASE("tokenizer pipelines: normalizers, pre-tokenizers, post-processors and added-token options give HF's ids") {
  // Llama-3's and Qwen3's split regexes (hand-written scanners), DeepSeek-V3's three Splits
  // (Oniguruma), NFC/NFD/NFKC/NFKD, Lowercase, Replace, Strip, Prepend, Digits, every Split
  // behavior and invert, ByteLevel add_prefix_space, Template/Roberta/Bert processing,
  // ignore_merges, lstrip/rstrip/single_word/normalized added tokens.
  for (const char* name : {"llama3", "qwen3", "deepseek_v3", "kin_nfkc", "kin_nfd", "kin_nfkd"}) {
    CAPTURE(name);
    const auto tok = BpeTokenizer::from_json(with_pipeline(name));
    CHECK(check_expected(tok, kTokData / "pipelines" / (std::string(name) + ".expected.jsonl")) == 81);
    // Saved and loaded again, the pipeline is the same.
    const auto back = BpeTokenizer::from_json(tok.to_json());
    CHECK(back.encode("Hello  WORLD 123 naïve [MASK] ﬁ", true) == tok.encode("Hello  WORLD 123 naïve [MASK] ﬁ", true));
  }
}

TEST_CASE("tokenizer: real Qwen3, Llama-3 and DeepSeek-V3 tokenizers give HF's ids on the edge cases") {
  const auto dir = std::filesystem::path(MINILLM_TEST_DATA_DIR) / ".." / ".." / ".deps" / "tokenizers";
  for (const char* name : {"qwen3", "llama3", "deepseek_v3"}) {
    const auto file = dir / name / "tokenizer.json";
    if (!std::filesystem::exists(file)) {
      MESSAGE("skipped " << name << ": " << file.string() << " not fetched (scripts/tokenizer/fetch-real.sh)");
      continue;
    }
    CAPTURE(name);
    const auto tok = BpeTokenizer::from_file(file);
    CHECK(check_expected(tok, kTokData / "real" / (std::string(name) + ".expected.jsonl")) == 81);
  }
}

TEST_CASE("tokenizer: the hand-written splitters give Oniguruma's matches for their regexes") {
  using namespace minillm::tokenizer;
  // Characters where the regexes' classes meet: letters (ASCII, long s, titlecase), numbers of
  // each kind, whitespace of each kind (CR, LF, NEL, NBSP, ideographic), marks, symbols, emoji.
  const std::vector<std::string> alphabet = {"a", "Z", "'", "s", "S", "t", "r", "e", "E", "v", "l", "L", "m", "d", "D",
                                             "\xC5\xBF", "\xC7\x85", " ", " ", "\t", "\n", "\r", "\xC2\x85", "\xC2\xA0",
                                             "\xE3\x80\x80", "1", "7", "\xD9\xA3", "\xC2\xBD", "\xE2\x85\xAB", "\xE4\xB8\xAD",
                                             "\xC3\xA9", "\xCC\x81", "!", ".", "_", "\xF0\x9F\x99\x82", "\xE2\x80\xA8"};
  const std::pair<std::string_view, int> kinds[] = {{patterns::kGpt2, 0}, {patterns::kLlama3, 3}, {patterns::kQwen, 1}};
  uint64_t state = 12345;
  auto next = [&] { return (state = state * 6364136223846793005ULL + 1442695040888963407ULL) >> 33; };
  for (const auto& [pattern, digits] : kinds) {
    const Regex re{std::string(pattern)};
    for (int n = 0; n < 20000; ++n) {
      std::string text;
      for (uint64_t k = next() % 14; k > 0; --k) text += alphabet[next() % alphabet.size()];
      std::vector<std::string_view> fast;
      if (digits == 0) split_gpt2(text, fast);
      else split_llama3(text, fast, digits);
      std::vector<std::pair<size_t, size_t>> m;
      re.find_all(text, m);
      std::vector<std::string_view> slow;
      for (const auto& [b, e] : m) slow.push_back(std::string_view(text).substr(b, e - b));
      CAPTURE(text);
      CAPTURE(pattern);
      REQUIRE(fast == slow);
    }
  }
}

TEST_CASE("tokenizer: malformed tokenizer.json gives errors naming the file and the field") {
  const auto good = json::parse(std::ifstream(kDir / "tokenizer.json"));
  const auto path = std::filesystem::temp_directory_path() / "minillm_bad_tokenizer.json";
  auto load = [&](const json& j) {
    std::ofstream(path) << j.dump();
    return error_of([&] { BpeTokenizer::from_file(path); });
  };
  auto mutated = [&](auto f) {
    json j = good;
    f(j);
    return load(j);
  };
  const auto prefix = path.string() + ": ";
  CHECK(mutated([](json& j) { j.erase("model"); }) == prefix + "field \"model\" is missing");
  CHECK(mutated([](json& j) { j["model"].erase("merges"); }) == prefix + "field \"model.merges\" is missing");
  CHECK(mutated([](json& j) { j["model"]["vocab"] = json::array(); }) == prefix + "field \"model.vocab\" must be object, got array");
  CHECK(mutated([](json& j) { j["model"]["vocab"]["a"] = "x"; }) ==
        prefix + "model.vocab: the id of token \"a\" must be an integer, got \"x\"");
  CHECK(mutated([](json& j) { j["added_tokens"][0]["id"] = "x"; }) == prefix + "field \"added_tokens[0].id\" must be number, got string");
  CHECK(mutated([](json& j) { j["model"]["merges"][3] = 5; }) == prefix + "model.merges[3]: 5 is neither [a, b] nor \"a b\"");
  // Ids index a table: one huge id is refused, not allocated.
  CHECK(mutated([](json& j) { j["model"]["vocab"]["a"] = 2000000000; }) ==
        prefix + "model.vocab: id 2000000000 of token \"a\" is out of range (ids must be below 6436, the number of vocabulary "
                 "entries plus added tokens)");
  CHECK(mutated([](json& j) { j["added_tokens"][3]["id"] = 2000000000; }).find("added token \"<|object_ref_start|>\": id 2000000000 is out of range") !=
        std::string::npos);
  CHECK(mutated([](json& j) { j["model"]["vocab"]["zz-new"] = 7; }).find("share id 7") != std::string::npos);
  // Duplicate special tokens.
  CHECK(mutated([](json& j) { j["added_tokens"].push_back({{"id", 6400}, {"content", "<|im_end|>"}, {"special", true}}); }) ==
        prefix + "added token \"<|im_end|>\" appears twice (ids 2 and 6400)");
  CHECK(mutated([](json& j) { j["added_tokens"].push_back({{"id", 2}, {"content", "<|other|>"}, {"special", true}}); }) ==
        prefix + "added tokens \"<|im_end|>\" and \"<|other|>\" share id 2");
  // Unknown types and rejected regexes.
  CHECK(mutated([](json& j) { j["normalizer"] = {{"type", "Precompiled"}}; }) ==
        prefix + "normalizer: normalizer type \"Precompiled\" is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Strip, Sequence)");
  CHECK(mutated([](json& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Foo"}}}}}; })
            .find("normalizer.normalizers[1]: normalizer type \"Foo\"") != std::string::npos);
  CHECK(mutated([](json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }) ==
        prefix + "pre_tokenizer: pre-tokenizer type \"Whitespace\" is not supported (Split, ByteLevel, Digits, Sequence)");
  const json bad_regex = {{"type", "Sequence"},
                          {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "(a|b"}}}, {"behavior", "Isolated"}},
                                             {{"type", "ByteLevel"}, {"use_regex", false}}}}};
  CHECK(mutated([&](json& j) { j["pre_tokenizer"] = bad_regex; }) ==
        prefix + "pre_tokenizer.pretokenizers[0].pattern: regex \"(a|b\" is rejected: end pattern with unmatched parenthesis");
  CHECK(mutated([](json& j) { j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Isolated"}}; })
            .find("pre_tokenizer must end with one ByteLevel pre-tokenizer") != std::string::npos);
  CHECK(mutated([](json& j) { j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Sideways"}}; })
            .find("pre_tokenizer.behavior must be Removed, Isolated") != std::string::npos);
  CHECK(mutated([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }).find("decoder must be {\"type\": \"ByteLevel\"}") != std::string::npos);
  CHECK(mutated([](json& j) { j["decoder"] = {{"type", 5}}; }).find("decoder must be {\"type\": \"ByteLevel\"}") != std::string::npos);
  CHECK(mutated([](json& j) { j["normalizer"] = {{"type", "Strip"}, {"strip_left", 1}}; }) ==
        prefix + "normalizer.strip_left must be true or false, got 1");
  CHECK(mutated([](json& j) { j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", {{{"Sequence", 3}}}}}; })
            .find("post_processor.single[0]: a single-sequence template holds sequence A once") != std::string::npos);
  CHECK(mutated([](json& j) { j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", {{{"SpecialToken", {{"id", "<s>"}}}}}}}; })
            .find("post_processor.single[0]: special token \"<s>\" is not in post_processor.special_tokens") != std::string::npos);
  CHECK(mutated([](json& j) { j["model"]["type"] = "Unigram"; }) == prefix + "model.type must be \"BPE\", got \"Unigram\"");
  // A normalizer that multiplies the text is stopped, not followed into gigabytes.
  json grow = good;
  grow["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array()}};
  for (int i = 0; i < 12; ++i)
    grow["normalizer"]["normalizers"].push_back({{"type", "Replace"}, {"pattern", {{"Regex", ""}}}, {"content", "xxxx"}});
  const auto grower = BpeTokenizer::from_json(grow);
  CHECK(error_of([&] { grower.encode("some text"); }).find("grew a 9-byte text to") != std::string::npos);
  CHECK(load(json::array()) == prefix + "the top level must be a JSON object, got array");
  std::ofstream(path) << "{\"model\": ";
  CHECK(error_of([&] { BpeTokenizer::from_file(path); }).rfind(prefix + "not valid JSON: ", 0) == 0);
  std::filesystem::remove(path);
}
