#pragma once

#include <procpool/detail/cxx20.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <procpool/detail/chrono.hpp>

namespace procpool {

/// How a worker process comes to exist.
enum class StartMethod { fork, spawn, forkserver };

namespace detail {
inline std::atomic<StartMethod>& default_start_method() {
  static std::atomic<StartMethod> m{StartMethod::fork};
  return m;
}
}  // namespace detail

/// Sets the start method of `Options` made from now on without one (like Python's
/// `multiprocessing.set_start_method`). The default is `StartMethod::fork`.
inline void set_start_method(StartMethod m) {
  detail::default_start_method().store(m);
}

/// Settings of a `Pool`.
struct Options {
  /// Worker count; 0 means `cpu_count()` (affinity mask and cgroup CPU quota).
  unsigned processes = 0;
  /// `StartMethod::fork` unless `set_start_method` chose another.
  StartMethod start = detail::default_start_method().load();
  /// A worker is replaced after this many tasks (a chunk of `map` counts as one); 0: never.
  std::size_t maxtasksperchild = 0;
  /// Hard limit on one task's run time; 0: none. See `TaskTimeout`.
  std::chrono::milliseconds task_timeout{0};
  /// Bytes of address space per worker (RLIMIT_AS); 0: none.
  std::size_t memory_limit = 0;
};

/// Settings of a `Process`.
struct ProcessOptions {
  /// `StartMethod::fork` unless `set_start_method` chose another.
  StartMethod start = detail::default_start_method().load();
};

/// Per-call settings of `Pool::apply_async`.
struct TaskOptions {
  /// Hard limit on this task's run time, overriding `Options::task_timeout`; 0: the pool's.
  std::chrono::milliseconds timeout{0};
};

/// Counters of a pool's life so far.
struct Stats {
  std::uint64_t submitted = 0;  ///< tasks accepted (each element of a map counts)
  std::uint64_t completed = 0;  ///< tasks that returned a value
  std::uint64_t failed = 0;     ///< tasks that ended in an error (including cancelled ones)
  std::uint64_t restarts = 0;   ///< workers replaced (crash, timeout, cancel or recycling)
};

}  // namespace procpool
