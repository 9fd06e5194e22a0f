#pragma once

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <ctime>
#include <linux/futex.h>
#include <system_error>

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <procpool/detail/posix/error.hpp>

#if defined(__SANITIZE_THREAD__)
#define PROCPOOL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PROCPOOL_TSAN 1
#endif
#endif
#ifndef PROCPOOL_TSAN
#define PROCPOOL_TSAN 0
#endif
#if PROCPOOL_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace procpool::detail::posix {

// ---- futex: waiting on a 32-bit word in shared memory -----------------------------------------

static_assert(sizeof(std::atomic<std::uint32_t>) == 4 &&
              std::atomic<std::uint32_t>::is_always_lock_free);

/// Sleeps while `*word == expected`, until woken or `deadline_ns` (CLOCK_MONOTONIC; < 0: none)
/// passes. Returns false on timeout. Spurious returns are possible: callers re-check.
inline bool futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       std::int64_t deadline_ns) noexcept {
  timespec ts{};
  timespec* tp = nullptr;
  if (deadline_ns >= 0) {
    ts.tv_sec = static_cast<time_t>(deadline_ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(deadline_ns % 1'000'000'000);
    tp = &ts;
  }
  // Shared (not FUTEX_PRIVATE): the word lives in memory mapped by several processes.
  // FUTEX_WAIT_BITSET takes an absolute deadline, which makes retries after EINTR exact.
  long r = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT_BITSET, expected,
                     tp, nullptr, FUTEX_BITSET_MATCH_ANY);
  return !(r < 0 && errno == ETIMEDOUT);
}

inline void futex_wake(std::atomic<std::uint32_t>* word, int count) noexcept {
  (void)::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, count, nullptr,
                  nullptr, 0);
}

inline std::int64_t monotonic_ns() noexcept {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// ---- robust, process-shared mutex --------------------------------------------------------------

/// A robust mutex as it lives in shared memory, with the flag that tells a new owner that the
/// previous one died holding it.
struct MutexState {
  pthread_mutex_t mutex;
  std::atomic<std::uint32_t> owner_died;
};

/// Outcome of locking a robust mutex.
enum class LockResult { ok, owner_died, busy };

/// Initializes a process-shared robust mutex in place (memory the caller zeroed and shares).
inline std::error_code robust_mutex_init(pthread_mutex_t* m) noexcept {
  pthread_mutexattr_t attr;
  if (int e = pthread_mutexattr_init(&attr)) return {e, std::generic_category()};
  int e = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (!e) e = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  // Error checking: unlocking a mutex one does not hold is reported, not undefined.
  if (!e) e = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  if (!e) e = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  return {e, std::generic_category()};
}

// When the previous owner died holding the lock, the kernel hands it over with EOWNERDEAD. We
// mark it consistent and report `owner_died` so the new owner can repair the data; the lock stays
// usable for everyone after. (Boost.Interprocess instead throws and leaves the mutex unusable.)
inline LockResult robust_finish(pthread_mutex_t* m, int e, const char* call) {
  if (e == 0) return LockResult::ok;
  if (e == EOWNERDEAD) {
    pthread_mutex_consistent(m);
    return LockResult::owner_died;
  }
  if (e == EBUSY || e == ETIMEDOUT) return LockResult::busy;
  throw_system_error({e, std::generic_category()}, call);
}

/// How long a robust lock sleeps before it looks at the mutex again (see `robust_lock`).
inline constexpr std::int64_t robust_lock_slice_ns = 20'000'000;

// ThreadSanitizer learns of a lock taken over from a dead owner by `lock` and `trylock`, not by
// `timedlock`: tell it, or it reports the matching unlock as one of a mutex nobody holds.
inline void tsan_note_locked([[maybe_unused]] pthread_mutex_t* m) noexcept {
#if PROCPOOL_TSAN
  __tsan_mutex_pre_lock(m, 0);  // (post_lock ends what pre_lock begins)
  __tsan_mutex_post_lock(m, 0, 0);
#endif
}

// A robust mutex can lose a wake-up: when the waiter an unlock woke is killed before it takes the
// lock, and a third process takes it first, nobody is left to wake the other sleepers (the
// kernel only covers a lock left free). So a waiter never sleeps longer than one slice before it
// tries again. `timedlock` (not `clocklock`) because the sanitizers know only that one; a jump of
// the wall clock only stretches or shortens one slice.
inline LockResult robust_lock(pthread_mutex_t* m) {
  const int first = pthread_mutex_trylock(m);
  if (first != EBUSY) return robust_finish(m, first, "pthread_mutex_lock");
  for (;;) {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    const std::int64_t until =
        static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec + robust_lock_slice_ns;
    ts.tv_sec = static_cast<time_t>(until / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(until % 1'000'000'000);
    const int e = pthread_mutex_timedlock(m, &ts);
    if (e == ETIMEDOUT) continue;
    if (e == EOWNERDEAD) tsan_note_locked(m);
    return robust_finish(m, e, "pthread_mutex_lock");
  }
}

inline LockResult robust_try_lock(pthread_mutex_t* m) {
  int e = pthread_mutex_trylock(m);
  // The caller already holds it: as for any other holder, the answer is "not now".
  if (e == EDEADLK) return LockResult::busy;
  return robust_finish(m, e, "pthread_mutex_trylock");
}

inline void robust_unlock(pthread_mutex_t* m) {
  if (int e = pthread_mutex_unlock(m))
    throw_system_error({e, std::generic_category()}, "pthread_mutex_unlock");
}

}  // namespace procpool::detail::posix
