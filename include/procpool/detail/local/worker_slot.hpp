#pragma once
// The status slot of a local worker: memory the pool and one worker process share (a memory file
// mapped by both). Owned by LocalTransport (one mapping for all its workers); the worker writes
// its status and small results here, the link (local/link.hpp) reads them.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <procpool/detail/config.hpp>
#include <procpool/detail/result_bell.hpp>

namespace procpool::detail {

/// What a worker is doing, in memory it shares with its pool: the pool enforces time limits per
/// task from the moment the task really started, also inside a chunk of a map.
struct alignas(64) WorkerSlot {
  std::atomic<std::uint64_t> job{0};        // id of the job running; 0 between jobs
  std::atomic<std::int64_t> item_start{0};  // steady-clock ns when its current item started
  // Bytes the pool has written to the worker's task pipe: an idle worker watches this instead of
  // asking the kernel again and again whether a task came.
  std::atomic<std::uint64_t> sent{0};
  // Bytes the worker has written to its result pipe, so a thread polling for results looks at
  // memory, not at the kernel, until one is there.
  std::atomic<std::uint64_t> returned{0};
  // Whether an idle worker may poll `sent` before it sleeps: the pool's process measures which
  // way its waits are shorter (SpinGovernor::spinning) and says so here.
  std::atomic<std::uint32_t> may_poll{1};
  // Jobs revoked after they were sent to this worker: it skips them instead of running them.
  // A set, not a ring: an entry stays until the job's answer has come (0 marks a free one), so a
  // revocation is never forgotten while the worker may still reach the job. The pool counts
  // `cancel_live` up, writes an id, then reads `job`; the worker writes `job`, then reads these;
  // so (all seq_cst) either the worker skips the job or the pool sees that it started it.
  static constexpr std::size_t cancel_slots = config::window_max;
  std::atomic<std::uint64_t> cancelled[cancel_slots] = {};
  std::atomic<std::uint32_t> cancel_live{0};  // entries in use: none (the usual case), no scan

  // Small results travel through this ring instead of the result pipe: no system call per task,
  // and a result is in the pool's memory before the worker starts its next task, so a crash in
  // that task loses nothing. The worker writes a whole frame, then publishes `ring_tail`; the
  // pool copies it out, checks it like any frame, then advances `ring_head`. A pool about to
  // sleep sets `reader_sleeping`; a worker that finds it set rings the doorbell (a frame on the
  // result pipe). Results are matched to jobs by id, so the two ways may interleave.
  static constexpr std::size_t ring_size = 64 * 1024;
  static constexpr std::size_t ring_max_frame = ring_size / 4;
  alignas(64) std::atomic<std::uint64_t> ring_tail{0};
  alignas(64) std::atomic<std::uint64_t> ring_head{0};
  std::atomic<std::uint32_t> reader_sleeping{0};
  std::byte ring[ring_size];

  void ring_read(std::uint64_t at, void* dst, std::size_t n) const {
    std::size_t off = static_cast<std::size_t>(at % ring_size);
    const std::size_t room = ring_size - off;
    std::size_t first = n < room ? n : room;
    std::memcpy(dst, ring + off, first);
    std::memcpy(static_cast<std::byte*>(dst) + first, ring, n - first);
  }
  void ring_write(std::uint64_t at, const void* src, std::size_t n) {
    std::size_t off = static_cast<std::size_t>(at % ring_size);
    const std::size_t room = ring_size - off;
    std::size_t first = n < room ? n : room;
    std::memcpy(ring + off, src, first);
    std::memcpy(ring, static_cast<const std::byte*>(src) + first, n - first);
  }

  bool is_cancelled(std::uint64_t id) const {
    if (cancel_live.load() == 0) return false;
    for (const auto& c : cancelled)
      if (c.load() == id) return true;
    return false;
  }
};

/// The layout of the status slots' memory file: the pool's result bell, then one WorkerSlot per
/// worker.
struct SlotFile {
  static constexpr std::size_t header = sizeof(ResultBell);
  static_assert(header % alignof(WorkerSlot) == 0);

  static constexpr std::size_t bytes(std::size_t workers) noexcept {
    return header + workers * sizeof(WorkerSlot);
  }
  static ResultBell* bell(void* base) noexcept { return static_cast<ResultBell*>(base); }
  static WorkerSlot* slot(void* base, std::size_t i) noexcept {
    return reinterpret_cast<WorkerSlot*>(static_cast<std::byte*>(base) + header) + i;
  }
};

}  // namespace procpool::detail
