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
//                    shutdown   (pool 0) rank 0's program ends: the agent ends too
//   agent → rank 0   frame      a hello (aux: its worker count), init_error, result or failed
//                               frame, as the engine reads them
//                    bye        the agent's pool has ended

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/wire.hpp>

namespace procpool::detail::mpi {

enum class Op : std::uint32_t {
  open = 1,
  task = 2,
  close = 3,
  terminate = 4,
  shutdown = 5,
  frame = 10,
  bye = 11,
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

inline void put_record(Buffer& out, std::uint32_t pool, Op op, std::uint64_t aux,
                       std::span<const std::byte> bytes) {
  RecordHeader h{pool, op, aux, bytes.size()};
  out.append(&h, sizeof h);
  if (!bytes.empty()) out.append(bytes.data(), bytes.size());
}

/// One record of a message, as a view into it.
struct Record {
  std::uint32_t pool;
  Op op;
  std::uint64_t aux;
  std::span<const std::byte> bytes;
};

/// Calls `f(record)` for each record of `msg`; false if the message is malformed.
template <class F>
bool for_each_record(std::span<const std::byte> msg, F&& f) {
  while (!msg.empty()) {
    RecordHeader h;
    if (msg.size() < sizeof h) return false;
    std::memcpy(&h, msg.data(), sizeof h);
    msg = msg.subspan(sizeof h);
    if (h.size > msg.size()) return false;
    f(Record{h.pool, h.op, h.aux, msg.first(static_cast<std::size_t>(h.size))});
    msg = msg.subspan(static_cast<std::size_t>(h.size));
  }
  return true;
}

/// The header of the frame in `bytes`; false if `bytes` is not exactly one frame.
inline bool read_frame_header(std::span<const std::byte> bytes, FrameHeader& h) {
  if (bytes.size() < sizeof h) return false;
  std::memcpy(&h, bytes.data(), sizeof h);
  return h.magic == frame_magic && h.size == bytes.size() - sizeof h;
}

}  // namespace procpool::detail::mpi
