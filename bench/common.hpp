// What the Google Benchmark programs share: the device they run on (MINILLM_BENCH_DEVICE=cuda, or
// cpu by default) and a timed loop that waits for the device, so GPU time is measured, not launches.
#pragma once

#include <cstdlib>
#include <stdexcept>
#include <string>

#include <benchmark/benchmark.h>
#include <torch/cuda.h>

#include <minillm/core/autocast.hpp>
#include <minillm/core/threads.hpp>

namespace bench {

inline at::Device device() {
  const char* name = std::getenv("MINILLM_BENCH_DEVICE");
  const std::string d = name ? name : "cpu";
  if (d == "cpu") return at::kCPU;
  if (d == "cuda") {
    if (!torch::cuda::is_available()) throw std::runtime_error("MINILLM_BENCH_DEVICE=cuda: no CUDA device");
    return at::kCUDA;
  }
  throw std::invalid_argument("MINILLM_BENCH_DEVICE=" + d + ": expected cpu or cuda");
}

// MINILLM_BENCH_PRECISION=fp32|bf16 (autocast); default bf16 on CUDA, fp32 on the CPU.
inline minillm::Precision precision() {
  const char* name = std::getenv("MINILLM_BENCH_PRECISION");
  if (name) return minillm::precision_from_name(name);
  return device().is_cuda() ? minillm::Precision::bf16 : minillm::Precision::fp32;
}

inline void synchronize(const at::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

// Runs body() once untimed, then once per benchmark iteration, waiting for the device each time.
template <class Body>
void timed(benchmark::State& state, const at::Device& d, Body&& body) {
  body();
  synchronize(d);
  for (auto _ : state) {
    body();
    synchronize(d);
  }
}

inline int main(int argc, char** argv) {
  try {
    if (device().is_cpu()) minillm::set_num_threads();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("device", device().str());
  benchmark::AddCustomContext("precision", precision() == minillm::Precision::bf16 ? "bf16" : "fp32");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace bench
