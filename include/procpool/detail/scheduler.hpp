#pragma once
// The scheduler: which job goes to which worker, and when jobs are taken back from one. It is
// policy only: it owns no state beyond the pool's settings, and works on the WorkerRecords that
// Workforce owns and on what each worker reports (through a WorkerProbe). The supervisor calls
// it once per round, under its drive lock; tests call it with fake records and no processes.
//
//   window           how many jobs a worker may hold
//   assign           queued jobs to the least-loaded workers with room
//   rebalance        work stealing: jobs waiting behind a stuck job go elsewhere
//   revoke_cancelled jobs of a cancelled completion already in a worker's window
//   enforce_deadlines  hard time limits, from each task's real start
//   next_wakeup      when any of the above must look again

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include <procpool/detail/config.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/detail/worker_record.hpp>

namespace procpool::detail {

/// What the scheduler asks of the workers themselves (Workforce implements it over the links).
class WorkerProbe {
 public:
  virtual LinkStatus status(std::size_t slot) const = 0;
  /// Marks a job sent to the worker as not to be run: it skips it unless it has started it.
  /// False if the worker cannot be told (see WorkerLink::revoke): the job stays as it was.
  virtual bool revoke(std::size_t slot, std::uint64_t job) = 0;
  /// Kills the worker for `why` (a timeout is a gentle kill first; see kill_now).
  virtual void kill(std::size_t slot, KillReason why) = 0;
  /// The hard kill that follows a gentle one whose grace ran out.
  virtual void kill_now(std::size_t slot) = 0;
  /// A job of a pooled worker (WorkerLink::pooled) was cancelled: the pool there drops it, and
  /// kills the worker running it only if `kill_running`.
  virtual void cancel_pooled(std::size_t slot, std::uint64_t job, bool kill_running) {
    (void)kill_running;
    (void)revoke(slot, job);
  }

 protected:
  ~WorkerProbe() = default;
};

class Scheduler {
 public:
  explicit Scheduler(std::size_t maxtasksperchild) : maxtasks_(maxtasksperchild) {}

  /// How many jobs a worker may hold: one long job's worth of queued work when jobs are slow
  /// (none waits behind a long one while another worker idles), more when they are short (the
  /// pipes stay busy); never more than it may still run before it is recycled.
  std::size_t window(const WorkerRecord& w) const {
    auto n = static_cast<std::size_t>(config::window_budget_ns / std::max(w.avg_ns, 1.0));
    n = std::clamp(n, config::window_min, config::window_max);
    // A pool of workers behind one link recycles its own workers.
    if (w.pooled) return n * w.capacity;
    if (maxtasks_ != 0) n = std::min(n, maxtasks_ - std::min(maxtasks_, w.sent_jobs));
    return n;
  }

  /// Moves jobs from the front of `pending` into the windows of open workers, least loaded first.
  /// A job whose completion is already done (cancelled while queued) is dropped. Returns true if
  /// any job moved. `near`: of equally loaded workers, one last seen on the CPU the job's
  /// submitter ran on goes first. On a machine whose cores are busy (where waits sleep) a wake-up
  /// across cores often waits out a neighbour's time slice, and the submitter sleeps on its CPU
  /// while the task runs: measured beside two CPU burners, 85-95 µs per round trip with the
  /// worker on the other core, 10 µs with it on the submitter's. Where waits spin, the submitter
  /// keeps its core busy, so then the first worker is taken as before.
  bool assign(std::deque<Job>& pending, std::span<WorkerRecord> workers, bool near = false) const {
    bool moved = false;
    while (!pending.empty()) {
      WorkerRecord* best = nullptr;
      const int cpu = near ? pending.front().cpu : -1;
      for (auto& w : workers) {
        if (!w.open() || w.inflight.size() >= window(w)) continue;
        // Load per worker behind the link: a link to eight workers with eight jobs is as busy
        // as one worker with one.
        if (!best) {
          best = &w;
          continue;
        }
        const std::size_t mine = w.inflight.size() * best->capacity;
        const std::size_t theirs = best->inflight.size() * w.capacity;
        if (mine < theirs || (mine == theirs && cpu >= 0 && w.cpu == cpu && best->cpu != cpu))
          best = &w;
      }
      if (!best) break;
      Job job = std::move(pending.front());
      pending.pop_front();
      if (job.completion->done()) continue;
      best->inflight.push_back(std::move(job));
      ++best->sent_jobs;
      moved = true;
    }
    return moved;
  }

  /// True if some worker could take work now.
  static bool someone_idle(std::span<const WorkerRecord> workers) {
    for (auto& w : workers)
      if (w.open() && w.inflight.empty()) return true;
    return false;
  }

  /// Work stealing, for task lengths that vary wildly: when a worker's front job has run far
  /// longer than its jobs usually take and another worker idles, the jobs waiting behind it are
  /// taken back. Jobs not written yet simply go back; written ones are revoked (the worker skips
  /// them), and if the worker provably had not moved past the front job after the marks were
  /// made, copies under fresh ids (from `next_id()`) go back at once; otherwise its answers
  /// decide. What goes back is appended to `requeue`, in queue order, for the queue's front.
  template <class NextId>
  void rebalance(std::span<WorkerRecord> workers, WorkerProbe& probe, std::int64_t now,
                 NextId&& next_id, std::deque<Job>& requeue) const {
    if (!someone_idle(workers)) return;
    for (std::size_t i = 0; i < workers.size(); ++i) {
      WorkerRecord& w = workers[i];
      if (!stealable(w)) continue;
      const std::uint64_t front = w.inflight.front().id;
      LinkStatus s = probe.status(i);
      if (s.running_job != front || now - s.item_start_ns < stuck_after(w)) continue;
      std::deque<Job> back;
      const std::size_t first_unwritten = w.unsent + (w.unsent_off > 0 ? 1 : 0);
      while (w.inflight.size() > first_unwritten) {
        back.push_front(std::move(w.inflight.back()));
        w.inflight.pop_back();
        --w.sent_jobs;
      }
      std::vector<Job*> taken;
      for (std::size_t k = 1; k < w.inflight.size(); ++k) {
        Job& j = w.inflight[k];
        if (j.revoked || !probe.revoke(i, j.id)) continue;
        j.revoked = true;
        taken.push_back(&j);
      }
      if (!taken.empty() && probe.status(i).running_job == front) {
        // Still on the front job after the marks were made: it will skip every one of them.
        for (auto it = taken.rbegin(); it != taken.rend(); ++it) {
          (*it)->cloned = true;
          back.push_front(copy_of(**it, next_id()));
        }
      }
      for (auto it = back.rbegin(); it != back.rend(); ++it) requeue.push_front(std::move(*it));
    }
  }

  /// Jobs of the cancelled completion `c` already in a worker's window: those written to it
  /// are revoked, and a worker that has started one is killed, if `kill_started`; those not
  /// written yet are dropped (the completion has failed them already).
  void revoke_cancelled(const Completion* c, bool kill_started, std::span<WorkerRecord> workers,
                        WorkerProbe& probe) const {
    for (std::size_t i = 0; i < workers.size(); ++i) {
      WorkerRecord& w = workers[i];
      if (!w.alive) continue;
      const std::size_t first_unwritten = w.unsent + (w.unsent_off > 0 ? 1 : 0);
      for (std::size_t k = 0; k < w.inflight.size() && k < first_unwritten; ++k) {
        const Job& j = w.inflight[k];
        if (j.completion.get() != c) continue;
        if (w.pooled) {
          // Which job runs is known there, not here: the link passes the choice on.
          probe.cancel_pooled(i, j.id, kill_started);
          continue;
        }
        (void)probe.revoke(i, j.id);  // if it cannot be told, it runs it: the answer is dropped
        if (kill_started && probe.status(i).running_job == j.id) probe.kill(i, KillReason::cancel);
      }
      for (std::size_t k = w.inflight.size(); k-- > first_unwritten;) {
        if (w.inflight[k].completion.get() != c) continue;
        w.inflight.erase(w.inflight.begin() + static_cast<std::ptrdiff_t>(k));
        if (w.sent_jobs > 0) --w.sent_jobs;
      }
    }
  }

  /// Hard time limits, per task from its real start; and the hard kill after a gentle one.
  void enforce_deadlines(std::span<WorkerRecord> workers, WorkerProbe& probe,
                         std::int64_t now) const {
    for (std::size_t i = 0; i < workers.size(); ++i) {
      WorkerRecord& w = workers[i];
      if (!w.alive) continue;
      if (w.kill_deadline != 0 && now >= w.kill_deadline) {
        probe.kill_now(i);
        w.kill_deadline = 0;
      }
      if (w.start_deadline != 0) enforce_start(w, i, probe, now);
      if (w.kill != KillReason::none || !w.front_sent() || w.inflight.front().timeout_ns <= 0)
        continue;  // (the common case: asks the worker nothing)
      LinkStatus s = probe.status(i);
      auto d = deadline_of(w, s, now);
      // Killed only if it still runs that job: `s` may predate its finishing.
      if (d != 0 && now >= d && probe.status(i).running_job == w.inflight.front().id)
        probe.kill(i, KillReason::timeout);
    }
  }

  /// When one of the checks above must run again (steady-clock ns), or 0 if none must.
  std::int64_t next_wakeup(std::span<const WorkerRecord> workers, const WorkerProbe& probe,
                           std::int64_t now) const {
    std::int64_t next = 0;
    auto consider = [&](std::int64_t t) { next = next == 0 ? t : std::min(next, t); };
    const bool idle = someone_idle(workers);
    for (std::size_t i = 0; i < workers.size(); ++i) {
      const WorkerRecord& w = workers[i];
      if (!w.alive) continue;
      if (w.kill_deadline != 0) consider(w.kill_deadline);
      if (w.kill != KillReason::none) continue;
      if (w.start_deadline != 0) consider(w.start_deadline);
      LinkStatus s = probe.status(i);
      if (auto d = deadline_of(w, s, now); d != 0) consider(d);
      if (idle && stealable(w) && s.running_job == w.inflight.front().id) {
        bool open = false;
        for (std::size_t k = 1; k < w.inflight.size(); ++k) open = open || !w.inflight[k].revoked;
        if (open) consider(std::max(now, s.item_start_ns + stuck_after(w)));
      }
    }
    return next;
  }

  /// A new worker that has neither said hello nor begun its initializer by its start deadline
  /// is stuck in the start itself (a fork handler that waits for ever, say): killed, its death
  /// counts as a failed start.
  static void enforce_start(WorkerRecord& w, std::size_t i, WorkerProbe& probe, std::int64_t now) {
    if (w.hello || w.kill != KillReason::none || probe.status(i).running_job == initializer_job) {
      w.start_deadline = 0;
    } else if (now >= w.start_deadline) {
      w.start_deadline = 0;
      probe.kill(i, KillReason::start_timeout);
    }
  }

  /// When the front job's current item must end (ns), or 0 if it has no limit. A job the worker
  /// has not started yet gets its whole limit from now (and is looked at again).
  static std::int64_t deadline_of(const WorkerRecord& w, const LinkStatus& s, std::int64_t now) {
    if (!w.front_sent()) return 0;
    const Job& front = w.inflight.front();
    if (front.timeout_ns <= 0) return 0;
    if (s.running_job != front.id) return now + front.timeout_ns;
    return s.item_start_ns + front.timeout_ns;
  }

  /// How long the front job must have run before the jobs queued behind it are taken back.
  static std::int64_t stuck_after(const WorkerRecord& w) {
    return std::max(config::stuck_min_ns,
                    static_cast<std::int64_t>(config::stuck_factor * w.avg_ns));
  }

  /// A copy of a job under a fresh id (its frame names the id).
  static Job copy_of(const Job& job, std::uint64_t id) {
    Job copy;
    copy.id = id;
    copy.frame = frame_with_id(job.frame, id);
    copy.completion = job.completion;
    copy.index = job.index;
    copy.count = job.count;
    copy.timeout_ns = job.timeout_ns;
    copy.attachments = job.attachments;
    copy.task = job.task;
    return copy;
  }

 private:
  static bool stealable(const WorkerRecord& w) {
    return w.alive && w.kill == KillReason::none && w.inflight.size() >= 2 && w.unsent > 0;
  }

  std::size_t maxtasks_;
};

}  // namespace procpool::detail
