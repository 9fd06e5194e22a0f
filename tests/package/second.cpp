// A second translation unit using a pool: in the compiled mode both link against one engine.
#include <numeric>
#include <vector>

#include <procpool/pool.hpp>

long cube(long x) {
  return x * x * x;
}

long sum_of_cubes(procpool::Pool<>& pool, int n) {
  std::vector<long> in(static_cast<std::size_t>(n));
  std::iota(in.begin(), in.end(), 0L);
  auto cubes = pool.map(cube, in);
  return std::accumulate(cubes.begin(), cubes.end(), 0L);
}
