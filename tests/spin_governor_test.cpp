// The spin governor's policy, on made-up clock readings: a spinner that loses its core pauses
// spinning for the whole process, longer while it keeps happening, shorter after spins that kept
// their core; the occasional audit of the thread's CPU time catches what the gap check misses.
// And whether to spin at all follows which way the measured waits were shorter; a real pool
// keeps every result while that decision flips back and forth.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <support/test_support.hpp>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <procpool/detail/spin_governor.hpp>

using procpool::detail::SpinGovernor;

namespace {

constexpr std::int64_t us = 1000;
constexpr std::int64_t ms = 1000 * us;

// The thread's CPU clock, as the tests set it.
std::int64_t fake_cpu = 0;
std::int64_t read_fake_cpu() noexcept {
  return fake_cpu;
}

// The thread's count of involuntary switches, as the tests set it; by default every look finds
// a new one (a busy machine).
long fake_switches = 0;
bool switches_advance = true;
long read_fake_switches() noexcept {
  if (switches_advance) ++fake_switches;
  return fake_switches;
}

// A governor whose audits read the fake clocks.
struct FakeGovernor : SpinGovernor {
  FakeGovernor() {
    cpu_clock = &read_fake_cpu;
    preemptions = &read_fake_switches;
    switches_advance = true;
    // This thread's last look is kept per thread, not per governor: a real pool's governor may
    // have looked before (when cases share a process), at the real, larger count.
    (void)preempted();
  }
};

}  // namespace

TEST_CASE("A spin that keeps its core keeps spinning allowed", "[spin]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  for (unsigned spin = 0; spin < 2 * SpinGovernor::audit_every; ++spin) {
    fake_cpu = 0;
    SpinGovernor::Watch w(g, t);
    for (int i = 0; i < 50; ++i) {
      t += 1 * us;
      fake_cpu += 1 * us;  // all of the wall time was this thread's
      REQUIRE(w.step(t));
    }
    w.finish(t);
  }
  CHECK(g.may_spin(t));
  CHECK(g.losses() == 0);
}

TEST_CASE("A spinner that loses its core pauses spinning, longer while it keeps happening",
          "[spin]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  {
    SpinGovernor::Watch w(g, t);
    CHECK(w.step(t + 1 * us));
    t += 1 * us + SpinGovernor::gap_ns + 1;
    CHECK_FALSE(w.step(t));           // a gap: the thread was descheduled
    CHECK_FALSE(w.step(t + 1 * us));  // and the spin stays stopped
  }
  CHECK(g.losses() == 1);
  CHECK_FALSE(g.may_spin(t));
  CHECK_FALSE(g.may_spin(t + SpinGovernor::min_pause_ns - 1));
  CHECK(g.may_spin(t + SpinGovernor::min_pause_ns));

  // A spin that starts while spinning is paused does not spin at all.
  SpinGovernor::Watch paused(g, t + 10 * us);
  CHECK_FALSE(paused.ok());
  CHECK_FALSE(paused.step(t + 11 * us));

  // Losses in a row double the pause, up to the longest.
  std::int64_t pause = SpinGovernor::min_pause_ns;
  for (int i = 0; i < 12; ++i) {
    t += SpinGovernor::max_pause_ns;
    g.lost_core(t);
    pause = std::min(2 * pause, SpinGovernor::max_pause_ns);
    CHECK_FALSE(g.may_spin(t + pause - 1));
    CHECK(g.may_spin(t + pause));
  }
  CHECK(pause == SpinGovernor::max_pause_ns);
}

TEST_CASE("Spins that keep their core shorten the next pause", "[spin]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  for (int i = 0; i < 8; ++i) g.lost_core(t);  // the longest pause
  t += SpinGovernor::max_pause_ns;
  for (int i = 0; i < 20; ++i) {
    fake_cpu = 0;
    SpinGovernor::Watch w(g, t);
    t += 10 * us;
    fake_cpu += 10 * us;
    REQUIRE(w.step(t));
    w.finish(t);
  }
  g.lost_core(t);
  CHECK(g.may_spin(t + SpinGovernor::min_pause_ns));
}

TEST_CASE("An audited spin that got little CPU time counts as a lost core", "[spin]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  // The first spin is audited: no gap between steps was seen (say, the thread was descheduled
  // inside work between resyncs), but its CPU time fell far behind the wall clock.
  fake_cpu = 0;
  SpinGovernor::Watch w(g, t);
  for (int i = 0; i < 10; ++i) {
    t += 10 * us;
    w.resync(t);
  }
  fake_cpu = 20 * us;  // 20 µs of 100
  w.finish(t);
  CHECK(g.losses() == 1);
  CHECK_FALSE(g.may_spin(t));
}

TEST_CASE("A gap without an involuntary switch is the host's pause, not a neighbour's", "[spin]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  (void)g.preempted();       // this thread's count is known from here on
  switches_advance = false;  // nobody else in this machine wants the core
  {
    SpinGovernor::Watch w(g, t);
    t += SpinGovernor::gap_ns + 5 * us;
    CHECK(w.step(t));  // a gap, but no switch: spin on
    t += 1 * us;
    CHECK(w.step(t));
  }
  CHECK(g.losses() == 0);
  CHECK(g.may_spin(t));

  switches_advance = true;  // now a neighbour took the core
  SpinGovernor::Watch w(g, t);
  t += SpinGovernor::gap_ns + 5 * us;
  CHECK_FALSE(w.step(t));
  CHECK(g.losses() == 1);
}

TEST_CASE("A waiter's own yields, taken in, do not count as a neighbour taking its core",
          "[spin]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  (void)g.preempted();
  switches_advance = false;
  SpinGovernor::Watch w(g, t);
  // The waiter yields (its switch count moves) and takes that in, as Supervisor::help does;
  // then a gap with no further switch is the host's pause: the spin goes on.
  fake_switches += 3;
  (void)g.preempted();
  t += 2 * us;
  w.resync(t);
  t += SpinGovernor::gap_ns + 5 * us;
  CHECK(w.step(t));
  CHECK(g.losses() == 0);
  // A yield not taken in would have been counted against the spin.
  fake_switches += 1;
  t += SpinGovernor::gap_ns + 5 * us;
  CHECK_FALSE(w.step(t));
  CHECK(g.losses() == 1);
  switches_advance = true;
}

namespace {

// `n` waits for results, each as long as the way the governor waits at the time makes it.
struct Waits {
  std::int64_t spinning;
  std::int64_t sleeping;
};
// `crowd` threads wait at once: the clock moves on by a share of each wait.
unsigned feed(SpinGovernor& g, std::int64_t& t, unsigned n, Waits w, std::int64_t crowd = 1) {
  unsigned spun = 0;
  for (unsigned i = 0; i < n; ++i) {
    const bool spin = g.spinning();
    spun += spin ? 1 : 0;
    t += (spin ? w.spinning : w.sleeping) / crowd;
    g.record_wait(spin ? w.spinning : w.sleeping, t);
  }
  return spun;
}

}  // namespace

TEST_CASE("Waits keep spinning while spinning measures shorter", "[spin][spin-policy]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  const unsigned n = 100 * SpinGovernor::epoch_waits;
  const unsigned spun = feed(g, t, n, {.spinning = 6 * us, .sleeping = 120 * us});
  CHECK(g.spinning());
  CHECK(g.switches() == 0);
  // Probes of sleeping end after the few waits that show it cannot win.
  CHECK(n - spun < 8 * 10);
}

TEST_CASE("Waits sleep once sleeping measures shorter (a busy machine)", "[spin][spin-policy]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  const auto gen = g.mode_generation();
  // The first probe comes once spinning was judged over its first epochs; it wins at once
  // (after its warm-up).
  feed(g, t,
       (SpinGovernor::min_probe_gap_epochs + 1) * SpinGovernor::epoch_waits +
           SpinGovernor::probe_warmup_waits,
       {.spinning = 1200 * us, .sleeping = 60 * us});
  CHECK_FALSE(g.spinning());
  CHECK(g.switches() == 1);
  CHECK(g.mode_generation() != gen);  // pools tell their workers

  // Settled: probes of spinning come ever more rarely and cost a wait or two each.
  const unsigned n = 2000 * SpinGovernor::epoch_waits;
  const unsigned spun = feed(g, t, n, {.spinning = 1200 * us, .sleeping = 60 * us});
  CHECK_FALSE(g.spinning());
  CHECK(g.switches() == 1);
  CHECK(spun < 2 * 20);
}

TEST_CASE("The way of waiting follows when the machine changes", "[spin][spin-policy]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  feed(g, t, 3000 * SpinGovernor::epoch_waits, {.spinning = 1200 * us, .sleeping = 60 * us});
  REQUIRE_FALSE(g.spinning());
  // The neighbours are gone: spinning is found to pay again within the longest probe gap.
  const std::int64_t quiet_from = t;
  while (g.switches() < 2 && t - quiet_from < 2 * SpinGovernor::max_probe_gap_ns)
    feed(g, t, 1, {.spinning = 6 * us, .sleeping = 60 * us});
  CHECK(g.switches() == 2);
  CHECK(t - quiet_from <= SpinGovernor::max_probe_gap_ns + SpinGovernor::epoch_waits * 60 * us);
  feed(g, t, 100 * SpinGovernor::epoch_waits, {.spinning = 6 * us, .sleeping = 60 * us});
  CHECK(g.spinning());
  CHECK(g.switches() == 2);
}

TEST_CASE("Waits from another number of waiting threads are judged anew, soon",
          "[spin][spin-policy]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  // Eight threads wait at once on two cores: sleeping wins, and probes grow rare.
  feed(g, t, 3000 * SpinGovernor::epoch_waits, {.spinning = 2400 * us, .sleeping = 240 * us}, 8);
  REQUIRE_FALSE(g.spinning());
  REQUIRE(g.switches() == 1);
  CHECK(g.crowd_changes() == 0);
  // One thread waits now, and spinning pays for it: found within a few epochs, not after the
  // longest probe gap (2 s, some 30,000 of these waits).
  unsigned waits = 0;
  while (g.switches() < 2 && waits < 1000 * SpinGovernor::epoch_waits) {
    feed(g, t, 1, {.spinning = 6 * us, .sleeping = 60 * us});
    ++waits;
  }
  CHECK(g.switches() == 2);
  CHECK(g.crowd_changes() >= 1);
  CHECK(waits <= (SpinGovernor::min_probe_gap_epochs + 2) * SpinGovernor::epoch_waits);
  // And back: the crowd returns, sleeping wins again as soon.
  waits = 0;
  while (g.switches() < 3 && waits < 1000 * SpinGovernor::epoch_waits) {
    feed(g, t, 1, {.spinning = 2400 * us, .sleeping = 240 * us}, 8);
    ++waits;
  }
  CHECK(g.switches() == 3);
  CHECK(g.crowd_changes() >= 2);
  CHECK(waits <= (SpinGovernor::min_probe_gap_epochs + 2) * SpinGovernor::epoch_waits);
}

TEST_CASE("A steady crowd of waiters is no change, with long waits or pauses too",
          "[spin][spin-policy]") {
  for (std::int64_t crowd : {1, 2, 8}) {
    for (std::int64_t wait : {60 * us, 50 * ms}) {  // a long wait counts whole here
      FakeGovernor g;
      std::int64_t t = 5 * ms;
      feed(g, t, 500 * SpinGovernor::epoch_waits, {.spinning = wait, .sleeping = wait}, crowd);
      CHECK(g.crowd_changes() == 0);
    }
  }
  // Eight threads that wait in bursts, idle in between: the idle time is no one waiting, not
  // one thread waiting.
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  for (int burst = 0; burst < 200; ++burst) {
    feed(g, t, 40, {.spinning = 60 * us, .sleeping = 60 * us}, 8);
    t += 50 * ms;
  }
  CHECK(g.crowd_changes() == 0);
}

TEST_CASE("A crowd near the middle keeps the side it came from", "[spin][spin-policy]") {
  for (std::int64_t from : {1, 8}) {
    FakeGovernor g;
    std::int64_t t = 5 * ms;
    feed(g, t, 10 * SpinGovernor::epoch_waits, {.spinning = 60 * us, .sleeping = 60 * us}, from);
    // Epochs of 1.3 and of 1.7 threads waiting at once, in turn: one mark at 1.5 would flip
    // the crowd at every epoch.
    for (unsigned e = 0; e < 100; ++e) {
      const std::int64_t step = e % 2 ? 60 * us * 10 / 13 : 60 * us * 10 / 17;
      for (unsigned i = 0; i < SpinGovernor::epoch_waits; ++i) {
        t += step;
        g.record_wait(60 * us, t);
      }
    }
    CHECK(g.crowd_changes() == 0);
  }
}

TEST_CASE("A probe's first waits, slow whichever way it tries, do not decide it",
          "[spin][spin-policy]") {
  // Measured on a Pool(2) after eight threads had waited at once: each switch costs its first
  // 4-6 waits 100-190 µs, then spinning takes 45 µs and sleeping 67 µs. Judged with its first
  // waits, spinning lost every probe.
  auto run = [](std::int64_t spinning, std::int64_t sleeping) {
    FakeGovernor g;
    std::int64_t t = 5 * ms;
    feed(g, t, 200 * SpinGovernor::epoch_waits, {.spinning = 2 * ms, .sleeping = 67 * us});
    REQUIRE_FALSE(g.spinning());
    const auto switched = g.switches();
    bool was = g.spinning();
    int since_switch = 0;
    for (unsigned i = 0; i < 100 * SpinGovernor::epoch_waits; ++i) {
      const bool spin = g.spinning();
      since_switch = spin == was ? since_switch + 1 : 0;
      was = spin;
      const std::int64_t w = since_switch < 6 ? 150 * us : spin ? spinning : sleeping;
      t += w;
      g.record_wait(w, t);
    }
    return std::pair{g.spinning(), g.switches() - switched};
  };
  // Spinning is faster once warm: it is kept.
  auto [spins, switches] = run(45 * us, 67 * us);
  CHECK(spins);
  CHECK(switches == 1);
  // Not faster: sleeping stays, and so do the probes' costs (a few waits each, rarely).
  std::tie(spins, switches) = run(80 * us, 67 * us);
  CHECK_FALSE(spins);
  CHECK(switches == 0);
}

TEST_CASE("Long waits teach nothing about how to wait", "[spin][spin-policy]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  // Tasks of 50 ms: spinning or not, every wait is (clipped to) the same.
  feed(g, t, 200 * SpinGovernor::epoch_waits, {.spinning = 50 * ms, .sleeping = 50 * ms});
  CHECK(g.switches() == 0);
  CHECK(g.spinning());
}

TEST_CASE("A spin's rare long waits count against it", "[spin][spin-policy]") {
  FakeGovernor g;
  std::int64_t t = 5 * ms;
  // Spinning: 4 µs, but one wait in 25 loses a time slice (2 ms): 84 µs on average, worse than
  // sleeping's steady 22 µs, though most epochs of 32 spinning waits look far better.
  unsigned spins = 0, slept = 0;
  for (unsigned i = 0; i < 4000 * SpinGovernor::epoch_waits; ++i) {
    std::int64_t w = 22 * us;
    if (g.spinning()) w = ++spins % 25 == 0 ? 2 * ms : 4 * us;
    slept += g.spinning() ? 0u : 1u;
    t += w;
    g.record_wait(w, t);
  }
  CHECK_FALSE(g.spinning());
  CHECK(slept > 4000 * SpinGovernor::epoch_waits * 9 / 10);
}

namespace {

int plus_one(int x) {
  return x + 1;
}

// Makes the process's governor settle on `spin` by reporting waits that favour it.
void steer(bool spin) {
  auto& g = SpinGovernor::process();
  for (int i = 0; i < 64 * static_cast<int>(SpinGovernor::epoch_waits) && g.spinning() != spin;
       ++i) {
    const bool favoured = g.spinning() == spin;
    g.record_wait(favoured ? 5 * us : 2 * ms, procpool::detail::now_ns());
  }
}

}  // namespace

// Workers poll or sleep as the pool's process decides, told through their slots: a switch in
// either direction while tasks are in flight loses no wake-up and no result.
TEST_CASE("the way of waiting switches while tasks run, and nothing is lost", "[spin][pool]") {
  procpool::Pool pool(procpool_test::workers(2));
  std::atomic<bool> stop{false};
  std::atomic<int> flips{0};
  std::thread steering([&] {
    bool spin = false;
    while (!stop.load()) {
      steer(spin);
      if (SpinGovernor::process().spinning() == spin) ++flips;
      spin = !spin;
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  });
  for (int i = 0; i < 3000; ++i) REQUIRE(pool.apply_async(plus_one, i).get() == i + 1);
  std::vector<int> in(20000);
  std::iota(in.begin(), in.end(), 0);
  const auto out = pool.map(plus_one, in, 7);
  stop = true;
  steering.join();
  REQUIRE(out.size() == in.size());
  CHECK(out.back() == 20000);
  CHECK(flips.load() > 10);
}
