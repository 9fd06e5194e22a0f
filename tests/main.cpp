// The suite's own main: procpool::init runs first, so that a spawned worker (a fresh copy of this
// binary) becomes a worker instead of running Catch. PROCPOOL_TEST_START picks the start method
// of every pool the tests make without naming one: CTest runs the pool suites once per method.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>

#include "support/start_method.hpp"
#include <procpool/procpool.hpp>

int main(int argc, char** argv) {
  procpool::init(argc, argv);
  const auto method = procpool_test::start_method_from_env();
  if (!method) {
    std::fprintf(stderr, "PROCPOOL_TEST_START must be fork, spawn or forkserver\n");
    return 2;
  }
  procpool::set_start_method(*method);
  Catch::Session session;
  if (int rc = session.applyCommandLine(argc, argv)) return rc;
  // CTest runs each case by name: a name that matches no case must fail, not pass having run
  // nothing.
  auto& config = session.configData();
  config.warnings =
      static_cast<Catch::WarnAbout::What>(config.warnings | Catch::WarnAbout::NoTests);
  return session.run();
}
