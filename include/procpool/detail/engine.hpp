#pragma once
// The seam between what a program instantiates (Pool, and ImapPump for an imap) and the pool's
// type-independent engine (supervisor, transport, launchers, worker loop, POSIX layer). Header-only
// (the default), the functions below are inline and engine_impl.hpp defines them here. With
// PROCPOOL_SEPARATE_COMPILATION they are only declared: src/procpool.cpp defines them once, and
// a file that uses a Pool neither compiles the engine nor, through pool.hpp, parses it.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <sys/types.h>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/separate.hpp>
#include <procpool/options.hpp>

namespace procpool::detail {

class Segment;
class Supervisor;
class PoolHandle;
struct Job;

PROCPOOL_SEPARATE_BEGIN

/// Checks `opts` (a `processes` of 0 becomes the CPU count), starts the workers and returns the
/// running engine; throws if they cannot start or `init_task` fails in one.
PROCPOOL_DECL std::shared_ptr<Supervisor> start_pool(
    Options& opts, Buffer init_task, std::vector<std::shared_ptr<Segment>> init_segments);
/// The same without an initializer.
PROCPOOL_DECL std::shared_ptr<Supervisor> start_pool(Options& opts);
// The queue's calls a Pool makes, so that its files need not parse the queue.
PROCPOOL_DECL std::uint64_t pool_next_id(Supervisor& s) noexcept;
PROCPOOL_DECL void pool_check_open(const Supervisor& s);
PROCPOOL_DECL void pool_close(Supervisor& s);
PROCPOOL_DECL void pool_terminate(Supervisor& s);
PROCPOOL_DECL Stats pool_stats(const Supervisor& s);
PROCPOOL_DECL std::vector<pid_t> pool_pids(const Supervisor& s);
/// SubmissionQueue::submit, out of line in the compiled mode (it is most of what a map adds).
PROCPOOL_DECL void pool_submit(Supervisor& s, std::vector<Job>& jobs, std::size_t items);
PROCPOOL_DECL void pool_submit(Supervisor& s, Job&& job);
PROCPOOL_DECL std::size_t pool_size(const Supervisor& s) noexcept;
/// Waits until every worker has exited (after close or terminate).
PROCPOOL_DECL void pool_join(Supervisor& s);
/// What a pool's destructor does: close, then wait for the workers to exit (unless called from a
/// result callback, where the pool's thread finishes on its own).
PROCPOOL_DECL void pool_close_and_join(Supervisor& s) noexcept;
/// Where large task frames are encoded: memory files the workers map (see local/shared_frame.hpp).
PROCPOOL_DECL BlockSource* task_frame_source() noexcept;
/// The engine as its completions see it.
PROCPOOL_DECL std::shared_ptr<PoolHandle> pool_handle(
    const std::shared_ptr<Supervisor>& s) noexcept;

PROCPOOL_SEPARATE_END

}  // namespace procpool::detail

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/engine_impl.hpp>
#endif
