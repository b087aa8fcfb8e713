// safetensors files with LibTorch: a memory-mapped reader whose tensors are zero-copy views of the
// file (when the bytes are aligned for their dtype), an atomic writer, and HF's sharded layout
// (model.safetensors.index.json).
#pragma once

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "minillm/core/torch.hpp"
#include "minillm/io/atomic_write.hpp"
#include "minillm/io/mapped_file.hpp"
#include "minillm/io/safetensors_format.hpp"

namespace minillm::io {

static_assert(std::endian::native == std::endian::little, "safetensors stores little-endian bytes");

inline at::ScalarType to_scalar_type(DType d) {
  switch (d) {
    case DType::F64: return at::kDouble;
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::I16: return at::kShort;
    case DType::I8: return at::kChar;
    case DType::U8: return at::kByte;
    case DType::BOOL: return at::kBool;
  }
  throw SafetensorsError("unknown dtype");
}

inline DType to_dtype(at::ScalarType t) {
  for (const auto& [name, d] : kDTypeNames)
    if (to_scalar_type(d) == t) return d;
  throw SafetensorsError(std::string("dtype ") + c10::toString(t) + " cannot be stored in safetensors");
}

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path)
      : map_(open(path)),
        header_(parse_safetensors_header(map_->data(), map_->size(), map_->path())) {}

  const SafetensorsHeader& header() const { return header_; }
  const std::string& path() const { return map_->path(); }

  // A CPU tensor over the file's bytes (kept mapped while any view lives), or a copy when the bytes
  // are not aligned for the dtype.
  at::Tensor tensor(const TensorEntry& e) const {
    const auto type = to_scalar_type(e.dtype);
    uint8_t* p = map_->data() + header_.data_offset + e.begin;
    const auto options = at::TensorOptions().dtype(type);
    if (e.begin == e.end) return at::empty(e.shape, options);
    if (reinterpret_cast<uintptr_t>(p) % dtype_size(e.dtype) == 0) {
      auto keep = map_;
      return at::from_blob(p, e.shape, [keep](void*) {}, options);
    }
    auto t = at::empty(e.shape, options);
    std::memcpy(t.data_ptr(), p, e.end - e.begin);
    return t;
  }

  at::Tensor tensor(std::string_view name) const {
    const auto* e = header_.find(name);
    if (e == nullptr) throw SafetensorsError(path() + ": no tensor named '" + std::string(name) + "'");
    return tensor(*e);
  }

 private:
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path) {
    try {
      return std::make_shared<MappedFile>(path);
    } catch (const MappedFileError& e) {
      throw SafetensorsError(e.what());
    }
  }

  std::shared_ptr<MappedFile> map_;
  SafetensorsHeader header_;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Writes `tensors` (any device; copied to contiguous CPU bytes) to `path` atomically: a temp file
// in the same directory, then rename.
inline void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> blobs;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") throw SafetensorsError("'__metadata__' cannot be a tensor name");
    if (header.contains(name)) throw SafetensorsError("duplicate tensor name '" + name + "'");
    auto cpu = t.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(cpu.numel()) * cpu.element_size();
    header[name] = {{"dtype", dtype_name(to_dtype(cpu.scalar_type()))},
                    {"shape", cpu.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    blobs.push_back(std::move(cpu));
  }
  std::string text = header.dump();
  text.append((8 - (text.size() % 8)) % 8, ' ');  // data starts 8-byte aligned, as the reference writer does
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw SafetensorsError("cannot open " + tmp.string() + " for writing");
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& b : blobs)
      out.write(static_cast<const char*>(b.data_ptr()), static_cast<std::streamsize>(b.numel() * b.element_size()));
    out.flush();
    if (!out) throw SafetensorsError("write to " + tmp.string() + " failed");
  }
  std::filesystem::rename(tmp, path);
}

inline constexpr const char* kWeightsFile = "model.safetensors";
inline constexpr const char* kWeightsIndexFile = "model.safetensors.index.json";

// All tensors of a checkpoint directory: model.safetensors, or the shards its index lists.
// The returned tensors are views of the mapped files.
inline std::map<std::string, at::Tensor> load_safetensors_dir(const std::filesystem::path& dir) {
  std::map<std::string, at::Tensor> out;
  auto add_file = [&](const std::filesystem::path& file) {
    SafetensorsFile f(file);
    for (const auto& e : f.header().tensors) out[e.name] = f.tensor(e);
  };
  if (std::filesystem::exists(dir / kWeightsIndexFile)) {
    nlohmann::json index;
    try {
      std::ifstream in(dir / kWeightsIndexFile);
      in >> index;
    } catch (const nlohmann::json::exception& e) {
      throw SafetensorsError((dir / kWeightsIndexFile).string() + ": not valid JSON: " + e.what());
    }
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      throw SafetensorsError((dir / kWeightsIndexFile).string() + ": no \"weight_map\" object");
    std::map<std::string, std::vector<std::string>> by_file;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw SafetensorsError("weight_map entry '" + it.key() + "' is not a file name");
      by_file[it.value().get<std::string>()].push_back(it.key());
    }
    for (const auto& [file, names] : by_file) {
      if (file.find('/') != std::string::npos || file == "..")
        throw SafetensorsError("weight_map names a file outside the checkpoint: " + file);
      SafetensorsFile f(dir / file);
      for (const auto& name : names) out[name] = f.tensor(name);
    }
  } else if (std::filesystem::exists(dir / kWeightsFile)) {
    add_file(dir / kWeightsFile);
  } else {
    throw SafetensorsError(dir.string() + ": neither " + kWeightsFile + " nor " + kWeightsIndexFile + " found");
  }
  return out;
}

// Writes model.safetensors, or shards of at most `max_shard_bytes` plus the index when larger.
inline void save_safetensors_dir(const std::filesystem::path& dir, const NamedTensors& tensors,
                                 uint64_t max_shard_bytes = 5'000'000'000ULL,
                                 const std::map<std::string, std::string>& metadata = {{"format", "pt"}}) {
  std::vector<NamedTensors> shards(1);
  uint64_t shard_bytes = 0, total = 0;
  for (const auto& nt : tensors) {
    const uint64_t bytes = static_cast<uint64_t>(nt.second.numel()) * nt.second.element_size();
    if (shard_bytes > 0 && shard_bytes + bytes > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(nt);
    shard_bytes += bytes;
    total += bytes;
  }
  if (shards.size() == 1) {
    save_safetensors(dir / kWeightsFile, tensors, metadata);
    std::filesystem::remove(dir / kWeightsIndexFile);
    return;
  }
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", nlohmann::json::object()}};
  char name[64];
  for (size_t i = 0; i < shards.size(); ++i) {
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    save_safetensors(dir / name, shards[i], metadata);
    for (const auto& nt : shards[i]) index["weight_map"][nt.first] = name;
  }
  write_text_file_atomic(dir / kWeightsIndexFile, index.dump(2) + "\n");
  std::filesystem::remove(dir / kWeightsFile);
}

}  // namespace minillm::io
