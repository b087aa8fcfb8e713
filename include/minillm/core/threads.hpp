// Debian's LibTorch 1.13 starts with one intra-op thread on any machine; programs and the library
// use all cores unless told otherwise.
#pragma once

#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "minillm/core/torch.hpp"

namespace minillm {

// Sets LibTorch's intra-op thread count: `requested` if positive, else OMP_NUM_THREADS if set, else
// every hardware thread. Returns the count in effect.
inline int set_num_threads(int requested = 0) {
  int n = requested;
  if (n <= 0) {
    if (const char* env = std::getenv("OMP_NUM_THREADS"); env != nullptr && std::atoi(env) > 0) n = std::atoi(env);
  }
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
  return at::get_num_threads();
}

namespace detail {
// Called by model constructors: applies the default once per process, unless the program already
// chose a thread count of its own (anything other than LibTorch's starting value of 1).
inline void ensure_default_threads() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (at::get_num_threads() == 1) set_num_threads();
  });
}
}  // namespace detail

}  // namespace minillm
