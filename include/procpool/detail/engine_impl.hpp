#pragma once
// Definitions of the functions engine.hpp declares: inline in a header-only build, compiled
// once by src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <procpool/cpu.hpp>
#include <procpool/detail/engine.hpp>
#include <procpool/detail/local/transport.hpp>
#include <procpool/detail/posix/cpu.hpp>
#include <procpool/detail/supervisor.hpp>

namespace procpool::detail {

PROCPOOL_SEPARATE_BEGIN

PROCPOOL_DECL std::shared_ptr<Supervisor> start_pool(
    Options& opts, Buffer init_task, std::vector<std::shared_ptr<Segment>> init_segments) {
  local::check_can_start(opts.start, "Pool");
  if (opts.processes == 0) opts.processes = cpu_count();
  if (opts.processes > 4096)
    throw std::invalid_argument(prefixed("Options::processes " + std::to_string(opts.processes) +
                                         " is above the limit of 4096"));
  if (opts.task_timeout.count() < 0)
    throw std::invalid_argument(prefixed("Options::task_timeout is negative"));
  auto transport =
      std::make_unique<local::LocalTransport>(opts, init_task, std::move(init_segments));
  auto engine = std::make_shared<Supervisor>(opts, std::move(transport));
  engine->start();
  return engine;
}

PROCPOOL_DECL std::shared_ptr<Supervisor> start_pool(Options& opts) {
  return start_pool(opts, Buffer{}, {});
}

PROCPOOL_DECL std::uint64_t pool_next_id(Supervisor& s) noexcept {
  return s.queue().next_id();
}

PROCPOOL_DECL void pool_check_open(const Supervisor& s) {
  s.queue().check_open();
}

PROCPOOL_DECL void pool_close(Supervisor& s) {
  s.queue().close();
}

PROCPOOL_DECL void pool_terminate(Supervisor& s) {
  s.queue().terminate();
}

PROCPOOL_DECL Stats pool_stats(const Supervisor& s) {
  return s.queue().stats();
}

PROCPOOL_DECL std::vector<pid_t> pool_pids(const Supervisor& s) {
  return s.queue().pids();
}

PROCPOOL_DECL void pool_submit(Supervisor& s, std::vector<Job>& jobs, std::size_t items) {
  s.queue().submit(jobs, items);
}

PROCPOOL_DECL void pool_submit(Supervisor& s, Job&& job) {
  job.cpu = posix::current_cpu();
  s.queue().submit(std::move(job));
}

PROCPOOL_DECL std::size_t pool_size(const Supervisor& s) noexcept {
  return s.size();
}

PROCPOOL_DECL void pool_join(Supervisor& s) {
  s.join();
}

PROCPOOL_DECL void pool_close_and_join(Supervisor& s) noexcept {
  s.queue().close();
  try {
    s.join();
  } catch (...) {
    // join() from a result callback: the pool's thread finishes on its own.
  }
}

PROCPOOL_DECL BlockSource* task_frame_source() noexcept {
  return &local::SharedFrames::process();
}

PROCPOOL_DECL std::shared_ptr<PoolHandle> pool_handle(
    const std::shared_ptr<Supervisor>& s) noexcept {
  return s;
}

PROCPOOL_SEPARATE_END

}  // namespace procpool::detail
