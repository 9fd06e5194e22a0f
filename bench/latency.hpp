// Latency distributions for the benchmarks: each row times many single round trips and reports
// their percentiles as counters, so the tail shows next to the mean.
#pragma once

#include <algorithm>
#include <benchmark/benchmark.h>
#include <chrono>
#include <cstddef>
#include <vector>

namespace procpool_bench {

/// Times `n` calls of `once()` one by one and reports p50, p99 and p99.9 in microseconds.
template <class Fn>
void record_latencies(benchmark::State& state, std::size_t n, Fn once) {
  std::vector<double> us;
  us.reserve(n);
  for (auto _ : state) {
    us.clear();
    for (std::size_t i = 0; i < n; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      once();
      us.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[static_cast<std::size_t>(q * static_cast<double>(n - 1))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["p999_us"] = at(0.999);
}

}  // namespace procpool_bench
