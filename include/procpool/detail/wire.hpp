#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/config.hpp>

namespace procpool::detail {

/// See PROCPOOL_MAX_FRAME.
inline constexpr std::uint64_t max_frame = config::max_frame;

/// The job id a worker reports as running (WorkerSlot::job) while it runs its initializer: from
/// then on its start is the program's code, which has no time limit.
inline constexpr std::uint64_t initializer_job = ~std::uint64_t{0};

// Frames between the pool and a worker: a fixed header, then `size` bytes of payload. Headers
// are written only by the functions below (begin_frame, finish_frame, frame_with_id).
//
//   task    (pool → worker)  TaskRef, then `count` items: u64 length + encoded arguments
//   (2: not used; a worker stops at the end of its task stream. A peer that sends it is broken.)
//   hello   (worker → pool)  the worker ran its initializer and is ready
//   init_error (worker → pool)  one error item: the initializer failed; the worker exits
//   result  (worker → pool)  `count` items: u8 status, u64 length, bytes
//   init    (pool → worker)  like task, with one item: the initializer; sent first, if any
//   failed  (pool of workers → pool)  the whole job failed there (crash, time limit, …): an
//           error report (see ErrorInfo::put_report); only from a link with capacity above 1
//   shared_task (pool → worker)  a task frame that lies in shared memory: segment id, size
//           (see local/shared_frame.hpp); id, count and flags repeat the task's
//   shared_result (worker → pool)  a result frame that lies in one of the worker's memory
//           files: segment id, size (see local/shared_frame.hpp); id and count repeat the
//           result's
enum class FrameKind : std::uint8_t {
  task = 1,
  hello = 3,
  init_error = 4,
  result = 5,
  init = 6,
  doorbell = 7,  // (worker → pool) no payload: a result is waiting in the slot's ring
  failed = 8,
  shared_task = 9,
  shared_result = 10,
};

struct FrameHeader {
  std::uint32_t magic;
  std::uint8_t kind;
  std::uint8_t flags;  // task frames: frame_timed
  std::uint8_t reserved[2];
  std::uint32_t count;
  std::uint32_t run_ns;  // result frames: how long the job ran, in ns (saturated)
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

/// Fills in the header of the frame begun at `at`, now that its payload is complete: item count,
/// size, flags (a task's frame_timed) and, for a result, how long the job ran.
inline void finish_frame(Buffer& out, std::size_t at, std::uint32_t count, std::uint8_t flags = 0,
                         std::int64_t run_ns = 0) {
  FrameHeader h;
  std::memcpy(&h, out.data() + at, sizeof h);
  h.count = count;
  h.size = out.size() - at - sizeof h;
  h.flags = flags;
  h.run_ns = run_ns <= 0             ? 0
             : run_ns > 0xffffffffLL ? 0xffffffffu
                                     : static_cast<std::uint32_t>(run_ns);
  std::memcpy(out.data() + at, &h, sizeof h);
}

/// A copy of the whole frame `frame` under another id.
inline Buffer frame_with_id(const Buffer& frame, std::uint64_t id) {
  Buffer copy;
  copy.append(frame.data(), frame.size());
  FrameHeader h;
  std::memcpy(&h, copy.data(), sizeof h);
  h.id = id;
  std::memcpy(copy.data(), &h, sizeof h);
  return copy;
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
