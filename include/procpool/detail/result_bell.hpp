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
  // The futex word. Bit 0: a waiter sleeps here (or is about to); the other bits count rings, so
  // every ring changes the word a sleeper waits on.
  std::atomic<std::uint32_t> word{0};
  static constexpr std::uint32_t sleeping = 1;
  static constexpr std::uint32_t one_ring = 2;

  void ring() noexcept {
    word.fetch_add(one_ring, std::memory_order_seq_cst);
    posix::futex_wake(&word, INT_MAX);
  }

  /// For a worker that has just published a result: true if a waiter sleeps here, which was rung
  /// and collects the result itself (the worker leaves the pool's thread asleep). The ring and
  /// the test are one atomic step, so a waiter that leaves knows whether it was rung before.
  bool ring_for_result() noexcept {
    if ((word.load(std::memory_order_seq_cst) & sleeping) == 0) return false;
    if ((word.fetch_add(one_ring, std::memory_order_seq_cst) & sleeping) == 0) return false;
    posix::futex_wake(&word, INT_MAX);
    return true;
  }

  /// A waiter comes (one at a time); returns the word as it left it.
  std::uint32_t enter() noexcept {
    return word.fetch_or(sleeping, std::memory_order_seq_cst) | sleeping;
  }
  /// The waiter goes; returns the word as it found it (changed since its last look: rung).
  std::uint32_t leave() noexcept { return word.fetch_and(~sleeping, std::memory_order_seq_cst); }

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

 protected:
  ~BellWaiter() = default;
};

}  // namespace procpool::detail
