// A rank lost in the middle of a map must end the whole job, never leave rank 0 waiting. CTest
// runs this under mpiexec with a time limit, twice:
//   - the rank is SIGKILLed, as when its machine dies: mpiexec reports the killed process;
//   - with PROCPOOL_TEST_STOP_RANK=1 it is SIGSTOPped instead, as when its machine drops off the
//     network (mpiexec sees no death): with PROCPOOL_MPI_HEARTBEAT_S=3, rank 0's message names
//     the silent rank once the heartbeat deadline passes.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <ranges>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <procpool/mpi.hpp>

namespace {

// The parent of process `pid`, from /proc.
pid_t parent_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(f, line);
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  char state = 0;
  pid_t ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

int work(int i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (i == 7 && procpool::mpi::rank() == procpool::mpi::world_size() - 1) {
    // A worker's parent is its rank's fork server, whose parent is the rank itself.
    const char* stop = std::getenv("PROCPOOL_TEST_STOP_RANK");
    ::kill(parent_of(getppid()), stop && *stop == '1' ? SIGSTOP : SIGKILL);
  }
  return i;
}

}  // namespace

int main(int argc, char** argv) {
  procpool::mpi::init(argc, argv);
  procpool::mpi::Options o;
  o.processes_per_rank = 1;
  o.use_root = false;
  procpool::mpi::Pool pool(o);
  std::vector<int> input(16);  // (not std::views::iota: clang before 16 cannot build it)
  for (int i = 0; i < 16; ++i) input[static_cast<std::size_t>(i)] = i;
  for (int round = 0; round < 20; ++round) pool.map(work, input, 1);
  std::printf("UNEXPECTED: every map finished\n");
  return 1;
}
