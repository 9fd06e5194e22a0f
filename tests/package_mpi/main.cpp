#include <cstdio>
#include <numeric>
#include <vector>

#include <procpool/mpi.hpp>

int square(int x) {
  return x * x;
}

int main(int argc, char** argv) {
  procpool::mpi::init(argc, argv);
  procpool::mpi::Pool pool;
  std::vector<int> in(100);  // not std::views::iota: clang before 16 cannot build it with libstdc++
  std::iota(in.begin(), in.end(), 0);
  auto v = pool.map(square, in);
  std::printf("sum of squares 0..99 = %d\n", std::accumulate(v.begin(), v.end(), 0));
}
