// Per-task overhead and data throughput of a Pool(2): the rows of the performance table that
// bench/compare.py prints next to Python's multiprocessing.Pool.
// main() is bench_main.cpp (procpool::init first).
#include <benchmark/benchmark.h>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <numeric>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "latency.hpp"
#include <procpool/procpool.hpp>

namespace {

int inc(int x) {
  return x + 1;
}

std::size_t byte_count(const std::vector<std::uint8_t>& v) {
  return v.size();
}

std::vector<std::uint8_t> echo(std::vector<std::uint8_t> v) {
  return v;
}

double first_of(procpool::Array<double> a) {
  return a[0] + static_cast<double>(a.size());
}

procpool::StartMethod start_method() {
  return procpool::StartMethod::fork;
}

// One pool for the whole run, as a long-lived program would have.
procpool::Pool<>& pool() {
  static procpool::Pool<> p(procpool::Options{.processes = 2, .start = start_method()});
  return p;
}

void BM_ApplyRoundTrip(benchmark::State& state) {
  auto& p = pool();
  int i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(p.apply_async(inc, i++).get());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplyRoundTrip)->UseRealTime()->Unit(benchmark::kMicrosecond);

// More submitting threads than cores, each waiting for its own result: the waiting threads must
// not take the CPU from the workers.
BENCHMARK(BM_ApplyRoundTrip)
    ->Name("BM_ApplyRoundTripThreads")
    ->Threads(8)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// The distribution of single round trips (the mean hides the tail).
void BM_RoundTripLatency(benchmark::State& state) {
  auto& p = pool();
  int i = 0;
  procpool_bench::record_latencies(
      state, 3000, [&] { benchmark::DoNotOptimize(p.apply_async(inc, i++).get()); });
}
BENCHMARK(BM_RoundTripLatency)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

constexpr int kTrivialTasks = 200'000;

// 0..kTrivialTasks-1, built once. (A vector, not std::views::iota: clang before 16 cannot build
// libstdc++'s views.)
const std::vector<int>& trivial_inputs() {
  static const std::vector<int> v = [] {
    std::vector<int> out(kTrivialTasks);
    std::iota(out.begin(), out.end(), 0);
    return out;
  }();
  return v;
}

void BM_MapChunk1(benchmark::State& state) {
  auto& p = pool();
  for (auto _ : state) {
    auto r = p.map(inc, trivial_inputs(), 1);
    benchmark::DoNotOptimize(r.data());
  }
  state.SetItemsProcessed(state.iterations() * kTrivialTasks);
}
BENCHMARK(BM_MapChunk1)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_ImapUnorderedChunk1(benchmark::State& state) {
  auto& p = pool();
  for (auto _ : state) {
    long long sum = 0;
    for (int v : p.imap_unordered(inc, trivial_inputs(), 1)) sum += v;
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * kTrivialTasks);
}
BENCHMARK(BM_ImapUnorderedChunk1)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_MapAutoChunk(benchmark::State& state) {
  auto& p = pool();
  std::vector<int> input(kTrivialTasks);
  std::iota(input.begin(), input.end(), 0);
  for (auto _ : state) {
    auto r = p.map(inc, input);
    benchmark::DoNotOptimize(r.data());
  }
  state.SetItemsProcessed(state.iterations() * kTrivialTasks);
}
BENCHMARK(BM_MapAutoChunk)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Args64x1MiB(benchmark::State& state) {
  auto& p = pool();
  std::vector<std::vector<std::uint8_t>> args(64, std::vector<std::uint8_t>(1 << 20, 7));
  for (auto _ : state) {
    auto r = p.map(byte_count, args, 1);
    benchmark::DoNotOptimize(r.data());
  }
  state.SetBytesProcessed(state.iterations() * 64 * (1 << 20));
}
BENCHMARK(BM_Args64x1MiB)->UseRealTime()->Unit(benchmark::kMillisecond);

// Bytes processed counts the payload once (64 MiB there and the same 64 MiB back). The first
// round trips of a process map the pool's and each worker's memory files and fault them in; a
// long-lived program pays that once, so they are left out (otherwise the few iterations a
// 64 MiB round trip allows would measure little else).
void BM_RoundTrip64MiB(benchmark::State& state) {
  auto& p = pool();
  std::vector<std::uint8_t> data(64 << 20, 3);
  static const bool warm = [&] {
    for (int i = 0; i < 4; ++i) benchmark::DoNotOptimize(p.apply(echo, data).data());
    return true;
  }();
  benchmark::DoNotOptimize(warm);
  for (auto _ : state) {
    auto r = p.apply(echo, data);
    benchmark::DoNotOptimize(r.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(data.size()));
}
BENCHMARK(BM_RoundTrip64MiB)->UseRealTime()->Unit(benchmark::kMillisecond);

// A shared Array handed to a task costs the same whatever its size: only a handle travels.
void BM_SharedArrayArgument(benchmark::State& state) {
  auto& p = pool();
  procpool::Array<double> a(static_cast<std::size_t>(state.range(0)) << 20 >> 3);
  benchmark::DoNotOptimize(p.apply(first_of, a));  // the first call maps it in the worker
  for (auto _ : state) benchmark::DoNotOptimize(p.apply(first_of, a));
  state.counters["MiB"] = static_cast<double>(state.range(0));
}
BENCHMARK(BM_SharedArrayArgument)->Arg(1)->Arg(256)->UseRealTime()->Unit(benchmark::kMicrosecond);

// CPU time (user + system) of a process or a thread, from /proc, in seconds.
double cpu_seconds(const std::string& stat_path) {
  std::ifstream f(stat_path);
  std::string line;
  std::getline(f, line);
  auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> fields{std::istream_iterator<std::string>(rest), {}};
  if (fields.size() < 13) return 0;
  // Fields 14 and 15 of stat (utime, stime), counted from after the command name.
  return (std::stod(fields[11]) + std::stod(fields[12])) / 100.0;
}

// An idle pool: workers waiting and nothing queued must cost (almost) nothing. Reports the CPU
// of the pool's workers and of this whole process over a wall-clock second, in % of one core.
void BM_IdlePoolCpu(benchmark::State& state) {
  auto& p = pool();
  (void)p.apply(inc, 1);
  double percent = 0;
  for (auto _ : state) {
    auto pids = p.pids();
    auto total = [&] {
      double s = cpu_seconds("/proc/self/stat");
      for (auto pid : pids) s += cpu_seconds("/proc/" + std::to_string(pid) + "/stat");
      return s;
    };
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // past any spinning
    double before = total();
    auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(1));
    double after = total();
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    percent = 100.0 * (after - before) / wall;
  }
  state.counters["cpu_percent"] = percent;
}
BENCHMARK(BM_IdlePoolCpu)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
