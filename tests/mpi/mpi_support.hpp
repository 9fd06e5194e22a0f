#pragma once
// Tasks and helpers shared by the MPI suite.

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <procpool/mpi.hpp>

namespace procpool_mpi_test {

/// In the sanitizer builds a crash ends the worker through the sanitizer's report (an exit
/// status or SIGABRT) rather than the signal itself.
#if defined(PROCPOOL_SANITIZED) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

inline int square(int x) {
  return x * x;
}

inline int add(int a, int b) {
  return a + b;
}

/// The rank whose worker ran it, after a pause long enough for work to spread over the ranks.
inline int rank_after(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return procpool::mpi::rank();
}

inline int throws(int x) {
  if (x == 3) throw std::runtime_error("three is not allowed");
  return x;
}

[[noreturn]] inline void segfault() {
  int* volatile p = nullptr;  // volatile: the compiler cannot turn the store into a trap
  *p = 1;
  std::abort();
}

inline int crash_on(int x) {
  if (x == 5) segfault();
  return x;
}

inline int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

/// Allocates `n` bytes and touches every page; returns `n`.
inline std::size_t allocate_and_touch(std::size_t n) {
  std::vector<char> v(n);
  for (std::size_t i = 0; i < n; i += 4096) v[i] = 1;
  return v.size() + static_cast<std::size_t>(v[n / 2] - v[n / 2]);
}

/// The process that runs it.
inline int worker_pid(int) {
  return static_cast<int>(::getpid());
}

/// The process that runs it, after a pause of `ms`.
inline int pid_after(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<int>(::getpid());
}

/// Answers the other ranks still owe rank 0: none once every pool has ended.
inline std::uint64_t owed() {
  return procpool::detail::mpi::Node::get().owed();
}

/// Options for a small pool (this machine has few cores; every rank runs on it).
inline procpool::mpi::Options small(unsigned per_rank = 2) {
  procpool::mpi::Options o;
  o.processes_per_rank = per_rank;
  return o;
}

}  // namespace procpool_mpi_test
