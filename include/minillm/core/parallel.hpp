// Runs work on a fixed number of threads and rethrows the first exception any of them raised.
#pragma once

#include <algorithm>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace minillm {

// Calls fn(t) for t in [0, threads) on `threads` threads (0: one per hardware thread); returns
// when all are done. Returns the thread count used.
template <class F>
unsigned run_on_threads(unsigned threads, F&& fn) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  std::exception_ptr error;
  std::mutex error_mutex;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      try {
        fn(t);
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    });
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
  return threads;
}

}  // namespace minillm
