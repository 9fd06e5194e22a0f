#pragma once
// How a thread waiting for a result waits (the Supervisor's side of PoolHandle::help): for a
// moment it does the pool's work itself, so a result microseconds away reaches it without a
// wake-up; a longer or busier wait sleeps on the result bell, where the worker that brings the
// result wakes it. Included by supervisor.hpp, whose class declares these members.

#include <procpool/detail/supervisor.hpp>

namespace procpool::detail {

inline bool Supervisor::help(Predicate done, Clock::time_point until, BellWaiter* waiter) noexcept {
  const auto now = Clock::now();
  const Clock::duration budget =
      std::chrono::microseconds(spin_budget_us_.load(std::memory_order_relaxed));
  const auto end = until - now < budget ? until : now + budget;
  helped_last_wait = false;
  if (end <= now) return done();
  // One thread helps at a time; any other waiter sleeps at once (its result wakes it), as
  // does every waiter while the governor has spinning paused: spinners beyond the free cores
  // only take them from the workers.
  auto& governor = SpinGovernor::process();
  if (!governor.spinning() || !governor.may_spin(now_ns())) {
    if (done()) return true;
    // (Only while one thread waits at a time: with several, the bell's sleeper and the pool's
    // thread would take turns at collecting, and wake each other: measured 25-40% fewer
    // round trips with 8 threads.)
    if (waiter && !governor.crowded() && sleep_on_bell(done, until, *waiter)) return done();
    hand_back(false);  // this waiter sleeps at once: the pool's thread must drive
    return done();
  }
  int idle = 0;
  if (!helpers_.compare_exchange_strong(idle, 1, std::memory_order_acq_rel)) return done();
  helped_last_wait = true;
  const std::int64_t start = now_ns();
  SpinGovernor::Watch watch(governor, start);
  bool ok = false;
  do {
    drive();
    std::int64_t t = now_ns();
    // A long spin may be keeping the very worker it waits for off this core (see config). The
    // switches a yield makes are this thread's own: taken in, so the watch does not count
    // them as a neighbour taking the core.
    if (t - start > config::help_yield_after_ns) {
      std::this_thread::yield();
      (void)governor.preempted();
      t = now_ns();
    }
    watch.resync(t);
    for (int i = 0; i < 16 && !ok; ++i) {
      ok = done();
      cpu_relax();
    }
  } while (!ok && watch.step(now_ns()) && Clock::now() < end);
  ok = ok || done();
  stop_helping(!ok);
  // The spin ran out (a longer task): the rest of the wait is spent on the bell too, so the
  // result wakes this thread straight from the worker. Not for a batch of results (a map's):
  // the pool's thread, spinning, collects those faster (measured: `map` of 200k tasks at
  // chunksize 1, 2.6 against 1.2-1.8 M tasks/s on the bell).
  if (!ok && waiter && waiter->one_result() && !governor.crowded() && Clock::now() < until &&
      sleep_on_bell(done, until, *waiter))
    return true;
  return ok || done();
}

// A waiter that does not spin sleeps on the result bell, which the workers ring as they hand
// over a result, and collects what they wrote itself: its result then costs two wake-ups (the
// worker's, its own), not three (the pool's thread's in between). One thread sleeps there at a
// time; others sleep on their result's own condition variable. False if this thread cannot
// (no bell, another sleeps there, or it runs a result callback), and it waits the usual way.
//
// No result is missed. A worker publishes a result, then counts it on the bell if a waiter is
// marked there (waking it if it sleeps), and only then leaves the pool's thread asleep. The
// waiter marks itself, reads the bell, collects; a result published before that reading is in
// the rings it collects from, and one after it changed the count. Before it sleeps it says so
// on the bell and sleeps only if the count has not moved since its reading. A waiter that
// cannot collect (another thread drives, and may be past its last look) while results were
// counted since it last collected wakes the pool's thread; one that leaves with results counted
// since collects once more. Whoever else settles the waited-for result (the pool's thread: a
// crash, a time limit, a result by pipe) rings the bell through `waiter`.
inline bool Supervisor::sleep_on_bell(Predicate done, Clock::time_point until,
                                      BellWaiter& waiter) noexcept {
  ResultBell* bell = transport_->result_bell();
  if (!bell || driving_here()) return false;
  bool idle = false;
  if (!bell_taken_.compare_exchange_strong(idle, true, std::memory_order_acq_rel)) return false;
  bool ok = true;
  if (waiter.attach_bell(bell)) {
    const std::int64_t deadline =
        until == Clock::time_point::max()
            ? -1
            : std::chrono::duration_cast<std::chrono::nanoseconds>(until.time_since_epoch())
                  .count();
    bell_waits().fetch_add(1, std::memory_order_relaxed);
    std::uint32_t covered = bell->enter();  // the count when this thread last collected
    auto collect_counted = [&] {
      const std::uint32_t now = bell->word.load(std::memory_order_seq_cst);
      if (collect())
        covered = now;
      else if (ResultBell::rang_between(now, covered))
        notify_supervisor();
      return now;
    };
    for (;;) {
      const std::uint32_t looked = collect_counted();
      ok = done();
      if (ok || (deadline >= 0 && now_ns() >= deadline)) break;
      const std::uint32_t seen = bell->doze();
      if (!ResultBell::rang_between(seen, looked)) bell->wait(seen, deadline);
      bell->woke();
    }
    if (ResultBell::rang_between(bell->leave(), covered)) (void)collect_counted();
    (void)waiter.attach_bell(nullptr);
  }
  bell_taken_.store(false, std::memory_order_release);
  return ok;
}

// A round from a thread on the result bell: the results the workers left to it, and the work
// they make room for. False if another thread drives.
inline bool Supervisor::collect() noexcept {
  bool wake_pool = false;
  const Turn t = take_turn([&] {
    round();
    if (workforce_.poll()) {
      dispatch();
      last_activity_ = now_ns();
    }
    scheduler_.enforce_deadlines(workforce_.records(), workforce_, now_ns());
    if (!sleeping_.load(std::memory_order_seq_cst)) return;
    // The pool's thread sleeps. Its alarm was set before these jobs went out: it is woken if
    // one of them has a time limit (or may be taken back), so the alarm is set anew. And a
    // doorbell this thread read with a result is asked for again (or it is woken, if the
    // answer came meanwhile).
    wake_pool = next_wait().count() >= 0 || !transport_->rearm_sleep();
  });
  if (wake_pool || t == Turn::threw) notify_supervisor();
  return t != Turn::skipped;
}

}  // namespace procpool::detail
