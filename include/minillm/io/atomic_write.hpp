// Atomic file writes: write a temp file beside the target, then rename over it, so a crash
// mid-write leaves the previous file intact.
#pragma once

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace minillm::io {

inline void write_text_file_atomic(const std::filesystem::path& path, const std::string& text) {
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot open " + tmp.string() + " for writing");
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("write to " + tmp.string() + " failed");
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace minillm::io
