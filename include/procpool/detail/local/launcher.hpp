#pragma once
// Launchers: how a local worker process comes to exist (fork, spawn = fork + exec of this
// program, or a request to the fork server), one strategy per StartMethod. Shared by the pool's
// LocalTransport and by Process. A launcher owns what its method needs beyond one launch (the
// fork server's exit reports); the caller owns the channels it hands over.

#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <unordered_map>

#include <sys/types.h>

#include <procpool/detail/local/shared_frame.hpp>
#include <procpool/detail/local/worker_slot.hpp>
#include <procpool/detail/posix/error.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/launch.hpp>
#include <procpool/detail/posix/module.hpp>
#include <procpool/detail/posix/process.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/segment_table.hpp>
#include <procpool/detail/worker.hpp>
#include <procpool/errors.hpp>
#include <procpool/options.hpp>

namespace procpool::detail::local {

/// What a worker is started with. The descriptors are the worker's ends; they stay the caller's.
struct LaunchRequest {
  posix::WorkerFds fds;        // fds.slots: the status slots' memory file (not for fork)
  posix::WorkerParams params;  // params.slot: which slot of that file is the worker's
  WorkerSlot* slot = nullptr;  // fork: the slot itself, already mapped (nullptr: none)
  ResultBell* bell = nullptr;  // fork: the pool's result bell, in the same mapping
};

/// A started worker.
struct Launched {
  pid_t pid = 0;
  posix::UniqueFd pidfd;
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  /// Starts a worker; throws SystemError naming the method if it cannot.
  virtual Launched launch(const LaunchRequest& r) = 0;
  /// Waits for a dead worker's exit status (at most `timeout_ms` where the status comes from
  /// elsewhere); `exited` is false if it could not be had.
  virtual posix::ExitStatus reap(pid_t pid, int timeout_ms) = 0;
};

/// fork: the worker is a copy of this process, running WorkerLoop at once.
class ForkLauncher final : public Launcher {
 public:
  Launched launch(const LaunchRequest& r) override {
    WorkerContext ctx;
    ctx.task_fd = r.fds.task;
    ctx.result_fd = r.fds.result;
    ctx.control_fd = r.fds.control;
    ctx.maxtasks = static_cast<std::size_t>(r.params.maxtasks);
    ctx.has_init = r.params.has_init != 0;
    ctx.slot = r.slot;
    ctx.bell = r.bell;
    // The child looks its tasks up in this copy, never through the loader's lock (which another
    // thread may hold at the fork; see posix::ModuleTable).
    const posix::ModuleTable modules = posix::ModuleTable::capture();
    ctx.modules = &modules;
    posix::ChildSpec spec;
    spec.body = &worker_main;
    spec.ctx = &ctx;
    spec.memory_limit = r.params.memory_limit;
    // Made now, by the thread that forks: the child resets them, and a first use on another
    // thread in the instant of the fork would leave the child waiting for ever on the guard of
    // their static (held by a thread the child does not have). Once made, they stay made.
    (void)SegmentTable::get();
    (void)SharedFrames::process();
    spec.in_child = [] {
      SegmentTable::reset_in_child();
      SharedFrames::reset_in_child();
    };
    // Its own channels are the only library descriptors it keeps.
    spec.keep[0] = r.fds.task;
    spec.keep[1] = r.fds.result;
    spec.keep[2] = r.fds.control;
    Launched l;
    posix::check(posix::fork_child(spec, l.pid, l.pidfd), "fork");
    return l;
  }
  posix::ExitStatus reap(pid_t pid, int) override { return posix::reap(pid, true); }
};

/// spawn: a fresh copy of this program, which procpool::init turns into a worker.
class SpawnLauncher final : public Launcher {
 public:
  Launched launch(const LaunchRequest& r) override {
    Launched l;
    posix::check(posix::spawn_worker(r.fds, r.params, l.pid, l.pidfd), "spawning a worker");
    return l;
  }
  posix::ExitStatus reap(pid_t pid, int) override { return posix::reap(pid, true); }
};

/// forkserver: the small server procpool::init started forks the worker; it reaps it too, and
/// reports its exit on a socket this launcher owns.
class ForkserverLauncher final : public Launcher {
 public:
  ForkserverLauncher() {
    posix::check(posix::make_seqpacket_pair(status_, status_child_), "socketpair");
  }
  Launched launch(const LaunchRequest& r) override {
    Launched l;
    posix::check(posix::forkserver_worker(r.fds, status_child_.get(), r.params, l.pid, l.pidfd),
                 "the fork server");
    return l;
  }
  posix::ExitStatus reap(pid_t pid, int timeout_ms) override {
    return posix::await_exit_report(status_.get(), pid, reports_, timeout_ms);
  }

 private:
  posix::UniqueFd status_, status_child_;  // exit reports of our workers
  std::unordered_map<pid_t, int> reports_;
};

/// Throws if workers cannot be started with `m` in this program (`what`: who asks).
inline void check_can_start(StartMethod m, const char* what) {
  auto& init = posix::InitState::get();
  if (posix::started_as_worker())
    throw Error(
        "this program was started as a procpool worker but did not call "
        "procpool::init(argc, argv) first thing in main");
  if (m != StartMethod::fork && !init.called)
    throw Error(
        std::string(m == StartMethod::spawn ? "StartMethod::spawn" : "StartMethod::forkserver") +
        " needs procpool::init(argc, argv) called first thing in main (" + what + ")");
  if (m == StartMethod::forkserver && !init.forkserver)
    throw Error("the fork server could not be started by procpool::init");
}

inline std::unique_ptr<Launcher> make_launcher(StartMethod m) {
  switch (m) {
    case StartMethod::spawn:
      return std::make_unique<SpawnLauncher>();
    case StartMethod::forkserver:
      return std::make_unique<ForkserverLauncher>();
    case StartMethod::fork:
      break;
  }
  return std::make_unique<ForkLauncher>();
}

}  // namespace procpool::detail::local
