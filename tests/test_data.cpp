// Token shards and packed pretraining windows.
#include "helpers.hpp"

#include <set>

#include <minillm/data/packed_windows.hpp>

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
