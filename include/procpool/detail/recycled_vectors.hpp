#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <procpool/detail/config.hpp>

namespace procpool::detail {

/// Large vectors of plain values a worker is done with (a task's argument after the call, its
/// result once encoded), kept for the next large argument of the same type: decoding into pages
/// this process has written before is several times faster than into fresh ones, which fault
/// and are cleared first (and glibc hands memory this large back to the system when it is
/// freed, from 32 MiB up always, so malloc cannot keep it). Only workers keep any (see enable); a
/// worker frees them with its other kept buffers when it idles. Slots are claimed by
/// compare-and-swap, as in BufferCache, so a child forked while another thread held one merely
/// never sees it again.
class RecycledVectors {
 public:
  static RecycledVectors& process() noexcept {
    static constinit RecycledVectors kept;
    return kept;
  }

  /// From now on, vectors handed to keep() are kept (a worker not under a memory limit).
  void enable() noexcept { enabled_.store(true, std::memory_order_relaxed); }

  /// Takes `v`'s memory if it is large, this process keeps vectors and there is room; otherwise
  /// leaves `v` as it is.
  template <class E>
  void keep(std::vector<E>& v) noexcept {
    const std::size_t cap = v.capacity() * sizeof(E);
    if (cap < config::bulk_vector_min || !enabled_.load(std::memory_order_relaxed) ||
        bytes_.load(std::memory_order_relaxed) + cap > config::buffer_cache_bytes)
      return;
    for (Slot& s : slots_) {
      std::uint32_t st = empty;
      if (!s.state.compare_exchange_strong(st, busy, std::memory_order_acquire)) continue;
      try {
        s.vec = new std::vector<E>(std::move(v));
      } catch (...) {
        s.state.store(empty, std::memory_order_release);
        return;
      }
      s.tag = &tag<E>;
      s.destroy = [](void* p) noexcept { delete static_cast<std::vector<E>*>(p); };
      s.cap = cap;
      bytes_.fetch_add(cap, std::memory_order_relaxed);
      s.state.store(full, std::memory_order_release);
      return;
    }
  }

  /// Moves into `out` a kept vector of `E` with room for `n` elements and no more than twice
  /// that, cleared; false if none fits.
  template <class E>
  bool take(std::size_t n, std::vector<E>& out) noexcept {
    if (bytes_.load(std::memory_order_relaxed) == 0) return false;
    for (Slot& s : slots_) {
      std::uint32_t st = full;
      if (!s.state.compare_exchange_strong(st, busy, std::memory_order_acquire)) continue;
      auto* v = static_cast<std::vector<E>*>(s.vec);
      if (s.tag != &tag<E> || v->capacity() < n || v->capacity() / 2 > n) {
        s.state.store(full, std::memory_order_release);
        continue;
      }
      out = std::move(*v);
      out.clear();
      delete v;
      bytes_.fetch_sub(s.cap, std::memory_order_relaxed);
      s.vec = nullptr;
      s.state.store(empty, std::memory_order_release);
      return true;
    }
    return false;
  }

  /// Frees every vector kept.
  void clear() noexcept {
    for (Slot& s : slots_) {
      std::uint32_t st = full;
      if (!s.state.compare_exchange_strong(st, busy, std::memory_order_acquire)) continue;
      s.destroy(s.vec);
      s.vec = nullptr;
      bytes_.fetch_sub(s.cap, std::memory_order_relaxed);
      s.state.store(empty, std::memory_order_release);
    }
  }

  std::size_t bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }

 private:
  // One address per element type: a writable variable, which no linker folds with another.
  template <class E>
  static inline char tag = 0;

  enum : std::uint32_t { empty, busy, full };
  struct Slot {
    std::atomic<std::uint32_t> state{empty};
    const char* tag = nullptr;
    void* vec = nullptr;
    void (*destroy)(void*) noexcept = nullptr;
    std::size_t cap = 0;
  };
  Slot slots_[2];
  std::atomic<std::size_t> bytes_{0};
  std::atomic<bool> enabled_{false};
};

}  // namespace procpool::detail
