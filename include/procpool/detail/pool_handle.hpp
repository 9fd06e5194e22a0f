#pragma once
// What a Completion knows of its pool, through one pointer: the pool can cancel it, and a thread
// about to wait for it can lend the pool a hand first. The Supervisor implements it; the waiting
// protocol itself (how long to help, when to hand back) lives there only.

#include <memory>

#include <procpool/detail/chrono.hpp>
#include <procpool/detail/clock.hpp>
#include <procpool/detail/result_bell.hpp>

namespace procpool::detail {

class Completion;

/// A non-owning reference to a `bool()` predicate, cheap to pass through a virtual call.
class Predicate {
 public:
  template <class F>
  Predicate(const F& f) noexcept  // NOLINT: converts from any predicate, like a function_ref
      : obj_(&f), call_([](const void* o) { return (*static_cast<const F*>(o))(); }) {}
  bool operator()() const { return call_(obj_); }

 private:
  const void* obj_;
  bool (*call_)(const void*);
};

class PoolHandle {
 public:
  /// Cancels `c` (see SubmissionQueue::cancel).
  virtual bool cancel(const std::shared_ptr<Completion>& c, bool kill_running) = 0;
  /// Before sleeping until `done()` or `until`: does the pool's work in this thread for a while
  /// (a result microseconds away then arrives without two thread wake-ups). Returns done().
  /// With `waiter` (what `done()` watches), the thread may instead sleep here until done or
  /// `until`, woken by the workers themselves (see ResultBell).
  virtual bool help(Predicate done, Clock::time_point until, BellWaiter* waiter) noexcept = 0;
  /// How long a whole wait took, so the next one helps only while that pays.
  virtual void waited(std::chrono::nanoseconds total) noexcept = 0;

 protected:
  ~PoolHandle() = default;
};

}  // namespace procpool::detail
