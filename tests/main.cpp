// The suite's own main: procpool::init runs first, so that a spawned worker (a fresh copy of this
// binary) becomes a worker instead of running Catch. PROCPOOL_TEST_START picks the start method
// of every pool the tests make without naming one: CTest runs the pool suites once per method.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <procpool/procpool.hpp>

int main(int argc, char** argv) {
  procpool::init(argc, argv);
  if (const char* m = std::getenv("PROCPOOL_TEST_START")) {
    std::string s = m;
    if (s == "spawn") {
      procpool::set_start_method(procpool::StartMethod::spawn);
    } else if (s == "forkserver") {
      procpool::set_start_method(procpool::StartMethod::forkserver);
    } else if (s != "fork") {
      std::fprintf(stderr, "PROCPOOL_TEST_START must be fork, spawn or forkserver\n");
      return 2;
    }
  }
  return Catch::Session().run(argc, argv);
}
