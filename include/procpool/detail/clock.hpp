#pragma once

#include <cstdint>

#include <procpool/detail/chrono.hpp>

namespace procpool::detail {

using Clock = std::chrono::steady_clock;

/// Steady-clock nanoseconds: the time base the pool and its workers share (CLOCK_MONOTONIC is
/// system-wide, so a worker's stamps compare with the pool's).
inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

}  // namespace procpool::detail
