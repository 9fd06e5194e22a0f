#pragma once
// The definition of procpool::init's work: inline in a header-only build, compiled once by
// src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <procpool/detail/posix/launch.hpp>
#include <procpool/detail/posix/process.hpp>
#include <procpool/detail/separate.hpp>
#include <procpool/detail/worker.hpp>

namespace procpool::detail {

PROCPOOL_SEPARATE_BEGIN

PROCPOOL_DECL void init_process(int argc, char** argv) {
  namespace posix = detail::posix;
  pid_t parent = 0;
  posix::WorkerParams params;
  if (posix::read_worker_marker(parent, params)) {
    // A spawned worker: its channels are descriptors 3 to 6 (see posix::spawn_worker).
    posix::set_process_name("procpool-worker");  // exec named it after the program
    const int b = posix::spawned_fd_base;
    posix::WorkerFds fds{b, b + 1, b + 2, b + 3};
    posix::child::die(launched_worker_main(fds, params));
  }
  auto& state = posix::InitState::get();
  if (state.called.exchange(true)) return;
  for (int i = 0; i < argc; ++i) state.argv.emplace_back(argv[i] ? argv[i] : "");
  // The fork server is started here even if no forkserver pool will ever be made: it must be
  // forked while the program has a single thread (a fork of a threaded program copies locks
  // other threads hold), and which start method later pools and processes use is only known
  // later (Options, set_start_method). It is one sleeping process, started once. Without it,
  // forkserver pools report the failure when they start.
  (void)posix::start_forkserver(&launched_worker_main);
}

PROCPOOL_SEPARATE_END

}  // namespace procpool::detail
