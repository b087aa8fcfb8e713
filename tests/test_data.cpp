// Token shards, packed pretraining windows, SFT conversations (labels, packing) and the unigram baseline.
#include "helpers.hpp"

#include <fstream>
#include <set>

#include <minillm/data/packed_windows.hpp>
#include <minillm/data/sft_dataset.hpp>
#include <minillm/eval/unigram.hpp>

using namespace minillm::data;

namespace {
std::vector<int64_t> write_shard(const std::filesystem::path& p, uint64_t vocab, std::vector<std::vector<int64_t>> docs) {
  ShardWriter w(p, vocab);
  std::vector<int64_t> all;
  for (const auto& d : docs) {
    w.add_document(d);
    all.insert(all.end(), d.begin(), d.end());
  }
  w.finish();
  return all;
}
}  // namespace

TEST_CASE("data: shards round-trip with 16-bit and 32-bit ids, and reject bad files") {
  const auto dir = test::temp_dir("shards");
  const auto small = write_shard(dir / "a.bin", 6400, {{1, 5, 6399, 2}, {1, 7, 2}});
  const auto big = write_shard(dir / "b.bin", 151936, {{1, 70000, 151935, 2}});
  TokenShard a(dir / "a.bin"), b(dir / "b.bin");
  CHECK(a.header().token_bytes == 2);
  CHECK(b.header().token_bytes == 4);
  CHECK(a.header().documents == 2);
  std::vector<int64_t> got(a.size()), got_b(b.size());
  a.read(0, a.size(), got.data());
  b.read(0, b.size(), got_b.data());
  CHECK(got == small);
  CHECK(got_b == big);
  CHECK(std::filesystem::file_size(dir / "a.bin") == 64 + 7 * 2);

  CHECK_MESSAGE_CONTAINS(test::message_of<DataError>([&] { ShardWriter(dir / "c.bin", 10).add_document(std::vector<int64_t>{3, 10}); }),
                         "token id 10 is outside the vocabulary [0, 10)");
  CHECK_FALSE(std::filesystem::exists(dir / "c.bin"));      // unfinished: never appears
  CHECK_FALSE(std::filesystem::exists(dir / "c.bin.tmp"));  // and leaves nothing behind
  std::filesystem::resize_file(dir / "a.bin", 64 + 5);
  CHECK_MESSAGE_CONTAINS(test::message_of<DataError>([&] { TokenShard(dir / "a.bin"); }), "truncated");
  std::ofstream(dir / "x.bin") << "not a shard at all, but long enough to hold a header of sixty-four bytes....";
  CHECK_MESSAGE_CONTAINS(test::message_of<DataError>([&] { TokenShard(dir / "x.bin"); }), "bad magic");
  std::filesystem::remove_all(dir);
}

TEST_CASE("data: a shard with an id outside its vocabulary is refused when opened, naming the file and the position") {
  const auto dir = test::temp_dir("oov_shard");
  for (const uint64_t vocab : {100, 70000}) {  // 16-bit and 32-bit ids
    CAPTURE(vocab);
    write_shard(dir / "s.bin", vocab, {{1, 5, 7, 2}, {1, 9, 2}});
    CHECK_NOTHROW(TokenShard(dir / "s.bin"));
    // A hostile or damaged file: token 5 (the second document's 9) becomes vocab + 3.
    const auto width = vocab <= 65536 ? 2 : 4;
    const uint32_t bad = static_cast<uint32_t>(vocab + 3) & (width == 2 ? 0xFFFF : 0xFFFFFFFF);
    {
      std::fstream f(dir / "s.bin", std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(64 + 5 * width);
      f.write(reinterpret_cast<const char*>(&bad), width);
    }
    CHECK_MESSAGE_CONTAINS(test::message_of<DataError>([&] { TokenShard(dir / "s.bin"); }),
                           (dir / "s.bin").string() + ": token 5 is id " + std::to_string(bad) +
                               ", outside the shard's vocabulary [0, " + std::to_string(vocab) + ")");
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("data: empty input makes no shard, and invalid UTF-8 in a text file names the file and line") {
  const auto dir = test::temp_dir("empty_input");
  CHECK_MESSAGE_CONTAINS(test::message_of<DataError>([&] { ShardWriter(dir / "e.bin", 100).finish(); }),
                         (dir / "e.bin").string() + ": no documents to write");
  CHECK_FALSE(std::filesystem::exists(dir / "e.bin"));
  CHECK_FALSE(std::filesystem::exists(dir / "e.bin.tmp"));
  std::ofstream(dir / "t.txt") << "first line\nsecond \xff line\n";
  size_t texts = 0;
  CHECK_MESSAGE_CONTAINS(test::message_of<DataError>([&] { for_each_text(dir / "t.txt", [&](std::string&&) { return ++texts > 0; }); }),
                         (dir / "t.txt").string() + ":2: input is not valid UTF-8: bad byte 0xff at offset 7");
  CHECK(texts == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("data: packed windows cover the stream without padding, in a seeded order, resumable by cursor") {
  const auto dir = test::temp_dir("packed");
  std::vector<int64_t> stream;
  for (int s = 0; s < 2; ++s) {  // two shards, windows crossing the boundary
    std::vector<std::vector<int64_t>> docs;
    for (int d = 0; d < 5; ++d) docs.push_back({1, 10 + s * 100 + d, 20 + d, 2});
    std::string name = "s";
    name += std::to_string(s);
    name += ".bin";
    const auto part = write_shard(dir / name, 6400, docs);
    stream.insert(stream.end(), part.begin(), part.end());
  }
  const std::vector<std::filesystem::path> shards = {dir / "s0.bin", dir / "s1.bin"};
  PackedWindows data(shards, /*seq_len=*/4, /*seed=*/7);
  CHECK(data.num_tokens() == 40);
  CHECK(data.num_windows() == 9);  // (40 - 1) / 4
  // One epoch visits every window exactly once; each is stream[4i, 4i + 5).
  std::set<std::vector<int64_t>> seen;
  const auto epoch = data.next_batch(9);
  for (int64_t b = 0; b < 9; ++b) seen.insert(std::vector<int64_t>(epoch[b].data_ptr<int64_t>(), epoch[b].data_ptr<int64_t>() + 5));
  std::set<std::vector<int64_t>> expected;
  for (size_t i = 0; i < 9; ++i) expected.insert(std::vector<int64_t>(stream.begin() + 4 * i, stream.begin() + 4 * i + 5));
  CHECK(seen == expected);
  std::vector<at::Tensor> in_order;
  for (uint64_t i = 0; i < 9; ++i) in_order.push_back(data.window(i));
  CHECK_FALSE(at::equal(epoch, at::cat(in_order)));  // shuffled, not in stream order
  // Same seed, same order; the cursor resumes mid-epoch and across the epoch boundary.
  PackedWindows again(shards, 4, 7);
  CHECK(at::equal(again.next_batch(9), epoch));
  const auto a1 = data.next_batch(3);  // epoch 1 starts
  const auto cursor = data.cursor();
  CHECK(cursor == DataCursor{1, 3});
  const auto a2 = data.next_batch(8);  // crosses into epoch 2
  PackedWindows resumed(shards, 4, 7);
  resumed.set_cursor(cursor);
  CHECK(at::equal(resumed.next_batch(8), a2));
  CHECK_MESSAGE_CONTAINS(test::message_of<DataError>([&] { PackedWindows(shards, 100, 1); }), "too few for one window of 101");
  std::filesystem::remove_all(dir);
}

namespace {
SftDataset sft_data(int64_t seq_len, bool pack) {
  return SftDataset({test::data_dir() / "text/sft.jsonl"}, test::minimind_tokenizer(), {.seq_len = seq_len, .pack = pack, .seed = 3});
}
}  // namespace

TEST_CASE("data: SFT labels cover exactly the assistant replies and their end marker") {
  const auto data = sft_data(512, false);
  REQUIRE(data.size() == 6);
  const auto& tok = test::minimind_tokenizer();
  // Conversation 2 has two assistant turns; the trained tokens, decoded, are exactly those replies.
  const auto [ids, labels] = data.example(2);
  std::vector<int32_t> trained;
  for (size_t i = 0; i < ids.size(); ++i)
    if (labels[i] != minillm::kIgnoreIndex) trained.push_back(ids[i]);
  CHECK(tok.decode(trained) ==
        "<think>\n\n</think>\n\n春眠不觉晓，处处闻啼鸟。\n夜来风雨声，花落知多少。<|im_end|>\n"
        "<think>\n\n</think>\n\n这首诗的作者是孟浩然。<|im_end|>\n");
  // reasoning_content goes into the trained <think> block.
  const auto [ids4, labels4] = data.example(4);
  std::vector<int32_t> trained4;
  for (size_t i = 0; i < ids4.size(); ++i)
    if (labels4[i] != minillm::kIgnoreIndex) trained4.push_back(ids4[i]);
  CHECK(tok.decode(trained4).find("<think>\n这是王之涣的诗。\n</think>") == 0);
}

TEST_CASE("data: SFT batches are padded per batch, packed rows restart positions, and the cursor resumes") {
  auto padded = sft_data(512, false);
  const auto b = padded.next_batch(3);
  CHECK(b.input_ids.size(0) == 3);
  CHECK_FALSE(b.attention_mask.defined());  // right padding under causal attention needs no mask
  auto packed = sft_data(160, true);
  const auto p = packed.next_batch(2);
  CHECK(p.input_ids.sizes() == at::IntArrayRef({2, 160}));
  REQUIRE(p.attention_mask.defined());
  CHECK(p.attention_mask.sizes() == at::IntArrayRef({2, 1, 160, 160}));
  CHECK(p.position_ids.defined());
  // Every conversation is used once per epoch; the cursor resumes the same rows.
  auto a = sft_data(160, true), c = sft_data(160, true);
  a.next_batch(1);
  c.set_cursor(a.cursor());
  CHECK(at::equal(a.next_batch(2).input_ids, c.next_batch(2).input_ids));
  CHECK_MESSAGE_CONTAINS(test::message_of([&] { c.set_cursor({0, 99}); }), "position 99");
}

TEST_CASE("data: packing keeps conversations from attending to each other") {
  // Two conversations in one row; changing the first leaves the second's logits unchanged, and the
  // second's logits equal those of it alone in a row.
  auto data = sft_data(512, false);
  const auto [a_ids, a_labels] = data.example(0);
  const auto [b_ids, b_labels] = data.example(1);
  auto row = [&](std::vector<int32_t> first) {
    std::vector<int64_t> ids(first.begin(), first.end()), seg(first.size(), 0), pos;
    for (size_t i = 0; i < first.size(); ++i) pos.push_back(static_cast<int64_t>(i));
    for (size_t i = 0; i < b_ids.size(); ++i) ids.push_back(b_ids[i]), seg.push_back(1), pos.push_back(static_cast<int64_t>(i));
    const auto s = at::tensor(seg).unsqueeze(0);
    const auto mask = (s.unsqueeze(2).eq(s.unsqueeze(1)) & at::ones({s.size(1), s.size(1)}, at::kBool).tril()).unsqueeze(1);
    return std::tuple{at::tensor(ids).unsqueeze(0), mask, at::tensor(pos).unsqueeze(0)};
  };
  auto cfg = test::small_config("qwen3");
  cfg.vocab_size = 6400;
  cfg.max_position_embeddings = 512;
  at::manual_seed(5);
  minillm::CausalLM<minillm::arch::Qwen3> m(cfg);
  m->eval();
  at::NoGradGuard g;
  const auto n = static_cast<int64_t>(b_ids.size());
  auto changed = a_ids;
  for (auto& id : changed) id = (id * 7 + 11) % 6400;
  const auto [ids1, mask1, pos1] = row(a_ids);
  const auto [ids2, mask2, pos2] = row(changed);
  const auto out1 = m->forward(ids1, {.attention_mask = mask1, .position_ids = pos1}).logits;
  const auto out2 = m->forward(ids2, {.attention_mask = mask2, .position_ids = pos2}).logits;
  const auto alone = m->forward(at::tensor(std::vector<int64_t>(b_ids.begin(), b_ids.end())).unsqueeze(0)).logits;
  CHECK(test::max_abs_diff(out1.narrow(1, out1.size(1) - n, n), out2.narrow(1, out2.size(1) - n, n)) < 1e-5);
  CHECK(test::max_abs_diff(out1.narrow(1, out1.size(1) - n, n), alone) < 1e-4);
  // The first conversation's own logits did change.
  CHECK(test::max_abs_diff(out1.narrow(1, 0, 4), out2.narrow(1, 0, 4)) > 1e-3);
  // And the dataset's own packed mask has the same block structure.
  auto packed = sft_data(512, true);
  const auto batch = packed.next_batch(1);
  const auto& pm = batch.attention_mask;
  const auto positions = batch.position_ids[0];
  const auto restart = positions.eq(0).nonzero();
  REQUIRE(restart.size(0) >= 2);
  const auto second = restart[1][0].item<int64_t>();
  CHECK_FALSE(pm[0][0][second].narrow(0, 0, second).any().item<bool>());  // no look back into the first
  CHECK(pm[0][0][second][second].item<bool>());
}

TEST_CASE("data: bad SFT lines are named by file and line") {
  const auto dir = test::temp_dir("sft_bad");
  const auto& tok = test::minimind_tokenizer();
  auto write = [&](const std::string& text) {
    std::ofstream(dir / "bad.jsonl") << text;
    return test::message_of<DataError>([&] { SftDataset({dir / "bad.jsonl"}, tok, {}); });
  };
  const std::string good = R"({"conversations":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]})";
  CHECK_MESSAGE_CONTAINS(write(good + "\n{not json\n"), "bad.jsonl:2: not valid JSON");
  CHECK_MESSAGE_CONTAINS(write(good + "\n\n" + R"({"text":"x"})" + "\n"), "bad.jsonl:3: expected an object with a \"conversations\" array");
  CHECK_MESSAGE_CONTAINS(write(R"({"conversations":[{"role":"robot","content":"x"}]})"), "bad.jsonl:1: conversations: message 0 has unknown role \"robot\"");
  CHECK_MESSAGE_CONTAINS(test::message_of<DataError>([&] { SftDataset({dir / "missing.jsonl"}, tok, {}); }), "cannot open");
  std::filesystem::remove_all(dir);
}

TEST_CASE("data: unigram entropy of a shard equals the hand computation") {
  const auto dir = test::temp_dir("unigram");
  write_shard(dir / "u.bin", 10, {{1, 1, 2, 3}});  // p = 1/2, 1/4, 1/4
  CHECK(minillm::unigram_entropy({dir / "u.bin"}) == doctest::Approx(1.5 * std::log(2.0)));
  std::filesystem::remove_all(dir);
}
