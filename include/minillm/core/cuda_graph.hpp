// CUDA graphs: a fixed-shape piece of CUDA work recorded once and replayed with one launch, which
// takes the host (op dispatch, kernel launches, autograd bookkeeping) out of small-model steps.
// Present when the build's LibTorch has CUDA (the minillm CMake target then defines MINILLM_CUDA)
// and is 2.4 or newer; everything else in minillm works without it.
//
// What a recorded body must respect: fixed shapes; no value read back to the host; its inputs and
// outputs in tensors that outlive the graph (their addresses are baked in), written before and read
// after each replay; and state it changes (KV cache, parameters) changed by the same rule every time.
#pragma once

#include <functional>

#include "minillm/core/torch.hpp"

#if defined(MINILLM_CUDA) && MINILLM_TORCH_AT_LEAST(2, 4)
#define MINILLM_CUDA_GRAPHS 1
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#else
#define MINILLM_CUDA_GRAPHS 0
#endif

namespace minillm {

inline constexpr bool kCudaGraphs = MINILLM_CUDA_GRAPHS;

#if MINILLM_CUDA_GRAPHS
class CudaGraph {
 public:
  // Runs `body` `warmup` times for real, then records it once, both on a side stream (as
  // torch.cuda.graph does: lazily created handles and workspaces must exist before recording).
  // Replays then run on the caller's current stream.
  void capture(const std::function<void()>& body, int warmup, const at::Device& device) {
    const c10::cuda::CUDAGuard on(device);
    c10::cuda::device_synchronize();
    {
      const c10::cuda::CUDAStreamGuard side(c10::cuda::getStreamFromPool(false, device.index()));
      for (int i = 0; i < warmup; ++i) body();
      c10::cuda::device_synchronize();
      graph_.capture_begin();
      body();
      graph_.capture_end();
    }
    c10::cuda::device_synchronize();
    device_ = device;
    captured_ = true;
  }

  void replay() {
    const c10::cuda::CUDAGuard on(device_);
    graph_.replay();
  }
  bool captured() const { return captured_; }

 private:
  at::cuda::CUDAGraph graph_;
  at::Device device_ = at::kCUDA;
  bool captured_ = false;
};
#endif

}  // namespace minillm
