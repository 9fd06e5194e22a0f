// A pool forks its workers while another thread of the program is inside the first use of one of
// the library's process-wide tables (its function-local static is being made, so its guard is
// held). A fork-started worker resets those tables; had it reached a guard still held in the
// copy of memory it got, it would wait for ever for a thread it does not have, and the pool
// would never start. Here this program's operator new stalls the making of the table for a
// moment, on purpose, while a pool starts. CTest runs it once per table and expects the last
// line; a watchdog ends a hang with a clear message.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include <procpool/detail/local/shared_frame.hpp>
#include <procpool/detail/segment_table.hpp>
#include <procpool/procpool.hpp>

namespace {

using namespace std::chrono_literals;

thread_local bool stall_next_new = false;
std::atomic<bool> stalling{false};

int twice(int x) {
  return 2 * x;
}

}  // namespace

// The next allocation of a thread that asked for it stalls for 500 ms: long enough for the
// pool's thread to fork in the middle of it. (Not inlined: g++ would pair the inlined free with
// the standard operator new and warn.)
[[gnu::noinline]] void* operator new(std::size_t n) {
  if (stall_next_new) {
    stall_next_new = false;
    stalling.store(true);
    std::this_thread::sleep_for(500ms);
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

int main(int argc, char** argv) {
  procpool::init(argc, argv);
  const bool frames = argc > 1 && std::strcmp(argv[1], "shared-frames") == 0;
  const bool segments = argc > 1 && std::strcmp(argv[1], "segment-table") == 0;
  if (!frames && !segments) {
    std::fprintf(stderr, "usage: %s shared-frames|segment-table\n", argv[0]);
    return 2;
  }
  std::thread maker([&] {
    stall_next_new = true;  // the table's own allocation, made under its static's guard
    if (frames)
      (void)procpool::detail::local::SharedFrames::process();
    else
      (void)procpool::detail::SegmentTable::get();
  });
  while (!stalling.load()) std::this_thread::sleep_for(1ms);

  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (!done.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(10ms);
    if (done.load()) return;
    std::printf("UNEXPECTED: the pool did not start within 20 s (a worker waits for ever)\n");
    std::fflush(stdout);
    std::_Exit(1);
  });

  int result = 0;
  {
    procpool::Options o;
    o.processes = 2;
    o.start = procpool::StartMethod::fork;
    procpool::Pool<> pool(o);
    result = pool.apply(twice, 21);
  }
  done.store(true);
  watchdog.join();
  maker.join();
  if (result != 42) {
    std::printf("UNEXPECTED: result %d\n", result);
    return 1;
  }
  std::printf("the pool started and answered while the table was being made\n");
  return 0;
}
