#pragma once

#include <procpool/detail/cxx20.hpp>

#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include <procpool/codec.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/posix/sync.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/errors.hpp>

namespace procpool {

namespace detail {

/// The first bytes of every shared object's segment: what it holds, so that a handle decoded in
/// another process is checked against the memory it names.
struct SegmentHeader {
  std::uint32_t kind;
  std::uint32_t elem_size;
  std::uint64_t count;
};

enum SharedKind : std::uint32_t {
  kind_mutex = 0x70704d58,  // "ppMX"
  kind_semaphore,
  kind_event,
  kind_condition,
  kind_barrier,
  kind_value,
  kind_array,
};

inline constexpr std::size_t round64(std::size_t n) {
  return (n + 63) / 64 * 64;
}

/// Offsets inside a shared object's segment: header, its own state, a mutex, then data.
template <class State>
struct Layout {
  static constexpr std::size_t state = 64;
  static constexpr std::size_t mutex = state + round64(sizeof(State));
  static constexpr std::size_t data = mutex + round64(sizeof(posix::MutexState));
};

struct NoState {};

inline std::shared_ptr<Segment> make_shared_object(std::uint32_t kind, std::uint32_t elem_size,
                                                   std::uint64_t count, std::size_t bytes) {
  auto seg = Segment::create(bytes);
  auto* h = static_cast<SegmentHeader*>(seg->data());
  h->kind = kind;
  h->elem_size = elem_size;
  h->count = count;
  return seg;
}

inline void check_shared_object(Reader& r, const Segment& seg, std::uint32_t kind,
                                std::uint32_t elem_size, std::size_t min_bytes) {
  if (seg.size() < min_bytes || seg.size() < sizeof(SegmentHeader))
    r.fail("shared memory segment is too small for this object");
  const auto* h = static_cast<const SegmentHeader*>(seg.data());
  if (h->kind != kind || h->elem_size != elem_size)
    r.fail("shared memory handle names an object of another type");
}

template <class T>
T* at(const std::shared_ptr<Segment>& s, std::size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(s->data()) + offset);
}

}  // namespace detail

/// A mutex shared by processes. If the process holding it dies, the next `lock()` succeeds and
/// `owner_died()` returns true until the next lock: the data it guards may be half-updated.
/// Copies refer to the same mutex. Meets the Lockable requirements (`std::scoped_lock`,
/// `std::unique_lock`).
class Mutex {
 public:
  Mutex() : Mutex(detail::make_shared_object(detail::kind_mutex, 0, 0, 64 + 64 * 2), 64, true) {}

  void lock() { note(detail::posix::robust_lock(&state_->mutex)); }

  bool try_lock() {
    auto r = detail::posix::robust_try_lock(&state_->mutex);
    if (r == detail::posix::LockResult::busy) return false;
    note(r);
    return true;
  }

  /// Throws `SystemError` if the calling thread does not hold the mutex.
  void unlock() { detail::posix::robust_unlock(&state_->mutex); }

  /// True when the last `lock()` took the mutex over from a process that died holding it.
  bool owner_died() const noexcept {
    return state_->owner_died.load(std::memory_order_relaxed) != 0;
  }

  /// For the shared objects that embed a mutex: a view of the one at `offset` in `seg`.
  Mutex(std::shared_ptr<detail::Segment> seg, std::size_t offset, bool init)
      : seg_(std::move(seg)), state_(detail::at<detail::posix::MutexState>(seg_, offset)) {
    if (init)
      detail::posix::check(detail::posix::robust_mutex_init(&state_->mutex), "pthread_mutex_init");
  }

 private:
  // Written under the lock, so relaxed is enough; and only when it changes, since a store here
  // would otherwise be a full fence on every lock (about a quarter of an uncontended lock's time).
  void note(detail::posix::LockResult r) {
    const std::uint32_t died = r == detail::posix::LockResult::owner_died ? 1 : 0;
    if (state_->owner_died.load(std::memory_order_relaxed) != died)
      state_->owner_died.store(died, std::memory_order_relaxed);
  }

  friend struct codec<Mutex>;
  std::shared_ptr<detail::Segment> seg_;
  detail::posix::MutexState* state_;
};

/// A counting semaphore shared by processes.
class Semaphore {
 public:
  explicit Semaphore(std::uint32_t initial = 1)
      : seg_(detail::make_shared_object(detail::kind_semaphore, 0, 0, 128)),
        count_(detail::at<std::atomic<std::uint32_t>>(seg_, 64)) {
    count_->store(initial);
  }

  void acquire() { (void)acquire_until(-1); }
  bool try_acquire() {
    std::uint32_t c = count_->load();
    while (c > 0)
      if (count_->compare_exchange_weak(c, c - 1)) return true;
    return false;
  }
  template <class Rep, class Period>
  bool try_acquire_for(std::chrono::duration<Rep, Period> d) {
    return acquire_until(detail::posix::monotonic_ns() +
                         std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  }
  void release(std::uint32_t n = 1) {
    count_->fetch_add(n);
    detail::posix::futex_wake(count_, n >= INT_MAX ? INT_MAX : static_cast<int>(n));
  }

 private:
  bool acquire_until(std::int64_t deadline) {
    for (;;) {
      if (try_acquire()) return true;
      if (deadline >= 0 && detail::posix::monotonic_ns() >= deadline) return false;
      detail::posix::futex_wait(count_, 0, deadline);
    }
  }

  friend struct codec<Semaphore>;
  explicit Semaphore(std::shared_ptr<detail::Segment> seg)
      : seg_(std::move(seg)), count_(detail::at<std::atomic<std::uint32_t>>(seg_, 64)) {}
  std::shared_ptr<detail::Segment> seg_;
  std::atomic<std::uint32_t>* count_;
};

/// A flag processes can wait for.
class Event {
 public:
  Event()
      : seg_(detail::make_shared_object(detail::kind_event, 0, 0, 128)),
        flag_(detail::at<std::atomic<std::uint32_t>>(seg_, 64)) {}

  void set() {
    flag_->store(1);
    detail::posix::futex_wake(flag_, INT_MAX);
  }
  void clear() { flag_->store(0); }
  bool is_set() const { return flag_->load() != 0; }
  void wait() { (void)wait_until(-1); }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) {
    return wait_until(detail::posix::monotonic_ns() +
                      std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  }

 private:
  bool wait_until(std::int64_t deadline) {
    while (flag_->load() == 0) {
      if (deadline >= 0 && detail::posix::monotonic_ns() >= deadline) return false;
      detail::posix::futex_wait(flag_, 0, deadline);
    }
    return true;
  }

  friend struct codec<Event>;
  explicit Event(std::shared_ptr<detail::Segment> seg)
      : seg_(std::move(seg)), flag_(detail::at<std::atomic<std::uint32_t>>(seg_, 64)) {}
  std::shared_ptr<detail::Segment> seg_;
  std::atomic<std::uint32_t>* flag_;
};

/// A condition variable shared by processes, used with a `procpool::Mutex`. A waiter that dies
/// leaves nothing behind: waiting is a read of a sequence number and a futex sleep.
class Condition {
 public:
  Condition()
      : seg_(detail::make_shared_object(detail::kind_condition, 0, 0, 128)),
        seq_(detail::at<std::atomic<std::uint32_t>>(seg_, 64)) {}

  void wait(std::unique_lock<Mutex>& lock) { (void)wait_until(lock, -1); }
  template <class Pred>
  void wait(std::unique_lock<Mutex>& lock, Pred pred) {
    while (!pred()) wait(lock);
  }
  /// False if `d` passed without a notification.
  template <class Rep, class Period>
  bool wait_for(std::unique_lock<Mutex>& lock, std::chrono::duration<Rep, Period> d) {
    return wait_until(lock, deadline(d));
  }
  /// Waits until `pred()` holds; false if `d` passed first.
  template <class Rep, class Period, class Pred>
  bool wait_for(std::unique_lock<Mutex>& lock, std::chrono::duration<Rep, Period> d, Pred pred) {
    auto end = deadline(d);
    while (!pred())
      if (!wait_until(lock, end)) return pred();
    return true;
  }
  void notify_one() {
    seq_->fetch_add(1);
    detail::posix::futex_wake(seq_, 1);
  }
  void notify_all() {
    seq_->fetch_add(1);
    detail::posix::futex_wake(seq_, INT_MAX);
  }

 private:
  template <class Rep, class Period>
  static std::int64_t deadline(std::chrono::duration<Rep, Period> d) {
    return detail::posix::monotonic_ns() +
           std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  }
  bool wait_until(std::unique_lock<Mutex>& lock, std::int64_t end) {
    if (!lock.owns_lock())
      throw std::logic_error(detail::prefixed("Condition::wait needs a held lock"));
    std::uint32_t seen = seq_->load();
    lock.unlock();
    bool woke = detail::posix::futex_wait(seq_, seen, end);
    lock.lock();
    return woke || seq_->load() != seen;
  }

  friend struct codec<Condition>;
  explicit Condition(std::shared_ptr<detail::Segment> seg)
      : seg_(std::move(seg)), seq_(detail::at<std::atomic<std::uint32_t>>(seg_, 64)) {}
  std::shared_ptr<detail::Segment> seg_;
  std::atomic<std::uint32_t>* seq_;
};

/// A reusable barrier for `parties` processes or threads.
class Barrier {
 public:
  explicit Barrier(std::uint32_t parties)
      : seg_(detail::make_shared_object(detail::kind_barrier, 0, parties, 128)) {
    if (parties == 0)
      throw std::invalid_argument(detail::prefixed("a Barrier needs at least one party"));
    bind();
  }

  void arrive_and_wait() {
    std::uint32_t gen = gen_->load();
    if (arrived_->fetch_add(1) + 1 == parties_) {
      arrived_->store(0);
      gen_->fetch_add(1);
      detail::posix::futex_wake(gen_, INT_MAX);
      return;
    }
    while (gen_->load() == gen) detail::posix::futex_wait(gen_, gen, -1);
  }

 private:
  void bind() {
    parties_ = static_cast<std::uint32_t>(static_cast<detail::SegmentHeader*>(seg_->data())->count);
    arrived_ = detail::at<std::atomic<std::uint32_t>>(seg_, 64);
    gen_ = detail::at<std::atomic<std::uint32_t>>(seg_, 68);
  }
  friend struct codec<Barrier>;
  explicit Barrier(std::shared_ptr<detail::Segment> seg) : seg_(std::move(seg)) { bind(); }
  std::shared_ptr<detail::Segment> seg_;
  std::uint32_t parties_ = 0;
  std::atomic<std::uint32_t>* arrived_ = nullptr;
  std::atomic<std::uint32_t>* gen_ = nullptr;
};

// Shared objects travel as handles: the id and size of their segment.
#define PROCPOOL_SHARED_HANDLE_CODEC(Type, Kind, MakeExpr)                             \
  template <>                                                                          \
  struct codec<Type> {                                                                 \
    static void encode(Writer& w, const Type& v) { detail::write_segment(w, v.seg_); } \
    static Type decode(Reader& r) {                                                    \
      auto seg = detail::read_segment(r);                                              \
      detail::check_shared_object(r, *seg, Kind, 0, 128);                              \
      return MakeExpr;                                                                 \
    }                                                                                  \
  };
PROCPOOL_SHARED_HANDLE_CODEC(Mutex, detail::kind_mutex, Mutex(std::move(seg), 64, false))
PROCPOOL_SHARED_HANDLE_CODEC(Semaphore, detail::kind_semaphore, Semaphore(std::move(seg)))
PROCPOOL_SHARED_HANDLE_CODEC(Event, detail::kind_event, Event(std::move(seg)))
PROCPOOL_SHARED_HANDLE_CODEC(Condition, detail::kind_condition, Condition(std::move(seg)))
PROCPOOL_SHARED_HANDLE_CODEC(Barrier, detail::kind_barrier, Barrier(std::move(seg)))
#undef PROCPOOL_SHARED_HANDLE_CODEC

}  // namespace procpool
