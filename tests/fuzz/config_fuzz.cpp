// libFuzzer target for config.json parsing (no LibTorch needed): any input must either be refused
// with ConfigError / a JSON parse error, or give a config that validates and survives a write/read
// round trip unchanged (a valid config written out must read back valid and equal).
//   scripts/fuzz.sh [seconds] config
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "minillm/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
  minillm::ModelConfig c;
  try {
    c = j.get<minillm::ModelConfig>();
    c.validate();
  } catch (const minillm::ConfigError&) {
    return 0;
  }
  const nlohmann::json written = c;
  minillm::ModelConfig again;
  try {
    again = written.get<minillm::ModelConfig>();
    again.validate();
  } catch (const minillm::ConfigError&) {
    std::abort();  // a valid config was written out as one that does not read back
  }
  if (nlohmann::json(again) != written) std::abort();  // the round trip changed it
  return 0;
}
