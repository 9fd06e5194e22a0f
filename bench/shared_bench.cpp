// Shared memory and its locks: the cost of an uncontended procpool::Mutex (a robust,
// process-shared pthread mutex) next to std::mutex, locked increments contended between worker
// processes, and handing a task 256 MiB as an Array (a handle) or as a std::vector (a copy).
#include <benchmark/benchmark.h>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include <procpool/procpool.hpp>

namespace {

procpool::Options workers(unsigned n) {
  procpool::Options o;
  o.processes = n;
  return o;
}

constexpr std::size_t kBigElements = (std::size_t{256} << 20) / sizeof(double);  // 256 MiB

void count_up(procpool::Value<long> v, long n) {
  for (long i = 0; i < n; ++i) {
    std::scoped_lock l(v.get_lock());
    ++v.value();
  }
}

double first_of_array(procpool::Array<double> a) {
  return a[0];
}

double first_of_vector(const std::vector<double>& v) {
  return v[0];
}

void BM_MutexLockUnlock(benchmark::State& state) {
  procpool::Mutex m;
  for (auto _ : state) {
    m.lock();
    m.unlock();
  }
}
BENCHMARK(BM_MutexLockUnlock);

void BM_StdMutexLockUnlock(benchmark::State& state) {
  std::mutex m;
  for (auto _ : state) {
    m.lock();
    m.unlock();
  }
}
BENCHMARK(BM_StdMutexLockUnlock);

void BM_ValueLockedIncrement(benchmark::State& state) {
  procpool::Value<long> v;
  for (auto _ : state) {
    std::scoped_lock l(v.get_lock());
    ++v.value();
    benchmark::DoNotOptimize(v.value());
  }
}
BENCHMARK(BM_ValueLockedIncrement);

void BM_StdMutexLockedIncrement(benchmark::State& state) {
  std::mutex m;
  long x = 0;
  for (auto _ : state) {
    std::scoped_lock l(m);
    ++x;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(BM_StdMutexLockedIncrement);

// range(0) worker processes each run one task of range(1) locked increments of one Value. With
// one worker the lock is uncontended but taken in another process; with two they fight for it.
void BM_WorkerIncrements(benchmark::State& state) {
  const auto procs = static_cast<unsigned>(state.range(0));
  const long n = state.range(1);
  procpool::Pool pool(workers(procs));
  procpool::Value<long> v;
  for (auto _ : state) {
    std::vector<procpool::AsyncResult<void>> rs;
    for (unsigned p = 0; p < procs; ++p) rs.push_back(pool.apply_async(count_up, v, n));
    for (auto& r : rs) r.get();
  }
  const auto total = static_cast<double>(state.iterations()) * procs * static_cast<double>(n);
  state.counters["increments/s"] = benchmark::Counter(total, benchmark::Counter::kIsRate);
  state.counters["ns/increment"] =
      benchmark::Counter(total, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_WorkerIncrements)
    ->ArgNames({"workers", "n"})
    ->Args({1, 1'000'000})
    ->Args({2, 1'000'000})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The pool starts before the data exists, so the worker gets the Array through the pool (once),
// as it would any Array made later; each call then sends a handle of a few bytes.
void BM_Array256MiBArgument(benchmark::State& state) {
  procpool::Pool pool(workers(1));
  procpool::Array<double> a(kBigElements);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<double>(i);
  a[0] = 1.5;
  for (auto _ : state) {
    double x = pool.apply(first_of_array, a);
    benchmark::DoNotOptimize(x);
  }
  state.SetBytesProcessed(state.iterations() *
                          static_cast<std::int64_t>(a.size() * sizeof(double)));
}
BENCHMARK(BM_Array256MiBArgument)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The same data as a vector: encoded, written through the task pipe and decoded on every call.
void BM_Vector256MiBArgument(benchmark::State& state) {
  procpool::Pool pool(workers(1));
  std::vector<double> v(kBigElements);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  v[0] = 1.5;
  for (auto _ : state) {
    double x = pool.apply(first_of_vector, v);
    benchmark::DoNotOptimize(x);
  }
  state.SetBytesProcessed(state.iterations() *
                          static_cast<std::int64_t>(v.size() * sizeof(double)));
}
BENCHMARK(BM_Vector256MiBArgument)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
