#pragma once
// What rank 0 and the other ranks' agents say to each other. A message is a batch of records,
// each one addressed to a pool (several pools share the ranks), so many small tasks travel in
// one MPI message:
//
//   u32 pool · u32 op · u64 aux · u64 length · bytes
//
//   rank 0 → agent   open       bytes: OpenSpec, then the initializer's payload (if any)
//                    task       aux: the job's time limit (ns); bytes: the task frame
//                    close      the agent's pool finishes its work and ends
//                    terminate  the agent's pool ends now
//                    cancel     aux: a job to cancel there (its worker is killed if it runs it)
//                    revoke     aux: a job to cancel there (a worker running it finishes it)
//                    shutdown   (pool 0) rank 0's program ends: the agent ends too
//   agent → rank 0   frame      a hello (aux: its worker count), init_error, result or failed
//                               frame (aux: as `stats`), as the engine reads them
//                    stats      aux: how many workers the agent's pool has replaced so far
//                    bye        the agent's pool has ended
//                    alive      (pool 0) nothing else to say for a second, but work in hand

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/wire.hpp>

namespace procpool::detail::mpi {

enum class Op : std::uint32_t {
  open = 1,
  task = 2,
  close = 3,
  terminate = 4,
  shutdown = 5,
  cancel = 6,
  revoke = 7,
  frame = 10,
  bye = 11,
  stats = 12,
  alive = 13,
};

struct RecordHeader {
  std::uint32_t pool;
  Op op;
  std::uint64_t aux;
  std::uint64_t size;
};
static_assert(sizeof(RecordHeader) == 24);

/// How an agent starts its pool (see mpi::Options).
struct OpenSpec {
  std::uint64_t processes;  // 0: that machine's cpu_count()
  std::uint64_t start;      // StartMethod
  std::uint64_t maxtasksperchild;
  std::uint64_t memory_limit;
};

// A record this large travels as a message of its own (its header ends the batch before it,
// marked `body_follows`), sent straight from the frame's buffer and received into one the
// receiver keeps: large arguments and results are not copied into and out of batches.
inline constexpr std::size_t detach_bytes = std::size_t{64} << 10;
inline constexpr std::uint32_t body_follows = std::uint32_t{1} << 31;

inline void put_record(Buffer& out, std::uint32_t pool, Op op, std::uint64_t aux,
                       std::span<const std::byte> bytes) {
  RecordHeader h{pool, op, aux, bytes.size()};
  out.append(&h, sizeof h);
  if (!bytes.empty()) out.append(bytes.data(), bytes.size());
}

/// The messages for one rank, in order: batches of records, and detached bodies.
class Outbox {
 public:
  void add(std::uint32_t pool, Op op, std::uint64_t aux, std::span<const std::byte> bytes) {
    put_record(batch(), pool, op, aux, bytes);
  }
  /// Like add; a large `bytes` is taken over and sent as it is.
  void add(std::uint32_t pool, Op op, std::uint64_t aux, Buffer&& bytes) {
    if (bytes.size() < detach_bytes) return add(pool, op, aux, bytes.span());
    RecordHeader h{pool, static_cast<Op>(static_cast<std::uint32_t>(op) | body_follows), aux,
                   bytes.size()};
    batch().append(&h, sizeof h);
    messages_.push_back(std::move(bytes));
    open_ = false;
  }
  bool empty() const noexcept { return messages_.empty(); }
  /// The messages to send, in order; the outbox is empty after.
  std::vector<Buffer> take() {
    std::vector<Buffer> m;
    m.swap(messages_);
    open_ = false;
    return m;
  }

 private:
  Buffer& batch() {
    if (!open_) {
      messages_.emplace_back();
      open_ = true;
    }
    return messages_.back();
  }
  std::vector<Buffer> messages_;
  bool open_ = false;  // the last message is a batch that takes more records
};

/// One record, as a view into its message (or its own message: `body`).
struct Record {
  std::uint32_t pool;
  Op op;
  std::uint64_t aux;
  std::span<const std::byte> bytes;
  Buffer* body = nullptr;  // a detached record's own message: may be moved from
};

/// Reads the messages from one rank, in order.
class Inbox {
 public:
  /// Calls `f(record)` for each record `msg` completes; false if it is malformed.
  template <class F>
  bool read(Buffer& msg, F&& f) {
    if (waiting_) {
      waiting_ = false;
      if (msg.size() != pending_.size) return false;
      f(Record{pending_.pool, pending_.op, pending_.aux, msg.span(), &msg});
      return true;
    }
    std::span<const std::byte> rest = msg.span();
    while (!rest.empty()) {
      RecordHeader h;
      if (rest.size() < sizeof h) return false;
      std::memcpy(&h, rest.data(), sizeof h);
      rest = rest.subspan(sizeof h);
      const auto op = static_cast<std::uint32_t>(h.op);
      if (op & body_follows) {
        if (!rest.empty()) return false;  // a detached record ends its batch
        pending_ = h;
        pending_.op = static_cast<Op>(op & ~body_follows);
        waiting_ = true;
        return true;
      }
      if (h.size > rest.size()) return false;
      f(Record{h.pool, h.op, h.aux, rest.first(static_cast<std::size_t>(h.size))});
      rest = rest.subspan(static_cast<std::size_t>(h.size));
    }
    return true;
  }

 private:
  bool waiting_ = false;  // the next message is the body of `pending_`
  RecordHeader pending_{};
};

/// The header of the frame in `bytes`; false if `bytes` is not exactly one frame.
inline bool read_frame_header(std::span<const std::byte> bytes, FrameHeader& h) {
  if (bytes.size() < sizeof h) return false;
  std::memcpy(&h, bytes.data(), sizeof h);
  return h.magic == frame_magic && h.size == bytes.size() - sizeof h;
}

}  // namespace procpool::detail::mpi
