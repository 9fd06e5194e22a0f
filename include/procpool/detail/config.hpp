#pragma once
// Every tunable of the pool's engine, in one place. The macros may be defined before including
// procpool to change them; the constants below them are not meant to be changed, but are named so
// that the code using them says what they are.

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <procpool/detail/chrono.hpp>

#ifndef PROCPOOL_SUPERVISOR_SPIN_US
/// How long the pool's thread polls for results before it sleeps, after recent activity.
#define PROCPOOL_SUPERVISOR_SPIN_US 50
#endif

#ifndef PROCPOOL_WAIT_SPIN_US
/// How long a caller waiting for a result polls before it sleeps.
#define PROCPOOL_WAIT_SPIN_US 50
#endif

#ifndef PROCPOOL_WORKER_SPIN_US
/// How long an idle worker polls its task pipe before it blocks: a task that arrives within this
/// window skips a scheduler wake-up.
#define PROCPOOL_WORKER_SPIN_US 50
#endif

#ifndef PROCPOOL_MAX_FRAME
/// The largest frame (task arguments or results of one task or chunk) in bytes. A larger one is a
/// CodecError for that task alone; a peer that announces one is treated as broken.
#define PROCPOOL_MAX_FRAME (std::uint64_t{1} << 32)
#endif

#ifndef PROCPOOL_WORKER_START_TIMEOUT_MS
/// How long a new worker may take to reach its initializer (or, without one, to report ready)
/// before the pool kills it as hung; a start takes about a millisecond. The initializer itself,
/// being the program's code, has no limit. 0: none.
#define PROCPOOL_WORKER_START_TIMEOUT_MS 30000
#endif

#ifndef PROCPOOL_QUEUE_DEFAULT_BYTES
/// The size of a queue's ring buffer when none is given: the largest encoded item it can hold,
/// plus 8 bytes.
#define PROCPOOL_QUEUE_DEFAULT_BYTES (std::size_t{1} << 20)
#endif

#ifndef PROCPOOL_BUFFER_CACHE_BYTES
/// How many bytes of large frame buffers each process keeps for reuse while it is busy (an idle
/// second gives them back), and how many bytes of large vectors a worker keeps for the next
/// argument (as much again). Fresh pages cost a page fault and a clearing each: a 1 MiB argument
/// is copied into reused pages several times faster. 0 turns both off, as AddressSanitizer
/// builds do (a reused block would hide a use after free).
#if defined(__SANITIZE_ADDRESS__)
#define PROCPOOL_BUFFER_CACHE_BYTES 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROCPOOL_BUFFER_CACHE_BYTES 0
#endif
#endif
#endif
#ifndef PROCPOOL_BUFFER_CACHE_BYTES
#define PROCPOOL_BUFFER_CACHE_BYTES (std::size_t{256} << 20)
#endif

namespace procpool::detail::config {

inline constexpr std::uint64_t max_frame = PROCPOOL_MAX_FRAME;
inline constexpr std::int64_t supervisor_spin_ns = std::int64_t{PROCPOOL_SUPERVISOR_SPIN_US} * 1000;
inline constexpr int wait_spin_us = PROCPOOL_WAIT_SPIN_US;
inline constexpr int worker_spin_us = PROCPOOL_WORKER_SPIN_US;
/// A waiter that has spun this long without its result yields its core at every further step.
/// The kernel often wakes a worker on the core of the thread whose pipe write woke it (it expects
/// the writer to sleep next), and a writer that spins on keeps the worker off that core for its
/// whole spin: each round trip then costs the spin plus a wake-up, and since the worker sleeps
/// again before the next task, it stays so (measured: 85 µs round trips against 9-15 µs, in
/// about half of a quiet machine's processes). A good round trip on a free core is over well
/// before this. With PROCPOOL_WAIT_SPIN_US at 10 or less (or a budget halved that far by long
/// waits) a spin ends before it would yield.
inline constexpr std::int64_t help_yield_after_ns = 10'000;

// ---- Frame buffers (buffer.hpp) ----
inline constexpr std::size_t buffer_cache_bytes = PROCPOOL_BUFFER_CACHE_BYTES;
/// Buffers at least this large are kept for reuse (smaller ones malloc serves from its heap).
inline constexpr std::size_t cached_buffer_min = 256 * 1024;
/// Task and result frames at least this large travel between a pool and its local workers
/// through shared memory (local/shared_frame.hpp), while the files that carry them stay within
/// these limits (the pool's task files; each worker's result files).
inline constexpr std::size_t shared_frame_min = 256 * 1024;
inline constexpr std::size_t shared_frames_max = 64;
inline constexpr std::size_t shared_frames_max_bytes = std::size_t{256} << 20;
inline constexpr std::size_t result_files_max = 4;
/// How many buffers the cache holds at most.
inline constexpr std::size_t buffer_cache_slots = 64;
/// A process idle this long frees the buffers it kept.
inline constexpr std::chrono::seconds buffer_idle_keep{1};
/// Vectors of plain values at least this large are decoded into memory asked for in huge pages
/// (codec/binary.hpp), and a worker keeps those it is done with for the next such argument
/// (recycled_vectors.hpp). Below it, malloc reuses freed memory from its heap by itself.
inline constexpr std::size_t bulk_vector_min = std::size_t{4} << 20;

// ---- Scheduling (scheduler.hpp) ----
/// Nanoseconds of queued work a worker's window may hold: one long job, or many short ones.
inline constexpr double window_budget_ns = 1'000'000.0;
/// A worker's window, in jobs, stays within these bounds (before maxtasksperchild).
inline constexpr std::size_t window_min = 2;
inline constexpr std::size_t window_max = 64;
/// The run time a new worker's jobs are assumed to take until it reports some.
inline constexpr double initial_job_ns = 1e6;
/// Weight of the newest run time in a worker's running mean.
inline constexpr double job_time_weight = 0.25;
/// A front job is "stuck" (its followers may be stolen) after max(this, 4 × the mean run time).
inline constexpr std::int64_t stuck_min_ns = 2'000'000;
inline constexpr double stuck_factor = 4.0;
/// Between SIGTERM for a task past its time limit and SIGKILL.
inline constexpr std::int64_t kill_grace_ns = 500'000'000;

// ---- The supervisor's loop (supervisor.hpp) ----
/// A waiting thread that stopped helping this recently is expected back: the pool's thread naps.
inline constexpr std::int64_t helped_recently_ns = 1'000'000;
/// How long the pool's thread naps while waiting threads do the I/O.
inline constexpr std::chrono::microseconds helped_wait{200};
/// A helping thread asks the transport for events (deaths, writable pipes) every this many rounds.
inline constexpr std::uint32_t helper_event_period = 16;
/// The longest the pool's thread sleeps without a reason to wake.
inline constexpr std::int64_t max_sleep_ns = 60'000'000'000;

// ---- The local transport (local/) ----
/// Events taken per epoll_wait.
inline constexpr int event_batch = 64;
/// Pipe capacity asked for, per direction and worker.
inline constexpr int pipe_bytes = 1 << 20;
/// Frames written per writev.
inline constexpr int write_batch = 64;
/// The result buffer of a worker: its usual size, the least free space before a read, and the
/// largest frame it is sized for at once (larger ones grow as their bytes arrive).
inline constexpr std::size_t read_buffer_bytes = 64 * 1024;
inline constexpr std::size_t read_min_free = 16 * 1024;
inline constexpr std::size_t read_reserve_max = std::size_t{256} << 20;
/// A frame at least this large, alone in the buffer, is handed over instead of copied.
inline constexpr std::size_t hand_over_bytes = 64 * 1024;
/// While workers may map segments the program destroyed, the transport looks this often.
inline constexpr std::int64_t segment_check_ns = 100'000'000;
/// How long to wait for the fork server's report of a worker's exit (ms).
inline constexpr int forkserver_report_ms = 5000;
/// The same, for a Process (which may be joined long after it exited).
inline constexpr int process_report_ms = 10'000;

// ---- Workers (worker.hpp) ----
/// A worker keeps buffers larger than this only while busy.
inline constexpr std::size_t worker_keep_bytes = 4 << 20;
inline constexpr std::size_t worker_in_bytes = 256 * 1024;
inline constexpr std::size_t worker_out_bytes = 64 * 1024;

// ---- Workforce (workforce.hpp) ----
/// Workers that die before they are ready this many times in a row stop the pool.
inline constexpr int start_failure_limit = 3;
/// PROCPOOL_WORKER_START_TIMEOUT_MS in nanoseconds, read when a worker is launched (a test may
/// shorten it).
inline std::atomic<std::int64_t>& worker_start_limit_ns() noexcept {
  static std::atomic<std::int64_t> ns{std::int64_t{PROCPOOL_WORKER_START_TIMEOUT_MS} * 1'000'000};
  return ns;
}

}  // namespace procpool::detail::config
