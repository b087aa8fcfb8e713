// What the Google Benchmark programs share: the device they run on (MINILLM_BENCH_DEVICE=cuda, or
// cpu by default) and a timed loop that waits for the device, so GPU time is measured, not launches.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <benchmark/benchmark.h>

#include <minillm/core/autocast.hpp>
#include <minillm/core/device.hpp>
#include <minillm/core/threads.hpp>

namespace bench {

// MINILLM_BENCH_DEVICE (read once).
inline at::Device device() {
  static const at::Device d = [] {
    const char* name = std::getenv("MINILLM_BENCH_DEVICE");
    return minillm::device_from_name(name ? name : "cpu");
  }();
  return d;
}

// MINILLM_BENCH_PRECISION=fp32|bf16 (autocast, read once); default bf16 on CUDA, fp32 on the CPU.
inline minillm::Precision precision() {
  static const minillm::Precision p = [] {
    const char* name = std::getenv("MINILLM_BENCH_PRECISION");
    if (name) return minillm::precision_from_name(name);
    return device().is_cuda() ? minillm::Precision::bf16 : minillm::Precision::fp32;
  }();
  return p;
}

// Runs body() once untimed, then once per benchmark iteration, waiting for the device each time.
template <class Body>
void timed(benchmark::State& state, const at::Device& d, Body&& body) {
  body();
  minillm::synchronize(d);
  for (auto _ : state) {
    body();
    minillm::synchronize(d);
  }
}

inline int main(int argc, char** argv) {
  try {
    if (device().is_cpu()) minillm::set_num_threads();
    precision();  // a bad MINILLM_BENCH_PRECISION fails here, not inside a benchmark
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
