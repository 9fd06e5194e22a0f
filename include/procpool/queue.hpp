#pragma once

#include <procpool/detail/cxx20.hpp>

#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeinfo>

#include <procpool/codec.hpp>
#include <procpool/detail/buffer.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/config.hpp>
#include <procpool/detail/cpu_relax.hpp>
#include <procpool/detail/posix/sync.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/errors.hpp>
#include <procpool/sync.hpp>

namespace procpool {

namespace detail {

struct QueueAccess;

inline constexpr std::uint32_t kind_queue = 0x70705155;  // "ppQU"

/// A 32-bit tag of a type (and codec) for handles decoded in another copy of the same program.
inline std::uint32_t type_tag(const char* a, const char* b) noexcept {
  std::uint32_t h = 2166136261u;  // FNV-1a
  for (const char* s : {a, "/", b})
    for (; *s; ++s) h = (h ^ static_cast<unsigned char>(*s)) * 16777619u;
  return h;
}

/// A queue's state in shared memory, guarded by the robust mutex that follows it.
struct QueueState {
  std::uint64_t capacity = 0;          // items
  std::uint64_t ring = 0;              // bytes of the ring that follows the mutex
  std::atomic<std::uint64_t> head{0};  // ring bytes taken so far (never wraps)
  std::atomic<std::uint64_t> tail{0};  // ring bytes published so far
  std::uint64_t count = 0;             // items between head and tail; recounted after a death
  std::atomic<std::uint32_t> closed{0};
  std::uint32_t get_waiters = 0;            // processes asleep on `not_empty`
  std::uint32_t put_waiters = 0;            // processes asleep on `not_full`
  std::atomic<std::uint32_t> not_empty{0};  // futex words, bumped to wake the sleepers
  std::atomic<std::uint32_t> not_full{0};
};
using QueueLayout = Layout<QueueState>;

/// The untyped engine of `Queue<T>`: a bounded ring of length-prefixed byte strings in one shared
/// memory segment, guarded by a robust mutex, with futex words to sleep on.
///
/// Dying in the middle (policy): an item is copied into the ring whole and only then published
/// by one store of `tail`; a reader copies an item out whole and only then moves `head` past it.
/// Both happen under the robust mutex. If a process dies holding it (SIGKILL mid-`put`/`get`),
/// the next owner is told (`owner_died`) and repairs the ring from those two committed indices:
/// a half-written item lies past `tail` and is never read; an item half-copied out still lies
/// past `head` and goes to the next reader. Only the item count can be stale; it is recounted by
/// walking the published items. No torn item is ever delivered and no one waits on a dead lock.
class ByteQueue {
 public:
  /// A new, empty queue of at most `capacity` items and `bytes` bytes of ring.
  ByteQueue(std::size_t capacity, std::size_t bytes)
      : seg_(make_segment(capacity, bytes)),
        state_(new (at<QueueState>(seg_, QueueLayout::state)) QueueState),
        mutex_(seg_, QueueLayout::mutex, true),
        ring_(at<std::byte>(seg_, QueueLayout::data)) {
    state_->capacity = capacity;
    state_->ring = seg_->size() - QueueLayout::data;
  }

  /// A view of a queue received as a handle (checked by the caller).
  explicit ByteQueue(std::shared_ptr<Segment> seg)
      : seg_(std::move(seg)),
        state_(at<QueueState>(seg_, QueueLayout::state)),
        mutex_(seg_, QueueLayout::mutex, false),
        ring_(at<std::byte>(seg_, QueueLayout::data)) {}

  /// Stamps the element type's tag into the header (creator only).
  void set_tag(std::uint32_t tag) { static_cast<SegmentHeader*>(seg_->data())->elem_size = tag; }

  /// Appends one item; false if `deadline_ns` (CLOCK_MONOTONIC, < 0: none) passed first.
  bool put(std::span<const std::byte> item, std::int64_t deadline_ns) {
    const std::uint64_t need = sizeof(std::uint64_t) + item.size();
    if (need > state_->ring)
      throw CodecError("an item of " + std::to_string(item.size()) +
                       " encoded bytes does not fit in this Queue's buffer of " +
                       std::to_string(state_->ring) +
                       " bytes (give Queue a larger `bytes` argument)");
    auto l = lock();
    for (;;) {
      if (state_->closed) throw QueueClosed("put on a closed Queue");
      const std::uint64_t h = state_->head.load(std::memory_order_relaxed);
      const std::uint64_t t = state_->tail.load(std::memory_order_relaxed);
      if (state_->count < state_->capacity && t - h + need <= state_->ring) {
        const std::uint64_t len = item.size();
        copy_in(t, &len, sizeof len);
        copy_in(t + sizeof len, item.data(), item.size());
        // Published only now, whole: see the policy above.
        state_->tail.store(t + need, std::memory_order_release);
        ++state_->count;
        if (state_->get_waiters) wake(state_->not_empty);
        return true;
      }
      if (expired(deadline_ns)) return false;
      wait(l, state_->not_full, state_->put_waiters, deadline_ns, [&] {
        return state_->head.load(std::memory_order_acquire) != h || state_->closed.load() != 0;
      });
    }
  }

  /// Takes the oldest item into `out`; false if `deadline_ns` passed first (0: do not wait).
  /// Throws `QueueClosed` when the queue is closed and empty.
  bool get(Buffer& out, std::int64_t deadline_ns) {
    auto l = lock();
    for (;;) {
      const std::uint64_t h = state_->head.load(std::memory_order_relaxed);
      const std::uint64_t t = state_->tail.load(std::memory_order_relaxed);
      if (t != h) {
        std::uint64_t len = 0;
        copy_out(h, &len, sizeof len);
        if (len > t - h - sizeof len) {
          // Only memory corruption gets here: drop what cannot be trusted.
          state_->head.store(t, std::memory_order_release);
          state_->count = 0;
          throw Error("Queue memory is corrupt; its items were dropped");
        }
        out.resize(static_cast<std::size_t>(len));
        copy_out(h + sizeof len, out.data(), static_cast<std::size_t>(len));
        state_->head.store(h + sizeof len + len, std::memory_order_release);
        if (state_->count > 0) --state_->count;
        if (state_->put_waiters) wake(state_->not_full);
        return true;
      }
      if (state_->closed) throw QueueClosed("get on a closed and empty Queue");
      if (expired(deadline_ns)) return false;
      wait(l, state_->not_empty, state_->get_waiters, deadline_ns, [&] {
        return state_->tail.load(std::memory_order_acquire) != t || state_->closed.load() != 0;
      });
    }
  }

  void close() {
    auto l = lock();
    state_->closed.store(1);
    wake(state_->not_empty);
    wake(state_->not_full);
  }

  bool closed() {
    auto l = lock();
    return state_->closed != 0;
  }

  std::size_t size() {
    auto l = lock();
    return static_cast<std::size_t>(state_->count);
  }

  std::size_t capacity() const noexcept { return static_cast<std::size_t>(state_->capacity); }
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(state_->ring); }
  const std::shared_ptr<Segment>& segment() const noexcept { return seg_; }

  // For tests of the repair path: the raw pieces.
  QueueState& state() noexcept { return *state_; }
  Mutex& mutex() noexcept { return mutex_; }
  void copy_in(std::uint64_t pos, const void* src, std::size_t n) noexcept {
    const auto off = static_cast<std::size_t>(pos % state_->ring);
    const std::size_t room = static_cast<std::size_t>(state_->ring) - off;
    const std::size_t first = n < room ? n : room;
    std::memcpy(ring_ + off, src, first);
    std::memcpy(ring_, static_cast<const std::byte*>(src) + first, n - first);
  }

 private:
  // Idle waiters look again this often: a process killed after publishing but before waking
  // anyone would otherwise leave them asleep for good.
  static constexpr std::int64_t recheck_ns = 100'000'000;
  // A waiter first watches the indices this long without sleeping: a peer on another CPU usually
  // moves them sooner than a futex wake-up would arrive.
  static constexpr std::int64_t spin_ns = 20'000;

  static std::shared_ptr<Segment> make_segment(std::size_t capacity, std::size_t bytes) {
    if (capacity == 0)
      throw std::invalid_argument(detail::prefixed("a Queue needs a capacity above 0"));
    if (bytes < 64) bytes = 64;
    if (bytes > (std::size_t{1} << 40))
      throw std::length_error(detail::prefixed("Queue buffer too large"));
    return make_shared_object(kind_queue, 0, capacity, QueueLayout::data + bytes);
  }

  std::unique_lock<Mutex> lock() {
    std::unique_lock l(mutex_, std::defer_lock);
    relock(l);
    return l;
  }

  static bool expired(std::int64_t deadline_ns) {
    return deadline_ns >= 0 && posix::monotonic_ns() >= deadline_ns;
  }

  static void wake(std::atomic<std::uint32_t>& word) {
    word.fetch_add(1);
    posix::futex_wake(&word, INT_MAX);
  }

  template <class Changed>
  void wait(std::unique_lock<Mutex>& l, std::atomic<std::uint32_t>& word, std::uint32_t& waiters,
            std::int64_t deadline_ns, Changed changed) {
    l.unlock();
    const std::int64_t spin_end = posix::monotonic_ns() + spin_ns;
    bool moved = false;
    for (int i = 0; !(moved = changed()); ++i) {
      if ((i & 63) == 63 && posix::monotonic_ns() >= spin_end) break;
      cpu_relax();
    }
    relock(l);
    if (moved) return;
    ++waiters;
    const std::uint32_t seen = word.load();
    l.unlock();
    std::int64_t until = posix::monotonic_ns() + recheck_ns;
    if (deadline_ns >= 0 && deadline_ns < until) until = deadline_ns;
    (void)posix::futex_wait(&word, seen, until);
    relock(l);
    if (waiters > 0) --waiters;
  }

  // The lock is held for a copy at most: a short spin on try_lock usually gets it without the
  // sleep and wake-up a contended robust mutex costs.
  void relock(std::unique_lock<Mutex>& l) {
    bool got = false;
    for (int i = 0; i < 64 && !got; ++i) {
      got = l.try_lock();
      if (!got) cpu_relax();
    }
    if (!got) l.lock();
    if (mutex_.owner_died()) repair();
  }

  void copy_out(std::uint64_t pos, void* dst, std::size_t n) const noexcept {
    const auto off = static_cast<std::size_t>(pos % state_->ring);
    const std::size_t room = static_cast<std::size_t>(state_->ring) - off;
    const std::size_t first = n < room ? n : room;
    std::memcpy(dst, ring_ + off, first);
    std::memcpy(static_cast<std::byte*>(dst) + first, ring_, n - first);
  }

  // The previous owner died holding the lock (see the policy above): recount the published
  // items, and wake every sleeper, since the dead process may have owed them a wake-up.
  void repair() {
    std::uint64_t h = state_->head.load();
    std::uint64_t t = state_->tail.load();
    if (t < h || t - h > state_->ring) {
      state_->head.store(t);
      h = t;
    }
    std::uint64_t n = 0;
    for (std::uint64_t p = h; p != t; ++n) {
      std::uint64_t len = 0;
      if (t - p < sizeof len) {
        state_->tail.store(p);
        break;
      }
      copy_out(p, &len, sizeof len);
      if (len > t - p - sizeof len) {
        state_->tail.store(p);  // cannot happen with whole publishes; keep what is sound
        break;
      }
      p += sizeof len + len;
    }
    state_->count = n;
    wake(state_->not_empty);
    wake(state_->not_full);
  }

  std::shared_ptr<Segment> seg_;
  QueueState* state_ = nullptr;
  Mutex mutex_;
  std::byte* ring_ = nullptr;
};

inline Buffer& queue_scratch_in() {
  thread_local Buffer b;
  return b;
}
inline Buffer& queue_scratch_out() {
  thread_local Buffer b;
  return b;
}

}  // namespace detail

/// A bounded first-in first-out queue shared by processes: any number of producers and consumers
/// in any processes. It lives in shared memory (no broker process or thread); passed to a task or
/// a `Process` it refers to the same queue, and copies do too. Items travel through `Codec`.
///
/// A process killed in the middle of `put` or `get` neither blocks the others nor lets a torn
/// item through: an item is either delivered whole or not at all (see `detail::ByteQueue`).
template <class T, class Codec = BinaryCodec>
class Queue {
 public:
  /// At most `capacity` items, holding at most `bytes` bytes of encoded items at once (an item
  /// takes its encoded size plus 8); a larger single item is a `CodecError`.
  explicit Queue(std::size_t capacity, std::size_t bytes = PROCPOOL_QUEUE_DEFAULT_BYTES)
      : q_(std::make_shared<detail::ByteQueue>(capacity, bytes)) {
    q_->set_tag(tag());
  }

  /// Appends `v`, waiting while the queue is full. `QueueClosed` after `close()`.
  void put(const T& v) { (void)q_->put(encode(v), -1); }
  /// Like `put`, but gives up after `d`: false if the item was not added.
  template <class Rep, class Period>
  bool put_for(const T& v, std::chrono::duration<Rep, Period> d) {
    return q_->put(encode(v), deadline(d));
  }

  /// Takes the oldest item, waiting for one. `QueueClosed` once closed and empty.
  T get() {
    auto& b = detail::queue_scratch_out();
    (void)q_->get(b, -1);
    return decode(b);
  }
  /// Like `get`, but empty if nothing arrived within `d`.
  template <class Rep, class Period>
  std::optional<T> get_for(std::chrono::duration<Rep, Period> d) {
    auto& b = detail::queue_scratch_out();
    if (!q_->get(b, deadline(d))) return std::nullopt;
    return decode(b);
  }
  /// Takes the oldest item if there is one, without waiting.
  std::optional<T> try_get() {
    auto& b = detail::queue_scratch_out();
    if (!q_->get(b, 0)) return std::nullopt;
    return decode(b);
  }

  /// Closes the queue for every process: `put` throws `QueueClosed`; `get` returns what is left,
  /// then throws `QueueClosed`. Waiting consumers wake up.
  void close() { q_->close(); }
  bool closed() const { return q_->closed(); }
  /// Items in the queue now (already stale when other processes use it).
  std::size_t size() const { return q_->size(); }
  bool empty() const { return size() == 0; }
  std::size_t capacity() const noexcept { return q_->capacity(); }

 private:
  friend struct codec<Queue<T, Codec>>;
  friend struct detail::QueueAccess;
  explicit Queue(std::shared_ptr<detail::ByteQueue> q) : q_(std::move(q)) {}

  static std::uint32_t tag() { return detail::type_tag(typeid(T).name(), typeid(Codec).name()); }

  template <class Rep, class Period>
  static std::int64_t deadline(std::chrono::duration<Rep, Period> d) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return detail::posix::monotonic_ns() + (ns > 0 ? ns : 0);
  }

  static std::span<const std::byte> encode(const T& v) {
    return detail::encode_item<Codec>(detail::queue_scratch_in(), v);
  }
  static T decode(detail::Buffer& b) { return detail::decode_item<Codec, T>(b, "Queue item"); }

  std::shared_ptr<detail::ByteQueue> q_;
};

namespace detail {
/// The engine under a queue (for tests of its repair path).
struct QueueAccess {
  template <class Q>
  static ByteQueue& engine(Q& q) noexcept {
    return *q.q_;
  }
};
}  // namespace detail

template <class T, class C>
struct codec<Queue<T, C>> {
  static void encode(Writer& w, const Queue<T, C>& q) { detail::write_segment(w, q.q_->segment()); }
  static Queue<T, C> decode(Reader& r) {
    auto seg = detail::read_segment(r);
    detail::check_shared_object(r, *seg, detail::kind_queue, Queue<T, C>::tag(),
                                detail::QueueLayout::data + 64);
    auto q = std::make_shared<detail::ByteQueue>(std::move(seg));
    if (q->bytes() > q->segment()->size() - detail::QueueLayout::data)
      r.fail("queue is larger than its segment");
    return Queue<T, C>(std::move(q));
  }
};

}  // namespace procpool
