// An mpi::Pool held by a static object is destroyed after main returns, once MPI's shutdown has
// begun: the program must end cleanly, with the work it submitted done. CTest runs this under
// mpiexec with a time limit and expects the last line.
#include <chrono>
#include <thread>

#include "support/static_holder.hpp"
#include <procpool/mpi.hpp>

namespace {

int slow_square(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return x * x;
}

// Made before main: its destructor runs after the handler mpi::init registers with atexit.
procpool_test::StaticHolder<procpool::mpi::Pool<>> holder;

}  // namespace

int main(int argc, char** argv) {
  procpool::mpi::init(argc, argv);
  procpool::mpi::Options o;
  o.processes_per_rank = 1;
  holder.pool.emplace(o);
  if (holder.pool->apply(slow_square, 3) != 9) return 1;
  holder.pending = holder.pool->apply_async(slow_square, 7);  // still running when main returns
  return 0;
}
