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
// are written only by the functions below (begin_frame, finish_frame, note_frame_cpu,
// frame_with_id).
//
//   task    (pool → worker)  TaskRef, then `count` items: u64 length + encoded arguments; or a
//           packed run (see packed_marker): u64 packed_marker, u64 size, `count` × size bytes
//   (2: not used; a worker stops at the end of its task stream. A peer that sends it is broken.)
//   hello   (worker → pool)  the worker ran its initializer and is ready
//   init_error (worker → pool)  one error item: the initializer failed; the worker exits
//   result  (worker → pool)  `count` items: u8 status, u64 length, bytes; or a packed run:
//           u8 ItemStatus::packed, u64 size, `count` × size bytes, every item ok
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
  std::uint16_t cpu;   // result and hello frames: the CPU the worker ran on, plus 1 (0: unknown)
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
  // Not an item's status: the payload is one packed run of `count` values of one size, all ok
  // (a chunk of a map over plain values, checked and copied whole instead of item by item).
  packed = 4,
};

/// In a task payload, where an item's length would be: the rest is a packed run of arguments,
/// u64 size, then `count` × size bytes (a map's chunk of plain values).
inline constexpr std::uint64_t packed_marker = ~std::uint64_t{0};

/// The values of a packed run, `count` of `size` bytes each, if `rest` (after the run's
/// u64 size) holds exactly that; `size` 0 only for a run of no bytes (void results).
inline bool packed_run_fits(std::uint64_t size, std::uint32_t count, std::size_t rest) noexcept {
  if (size == 0) return rest == 0;
  return rest % size == 0 && rest / size == count;
}

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

/// Notes in the header of the frame begun at `at` the CPU its worker ran on (-1: unknown).
inline void note_frame_cpu(Buffer& out, std::size_t at, int cpu) {
  FrameHeader h;
  std::memcpy(&h, out.data() + at, sizeof h);
  h.cpu = cpu >= 0 && cpu < 0xffff ? static_cast<std::uint16_t>(cpu + 1) : std::uint16_t{0};
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

/// If `payload` is a packed run of `count` results, its value size and values; false if it is
/// not packed. `bad` is set for a packed run whose size does not match `count`.
inline bool packed_results(std::span<const std::byte> payload, std::uint32_t count,
                           std::uint64_t& size, std::span<const std::byte>& values, bool& bad) {
  if (count == 0 || payload.empty() || payload[0] != static_cast<std::byte>(ItemStatus::packed))
    return false;
  WireCursor c(payload.subspan(1));
  size = c.u64();
  bad = c.bad || !packed_run_fits(size, count, c.left);
  values = bad ? std::span<const std::byte>{} : std::span<const std::byte>(c.p, c.left);
  return true;
}

/// Splits a result payload into items (a packed run too); false if it is malformed.
template <class F>
bool for_each_item(std::span<const std::byte> payload, std::uint32_t count, F&& f) {
  std::uint64_t size = 0;
  std::span<const std::byte> values;
  bool bad = false;
  if (packed_results(payload, count, size, values, bad)) {
    if (bad) return false;
    const auto n = static_cast<std::size_t>(size);
    for (std::uint32_t i = 0; i < count; ++i) f(ItemView{ItemStatus::ok, values.subspan(i * n, n)});
    return true;
  }
  WireCursor c(payload);
  for (std::uint32_t i = 0; i < count; ++i) {
    auto st = c.u8();
    auto bytes = c.bytes(c.u64());
    if (c.bad || st > 3) return false;
    f(ItemView{static_cast<ItemStatus>(st), bytes});
  }
  return c.left == 0;
}

/// Counts a result payload's ok and failed items, checking it as for_each_item does; a packed
/// run is checked without visiting its items.
inline bool count_outcomes(std::span<const std::byte> payload, std::uint32_t count,
                           std::uint64_t& ok, std::uint64_t& failed) {
  std::uint64_t size = 0;
  std::span<const std::byte> values;
  bool bad = false;
  if (packed_results(payload, count, size, values, bad)) {
    ok += bad ? 0 : count;
    return !bad;
  }
  return for_each_item(payload, count,
                       [&](const ItemView& it) { (it.status == ItemStatus::ok ? ok : failed)++; });
}

}  // namespace procpool::detail
