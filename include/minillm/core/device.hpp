// The device a program names ("cpu" or "cuda"), checked against what this LibTorch build has, and
// waiting for a device's queued work (for timing).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include <torch/cuda.h>

#include "minillm/core/torch.hpp"

namespace minillm {

inline at::Device device_from_name(std::string_view name) {
  if (name == "cpu") return at::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available()) throw std::invalid_argument("device \"cuda\": this LibTorch build has no CUDA device");
    return at::kCUDA;
  }
  throw std::invalid_argument("unknown device \"" + std::string(name) + "\"; known: cpu, cuda");
}

// Returns once every kernel queued on `device` has finished (a no-op on the CPU).
inline void synchronize(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

}  // namespace minillm
