#pragma once
// The result bell: where a thread waiting for a result sleeps while the machine is too busy for
// spinning (see Supervisor::sleep_on_bell). It lives in memory the pool shares with its workers,
// so a worker that hands over a result wakes the waiter itself: two wake-ups per round trip (the
// worker's, the waiter's) instead of three (the worker's, the pool's thread's, the waiter's), and
// on a busy machine each wake-up may wait behind a neighbour's time slice.

#include <atomic>
#include <climits>
#include <cstdint>

#include <procpool/detail/posix/sync.hpp>

namespace procpool::detail {

struct alignas(64) ResultBell {
  // The futex word. Bit 0: a waiter collects the workers' results (they leave the pool's thread
  // asleep); bit 1: that waiter sleeps, and the next result must wake it. The other bits count
  // results published while a waiter collected, and other rings: every one changes the word.
  std::atomic<std::uint32_t> word{0};
  static constexpr std::uint32_t marked = 1;
  static constexpr std::uint32_t asleep = 2;
  static constexpr std::uint32_t one_ring = 4;

  /// Whether results were published (or the bell rung) between two readings of the word.
  static bool rang_between(std::uint32_t a, std::uint32_t b) noexcept {
    return (a | marked | asleep) != (b | marked | asleep);
  }

  /// Wakes the waiter, whatever it is doing (its result was settled elsewhere).
  void ring() noexcept {
    word.fetch_add(one_ring, std::memory_order_seq_cst);
    posix::futex_wake(&word, INT_MAX);
  }

  /// For a worker that has just published a result: true if a waiter collects here (the worker
  /// leaves the pool's thread asleep); it is woken if it sleeps, by the first result only. The
  /// count and the test are one atomic step, so a waiter that looks again or leaves knows
  /// whether a result came since it last collected.
  bool ring_for_result() noexcept {
    if ((word.load(std::memory_order_seq_cst) & marked) == 0) return false;
    const std::uint32_t old = word.fetch_add(one_ring, std::memory_order_seq_cst);
    if ((old & marked) == 0) return false;  // it left meanwhile: announce it the usual way
    if ((old & asleep) != 0 && (word.fetch_and(~asleep, std::memory_order_seq_cst) & asleep) != 0)
      posix::futex_wake(&word, INT_MAX);
    return true;
  }

  /// A waiter comes (one at a time); returns the word as it left it.
  std::uint32_t enter() noexcept {
    return word.fetch_or(marked, std::memory_order_seq_cst) | marked;
  }
  /// The waiter is about to sleep; returns the word to sleep on.
  std::uint32_t doze() noexcept {
    return word.fetch_or(asleep, std::memory_order_seq_cst) | asleep;
  }
  /// The waiter is awake again (if a worker has not said so already).
  void woke() noexcept { word.fetch_and(~asleep, std::memory_order_seq_cst); }
  /// The waiter goes; returns the word as it found it.
  std::uint32_t leave() noexcept {
    return word.fetch_and(~(marked | asleep), std::memory_order_seq_cst);
  }

  /// Sleeps while the word is still `seen`, until rung or `deadline_ns` (steady clock; < 0:
  /// none). May return early: the caller looks again.
  void wait(std::uint32_t seen, std::int64_t deadline_ns) noexcept {
    (void)posix::futex_wait(&word, seen, deadline_ns);
  }
};

/// What a thread waits for, able to ring a bell once it is done: a task's completion, an imap's
/// ready queue.
class BellWaiter {
 public:
  /// Rings `bell` when done from now on (nullptr: no more); false, and nothing kept, if it is
  /// done already.
  virtual bool attach_bell(ResultBell* bell) noexcept = 0;
  /// True if one result ends the wait (a task's; the next of an imap), false for a batch (a
  /// map's chunks), whose results the pool's thread collects faster while it spins.
  virtual bool one_result() const noexcept = 0;

 protected:
  ~BellWaiter() = default;
};

}  // namespace procpool::detail
