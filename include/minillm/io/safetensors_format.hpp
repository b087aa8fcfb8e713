// The safetensors container format, without LibTorch: parse and validate a header before trusting
// any of it. Layout: u64 little-endian header length N, N bytes of JSON, then the raw tensor bytes;
// each tensor's data_offsets are relative to the byte after the header. Every check below turns a
// malformed or hostile file into a SafetensorsError naming the problem, never an out-of-bounds read.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace minillm::io {

struct SafetensorsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

inline constexpr std::pair<std::string_view, DType> kDTypeNames[] = {
    {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"I64", DType::I64},
    {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8},   {"U8", DType::U8},     {"BOOL", DType::BOOL}};

inline std::string_view dtype_name(DType d) {
  for (const auto& [name, value] : kDTypeNames)
    if (value == d) return name;
  return "?";
}

inline uint64_t dtype_size(DType d) {
  switch (d) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::I8: case DType::U8: case DType::BOOL: return 1;
  }
  return 0;
}

struct TensorEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range relative to the data section
};

struct SafetensorsHeader {
  std::vector<TensorEntry> tensors;  // sorted by begin offset
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length: where the data section starts in the file
  const TensorEntry* find(std::string_view name) const {
    for (const auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
};

// The reference implementation's limit on the header (safetensors' MAX_HEADER_SIZE).
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

namespace detail {
template <class... Parts>
[[noreturn]] void st_fail(std::string_view source, const Parts&... parts) {
  std::string msg(source);
  msg += ": ";
  ((msg += parts), ...);
  throw SafetensorsError(msg);
}
inline std::string num(uint64_t v) { return std::to_string(v); }
}  // namespace detail

// Parses and validates the header of a safetensors file held in `data[0, size)`. `source` names
// the file in error messages.
inline SafetensorsHeader parse_safetensors_header(const uint8_t* data, uint64_t size, std::string_view source) {
  using detail::num;
  using detail::st_fail;
  if (size < 8) st_fail(source, "file too small (", num(size), " bytes) to hold a safetensors header");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > kMaxHeaderBytes) st_fail(source, "header length (", num(n), " bytes) exceeds the limit of ", num(kMaxHeaderBytes));
  if (n > size - 8) st_fail(source, "header length (", num(n), " bytes) exceeds the file size (", num(size), " bytes)");
  if (n == 0) st_fail(source, "empty header");

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data + 8, data + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    st_fail(source, "header is not valid JSON: ", e.what());
  }
  if (!j.is_object()) st_fail(source, "header must be a JSON object");

  SafetensorsHeader h;
  h.data_offset = 8 + n;
  const uint64_t data_size = size - h.data_offset;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const auto& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) st_fail(source, "__metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) st_fail(source, "__metadata__ value of '", m.key(), "' is not a string");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) st_fail(source, "entry '", key, "' is not an object");
    TensorEntry t;
    t.name = key;
    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) st_fail(source, "tensor '", key, "' has no dtype string");
    const auto dname = dt->get<std::string>();
    const auto known = std::find_if(std::begin(kDTypeNames), std::end(kDTypeNames),
                                    [&](const auto& p) { return p.first == dname; });
    if (known == std::end(kDTypeNames)) st_fail(source, "tensor '", key, "' has unsupported dtype \"", dname, "\"");
    t.dtype = known->second;

    const auto shape = v.find("shape");
    if (shape == v.end() || !shape->is_array()) st_fail(source, "tensor '", key, "' has no shape array");
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned()) st_fail(source, "tensor '", key, "' has a shape entry that is not a non-negative integer");
      const auto dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(INT64_MAX)) st_fail(source, "tensor '", key, "' has an absurd dimension ", num(dim));
      if (dim != 0 && numel > UINT64_MAX / dim) overflow = true;
      numel = overflow ? 0 : numel * dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto offsets = v.find("data_offsets");
    if (offsets == v.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned())
      st_fail(source, "tensor '", key, "' needs data_offsets [begin, end] of non-negative integers");
    t.begin = (*offsets)[0].get<uint64_t>();
    t.end = (*offsets)[1].get<uint64_t>();
    if (t.begin > t.end) st_fail(source, "tensor '", key, "' has begin offset ", num(t.begin), " after end ", num(t.end));
    if (t.end > data_size)
      st_fail(source, "tensor '", key, "' ends at byte ", num(t.end), " but the data section holds ", num(data_size),
              " bytes (truncated file?)");
    const uint64_t elem = dtype_size(t.dtype);
    if (overflow || (numel != 0 && numel > UINT64_MAX / elem) || numel * elem != t.end - t.begin)
      st_fail(source, "tensor '", key, "' has ", num(t.end - t.begin), " bytes but its shape and dtype need ",
              overflow ? std::string("more than 2^64") : num(numel * elem));
    h.tensors.push_back(std::move(t));
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // As the reference implementation requires: tensors tile the data section, no gaps, no overlaps.
  uint64_t expected = 0;
  for (const auto& t : h.tensors) {
    if (t.begin < expected) st_fail(source, "tensor '", t.name, "' overlaps the previous tensor (starts at byte ",
                                    num(t.begin), ", previous ends at ", num(expected), ")");
    if (t.begin > expected) st_fail(source, "gap in the data section before tensor '", t.name, "' (bytes ",
                                    num(expected), " to ", num(t.begin), ")");
    expected = t.end;
  }
  if (expected != data_size)
    st_fail(source, "data section holds ", num(data_size), " bytes but the tensors cover ", num(expected));
  return h;
}

}  // namespace minillm::io
