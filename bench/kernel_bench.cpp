// What the kernel allows on this machine, for comparison with the pool: a pipe round trip
// between two processes (blocking, and with the reader polling), pipe streaming, and
// fork + exit + wait. Built on the library's own POSIX layer.
#include <benchmark/benchmark.h>
#include <cstdint>
#include <vector>

#include "latency.hpp"
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/process.hpp>

namespace posix = procpool::detail::posix;

namespace {

struct Echo {
  int in = -1;
  int out = -1;
  bool poll = false;
};

// Child: sends back every 8-byte message until its input closes.
int echo_main(void* p) {
  auto* e = static_cast<Echo*>(p);
  std::uint64_t v = 0;
  for (;;) {
    std::error_code ec;
    auto n = posix::read_some(e->in, &v, sizeof v, ec);
    if (n == 0) return 0;
    if (n < 0) {
      if (e->poll && ec == std::errc::resource_unavailable_try_again) continue;
      return 1;
    }
    if (posix::write_all(e->out, &v, sizeof v)) return 1;
  }
}

// Child: reads and drops everything until its input closes.
int drain_main(void* p) {
  auto* e = static_cast<Echo*>(p);
  std::vector<char> buf(1 << 20);
  for (;;) {
    std::error_code ec;
    auto n = posix::read_some(e->in, buf.data(), buf.size(), ec);
    if (n <= 0) return n == 0 ? 0 : 1;
  }
}

struct Child {
  posix::PipeFds to, from;
  pid_t pid = 0;
  posix::UniqueFd pidfd;

  Child(int (*body)(void*), bool poll, int pipe_bytes = 0) {
    (void)posix::make_pipe(to, false);
    (void)posix::make_pipe(from, false);
    if (pipe_bytes) posix::grow_pipe(to.write_end.get(), pipe_bytes);
    Echo e{to.read_end.get(), from.write_end.get(), poll};
    if (poll) (void)posix::set_nonblocking(e.in, true);
    // The child keeps its own ends and closes the parent's (so it sees EOF when the parent closes).
    posix::ChildSpec spec;
    spec.body = body;
    spec.ctx = &e;
    spec.keep[0] = e.in;
    spec.keep[1] = e.out;
    (void)posix::fork_child(spec, pid, pidfd);
    to.read_end.reset();
    from.write_end.reset();
    if (poll) (void)posix::set_nonblocking(from.read_end.get(), true);
  }
  ~Child() {
    to.write_end.reset();
    (void)posix::reap(pid, true);
  }
};

// One 8-byte message there and back.
void round_trip(Child& c, bool poll, std::uint64_t v) {
  (void)posix::write_all(c.to.write_end.get(), &v, sizeof v);
  std::uint64_t back = 0;
  for (;;) {
    std::error_code ec;
    auto n = posix::read_some(c.from.read_end.get(), &back, sizeof back, ec);
    if (n > 0 || !poll || ec != std::errc::resource_unavailable_try_again) break;
  }
  benchmark::DoNotOptimize(back);
}

void round_trips(benchmark::State& state, bool poll) {
  Child c(&echo_main, poll);
  std::uint64_t v = 0;
  for (auto _ : state) round_trip(c, poll, ++v);
}

void BM_PipeRoundTripBlocking(benchmark::State& state) {
  round_trips(state, false);
}
BENCHMARK(BM_PipeRoundTripBlocking)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_PipeRoundTripPolling(benchmark::State& state) {
  round_trips(state, true);
}
BENCHMARK(BM_PipeRoundTripPolling)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The distribution of blocking round trips: what a wake-up on the other side costs here.
void BM_PipeRoundTripBlockingLatency(benchmark::State& state) {
  Child c(&echo_main, false);
  std::uint64_t v = 0;
  procpool_bench::record_latencies(state, 3000, [&] { round_trip(c, false, ++v); });
}
BENCHMARK(BM_PipeRoundTripBlockingLatency)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Many small messages in flight: one writer, one reader that answers each.
void BM_PipeStreamSmall(benchmark::State& state) {
  Child c(&echo_main, false);
  constexpr int window = 256;
  std::vector<std::uint64_t> batch(window, 1);
  for (auto _ : state) {
    (void)posix::write_all(c.to.write_end.get(), batch.data(), batch.size() * sizeof batch[0]);
    std::size_t got = 0;
    while (got < batch.size() * sizeof batch[0]) {
      std::error_code ec;
      auto n = posix::read_some(c.from.read_end.get(), batch.data(),
                                batch.size() * sizeof batch[0] - got, ec);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
  }
  state.SetItemsProcessed(state.iterations() * window);
}
BENCHMARK(BM_PipeStreamSmall)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_PipeStreamBytes(benchmark::State& state) {
  int pipe_bytes = static_cast<int>(state.range(0));
  Child c(&drain_main, false, pipe_bytes);
  std::vector<char> chunk(1 << 20, 'x');
  for (auto _ : state) (void)posix::write_all(c.to.write_end.get(), chunk.data(), chunk.size());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(chunk.size()));
  state.counters["pipe_KiB"] = pipe_bytes == 0 ? 64 : pipe_bytes / 1024;
}
BENCHMARK(BM_PipeStreamBytes)->Arg(0)->Arg(1 << 20)->UseRealTime()->Unit(benchmark::kMicrosecond);

int exit_now(void*) {
  return 0;
}

void BM_ForkExitWait(benchmark::State& state) {
  for (auto _ : state) {
    posix::ChildSpec spec;
    spec.body = &exit_now;
    pid_t pid = 0;
    posix::UniqueFd pidfd;
    (void)posix::fork_child(spec, pid, pidfd);
    (void)posix::reap(pid, true);
  }
}
BENCHMARK(BM_ForkExitWait)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
