// A consumer of the installed (or embedded) procpool package.
#include <cstdio>
#include <numeric>
#include <vector>

#include <procpool/procpool.hpp>

long sum_of_cubes(procpool::Pool<>& pool, int n);  // second.cpp

int square(int x) {
  return x * x;
}

int main() {
  procpool::Pool pool(procpool::Options{.processes = 2});
  std::vector<int> in(100);  // not std::views::iota: clang before 16 cannot build it with libstdc++
  std::iota(in.begin(), in.end(), 0);
  auto squares = pool.map(square, in);
  long sum = std::accumulate(squares.begin(), squares.end(), 0L);
  std::printf("sum of squares 0..99 = %ld\n", sum);
  long cubes = sum_of_cubes(pool, 100);
  std::printf("sum of cubes 0..99 = %ld\n", cubes);
  return sum == 328350 && cubes == 24502500 ? 0 : 1;
}
