#pragma once
// A pool held by a static object, for the programs that check a pool destroyed after main
// returns (tests/static_pool/, tests/mpi/static_pool.cpp): its destructor destroys the pool,
// which must wait for the task still running, and says whether that task's result is there.
#include <cstdio>
#include <cstdlib>
#include <optional>

#include <procpool/async_result.hpp>

namespace procpool_test {

template <class Pool>
struct StaticHolder {
  std::optional<Pool> pool;
  std::optional<procpool::AsyncResult<int>> pending;  // expected to hold 49

  ~StaticHolder() {
    if (!pool) return;  // (an MPI rank other than 0 ran no pool of its own)
    pool.reset();       // close + join: waits for the task still running
    if (!pending || !pending->ready() || pending->get() != 49) {
      std::printf("UNEXPECTED: the static pool's work was not done\n");
      std::fflush(stdout);
      std::_Exit(1);
    }
    std::printf("the static pool ended cleanly\n");
    std::fflush(stdout);
  }
};

}  // namespace procpool_test
