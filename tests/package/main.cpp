// A consumer of the installed (or embedded) procpool package.
#include <cstdio>
#include <numeric>
#include <ranges>

#include <procpool/procpool.hpp>

int square(int x) {
  return x * x;
}

int main() {
  procpool::Pool pool(procpool::Options{.processes = 2});
  auto squares = pool.map(square, std::views::iota(0, 100));
  long sum = std::accumulate(squares.begin(), squares.end(), 0L);
  std::printf("sum of squares 0..99 = %ld\n", sum);
  return sum == 328350 ? 0 : 1;
}
