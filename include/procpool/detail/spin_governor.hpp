#pragma once
// When spinning pays. A thread that waits for another process (a result, a task) may poll for a
// few microseconds instead of sleeping: when a core is free that saves a wake-up, which costs
// 30-300 µs on a shared machine. When the cores are busy it does the opposite: the spinning thread
// takes the CPU from the very process it waits for, and the scheduler then treats the pool's
// threads as CPU hogs, so every later wake-up waits behind a neighbour's time slice.
//
// The governor tells the two apart at run time, for the whole process (its spinners share the
// cores): a spinner that was descheduled, which happens only when other work wants its core,
// pauses all spinning for a while (1 ms, doubling while it keeps happening, up to 64 ms); a spin
// that kept its core shortens the next pause. A spin is suspected to be descheduled by a gap
// between two clock readings in a tight loop, and, for one spin in 16, by comparing the thread's
// CPU time with the wall clock over the whole spin (a system call, too dear for every wait). A
// suspicion counts only if the thread was switched out involuntarily since it last looked: on a
// virtual machine the host pauses a core now and then, which no neighbour of ours caused and
// which spinning less would not help. Watched spinners are the threads waiting for results
// (Supervisor::help) and the pool's thread (Supervisor's loop). Idle workers (WorkerLoop::fill)
// are not: they yield at every step, and a yield that lets another thread run counts as an
// involuntary switch too, so a worker's own watch cannot tell its pool's threads from a neighbour.
// Only the measured way below governs them. A waiter whose spin runs long yields as well (see
// config::help_yield_after_ns); it takes in the switches of each yield (preempted()) before its
// watch looks again, so only a switch between two yields counts against the spin.
//
// Those signals miss the costliest case: spins too short to be descheduled while they run, on a
// machine whose cores are busy, cost each round trip a neighbour's time slice later (measured:
// 1.2 ms instead of 60 µs sleeping, with two CPU burners beside a Pool(2)); and on some hosts a
// wake-up is cheap enough that sleeping wins even when the machine is quiet. So whether to spin
// at all is measured, not guessed: the process times its waits for results in epochs of
// `epoch_waits`, and now and then runs an epoch the other way (a probe). A probe that waited
// clearly less wins; one that did not makes the next probe twice as far away (at most
// `max_probe_gap_ns`), so a settled program pays for probing about 1% of its waits. When the
// number of threads waiting at once changes (see crowd_changed), that settling starts over.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>

#include <procpool/detail/clock.hpp>
#include <procpool/detail/posix/cpu.hpp>

namespace procpool::detail {

class SpinGovernor {
 public:
  /// A step of a spin loop takes well under a microsecond and a timer interrupt a few: a longer
  /// gap means the thread lost its core.
  static constexpr std::int64_t gap_ns = 20'000;
  /// The same for a loop whose every step makes system calls (the pool's thread between rounds).
  static constexpr std::int64_t round_gap_ns = 200'000;
  static constexpr std::int64_t min_pause_ns = 1'000'000;
  static constexpr std::int64_t max_pause_ns = 64'000'000;
  /// One spin in this many is audited with the thread's CPU time.
  static constexpr unsigned audit_every = 16;

  /// The thread's CPU clock and its count of involuntary switches (replaced by tests).
  std::int64_t (*cpu_clock)() noexcept = &posix::thread_cpu_ns;
  long (*preemptions)() noexcept = &posix::involuntary_switches;

  /// The process's governor.
  static SpinGovernor& process() noexcept {
    static constinit SpinGovernor g;  // no guard: a forked worker may read it
    return g;
  }

  /// Waits per epoch: a probe lasts one (or less), the way kept is judged over all its epochs.
  static constexpr unsigned epoch_waits = 32;
  /// Longer waits count as this long: a long task says nothing about how to wait for it.
  static constexpr std::int64_t wait_clip_ns = 2'000'000;
  /// Probes never stop: conditions change (a neighbour starts or ends).
  static constexpr std::int64_t max_probe_gap_ns = 2'000'000'000;
  static constexpr unsigned max_probe_gap_epochs = 1024;
  /// The way kept is judged over this many epochs at least before a probe challenges it: a
  /// spin's long waits are rare (a few in a hundred) but are most of its cost.
  static constexpr unsigned min_probe_gap_epochs = 4;
  /// A probe's first waits are slow whichever way it tries: the other side (the pool's thread,
  /// the workers) is still waiting the old way, and the scheduler still places the threads for
  /// it (measured: 4-6 waits of 100-190 µs before spinning's 45 µs or sleeping's 67 µs). They
  /// are judged apart: only if they alone cost most of an epoch of the way kept.
  static constexpr unsigned probe_warmup_waits = 8;

  /// False while spinning is paused: wait by sleeping.
  bool may_spin(std::int64_t now) const noexcept {
    return now >= resume_at_.load(std::memory_order_relaxed);
  }

  /// Whether the waits for this process's results spin at all (see record_wait): its waiting
  /// threads, its pools' threads and, told by their pools, its workers. A worker's own
  /// governor is not asked: it measures no waits.
  bool spinning() const noexcept {
    const int p = pinned_.load(std::memory_order_relaxed);
    return p < 0 ? spinning_.load(std::memory_order_relaxed) : p != 0;
  }
  /// For tests: whether waits spin, fixed (nothing is measured meanwhile); -1 lets measuring
  /// decide again.
  void pin_spinning(int spin) noexcept {
    pinned_.store(spin, std::memory_order_relaxed);
    mode_gen_.fetch_add(1, std::memory_order_release);
  }
  /// Changes each time spinning() does: a pool tells its workers then.
  std::uint32_t mode_generation() const noexcept {
    return mode_gen_.load(std::memory_order_acquire);
  }

  /// A thread waited `wait_ns` for a result (it found none ready when it began). Waits that
  /// race another thread's report are dropped: a sample less changes nothing.
  void record_wait(std::int64_t wait_ns, std::int64_t now) noexcept {
    if (pinned_.load(std::memory_order_relaxed) >= 0) return;
    std::unique_lock lock(policy_m_, std::try_to_lock);
    if (!lock.owns_lock()) return;
    if (last_probe_ == 0) last_probe_ = now;  // the time limit on probe gaps starts here
    const std::int64_t clipped = std::clamp<std::int64_t>(wait_ns, 0, wait_clip_ns);
    bool lost = false;
    if (warmup_left_ > 0) {
      --warmup_left_;
      warmup_ns_ += clipped;
      lost = cannot_win(warmup_ns_);
      if (!lost) return;
    } else {
      if (count_ == 0) crowd_sum_ = crowd_covered_ = 0;
      count_crowd(std::max<std::int64_t>(wait_ns, 0), now);
      sum_ns_ += clipped;
      ++count_;
      // A probe ends as soon as it cannot win any more: under load a spinning epoch costs
      // milliseconds a wait, and one or two such waits tell enough.
      lost = probing_ && cannot_win(sum_ns_);
      if (count_ < epoch_waits && !lost) return;
    }
    const std::int64_t sum = sum_ns_;
    const unsigned count = count_;
    sum_ns_ = 0;
    count_ = 0;
    if (probing_) {
      probing_ = false;
      warmup_left_ = 0;
      if (!lost) {  // the other way waited clearly less: keep it
        spin_best_ = !spin_best_;
        gap_epochs_ = min_probe_gap_epochs;  // and soon look back, in case it was luck
        switches_.fetch_add(1, std::memory_order_relaxed);
      } else {
        gap_epochs_ = std::min(2 * gap_epochs_, max_probe_gap_epochs);
        set_spinning(spin_best_);
      }
      left_epochs_ = gap_epochs_;
      last_probe_ = now;
      // The way now kept is judged anew from here; a probe that won is its first epoch.
      base_sum_ = lost ? 0 : sum;
      base_count_ = lost ? 0 : count;
      return;
    }
    if (crowd_changed()) {
      // Several threads wait at once where one did, or the other way round: what was measured
      // so far is about the old crowd, and the way kept may have been right only for it. Judge
      // anew from this epoch and look at the other way soon.
      base_sum_ = 0;
      base_count_ = 0;
      gap_epochs_ = min_probe_gap_epochs;
      left_epochs_ = std::min(left_epochs_, gap_epochs_);
      last_probe_ = now;
      crowd_changes_.fetch_add(1, std::memory_order_relaxed);
    }
    base_sum_ += sum;
    base_count_ += count;
    if (--left_epochs_ == 0 || now - last_probe_ >= max_probe_gap_ns) {
      probing_ = true;
      warmup_left_ = probe_warmup_waits;
      warmup_ns_ = 0;
      set_spinning(!spin_best_);
    }
  }

  /// Whether the last epoch's waits overlapped: several threads wait for results at once.
  bool crowded() const noexcept { return crowded_now_.load(std::memory_order_relaxed); }

  /// How often the waits were found to come from another number of waiting threads (for tests).
  std::uint64_t crowd_changes() const noexcept {
    return crowd_changes_.load(std::memory_order_relaxed);
  }

  /// How often the measured best way to wait changed (for tests and benchmarks).
  std::uint64_t switches() const noexcept { return switches_.load(std::memory_order_relaxed); }

  /// A spinner lost its core at `now`: pause all spinning, longer each time in a row.
  void lost_core(std::int64_t now) noexcept {
    std::int64_t p =
        std::clamp(2 * pause_.load(std::memory_order_relaxed), min_pause_ns, max_pause_ns);
    pause_.store(p, std::memory_order_relaxed);
    resume_at_.store(now + p, std::memory_order_relaxed);
    losses_.fetch_add(1, std::memory_order_relaxed);
  }

  /// A spin kept its core: the pause after the next loss starts shorter.
  void kept_core() noexcept {
    std::int64_t p = pause_.load(std::memory_order_relaxed);
    if (p > 0) pause_.store(p / 2, std::memory_order_relaxed);
  }

  /// True if this thread was switched out involuntarily since it last asked (or if that cannot
  /// be known; the first time: if it ever was).
  bool preempted() noexcept {
    thread_local long seen = -1;
    const long n = preemptions();
    if (n < 0) return true;
    const bool more = seen >= 0 ? n > seen : n > 0;
    seen = n;
    return more;
  }

  /// How often a spinner lost its core since the process started (for tests and benchmarks).
  std::uint64_t losses() const noexcept { return losses_.load(std::memory_order_relaxed); }

  /// Watches one spin. `ok()` is false when spinning is paused; `step(now)` is false once the
  /// spin lost its core (the governor is told). `~Watch` reports the outcome of a spin that ran.
  class Watch {
   public:
    Watch(SpinGovernor& g, std::int64_t now) noexcept
        : g_(g), start_(now), last_(now), ok_(g.may_spin(now)) {
      if (ok_ && g.spins_.fetch_add(1, std::memory_order_relaxed) % audit_every == 0)
        cpu_start_ = g.cpu_clock();
    }
    ~Watch() { finish(now_ns()); }
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

    bool ok() const noexcept { return ok_; }

    /// A step of the spin at `now` (from a tight loop: no waiting since the last step).
    bool step(std::int64_t now) noexcept {
      if (ok_ && now - last_ > gap_ns) lose(now);
      last_ = now;
      return ok_;
    }

    /// Restarts the gap check at `now`, after work that may take long by itself.
    void resync(std::int64_t now) noexcept { last_ = now; }

    /// Ends the watch early (the spin is over, the wait goes on otherwise).
    void finish(std::int64_t now) noexcept {
      if (!ok_ || done_) return;
      done_ = true;
      if (cpu_start_ >= 0) {
        const std::int64_t wall = now - start_;
        const std::int64_t cpu = g_.cpu_clock() - cpu_start_;
        if (wall - cpu > gap_ns && wall - cpu > wall / 4) {
          lose(now);
          if (!ok_) return;
        }
      }
      g_.kept_core();
    }

   private:
    void lose(std::int64_t now) noexcept {
      if (!g_.preempted()) {  // a pause of the machine, not a neighbour: spin on
        last_ = now;
        return;
      }
      g_.lost_core(now);
      ok_ = false;
    }

    SpinGovernor& g_;
    std::int64_t start_;
    std::int64_t last_;
    std::int64_t cpu_start_ = -1;
    bool ok_;
    bool done_ = false;
  };

 private:
  std::atomic<std::int64_t> resume_at_{0};
  std::atomic<std::int64_t> pause_{0};
  std::atomic<std::uint64_t> losses_{0};
  std::atomic<unsigned> spins_{0};

  // The mean wait of the way kept, over every epoch since the last probe: a spin's rare long
  // waits (a time slice lost now and then) weigh in, which one epoch of 32 often misses.
  std::int64_t base_mean() const noexcept {
    return base_count_ ? base_sum_ / static_cast<std::int64_t>(base_count_) : 0;
  }

  // Whether waits that took `spent` in all already cost most (4/5) of an epoch of the way kept.
  bool cannot_win(std::int64_t spent) const noexcept {
    return spent * 5 >= base_mean() * 4 * epoch_waits;
  }

  // How many threads wait at once, on average while any waits: the epoch's waits, whole (a long
  // one counts in full here), against the time at least one of them ran. Time when none waited
  // counts in neither, and so does a wait the epoch dropped (a race for the lock).
  void count_crowd(std::int64_t wait_ns, std::int64_t now) noexcept {
    const std::int64_t from = std::max(now - wait_ns, covered_until_);
    if (now > from) crowd_covered_ += now - from;
    covered_until_ = std::max(covered_until_, now);
    crowd_sum_ += wait_ns;
  }

  // Whether the epoch just ended came from another crowd than the epochs before it: one thread
  // waiting at a time (its waits never overlap) or several at once. Whether spinning pays
  // depends on how many threads want the cores. Between the two marks the crowd counts as
  // unchanged, so a mix near the middle does not flip it back and forth.
  bool crowd_changed() noexcept {
    const std::int64_t covered = std::max<std::int64_t>(crowd_covered_, 1);
    bool crowded = crowded_;
    if (crowd_sum_ * 4 > covered * 7)  // more than 1.75 at once
      crowded = true;
    else if (crowd_sum_ * 4 < covered * 5)  // fewer than 1.25
      crowded = false;
    const bool changed = crowd_known_ && crowded != crowded_;
    crowded_ = crowded;
    crowded_now_.store(crowded, std::memory_order_relaxed);
    crowd_known_ = true;
    return changed;
  }

  void set_spinning(bool on) noexcept {
    if (spinning_.exchange(on, std::memory_order_relaxed) != on)
      mode_gen_.fetch_add(1, std::memory_order_release);
  }

  std::atomic<bool> spinning_{true};
  std::atomic<int> pinned_{-1};
  std::atomic<bool> crowded_now_{false};  // crowded_, to read without the lock
  std::atomic<std::uint32_t> mode_gen_{0};
  std::atomic<std::uint64_t> switches_{0};
  std::atomic<std::uint64_t> crowd_changes_{0};
  std::mutex policy_m_;  // guards the epoch state below
  bool spin_best_ = true;
  bool probing_ = false;
  unsigned count_ = 0;
  std::int64_t sum_ns_ = 0;
  unsigned warmup_left_ = 0;  // a probe's first waits, judged apart
  std::int64_t warmup_ns_ = 0;
  std::int64_t base_sum_ = 0;
  std::uint64_t base_count_ = 0;
  std::int64_t last_probe_ = 0;
  unsigned gap_epochs_ = min_probe_gap_epochs;
  unsigned left_epochs_ = min_probe_gap_epochs;
  std::int64_t crowd_sum_ = 0;      // this epoch's waits, unclipped
  std::int64_t crowd_covered_ = 0;  // time in this epoch when at least one of them ran
  std::int64_t covered_until_ = 0;
  bool crowded_ = false;
  bool crowd_known_ = false;
};

}  // namespace procpool::detail
