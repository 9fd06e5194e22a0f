#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ctime>

#include <sys/random.h>
#include <unistd.h>

namespace procpool::detail::posix {

/// 64 unpredictable bits from the kernel; falls back to the clock and the process id if the
/// kernel has none to give (only in early boot).
inline std::uint64_t random_u64() noexcept {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, GRND_NONBLOCK) == static_cast<ssize_t>(sizeof v)) return v;
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return (static_cast<std::uint64_t>(ts.tv_sec) << 32) ^ static_cast<std::uint64_t>(ts.tv_nsec) ^
         (static_cast<std::uint64_t>(::getpid()) << 20);
}

/// A nonzero id no other call in this process returns (splitmix64 is a bijection of a counter)
/// and that other processes are unlikely to: the counter starts at random bits, drawn again in a
/// forked child, which would otherwise repeat its parent's ids.
inline std::uint64_t unique_id() noexcept {
  static std::atomic<std::uint64_t> next{0};
  static std::atomic<pid_t> owner{0};
  const pid_t me = ::getpid();
  if (owner.load(std::memory_order_acquire) != me) {
    next.store(random_u64(), std::memory_order_relaxed);
    owner.store(me, std::memory_order_release);
  }
  for (;;) {
    std::uint64_t z = next.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    if (z != 0) return z;
  }
}

}  // namespace procpool::detail::posix
