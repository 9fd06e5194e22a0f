#pragma once
// The workforce: the pool's workers as a whole. It owns one WorkerRecord and one WorkerLink per
// slot, and everything about their lives: launching and replacing them, taking their answers
// (a result settles its Completion and is counted), burying the dead (reap, what their death
// means for the job they ran, requeue what they had not started), the restart-loop breaker
// (workers that die before they are ready stop the pool), and failing everything when the pool
// cannot go on. The supervisor calls it under its drive lock; it implements the WorkerProbe the
// scheduler works through, and is the FrameSink of every link.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <sys/types.h>

#include <procpool/detail/clock.hpp>
#include <procpool/detail/completion.hpp>
#include <procpool/detail/config.hpp>
#include <procpool/detail/posix/cpu.hpp>
#include <procpool/detail/posix/process.hpp>
#include <procpool/detail/posix/socket.hpp>
#include <procpool/detail/scheduler.hpp>
#include <procpool/detail/submission_queue.hpp>
#include <procpool/detail/transport.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/detail/worker_record.hpp>
#include <procpool/errors.hpp>

namespace procpool::detail {

class Workforce final : public FrameSink, public WorkerProbe {
 public:
  Workforce(std::size_t n, Transport& t, SubmissionQueue& q)
      : transport_(t), queue_(q), records_(n), links_(n), oom_kills_(posix::cgroup_oom_kills()) {}

  std::span<WorkerRecord> records() noexcept { return records_; }
  std::span<const WorkerRecord> records() const noexcept { return records_; }

  // ---- Lives ----------------------------------------------------------------------------------

  /// Starts every worker; throws if one cannot start.
  void launch_all() {
    for (std::size_t i = 0; i < records_.size(); ++i) launch(i);
  }

  /// Starts the worker of `slot` (throws SystemError if it cannot).
  void launch(std::size_t slot) {
    const std::uint32_t gen = ++gen_counter_;
    links_[slot] = transport_.launch(slot, gen);
    WorkerRecord& w = records_[slot];
    w = WorkerRecord{};
    w.alive = true;
    w.gen = gen;
    w.pooled = links_[slot]->pooled();
    w.capacity = links_[slot]->capacity();
    // A pool elsewhere says hello once its own workers have started: its link watches it.
    if (const std::int64_t limit = config::worker_start_limit_ns().load(); limit > 0 && !w.pooled)
      w.start_deadline = now_ns() + limit;
    queue_.add_pid(static_cast<pid_t>(links_[slot]->id()));
  }

  /// A worker has ended: bury it, then fail the job it died in (after its replacement has
  /// started, so whoever that wakes already sees the pool as it will be: stats, pids).
  void on_death(std::size_t slot) {
    if (!records_[slot].alive) return;
    std::deque<Job> failed;
    ErrorInfo why;
    bury(slot, failed, why);
    if (!failed.empty()) fail_jobs(failed, why);
  }

  void kill_worker(std::size_t slot, KillReason why) {
    WorkerRecord& w = records_[slot];
    if (!w.alive) return;
    if (w.kill == KillReason::none || why == KillReason::terminate) w.kill = why;
    w.stopping = true;
    // A task past its time limit gets a moment to clean up (SIGTERM), then the hard kill.
    links_[slot]->kill(why == KillReason::timeout);
    if (why == KillReason::timeout) w.kill_deadline = now_ns() + config::kill_grace_ns;
  }

  void kill_all(KillReason why) {
    for (std::size_t i = 0; i < records_.size(); ++i) kill_worker(i, why);
  }

  /// Waits for every live worker to end (they were killed).
  void reap_all_blocking() {
    for (std::size_t i = 0; i < records_.size(); ++i) {
      if (!records_[i].alive) continue;
      (void)transport_.reap(*links_[i]);
      records_[i].alive = false;
    }
    queue_.clear_pids();
  }

  /// No more work will come: every worker finishes what it has and exits.
  void stop_all() {
    for (std::size_t i = 0; i < records_.size(); ++i) {
      WorkerRecord& w = records_[i];
      if (w.alive && !w.stopping) {
        w.stopping = true;
        links_[i]->stop();
      }
    }
  }

  bool any_alive() const {
    return std::any_of(records_.begin(), records_.end(), [](auto& w) { return w.alive; });
  }
  bool all_idle() const {
    return std::all_of(records_.begin(), records_.end(),
                       [](auto& w) { return w.inflight.empty(); });
  }
  /// Whether some worker's frames wait for room in its channel.
  bool any_unsent() const {
    return std::any_of(records_.begin(), records_.end(),
                       [](auto& w) { return w.alive && w.unsent < w.inflight.size(); });
  }

  // ---- Traffic --------------------------------------------------------------------------------

  /// Writes what the worker of `slot` has not been sent yet.
  void flush(std::size_t slot) {
    if (records_[slot].alive) links_[slot]->flush(records_[slot]);
  }
  void flush_all() {
    for (std::size_t i = 0; i < records_.size(); ++i)
      if (records_[i].alive && records_[i].unsent < records_[i].inflight.size()) flush(i);
  }

  /// Takes every answer the worker of `slot` has sent; one that sent something malformed is
  /// killed (the job that message answered fails with it).
  void collect(std::size_t slot) {
    if (!records_[slot].alive) return;
    if (!links_[slot]->collect(slot, records_[slot], *this)) kill_worker(slot, KillReason::corrupt);
  }

  /// Collects from the workers that have answered since the last look; true if any had.
  bool poll() {
    bool any = false;
    for (std::size_t i = 0; i < records_.size(); ++i) {
      if (!records_[i].alive || !links_[i]->has_news()) continue;
      collect(i);
      any = true;
    }
    return any;
  }

  bool on_frame(std::size_t slot, const IncomingFrame& f) override {
    WorkerRecord& w = records_[slot];
    const FrameHeader& h = f.header;
    const auto payload = f.payload();
    switch (static_cast<FrameKind>(h.kind)) {
      case FrameKind::hello:
        if (w.hello) return false;  // only a starting worker says hello
        w.hello = true;
        w.start_deadline = 0;
        w.capacity = links_[slot]->capacity();  // a pool elsewhere says how many it has
        w.cpu = w.pooled ? -1 : static_cast<int>(h.cpu) - 1;
        start_failures_ = 0;
        return true;
      case FrameKind::init_error: {
        if (w.hello) return false;  // a running worker has no initializer to report on
        ErrorInfo e;
        bool ok = for_each_item(payload, h.count,
                                [&](const ItemView& it) { e = ErrorInfo::from_item(it); });
        if (!ok || h.count != 1) return false;
        if (e.kind == ErrorInfo::Kind::remote) e.message = "the initializer failed: " + e.message;
        init_failed(e);
        return true;
      }
      case FrameKind::result:
        break;
      case FrameKind::failed:
        return w.pooled && on_failed(slot, w, h.id, payload);
      default:
        return w.pooled && malformed_answer(slot, w, h.id);
    }
    std::size_t at = 0;
    if (w.pooled) {
      // Answers come in any order; one for a job no longer here (failed with the pool's
      // terminate, say) is dropped, unless it is malformed (its id may be too).
      std::uint64_t ok = 0, failed = 0;
      if (!find_sent(w, h.id, at)) return count_outcomes(payload, h.count, ok, failed);
    } else if (!w.front_sent() || w.inflight.front().id != h.id) {
      return false;
    }
    // One pass checks the frame and counts its outcomes (a chunk of a map has thousands).
    std::uint64_t ok_items = 0, failed_items = 0;
    if (!count_outcomes(payload, h.count, ok_items, failed_items) ||
        h.count != w.inflight[at].count)
      return w.pooled && malformed_answer(slot, w, h.id);
    Job job = take_sent(w, at);
    links_[slot]->answered(job.id);
    if (job.revoked) {
      bool skipped = false;
      for_each_item(payload, h.count,
                    [&](const ItemView& it) { skipped = it.status == ItemStatus::skipped; });
      if (job.cloned) return true;  // its copy runs elsewhere
      if (skipped) {                // the worker skipped it: now it goes elsewhere
        std::deque<Job> copy;
        copy.push_back(Scheduler::copy_of(job, queue_.next_id()));
        queue_.requeue_front(copy);
        return true;
      }
    }
    w.note_run_time(h.run_ns);
    if (!w.pooled) w.cpu = static_cast<int>(h.cpu) - 1;

    JobOutcome o;
    o.count = h.count;
    if (f.lent) {
      o.lent = f.lent;
      o.lent_size = f.bytes.size();
    } else {
      o.frame = f.take();
    }
    o.offset = sizeof(FrameHeader);
    job.completion->settle(job.index, std::move(o), job.count, [&] {
      queue_.count_completed(ok_items);
      queue_.count_failed(failed_items);
    });
    return true;
  }

  // ---- WorkerProbe (for the scheduler) ------------------------------------------------------

  LinkStatus status(std::size_t slot) const override {
    return links_[slot] ? links_[slot]->status() : LinkStatus{};
  }
  bool revoke(std::size_t slot, std::uint64_t job) override { return links_[slot]->revoke(job); }
  void kill(std::size_t slot, KillReason why) override { kill_worker(slot, why); }
  void kill_now(std::size_t slot) override { links_[slot]->kill(false); }
  void cancel_pooled(std::size_t slot, std::uint64_t job, bool kill_running) override {
    links_[slot]->cancel(job, kill_running);
  }

  // ---- Startup and failure --------------------------------------------------------------------

  bool all_ready() const {
    return std::all_of(records_.begin(), records_.end(), [](auto& w) { return w.hello; });
  }
  /// Every worker said hello once: from now on a failing initializer stops the pool.
  void mark_started() { all_hello_once_ = true; }
  const std::optional<ErrorInfo>& startup_error() const { return startup_error_; }
  bool terminated() const { return terminated_; }

  /// terminate(): every unfinished task fails with Cancelled, every worker is killed.
  void terminate() {
    terminated_ = true;
    ErrorInfo e;
    e.kind = ErrorInfo::Kind::cancelled;
    e.message = "the pool was terminated before the task finished";
    fail_everything(e);
    kill_all(KillReason::terminate);
  }

  /// The pool cannot go on: it refuses new work, and every task not finished fails with `e`.
  void fail_everything(const ErrorInfo& e) {
    std::deque<Job> jobs = queue_.break_and_take_all();
    for (std::size_t i = 0; i < records_.size(); ++i) {
      WorkerRecord& w = records_[i];
      for (auto& j : w.inflight) jobs.push_back(std::move(j));
      w.inflight.clear();
      w.unsent = w.unsent_off = 0;
      if (w.alive) kill_worker(i, KillReason::terminate);
    }
    fail_jobs(jobs, e);
  }

 private:
  void fail_jobs(std::deque<Job>& jobs, const ErrorInfo& e) {
    for (auto& j : jobs) {
      JobOutcome o;
      o.error = e;
      j.completion->settle(j.index, std::move(o), j.count, [&] { queue_.count_failed(j.count); });
    }
  }

  static bool find_sent(const WorkerRecord& w, std::uint64_t id, std::size_t& at) {
    for (at = 0; at < w.unsent && at < w.inflight.size(); ++at)
      if (w.inflight[at].id == id) return true;
    return false;
  }

  static Job take_sent(WorkerRecord& w, std::size_t at) {
    Job job = std::move(w.inflight[at]);
    w.inflight.erase(w.inflight.begin() + static_cast<std::ptrdiff_t>(at));
    --w.unsent;
    return job;
  }

  // A pooled link's job failed as a whole where it ran (its worker crashed, say).
  bool on_failed(std::size_t slot, WorkerRecord& w, std::uint64_t id,
                 std::span<const std::byte> payload) {
    ErrorInfo e;
    if (!ErrorInfo::from_report(payload, e)) return malformed_answer(slot, w, id);
    std::size_t at = 0;
    if (!find_sent(w, id, at)) return true;
    fail_sent(w, at, std::move(e));
    return true;
  }

  // A pooled link's answer that cannot be read, but names one of its jobs: that job fails with
  // a CodecError, and the link goes on (the pool there checked its own workers' frames). False
  // if it names none (its id may be what is damaged): the link is ended, see bury.
  bool malformed_answer(std::size_t slot, WorkerRecord& w, std::uint64_t id) {
    std::size_t at = 0;
    if (!find_sent(w, id, at)) return false;
    ErrorInfo e;
    e.kind = ErrorInfo::Kind::codec;
    e.message = "the answer to the task " + w.inflight[at].task.str() + " from rank " +
                std::to_string(links_[slot]->id()) + " was malformed";
    links_[slot]->answered(id);
    fail_sent(w, at, std::move(e));
    return true;
  }

  void fail_sent(WorkerRecord& w, std::size_t at, ErrorInfo e) {
    Job job = take_sent(w, at);
    JobOutcome o;
    o.error = std::move(e);
    job.completion->settle(job.index, std::move(o), job.count,
                           [&] { queue_.count_failed(job.count); });
  }

  bool started_reported() const { return !startup_error_ && all_hello_once_; }

  void init_failed(const ErrorInfo& e) {
    if (!started_reported()) {
      startup_error_ = e;
      return;
    }
    // A replacement's initializer failed: respawning would loop, so the pool stops here.
    fail_everything(e);
  }

  // Reaps a dead worker, requeues what it had not started, and starts a replacement.
  void bury(std::size_t slot, std::deque<Job>& failed, ErrorInfo& why) {
    WorkerRecord& w = records_[slot];
    collect(slot);  // results written before the death still count
    const LinkStatus last = links_[slot]->status();
    const auto pid = static_cast<pid_t>(links_[slot]->id());
    const ExitReport st = transport_.reap(*links_[slot]);
    w.alive = false;
    queue_.remove_pid(pid);
    const bool was_ready = w.hello;
    // The front job failed only if the worker had started it; a worker that died between jobs
    // (killed while idle, say) fails nothing, and its jobs go to other workers. A worker killed
    // for a malformed message fails the job that message answered.
    const bool front_started = w.front_sent() && (w.kill == KillReason::corrupt ||
                                                  last.running_job == w.inflight.front().id);
    if (w.pooled && w.kill == KillReason::corrupt) {
      // A pool elsewhere sent an answer whose job cannot be told (see malformed_answer): any of
      // the jobs it had may be the one, so each fails, and the pool there is started afresh.
      why.kind = ErrorInfo::Kind::codec;
      why.message = "rank " + std::to_string(pid) +
                    " sent a malformed answer that names none of its tasks; every task it had "
                    "failed, and its workers were replaced";
      for (auto& j : w.inflight) failed.push_back(std::move(j));
      w.inflight.clear();
    } else if (front_started) {
      why = death_error(w, st, pid);
      failed.push_back(std::move(w.inflight.front()));
      w.inflight.pop_front();
    }
    // Jobs sent but not started go back to the front of the queue, in order.
    std::deque<Job> back;
    for (auto& j : w.inflight) {
      if (j.cloned) continue;  // its copy is queued already
      if (j.frame.empty()) {
        // Its frame was handed over whole to a pooled link (see mpi::RemoteLink::flush): it
        // cannot be sent again, so it fails with the link.
        if (failed.empty()) why = death_error(w, st, pid);
        failed.push_back(std::move(j));
        continue;
      }
      j.revoked = false;
      back.push_back(std::move(j));
    }
    queue_.requeue_front(back);
    w.inflight.clear();
    w.unsent = w.unsent_off = 0;
    links_[slot].reset();

    if (queue_.terminating() || queue_.broken()) return;
    if (!started_reported() && startup_error_) return;
    if (!was_ready && !startup_error_) {
      // The restart-loop breaker: workers that die before they are ready would be replaced
      // forever.
      ++start_failures_;
      if (start_failures_ >= config::start_failure_limit || !started_reported()) {
        ErrorInfo e = death_error(w, st, pid);
        e.message = "workers keep dying before they are ready: " + e.message;
        if (!started_reported()) {
          startup_error_ = e;
        } else {
          fail_everything(e);
        }
        return;
      }
    }
    bool need = !queue_.closed() || !queue_.empty();
    for (auto& o : records_) need = need || !o.inflight.empty();
    if (!need) return;
    try {
      launch(slot);
      queue_.count_restart();
    } catch (const SystemError& e) {
      ErrorInfo info;
      info.kind = ErrorInfo::Kind::system;
      info.ec = e.code();
      info.message = "starting a replacement worker";
      if (!any_alive()) fail_everything(info);
    }
  }

  // Death attribution: what a worker's end means for the job it was running.
  ErrorInfo death_error(const WorkerRecord& w, const ExitReport& st, pid_t pid) {
    ErrorInfo e;
    if (w.pooled && w.kill == KillReason::none) {
      // A pool elsewhere that ended unasked (it could not go on): its id is its rank.
      e.kind = ErrorInfo::Kind::crashed;
      e.message = "the pool on rank " + std::to_string(pid) +
                  " ended before it answered (its workers there could not go on)";
      return e;
    }
    switch (w.kill) {
      case KillReason::timeout:
        e.kind = ErrorInfo::Kind::timeout;
        e.message =
            "the task " +
            (w.inflight.empty() ? std::string() : w.inflight.front().task.str() + " ") +
            "exceeded its time limit of " +
            std::to_string(w.inflight.empty() ? 0 : w.inflight.front().timeout_ns / 1'000'000) +
            " ms; worker " + std::to_string(pid) + " was killed and replaced";
        return e;
      case KillReason::start_timeout:
        e.kind = ErrorInfo::Kind::crashed;
        e.pid = pid;
        e.signal = st.signal;
        e.message = "worker " + std::to_string(pid) + " was not ready within " +
                    std::to_string(config::worker_start_limit_ns().load() / 1'000'000) +
                    " ms of its start (PROCPOOL_WORKER_START_TIMEOUT_MS), before any initializer "
                    "ran; it was killed";
        return e;
      case KillReason::cancel:
      case KillReason::terminate:
        e.kind = ErrorInfo::Kind::cancelled;
        e.message =
            w.kill == KillReason::cancel ? "the task was cancelled" : "the pool was terminated";
        return e;
      case KillReason::corrupt:
      case KillReason::none:
        break;
    }
    e.kind = ErrorInfo::Kind::crashed;
    e.pid = pid;
    e.signal = st.signal;
    e.code = st.code;
    std::string how = st.signal != 0 ? std::string("killed by SIG") + posix::signal_name(st.signal)
                                     : "exit code " + std::to_string(st.code);
    const std::string task =
        w.front_sent() ? "the task " + w.inflight.front().task.str() : std::string("the task");
    e.message = "worker " + std::to_string(pid) +
                (w.hello ? " died while running " + task + " (" : " died while starting (") + how +
                ")";
    if (w.kill == KillReason::corrupt)
      e.message = "worker " + std::to_string(pid) + " sent a malformed or oversized result for " +
                  task + " (" + how + "); it was replaced";
    if (st.signal == posix::sig_kill && w.kill == KillReason::none) {
      long long kills = posix::cgroup_oom_kills();
      if (kills > oom_kills_ && oom_kills_ >= 0) e.message += "; the kernel's OOM killer killed it";
      oom_kills_ = kills;
    }
    return e;
  }

  Transport& transport_;
  SubmissionQueue& queue_;
  std::vector<WorkerRecord> records_;
  std::vector<std::unique_ptr<WorkerLink>> links_;
  std::uint32_t gen_counter_ = 0;
  int start_failures_ = 0;  // workers in a row that died before they were ready
  bool all_hello_once_ = false;
  bool terminated_ = false;
  std::optional<ErrorInfo> startup_error_;
  long long oom_kills_ = -1;  // the cgroup's OOM kill count when last looked at
};

}  // namespace procpool::detail
