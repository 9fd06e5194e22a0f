// Shared containers: one operation at a time on procpool::List and procpool::Dict (int64 items,
// keys and values), Dict::update from two processes at once on one counter, and 1 GiB of 1 KiB
// strings pushed into one List in steps of 1 MiB (the time of every step, to show that growth
// never stops the world). main() is bench_main.cpp (procpool::init first).
#include <algorithm>
#include <benchmark/benchmark.h>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <time.h>
#include <vector>

#include <sys/resource.h>

#include <procpool/procpool.hpp>

namespace {

constexpr std::int64_t prefill = 100'000;

void list_push_back(benchmark::State& state) {
  procpool::List<std::int64_t> l;
  std::int64_t i = 0;
  for (auto _ : state) l.push_back(i++);
  state.SetItemsProcessed(state.iterations());
}

void list_at(benchmark::State& state) {
  procpool::List<std::int64_t> l;
  std::vector<std::int64_t> v(static_cast<std::size_t>(prefill));
  for (std::size_t k = 0; k < v.size(); ++k) v[k] = static_cast<std::int64_t>(k);
  l.extend(v);
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(l.at(i));
    if (++i == v.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void dict_insert_or_assign(benchmark::State& state) {
  procpool::Dict<std::int64_t, std::int64_t> d;
  std::int64_t i = 0;
  for (auto _ : state) {
    d.insert_or_assign(i % prefill, i);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}

void dict_get(benchmark::State& state) {
  procpool::Dict<std::int64_t, std::int64_t> d;
  for (std::int64_t k = 0; k < prefill; ++k) d.insert_or_assign(k, k);
  std::int64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(d.get(i));
    if (++i == prefill) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

using Counter = procpool::Dict<std::string, std::int64_t>;

std::int64_t plus_one(std::optional<std::int64_t> v) {
  return v.value_or(0) + 1;
}

// Counts until the "stop" key appears.
void count_until_stopped(Counter d) {
  while (!d.contains("stop"))
    for (int i = 0; i < 100; ++i) d.update("n", plus_one);
}

// Time per update in this process while another process updates the same counter.
void dict_update_two_processes(benchmark::State& state) {
  Counter d;
  procpool::Process other(procpool::ProcessOptions{.start = procpool::StartMethod::fork},
                          &count_until_stopped, d);
  other.start();
  while (!d.get("n")) {
  }
  for (auto _ : state) d.update("n", plus_one);
  d.insert_or_assign("stop", 1);
  other.join();
  state.SetItemsProcessed(state.iterations());
}

// This thread's CPU time: unlike the wall clock, it leaves out the time other programs on a busy
// machine take the CPU away, and keeps what the growth itself costs (system calls, page faults).
double thread_cpu_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// This thread's system (kernel) CPU time.
double thread_sys_us() {
  rusage ru{};
  ::getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_stime.tv_sec) * 1e6 + static_cast<double>(ru.ru_stime.tv_usec);
}

void report_steps(benchmark::State& state, const char* what, std::vector<double> steps) {
  std::sort(steps.begin(), steps.end());
  const double median = steps[steps.size() / 2];
  const std::string w = what;
  state.counters[w + "_median_us"] = median;
  state.counters[w + "_p99_us"] = steps[steps.size() * 99 / 100];
  state.counters[w + "_max_us"] = steps.back();
  state.counters[w + "_max_over_median"] = steps.back() / median;
}

// 1 GiB of 1 KiB strings into one List, timed per 1 MiB step (wall clock and CPU time).
void list_push_1gib(benchmark::State& state) {
  using clock = std::chrono::steady_clock;
  const std::string item(1024, 'x');
  std::vector<double> wall, cpu, sys;
  for (auto _ : state) {
    procpool::List<std::string> l;
    wall.clear();
    cpu.clear();
    sys.clear();
    for (int s = 0; s < 1024; ++s) {
      const auto t0 = clock::now();
      const double c0 = thread_cpu_us();
      const double s0 = thread_sys_us();
      for (int k = 0; k < 1024; ++k) l.push_back(item);
      cpu.push_back(thread_cpu_us() - c0);
      sys.push_back(thread_sys_us() - s0);
      wall.push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
    }
    benchmark::DoNotOptimize(l.size());
  }
  // Where the costliest step was, and how much of it the kernel took (a growth step's memory).
  const auto worst = std::max_element(cpu.begin(), cpu.end()) - cpu.begin();
  state.counters["cpu_max_step"] = static_cast<double>(worst);
  state.counters["cpu_max_sys_us"] = sys[static_cast<std::size_t>(worst)];
  report_steps(state, "wall", wall);
  report_steps(state, "cpu", cpu);
  state.SetBytesProcessed(state.iterations() * 1024 * 1024 * 1024);
}

BENCHMARK(list_push_back);
BENCHMARK(list_at);
BENCHMARK(dict_insert_or_assign);
BENCHMARK(dict_get);
BENCHMARK(dict_update_two_processes)->UseRealTime();
BENCHMARK(list_push_1gib)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
