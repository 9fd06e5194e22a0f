// procpool::mpi's side of the comparison with mpi4py.futures (bench/mpi_vs_mpi4py.py runs both):
// the same five workloads, printed one per line as `name value unit`. Run it under mpiexec:
//   mpiexec -n 3 ./mpi_bench [--per-rank N] [--no-root]
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <ranges>
#include <string>
#include <vector>

#include <procpool/mpi.hpp>

namespace {

int inc(int x) {
  return x + 1;
}

std::size_t nbytes(const std::vector<std::byte>& b) {
  return b.size();
}

std::vector<std::byte> echo(std::vector<std::byte> b) {
  return b;
}

// 0..n-1 (a vector, not std::views::iota: clang before 16 cannot build libstdc++'s views).
std::vector<int> numbers(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The best of `runs` timings of `f` (a shared machine adds noise, never speed).
template <class F>
double best_of(int runs, F f) {
  double best = 1e300;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  procpool::mpi::init(argc, argv);
  procpool::mpi::Options o;
  std::string only;  // one workload by name, or all
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "--per-rank" && i + 1 < argc) {
      o.processes_per_rank = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (a == "--no-root") {
      o.use_root = false;
    } else {
      std::fprintf(stderr, "usage: mpi_bench [--per-rank N] [--no-root] [--only NAME]\n");
      return 2;
    }
  }
  procpool::mpi::Pool pool(o);
  std::printf("ranks %d workers %zu\n", procpool::mpi::world_size(), pool.size());

  std::fflush(stdout);
  auto want = [&](const char* name) { return only.empty() || only == name; };
  pool.map(inc, numbers(10000));  // warm up every worker
  double t = 0;
  if (want("round_trip")) {
    const int trips = 5000;
    t = best_of(3, [&] {
      for (int i = 0; i < trips; ++i)
        if (pool.apply_async(inc, i).get() != i + 1) std::abort();
    });
    std::printf("round_trip %.2f us\n", t / trips * 1e6);
    std::fflush(stdout);
  }
  if (want("map_chunk1")) {
    const int n1 = 100'000;
    const auto in1 = numbers(n1);
    t = best_of(3, [&] { pool.map(inc, in1, 1); });
    std::printf("map_chunk1 %.0f tasks/s\n", n1 / t);
    std::fflush(stdout);
  }
  if (want("map_auto")) {
    const int n2 = 1'000'000;
    const auto in2 = numbers(n2);
    t = best_of(3, [&] { pool.map(inc, in2); });
    std::printf("map_auto %.0f tasks/s\n", n2 / t);
    std::fflush(stdout);
  }
  if (want("args_64x1MiB")) {
    std::vector<std::vector<std::byte>> blobs(64, std::vector<std::byte>(1 << 20));
    t = best_of(3, [&] { pool.map(nbytes, blobs, 1); });
    std::printf("args_64x1MiB %.3f GB/s\n", 64.0 * (1 << 20) / t / 1e9);
    std::fflush(stdout);
  }
  if (want("round_trip_64MiB")) {
    std::vector<std::byte> big(64 << 20);
    t = best_of(3, [&] {
      if (pool.apply(echo, big).size() != big.size()) std::abort();
    });
    std::printf("round_trip_64MiB %.3f GB/s\n", 64.0 * (1 << 20) / t / 1e9);
  }
}
