#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include <procpool/detail/buffer.hpp>

#ifndef PROCPOOL_MAX_FRAME
/// The largest frame (task arguments or results of one task or chunk) in bytes. A larger one is a
/// CodecError for that task alone; a peer that announces one is treated as broken.
#define PROCPOOL_MAX_FRAME (std::uint64_t{1} << 32)
#endif

namespace procpool::detail {

inline constexpr std::uint64_t max_frame = PROCPOOL_MAX_FRAME;

/// A pause for a polling loop: lets the core's other hardware thread run, saves power.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Frames between the pool and a worker: a fixed header, then `size` bytes of payload.
//
//   task    (pool → worker)  TaskRef, then `count` items: u64 length + encoded arguments
//   stop    (pool → worker)  no payload; the worker exits after flushing
//   hello   (worker → pool)  the worker ran its initializer and is ready
//   init_error (worker → pool)  one error item: the initializer failed; the worker exits
//   result  (worker → pool)  `count` items: u8 status, u64 length, bytes
//   init    (pool → worker)  like task, with one item: the initializer; sent first, if any
enum class FrameKind : std::uint8_t {
  task = 1,
  stop = 2,
  hello = 3,
  init_error = 4,
  result = 5,
  init = 6,
  doorbell = 7,  // (worker → pool) no payload: a result is waiting in the slot's ring
};

struct FrameHeader {
  std::uint32_t magic;
  std::uint8_t kind;
  std::uint8_t flags;  // task frames: frame_timed
  std::uint8_t reserved[2];
  std::uint32_t count;
  std::uint32_t reserved2;
  std::uint64_t id;
  std::uint64_t size;
};
static_assert(sizeof(FrameHeader) == 32);

inline constexpr std::uint32_t frame_magic = 0x70706f6c;  // "ppol"
// The job has a time limit: the worker records when each of its items starts (a clock read per
// item, which untimed chunks of tiny tasks are spared).
inline constexpr std::uint8_t frame_timed = 1;

// Item status in a result frame.
enum class ItemStatus : std::uint8_t {
  ok = 0,            // bytes: the encoded result
  remote_error = 1,  // bytes: str type name, str message
  codec_error = 2,   // bytes: str message
  skipped = 3,       // no bytes: the job was taken back before it started (see WorkerSlot)
};

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
  // Jobs cancelled after they were sent to this worker: it skips them instead of running them.
  // The pool writes an id here, then reads `job`; the worker writes `job`, then reads here; so
  // (all seq_cst) either the worker skips the job or the pool sees it started and kills it.
  static constexpr std::size_t cancel_slots = 64;
  std::atomic<std::uint64_t> cancelled[cancel_slots] = {};
  std::atomic<std::uint32_t> cancel_next{0};

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
    std::size_t first = std::min(n, ring_size - off);
    std::memcpy(dst, ring + off, first);
    std::memcpy(static_cast<std::byte*>(dst) + first, ring, n - first);
  }
  void ring_write(std::uint64_t at, const void* src, std::size_t n) {
    std::size_t off = static_cast<std::size_t>(at % ring_size);
    std::size_t first = std::min(n, ring_size - off);
    std::memcpy(ring + off, src, first);
    std::memcpy(ring, static_cast<const std::byte*>(src) + first, n - first);
  }

  bool is_cancelled(std::uint64_t id) const {
    for (const auto& c : cancelled)
      if (c.load() == id) return true;
    return false;
  }
};

/// Starts a frame in `out`; returns its offset so `finish_frame` can fill in the size.
inline std::size_t begin_frame(Buffer& out, FrameKind kind, std::uint64_t id) {
  std::size_t at = out.size();
  FrameHeader h{};
  h.magic = frame_magic;
  h.kind = static_cast<std::uint8_t>(kind);
  h.id = id;
  out.append(&h, sizeof h);
  return at;
}

inline void finish_frame(Buffer& out, std::size_t at, std::uint32_t count) {
  FrameHeader h;
  std::memcpy(&h, out.data() + at, sizeof h);
  h.count = count;
  h.size = out.size() - at - sizeof h;
  std::memcpy(out.data() + at, &h, sizeof h);
}

inline void put_u64(Buffer& out, std::uint64_t v) {
  out.append(&v, sizeof v);
}

inline void put_str(Buffer& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s.data(), s.size());
}

/// Begins an item (status + length placeholder); returns the offset of the length.
inline std::size_t begin_item(Buffer& out, ItemStatus st) {
  auto s = static_cast<std::uint8_t>(st);
  out.append(&s, 1);
  std::size_t at = out.size();
  put_u64(out, 0);
  return at;
}

inline void finish_item(Buffer& out, std::size_t at) {
  std::uint64_t n = out.size() - at - sizeof(std::uint64_t);
  std::memcpy(out.data() + at, &n, sizeof n);
}

/// A bounds-checked cursor over frame payloads; any overrun sets `bad` instead of reading.
struct WireCursor {
  const std::byte* p;
  std::size_t left;
  bool bad = false;

  explicit WireCursor(std::span<const std::byte> s) : p(s.data()), left(s.size()) {}

  std::uint64_t u64() {
    std::uint64_t v = 0;
    if (left < sizeof v) {
      bad = true;
      return 0;
    }
    std::memcpy(&v, p, sizeof v);
    p += sizeof v;
    left -= sizeof v;
    return v;
  }
  std::uint8_t u8() {
    if (left < 1) {
      bad = true;
      return 0;
    }
    auto v = static_cast<std::uint8_t>(*p);
    ++p;
    --left;
    return v;
  }
  std::span<const std::byte> bytes(std::uint64_t n) {
    if (n > left) {
      bad = true;
      return {};
    }
    std::span<const std::byte> s(p, static_cast<std::size_t>(n));
    p += n;
    left -= static_cast<std::size_t>(n);
    return s;
  }
  std::string str() {
    auto s = bytes(u64());
    return std::string(reinterpret_cast<const char*>(s.data()), s.size());
  }
};

/// One item of a result frame, as a view into the frame's payload.
struct ItemView {
  ItemStatus status;
  std::span<const std::byte> bytes;
};

/// Splits a result payload into items; false if it is malformed.
template <class F>
bool for_each_item(std::span<const std::byte> payload, std::uint32_t count, F&& f) {
  WireCursor c(payload);
  for (std::uint32_t i = 0; i < count; ++i) {
    auto st = c.u8();
    auto bytes = c.bytes(c.u64());
    if (c.bad || st > 3) return false;
    f(ItemView{static_cast<ItemStatus>(st), bytes});
  }
  return c.left == 0;
}

}  // namespace procpool::detail
