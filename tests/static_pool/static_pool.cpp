// A Pool held by a static object is destroyed after main returns, after the library's own
// process-wide state made later than it (which static destruction ends first): the program must
// end cleanly, with the work it submitted done. CTest runs it once per start method
// (PROCPOOL_TEST_START) and expects the last line; the sanitizer builds also catch any use of
// state already destroyed.
#include <chrono>
#include <cstdio>
#include <thread>

#include "support/start_method.hpp"
#include "support/static_holder.hpp"
#include <procpool/procpool.hpp>

namespace {

int slow_square(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return x * x;
}

// Made before main, before any pool: its destructor runs after those of the library's statics.
procpool_test::StaticHolder<procpool::Pool<>> holder;

}  // namespace

int main(int argc, char** argv) {
  procpool::init(argc, argv);
  procpool::Options o;
  o.processes = 1;
  const auto method = procpool_test::start_method_from_env();
  if (!method) {
    std::fprintf(stderr, "PROCPOOL_TEST_START must be fork, spawn or forkserver\n");
    return 2;
  }
  o.start = *method;
  holder.pool.emplace(o);
  if (holder.pool->apply(slow_square, 3) != 9) return 1;
  holder.pending = holder.pool->apply_async(slow_square, 7);  // still running when main returns
  return 0;
}
