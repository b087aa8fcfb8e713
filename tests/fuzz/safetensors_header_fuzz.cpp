// libFuzzer target for the safetensors header parser (no LibTorch needed): any input must either
// parse into a header whose ranges lie inside the input, or throw SafetensorsError.
//   scripts/fuzz.sh safetensors [seconds]
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "minillm/io/safetensors_format.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = minillm::io::parse_safetensors_header(data, size, "fuzz");
    for (const auto& t : h.tensors)
      if (h.data_offset + t.end > size || t.begin > t.end) std::abort();  // validation let a bad range through
  } catch (const minillm::io::SafetensorsError&) {
  }
  return 0;
}
