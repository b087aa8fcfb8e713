// TensorBoard scalars without TensorFlow: an events.out.tfevents.* file of TFRecords, each holding
// a serialized tensorflow.Event protobuf. `tensorboard --logdir <dir>` reads it.
//   TFRecord: uint64 length, uint32 masked_crc32c(length), data, uint32 masked_crc32c(data)
//   Event:    wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5
//   Summary:  value = 1 (repeated Value);  Value: tag = 1 (string), simple_value = 2 (float)
// The protobuf fields are written by hand: the format is small and fixed.
#pragma once

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace minillm::train {

namespace tensorboard {

// CRC-32C (Castagnoli), as TFRecord uses it.
inline uint32_t crc32c(std::string_view data) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  for (const char ch : data) crc = table[(crc ^ static_cast<uint8_t>(ch)) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

inline uint32_t masked_crc32c(std::string_view data) {
  const uint32_t crc = crc32c(data);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

namespace proto {
inline void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
template <class T>
void fixed(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // protobuf fixed fields are little-endian, as is x86/ARM
  out.append(bytes, sizeof(T));
}
inline void bytes_field(std::string& out, int field, std::string_view data) {
  varint(out, static_cast<uint64_t>(field) << 3 | 2);
  varint(out, data.size());
  out.append(data);
}
}  // namespace proto

// The serialized Event for one scalar.
inline std::string scalar_event(double wall_time, int64_t step, std::string_view tag, float value) {
  std::string v;
  proto::bytes_field(v, 1, tag);
  proto::varint(v, 2 << 3 | 5);
  proto::fixed(v, value);
  std::string summary;
  proto::bytes_field(summary, 1, v);
  std::string event;
  proto::varint(event, 1 << 3 | 1);
  proto::fixed(event, wall_time);
  proto::varint(event, 2 << 3 | 0);
  proto::varint(event, static_cast<uint64_t>(step));
  proto::bytes_field(event, 5, summary);
  return event;
}

inline std::string file_version_event(double wall_time) {
  std::string event;
  proto::varint(event, 1 << 3 | 1);
  proto::fixed(event, wall_time);
  proto::bytes_field(event, 3, "brain.Event:2");
  return event;
}

inline std::string record(std::string_view data) {
  std::string out;
  const uint64_t n = data.size();
  std::string length;
  proto::fixed(length, n);
  out += length;
  proto::fixed(out, masked_crc32c(length));
  out.append(data);
  proto::fixed(out, masked_crc32c(data));
  return out;
}

}  // namespace tensorboard

// Appends scalars to <dir>/events.out.tfevents.<seconds>.<host>, flushed after each one so a
// running TensorBoard sees them (and a crash loses nothing written before it).
class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::filesystem::path& dir) {
    std::filesystem::create_directories(dir);
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    const auto now = wall_time();
    path_ = dir / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(now)) + "." + host);
    out_.open(path_, std::ios::binary | std::ios::app);
    if (!out_) throw std::runtime_error("cannot write TensorBoard events to " + path_.string());
    write(tensorboard::file_version_event(now));
  }

  void scalar(std::string_view tag, int64_t step, double value) {
    write(tensorboard::scalar_event(wall_time(), step, tag, static_cast<float>(value)));
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  static double wall_time() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  void write(const std::string& event) {
    out_ << tensorboard::record(event) << std::flush;
  }

  std::filesystem::path path_;
  std::ofstream out_;
};

}  // namespace minillm::train
