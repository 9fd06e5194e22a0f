#pragma once
// Where the supervisor's rounds deliver a transport's events (see Transport::run): straight to the
// workforce, from a helping waiter, or saved from a wait made without the drive lock.

#include <cstddef>
#include <cstdint>

#include <procpool/detail/config.hpp>
#include <procpool/detail/transport.hpp>
#include <procpool/detail/workforce.hpp>

namespace procpool::detail {

// The events of a round, handled at once (the drive lock is held).
struct DirectSink final : EventSink {
  explicit DirectSink(Workforce& w) : wf(w) {}
  void readable(std::size_t slot) override { wf.collect(slot); }
  void writable(std::size_t slot) override { wf.flush(slot); }
  void died(std::size_t slot) override { wf.on_death(slot); }
  Workforce& wf;
};
// A helping thread leaves deaths to the pool's thread: a replacement must be forked from it
// (its death signal is tied to the thread that forked it).
struct HelperSink final : EventSink {
  explicit HelperSink(Workforce& w) : wf(w) {}
  void readable(std::size_t slot) override { wf.collect(slot); }
  void writable(std::size_t slot) override { wf.flush(slot); }
  void died(std::size_t) override { death = true; }
  Workforce& wf;
  bool death = false;
};
// Events of a wait made without the drive lock, handled once it is held again.
struct DeferredSink final : EventSink {
  enum Kind : std::uint8_t { r, w, d };
  void readable(std::size_t slot) override { add(r, slot); }
  void writable(std::size_t slot) override { add(w, slot); }
  void died(std::size_t slot) override { add(d, slot); }
  void add(Kind k, std::size_t slot) {
    if (n < config::event_batch) evs[n++] = {k, slot};
  }
  void replay(EventSink& to) {
    for (int i = 0; i < n; ++i) {
      if (evs[i].kind == r) to.readable(evs[i].slot);
      if (evs[i].kind == w) to.writable(evs[i].slot);
      if (evs[i].kind == d) to.died(evs[i].slot);
    }
    n = 0;
  }
  struct Ev {
    Kind kind;
    std::size_t slot;
  } evs[config::event_batch];
  int n = 0;
};

}  // namespace procpool::detail
