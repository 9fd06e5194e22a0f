// Queue throughput: one producer process feeding one consumer (this process) through a
// procpool::Queue of capacity 1024, for small items (int64) and 1 KiB strings. Items per second
// are the consumer's. main() is bench_main.cpp (procpool::init first).
#include <benchmark/benchmark.h>
#include <cstdint>
#include <string>

#include <procpool/procpool.hpp>

namespace {

// Puts items until the queue is closed.
template <class T>
void produce_forever(procpool::Queue<T> q, T item) {
  try {
    for (;;) q.put(item);
  } catch (const procpool::QueueClosed&) {
  }
}

template <class T>
void one_producer_one_consumer(benchmark::State& state, T item) {
  procpool::Queue<T> q(1024);
  procpool::Process producer(procpool::ProcessOptions{.start = procpool::StartMethod::fork},
                             &produce_forever<T>, q, item);
  producer.start();
  benchmark::DoNotOptimize(q.get());  // the producer is running
  for (auto _ : state) benchmark::DoNotOptimize(q.get());
  state.SetItemsProcessed(state.iterations());
  q.close();
  producer.join();
}

void queue_int64(benchmark::State& state) {
  one_producer_one_consumer<std::int64_t>(state, 42);
}

void queue_string_1k(benchmark::State& state) {
  one_producer_one_consumer<std::string>(state, std::string(1024, 'x'));
}

BENCHMARK(queue_int64)->UseRealTime();
BENCHMARK(queue_string_1k)->UseRealTime();

}  // namespace
