// A rank that stops answering without dying (its process stopped, as when its machine drops off
// the network) must end the job once the heartbeat deadline passes: mpiexec sees no death
// there. CTest runs this under mpiexec with PROCPOOL_MPI_HEARTBEAT_S=3 and a time limit, and
// expects rank 0's message naming the silent rank.
#include <chrono>
#include <cstdio>
#include <fstream>
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
    ::kill(parent_of(getppid()), SIGSTOP);
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
  std::vector<int> input(16);
  for (int i = 0; i < 16; ++i) input[static_cast<std::size_t>(i)] = i;
  for (int round = 0; round < 20; ++round) pool.map(work, input, 1);
  std::printf("UNEXPECTED: every map finished\n");
  return 1;
}
