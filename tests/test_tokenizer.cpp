// Byte-level BPE: parity with HF tokenizers on MiniMind's tokenizer, decoding, bad input.
#include <doctest/doctest.h>

#include <fstream>

#include <minillm/tokenizer/bpe.hpp>
#include <minillm/tokenizer/stream_decoder.hpp>
#include <minillm/tokenizer/trainer.hpp>

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
