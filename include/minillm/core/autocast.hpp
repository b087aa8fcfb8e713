// Mixed precision: an RAII guard that mirrors Python's `torch.autocast(device, dtype)` on both
// LibTorch worlds (1.13's per-device functions, 2.4+'s device-generic ones), and the names of the
// precisions the programs accept.
#pragma once

#include <ATen/autocast_mode.h>

#include <stdexcept>
#include <string>
#include <string_view>

#include "minillm/core/torch.hpp"

namespace minillm {

enum class Precision {
  fp32,  // everything in float32
  bf16,  // float32 weights and optimizer state; matmuls and attention autocast to bfloat16
};

inline Precision precision_from_name(std::string_view name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  throw std::invalid_argument("unknown precision \"" + std::string(name) + "\"; known: fp32, bf16");
}

// While alive, ops on `device` that autocast covers run in `dtype` (a no-op for Precision::fp32).
// Autocast state is thread-local: call backward() after the guard is gone, as in Python.
class AutocastGuard {
 public:
  AutocastGuard(at::DeviceType device, Precision precision) : device_(device), active_(precision == Precision::bf16) {
    if (!active_) return;
    if (device != at::kCPU && device != at::kCUDA)
      throw std::invalid_argument("bf16 autocast supports cpu and cuda devices only");
#if MINILLM_TORCH_AT_LEAST(2, 4)
    was_enabled_ = at::autocast::is_autocast_enabled(device);
    was_dtype_ = at::autocast::get_autocast_dtype(device);
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::set_autocast_dtype(device, at::kBFloat16);
#else
    if (device == at::kCPU) {
      was_enabled_ = at::autocast::is_cpu_enabled();
      was_dtype_ = at::autocast::get_autocast_cpu_dtype();
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    } else {
      was_enabled_ = at::autocast::is_enabled();
      was_dtype_ = at::autocast::get_autocast_gpu_dtype();
      at::autocast::set_enabled(true);
      at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    }
#endif
    at::autocast::increment_nesting();
  }

  ~AutocastGuard() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();  // cached bf16 weight casts
#if MINILLM_TORCH_AT_LEAST(2, 4)
    at::autocast::set_autocast_enabled(device_, was_enabled_);
    at::autocast::set_autocast_dtype(device_, was_dtype_);
#else
    if (device_ == at::kCPU) {
      at::autocast::set_cpu_enabled(was_enabled_);
      at::autocast::set_autocast_cpu_dtype(was_dtype_);
    } else {
      at::autocast::set_enabled(was_enabled_);
      at::autocast::set_autocast_gpu_dtype(was_dtype_);
    }
#endif
  }

  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  at::DeviceType device_;
  bool active_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

}  // namespace minillm
