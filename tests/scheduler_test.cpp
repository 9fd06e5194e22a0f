// The scheduler as plain policy: windows, least-loaded assignment, work stealing, cancels and
// deadlines over fake worker records and a fake probe. No process is started.
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <memory>
#include <utility>
#include <vector>

#include <procpool/detail/scheduler.hpp>

using procpool::detail::Completion;
using procpool::detail::Job;
using procpool::detail::KillReason;
using procpool::detail::LinkStatus;
using procpool::detail::Scheduler;
using procpool::detail::WorkerProbe;
using procpool::detail::WorkerRecord;

namespace {

constexpr std::int64_t ms = 1'000'000;

/// Workers that report what the test says, and remember what they were asked.
struct FakeProbe final : WorkerProbe {
  explicit FakeProbe(std::size_t n) : statuses(n) {}
  LinkStatus status(std::size_t slot) const override { return statuses.at(slot); }
  bool revoke(std::size_t slot, std::uint64_t job) override {
    if (revoked.size() >= revoke_capacity) return false;
    revoked.push_back({slot, job});
    return true;
  }
  void kill(std::size_t slot, KillReason why) override { kills.push_back({slot, why}); }
  void kill_now(std::size_t slot) override { hard_kills.push_back(slot); }
  void cancel_pooled(std::size_t slot, std::uint64_t job, bool kill_running) override {
    pooled_cancels.push_back({slot, job, kill_running});
  }

  struct PooledCancel {
    std::size_t slot;
    std::uint64_t job;
    bool kill_running;
  };
  std::vector<LinkStatus> statuses;
  std::vector<PooledCancel> pooled_cancels;
  std::size_t revoke_capacity = SIZE_MAX;  // how many revocations the workers can hold
  std::vector<std::pair<std::size_t, std::uint64_t>> revoked;
  std::vector<std::pair<std::size_t, KillReason>> kills;
  std::vector<std::size_t> hard_kills;
};

Job job(std::uint64_t id, std::shared_ptr<Completion> c = std::make_shared<Completion>(1)) {
  Job j;
  j.id = id;
  j.completion = std::move(c);
  // A frame header, so that a copy can carry another id.
  procpool::detail::finish_frame(
      j.frame, procpool::detail::begin_frame(j.frame, procpool::detail::FrameKind::task, id), 1);
  return j;
}

std::vector<WorkerRecord> ready_workers(std::size_t n) {
  std::vector<WorkerRecord> w(n);
  for (auto& r : w) r.alive = r.hello = true;
  return w;
}

// Puts `ids` in the worker's window, all written to it.
void give(WorkerRecord& w, std::initializer_list<std::uint64_t> ids) {
  for (auto id : ids) w.inflight.push_back(job(id));
  w.unsent = w.inflight.size();
}

}  // namespace

TEST_CASE("scheduler: the window follows the run time and maxtasksperchild", "[scheduler]") {
  Scheduler s(0);
  WorkerRecord w;
  w.avg_ns = 10 * ms;  // slow jobs: the smallest window
  CHECK(s.window(w) == 2);
  w.avg_ns = 1'000;  // 1 us jobs: the largest
  CHECK(s.window(w) == 64);
  w.avg_ns = 0.1 * ms;
  CHECK(s.window(w) == 10);

  Scheduler recycled(5);
  w.avg_ns = 1'000;
  w.sent_jobs = 3;
  CHECK(recycled.window(w) == 2);  // only two more before it is replaced
  w.sent_jobs = 5;
  CHECK(recycled.window(w) == 0);
}

TEST_CASE("scheduler: assign fills the least-loaded open workers, in queue order", "[scheduler]") {
  Scheduler s(0);
  auto workers = ready_workers(3);
  for (auto& w : workers) w.avg_ns = 10 * ms;  // windows of 2
  workers[1].hello = false;                    // not ready yet
  give(workers[2], {100});
  std::deque<Job> pending;
  for (std::uint64_t id = 1; id <= 5; ++id) pending.push_back(job(id));

  CHECK(s.assign(pending, workers));
  REQUIRE(workers[0].inflight.size() == 2);
  CHECK(workers[0].inflight[0].id == 1);
  CHECK(workers[0].inflight[1].id == 2);  // a tie goes to the first
  CHECK(workers[1].inflight.empty());
  REQUIRE(workers[2].inflight.size() == 2);
  CHECK(workers[2].inflight[1].id == 3);
  CHECK(pending.size() == 2);  // no room left
  CHECK(pending.front().id == 4);
  CHECK_FALSE(s.assign(pending, workers));
}

TEST_CASE("scheduler: of equally loaded workers, near prefers one on the submitter's CPU",
          "[scheduler]") {
  Scheduler s(0);
  auto workers = ready_workers(3);
  workers[0].cpu = 0;
  workers[1].cpu = 3;
  workers[2].cpu = 3;
  auto one = [&](int cpu, bool near) {
    for (auto& w : workers) w.inflight.clear();
    std::deque<Job> pending;
    pending.push_back(job(1));
    pending.back().cpu = cpu;
    REQUIRE(s.assign(pending, workers, near));
    for (std::size_t i = 0; i < workers.size(); ++i)
      if (!workers[i].inflight.empty()) return i;
    return workers.size();
  };
  CHECK(one(3, true) == 1);   // the first of those on CPU 3
  CHECK(one(3, false) == 0);  // where waits spin: the first, as ever
  CHECK(one(5, true) == 0);   // nobody there
  CHECK(one(-1, true) == 0);  // not known
  // Load comes first: a busier worker on the submitter's CPU is passed over.
  for (auto& w : workers) w.inflight.clear();
  give(workers[1], {100});
  give(workers[2], {101});
  std::deque<Job> pending;
  pending.push_back(job(1));
  pending.back().cpu = 3;
  CHECK(s.assign(pending, workers, true));
  CHECK(workers[0].inflight.size() == 1);
}

TEST_CASE("scheduler: assign drops jobs whose completion was cancelled", "[scheduler]") {
  Scheduler s(0);
  auto workers = ready_workers(1);
  auto cancelled = std::make_shared<Completion>(1);
  procpool::detail::ErrorInfo e;
  CHECK(cancelled->fail_all(e, [](std::uint64_t) {}));
  std::deque<Job> pending;
  pending.push_back(job(1, cancelled));
  pending.push_back(job(2));
  CHECK(s.assign(pending, workers));
  REQUIRE(workers[0].inflight.size() == 1);
  CHECK(workers[0].inflight[0].id == 2);
  CHECK(pending.empty());
}

TEST_CASE("scheduler: a stuck worker's waiting jobs are stolen for an idle one", "[scheduler]") {
  Scheduler s(0);
  auto workers = ready_workers(2);
  give(workers[0], {1, 2, 3});
  workers[0].inflight.push_back(job(4));  // queued, not written yet
  FakeProbe probe(2);
  const std::int64_t now = 1000 * ms;
  probe.statuses[0] = {1, now - 100 * ms};  // job 1 has run for 100 ms; jobs take 1 ms

  std::uint64_t next = 50;
  std::deque<Job> back;
  s.rebalance(
      workers, probe, now, [&] { return next++; }, back);
  // Jobs 2 and 3 were written: the worker is told to skip them, and (it is still on job 1)
  // copies under fresh ids go back; job 4 simply goes back.
  REQUIRE(probe.revoked.size() == 2);
  CHECK(probe.revoked[0].second == 2);
  CHECK(probe.revoked[1].second == 3);
  REQUIRE(back.size() == 3);
  CHECK(back[0].id == 51);  // job 2's copy (copies are made last to first)
  CHECK(back[1].id == 50);  // job 3's
  CHECK(back[2].id == 4);
  REQUIRE(workers[0].inflight.size() == 3);
  CHECK(workers[0].inflight[1].revoked);
  CHECK(workers[0].inflight[1].cloned);

  // Nothing is taken twice.
  back.clear();
  s.rebalance(
      workers, probe, now + 10 * ms, [&] { return next++; }, back);
  CHECK(back.empty());
}

// A worker holds a bounded set of revoked jobs. A job it cannot be told to skip must neither be
// marked revoked nor copied: the worker will run it, and a copy would run it twice.
TEST_CASE("scheduler: a job the worker cannot be told to skip is not stolen", "[scheduler]") {
  Scheduler s(0);
  auto workers = ready_workers(2);
  give(workers[0], {1, 2, 3});
  FakeProbe probe(2);
  probe.revoke_capacity = 1;  // room for one more revocation only
  const std::int64_t now = 1000 * ms;
  probe.statuses[0] = {1, now - 100 * ms};

  std::uint64_t next = 50;
  std::deque<Job> back;
  s.rebalance(
      workers, probe, now, [&] { return next++; }, back);
  REQUIRE(probe.revoked.size() == 1);
  CHECK(probe.revoked[0].second == 2);
  REQUIRE(back.size() == 1);  // job 2's copy only
  CHECK(back[0].id == 50);
  CHECK(workers[0].inflight[1].revoked);
  CHECK_FALSE(workers[0].inflight[2].revoked);  // job 3 stays, and runs there
  CHECK_FALSE(workers[0].inflight[2].cloned);
}

TEST_CASE("scheduler: nothing is stolen while every worker is busy or the job is young",
          "[scheduler]") {
  Scheduler s(0);
  auto workers = ready_workers(2);
  give(workers[0], {1, 2});
  give(workers[1], {3});
  FakeProbe probe(2);
  const std::int64_t now = 1000 * ms;
  probe.statuses[0] = {1, now - 100 * ms};
  std::deque<Job> back;
  s.rebalance(
      workers, probe, now, [] { return std::uint64_t{99}; }, back);
  CHECK(back.empty());  // worker 1 is busy

  workers[1].inflight.clear();
  workers[1].unsent = 0;
  probe.statuses[0] = {1, now - 1 * ms};  // not stuck yet (2 ms at least)
  s.rebalance(
      workers, probe, now, [] { return std::uint64_t{99}; }, back);
  CHECK(back.empty());
  // It becomes stuck at 4 × the assumed 1 ms run time.
  CHECK(s.next_wakeup(workers, probe, now) == now + 3 * ms);
}

TEST_CASE("scheduler: a cancel revokes windowed jobs and kills only a started one", "[scheduler]") {
  Scheduler s(0);
  auto workers = ready_workers(2);
  auto c = std::make_shared<Completion>(2);
  workers[0].inflight.push_back(job(1, c));
  workers[0].unsent = 1;
  workers[1].inflight.push_back(job(2));
  workers[1].inflight.push_back(job(3, c));
  workers[1].unsent = 2;
  FakeProbe probe(2);
  probe.statuses[0] = {1, 0};  // running c's job
  probe.statuses[1] = {2, 0};  // running another job

  s.revoke_cancelled(c.get(), true, workers, probe);
  CHECK(probe.revoked.size() == 2);
  REQUIRE(probe.kills.size() == 1);
  CHECK(probe.kills[0] == std::pair<std::size_t, KillReason>{0, KillReason::cancel});
}

TEST_CASE("scheduler: a cancel drops the cancelled jobs not written to the worker yet",
          "[scheduler]") {
  Scheduler s(0);
  auto workers = ready_workers(1);
  auto c = std::make_shared<Completion>(3);
  workers[0].inflight.push_back(job(1));
  workers[0].inflight.push_back(job(2, c));
  workers[0].inflight.push_back(job(3));
  workers[0].inflight.push_back(job(4, c));  // not written
  workers[0].inflight.push_back(job(5, c));  // not written
  workers[0].unsent = 3;
  workers[0].sent_jobs = 5;
  FakeProbe probe(1);
  probe.statuses[0] = {1, 0};

  s.revoke_cancelled(c.get(), true, workers, probe);
  REQUIRE(probe.revoked.size() == 1);  // job 2, written: the worker is told to skip it
  CHECK(probe.revoked[0].second == 2);
  CHECK(probe.kills.empty());
  REQUIRE(workers[0].inflight.size() == 3);  // jobs 4 and 5 never reach the worker
  CHECK(workers[0].inflight[2].id == 3);
  CHECK(workers[0].unsent == 3);
  CHECK(workers[0].sent_jobs == 3);
}

TEST_CASE("scheduler: a cancel passes on to a pooled worker whether to kill a running job",
          "[scheduler]") {
  Scheduler s(0);
  auto workers = ready_workers(1);
  workers[0].pooled = true;  // another rank's pool: which job runs is known there
  auto c = std::make_shared<Completion>(2);
  workers[0].inflight.push_back(job(1, c));
  workers[0].inflight.push_back(job(2));
  workers[0].inflight.push_back(job(3, c));
  workers[0].unsent = 3;
  FakeProbe probe(1);
  for (bool kill : {false, true}) {
    probe.pooled_cancels.clear();
    s.revoke_cancelled(c.get(), kill, workers, probe);
    REQUIRE(probe.pooled_cancels.size() == 2);
    CHECK(probe.pooled_cancels[0].job == 1);
    CHECK(probe.pooled_cancels[1].job == 3);
    for (auto& pc : probe.pooled_cancels) CHECK(pc.kill_running == kill);
    CHECK(probe.revoked.empty());
    CHECK(probe.kills.empty());
  }
}

TEST_CASE("scheduler: deadlines count from the task's real start", "[scheduler]") {
  Scheduler s(0);
  auto workers = ready_workers(1);
  give(workers[0], {7});
  workers[0].inflight[0].timeout_ns = 50 * ms;
  FakeProbe probe(1);
  const std::int64_t now = 1000 * ms;

  probe.statuses[0] = {0, 0};  // sent, not started: the whole limit from now
  CHECK(Scheduler::deadline_of(workers[0], probe.status(0), now) == now + 50 * ms);
  probe.statuses[0] = {7, now - 20 * ms};
  CHECK(s.next_wakeup(workers, probe, now) == now + 30 * ms);
  s.enforce_deadlines(workers, probe, now);
  CHECK(probe.kills.empty());
  s.enforce_deadlines(workers, probe, now + 30 * ms);
  REQUIRE(probe.kills.size() == 1);
  CHECK(probe.kills[0].second == KillReason::timeout);

  // After a gentle kill, the hard one follows its grace period.
  workers[0].kill = KillReason::timeout;
  workers[0].kill_deadline = now + 40 * ms;
  CHECK(s.next_wakeup(workers, probe, now) == now + 40 * ms);
  s.enforce_deadlines(workers, probe, now + 40 * ms);
  CHECK(probe.hard_kills == std::vector<std::size_t>{0});
  CHECK(workers[0].kill_deadline == 0);
}

TEST_CASE("scheduler: a worker stuck before its initializer is killed at its start deadline",
          "[scheduler]") {
  Scheduler s(0);
  std::vector<WorkerRecord> workers(3);
  for (auto& w : workers) {
    w.alive = true;
    w.start_deadline = 100 * ms;
  }
  FakeProbe probe(3);
  // 0 is still in procpool's part of its start; 1 runs its initializer; 2 said hello.
  probe.statuses[1] = {procpool::detail::initializer_job, 50 * ms};
  workers[2].hello = true;

  CHECK(s.next_wakeup(workers, probe, 10 * ms) == 100 * ms);
  s.enforce_deadlines(workers, probe, 10 * ms);
  CHECK(probe.kills.empty());
  CHECK(workers[0].start_deadline == 100 * ms);
  // The program's own initializer is not timed; a worker that said hello is started.
  CHECK(workers[1].start_deadline == 0);
  CHECK(workers[2].start_deadline == 0);

  s.enforce_deadlines(workers, probe, 100 * ms);
  REQUIRE(probe.kills.size() == 1);
  CHECK(probe.kills[0] == std::pair<std::size_t, KillReason>{0, KillReason::start_timeout});
  CHECK(workers[0].start_deadline == 0);  // killed once
  CHECK(s.next_wakeup(workers, probe, 100 * ms) == 0);
}

TEST_CASE("scheduler: a job copy carries its new id in its frame", "[scheduler]") {
  Job j = job(5);
  j.timeout_ns = 3;
  Job c = Scheduler::copy_of(j, 9);
  procpool::detail::FrameHeader h;
  std::memcpy(&h, c.frame.data(), sizeof h);
  CHECK(h.id == 9);
  CHECK(c.id == 9);
  CHECK(c.timeout_ns == 3);
  CHECK(c.completion == j.completion);
}
