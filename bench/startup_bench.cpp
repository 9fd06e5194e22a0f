// Pool start-up to first result, and shutdown, for each start method (2 workers).
// main() is bench_main.cpp: spawned workers are fresh copies of this program, and procpool::init
// must turn them into workers before Google Benchmark parses the command line.
#include <benchmark/benchmark.h>

#include <procpool/procpool.hpp>

namespace {

int square(int x) {
  return x * x;
}

void start_to_first_result(benchmark::State& state, procpool::StartMethod method) {
  for (auto _ : state) {
    procpool::Pool pool(procpool::Options{.processes = 2, .start = method});
    benchmark::DoNotOptimize(pool.apply(square, 7));
    state.PauseTiming();  // shutdown is measured separately below
    pool.close();
    pool.join();
    state.ResumeTiming();
  }
}

void start_and_shutdown(benchmark::State& state, procpool::StartMethod method) {
  for (auto _ : state) {
    procpool::Pool pool(procpool::Options{.processes = 2, .start = method});
    benchmark::DoNotOptimize(pool.apply(square, 7));
  }
}

BENCHMARK_CAPTURE(start_to_first_result, fork, procpool::StartMethod::fork)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(start_to_first_result, spawn, procpool::StartMethod::spawn)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(start_to_first_result, forkserver, procpool::StartMethod::forkserver)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(start_and_shutdown, fork, procpool::StartMethod::fork)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(start_and_shutdown, spawn, procpool::StartMethod::spawn)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(start_and_shutdown, forkserver, procpool::StartMethod::forkserver)
    ->Unit(benchmark::kMillisecond);

}  // namespace
