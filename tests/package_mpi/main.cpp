#include <cstdio>
#include <numeric>
#include <ranges>

#include <procpool/mpi.hpp>

int square(int x) {
  return x * x;
}

int main(int argc, char** argv) {
  procpool::mpi::init(argc, argv);
  procpool::mpi::Pool pool;
  auto v = pool.map(square, std::views::iota(0, 100));
  std::printf("sum of squares 0..99 = %d\n", std::accumulate(v.begin(), v.end(), 0));
}
