// The MPI suite's main: procpool::mpi::init first, so every rank but 0 becomes an agent serving
// the pools that rank 0's Catch session makes. CTest runs it under mpiexec with 1, 2 and 3 ranks.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <procpool/mpi.hpp>

int main(int argc, char** argv) {
  procpool::mpi::init(argc, argv);
  return Catch::Session().run(argc, argv);
}
