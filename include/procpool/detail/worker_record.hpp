#pragma once
// The data the engine's parts pass between them: a Job (one frame of work and where its result
// goes), the pool's record of one worker (WorkerRecord) and what a worker reports about itself
// (LinkStatus). Owned by: Job by whoever holds it (SubmissionQueue, then a WorkerRecord);
// WorkerRecord by Workforce; filled by Scheduler, emptied by Workforce as results come.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/completion.hpp>
#include <procpool/detail/config.hpp>
#include <procpool/detail/invoke.hpp>
#include <procpool/detail/segment.hpp>

namespace procpool::detail {

/// One frame of work: a task, or a chunk of a map.
struct Job {
  std::uint64_t id = 0;
  Buffer frame;  // header + payload, ready to write
  std::shared_ptr<Completion> completion;
  std::uint32_t index = 0;  // which of the completion's jobs this is
  std::uint32_t count = 1;  // items
  std::int64_t timeout_ns = 0;
  std::vector<std::shared_ptr<Segment>> attachments;  // shared memory its arguments refer to
  // A large frame's copy in shared memory, and the small frame a local worker gets instead (see
  // local/shared_frame.hpp). `frame` stays whole for any other kind of worker.
  std::shared_ptr<Segment> shared_frame;
  Buffer indirect;
  TaskName task;  // for messages about it
  // The CPU its submitter ran on (-1: unknown). On a busy machine a worker last seen there is
  // woken without crossing cores (see Scheduler::assign).
  int cpu = -1;
  // Taken back from a worker stuck on a long job (see Scheduler::rebalance). When its answer
  // from that worker comes: if `cloned`, a copy went to the queue and the answer is dropped;
  // otherwise the answer decides (a result counts, "skipped" sends it elsewhere).
  bool revoked = false;
  bool cloned = false;
};

/// Why the pool killed a worker: it decides what its death means for the job it ran.
enum class KillReason { none, timeout, cancel, corrupt, terminate, start_timeout };

/// What a worker says it is doing, wherever it runs.
struct LinkStatus {
  std::uint64_t running_job = 0;   // id of the job it runs; 0 between jobs
  std::int64_t item_start_ns = 0;  // when its current item started (steady clock)
};

/// The pool's record of one worker (the child's side is WorkerLoop).
struct WorkerRecord {
  bool alive = false;
  bool hello = false;          // ran its initializer and is ready
  bool stopping = false;       // no more work: stop sent, or being killed
  std::uint32_t gen = 0;       // tells a replacement's events from its predecessor's
  std::deque<Job> inflight;    // sent or being sent, in order; the front one runs
  std::size_t unsent = 0;      // index in inflight of the first job not fully written
  std::size_t unsent_off = 0;  // bytes of that job already written
  std::size_t sent_jobs = 0;   // for maxtasksperchild
  KillReason kill = KillReason::none;
  std::int64_t kill_deadline = 0;  // hard kill after this (ns), if still alive; 0: none
  // Killed as hung if by then (ns) it has neither reached its initializer nor said hello; 0: none.
  std::int64_t start_deadline = 0;
  double avg_ns = config::initial_job_ns;  // running mean of its jobs' run time
  bool pooled = false;                     // a pool of workers elsewhere (WorkerLink::pooled)
  std::size_t capacity = 1;                // jobs it runs at once (see WorkerLink::capacity)
  int cpu = -1;  // the CPU it last said it ran on (a local worker's hello and results), or -1

  /// May be given more work.
  bool open() const noexcept { return alive && hello && !stopping; }
  /// Its front job has been written, so it may be running.
  bool front_sent() const noexcept { return !inflight.empty() && unsent > 0; }
  /// The id a result from this worker must carry next, 0 if none is due.
  std::uint64_t expected() const noexcept { return front_sent() ? inflight.front().id : 0; }
  /// True if a job with this id has been written to it.
  bool was_sent(std::uint64_t id) const noexcept {
    for (std::size_t i = 0; i < unsent && i < inflight.size(); ++i)
      if (inflight[i].id == id) return true;
    return false;
  }
  void note_run_time(std::uint32_t ns) noexcept {
    avg_ns =
        avg_ns * (1 - config::job_time_weight) + static_cast<double>(ns) * config::job_time_weight;
  }
};

}  // namespace procpool::detail
