// Pre-tokenized corpora: a shard file holds documents' token ids back to back (each document
// already wrapped in bos ... eos), uint16 when the vocabulary fits, else uint32, behind a 64-byte
// header. Shards are read through mmap, so corpora larger than RAM work. Opening one scans its ids
// once (a max reduction, vectorised in -O3 builds) so an id outside the vocabulary is an error at
// open, naming the file and position, not a failure deep inside some later batch.
//
// Header (little-endian): "MLLMTOKS" | u32 version=1 | u32 bytes per token (2|4) |
//                         u64 tokens | u64 documents | u64 vocab size | 24 bytes zero
#pragma once

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "minillm/data/text_corpus.hpp"
#include "minillm/io/mapped_file.hpp"

namespace minillm::data {

inline constexpr char kShardMagic[8] = {'M', 'L', 'L', 'M', 'T', 'O', 'K', 'S'};
inline constexpr uint64_t kShardHeaderBytes = 64;

struct ShardHeader {
  uint32_t token_bytes = 2;
  uint64_t tokens = 0, documents = 0, vocab_size = 0;
};

// Appends documents to a shard; the file appears (atomically, by rename) on finish().
class ShardWriter {
 public:
  ShardWriter(std::filesystem::path path, uint64_t vocab_size)
      : path_(std::move(path)), tmp_(path_.string() + ".tmp"), out_(tmp_, std::ios::binary | std::ios::trunc) {
    if (!out_) throw DataError("cannot open " + tmp_.string() + " for writing");
    header_.vocab_size = vocab_size;
    header_.token_bytes = vocab_size <= 65536 ? 2 : 4;
    const std::string zeros(kShardHeaderBytes, '\0');
    out_.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));  // header written at the end
  }
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;
  ~ShardWriter() {
    if (!finished_) std::filesystem::remove(tmp_);  // an unfinished shard never appears
  }

  template <class Int>
  void add_document(const std::vector<Int>& ids) {
    buffer_.clear();
    for (const auto id : ids) {
      if (id < 0 || static_cast<uint64_t>(id) >= header_.vocab_size)
        throw DataError("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                        std::to_string(header_.vocab_size) + ")");
      const auto v = static_cast<uint32_t>(id);
      buffer_.append(reinterpret_cast<const char*>(&v), header_.token_bytes);  // little-endian host
    }
    out_.write(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
    header_.tokens += ids.size();
    ++header_.documents;
  }

  const ShardHeader& header() const { return header_; }

  void finish() {
    if (header_.tokens == 0) throw DataError(path_.string() + ": no documents to write (the input has no text)");
    char h[kShardHeaderBytes] = {};
    std::memcpy(h, kShardMagic, 8);
    const uint32_t version = 1;
    std::memcpy(h + 8, &version, 4);
    std::memcpy(h + 12, &header_.token_bytes, 4);
    std::memcpy(h + 16, &header_.tokens, 8);
    std::memcpy(h + 24, &header_.documents, 8);
    std::memcpy(h + 32, &header_.vocab_size, 8);
    out_.seekp(0);
    out_.write(h, kShardHeaderBytes);
    out_.flush();
    if (!out_) throw DataError("write to " + tmp_.string() + " failed");
    out_.close();
    std::filesystem::rename(tmp_, path_);
    finished_ = true;
  }

 private:
  std::filesystem::path path_, tmp_;
  std::ofstream out_;
  ShardHeader header_;
  std::string buffer_;
  bool finished_ = false;
};

// A shard opened read-only through mmap; tokens are copied out as int64 on request.
class TokenShard {
 public:
  explicit TokenShard(const std::filesystem::path& path) : map_(open(path)) {
    const auto where = path.string();
    if (map_->size() < kShardHeaderBytes || std::memcmp(map_->data(), kShardMagic, 8) != 0)
      throw DataError(where + ": not a minillm token shard (bad magic)");
    uint32_t version = 0;
    std::memcpy(&version, map_->data() + 8, 4);
    if (version != 1) throw DataError(where + ": unsupported shard version " + std::to_string(version));
    std::memcpy(&header_.token_bytes, map_->data() + 12, 4);
    std::memcpy(&header_.tokens, map_->data() + 16, 8);
    std::memcpy(&header_.documents, map_->data() + 24, 8);
    std::memcpy(&header_.vocab_size, map_->data() + 32, 8);
    if (header_.token_bytes != 2 && header_.token_bytes != 4)
      throw DataError(where + ": bad token width " + std::to_string(header_.token_bytes));
    if (header_.tokens > (map_->size() - kShardHeaderBytes) / header_.token_bytes ||
        kShardHeaderBytes + header_.tokens * header_.token_bytes != map_->size())
      throw DataError(where + ": header says " + std::to_string(header_.tokens) + " tokens but the file holds " +
                      std::to_string(map_->size()) + " bytes (truncated?)");
    const auto* ids = map_->data() + kShardHeaderBytes;  // page-aligned map + 64: aligned for both widths
    const uint64_t max_id = header_.token_bytes == 2 ? max_of(reinterpret_cast<const uint16_t*>(ids), header_.tokens)
                                                     : max_of(reinterpret_cast<const uint32_t*>(ids), header_.tokens);
    if (header_.tokens > 0 && max_id >= header_.vocab_size) {
      uint64_t i = 0;
      int64_t id = 0;
      while (read(i, 1, &id), static_cast<uint64_t>(id) < header_.vocab_size) ++i;
      throw DataError(where + ": token " + std::to_string(i) + " is id " + std::to_string(id) +
                      ", outside the shard's vocabulary [0, " + std::to_string(header_.vocab_size) + ")");
    }
  }

  const ShardHeader& header() const { return header_; }
  uint64_t size() const { return header_.tokens; }

  // Tokens [begin, begin + n) as int64.
  void read(uint64_t begin, uint64_t n, int64_t* out) const {
    if (begin + n > header_.tokens) throw DataError("shard read past its end");
    const uint8_t* p = map_->data() + kShardHeaderBytes + begin * header_.token_bytes;
    if (header_.token_bytes == 2) {
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        out[i] = v;
      }
    } else {
      for (uint64_t i = 0; i < n; ++i) {
        uint32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = v;
      }
    }
  }

 private:
  template <class Id>
  static uint64_t max_of(const Id* ids, uint64_t n) {
    Id m = 0;
    for (uint64_t i = 0; i < n; ++i) m = ids[i] > m ? ids[i] : m;  // no early exit: vectorisable
    return m;
  }

  static std::shared_ptr<io::MappedFile> open(const std::filesystem::path& path) {
    try {
      return std::make_shared<io::MappedFile>(path);
    } catch (const io::MappedFileError& e) {
      throw DataError(e.what());
    }
  }

  std::shared_ptr<io::MappedFile> map_;
  ShardHeader header_;
};

}  // namespace minillm::data
