// The main of the benchmarks that start pools or processes: spawned workers are fresh copies of
// the program, and procpool::init must turn them into workers before Google Benchmark parses the
// command line.
#include <benchmark/benchmark.h>

#include <procpool/init.hpp>

int main(int argc, char** argv) {
  procpool::init(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
