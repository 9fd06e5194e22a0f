#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <procpool/codec.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/shm.hpp>
#include <procpool/detail/separate.hpp>
#include <procpool/errors.hpp>

namespace procpool::detail {

class Segment;

struct SegmentTable;  // segment_table.hpp: the engine's side

PROCPOOL_SEPARATE_BEGIN
/// Counts segment destructions, so a pool can tell cheaply when to tell its workers to forget.
PROCPOOL_DECL std::atomic<std::uint64_t>& segment_deaths();
PROCPOOL_SEPARATE_END

/// A block of shared memory: an anonymous memory file, mapped here. Every handle in this process
/// (Value, Array, Mutex, …) shares one Segment; it is unmapped when the last handle goes.
class Segment {
 public:
  /// Creates `size` zero-filled bytes of shared memory.
  PROCPOOL_DECL static std::shared_ptr<Segment> create(std::size_t size);

  /// Wraps a descriptor that is not memory (a pipe end) so it travels to workers the way
  /// segments do. Its size is 0, which no memory segment has, and it is never mapped.
  PROCPOOL_DECL static std::shared_ptr<Segment> create_descriptor(posix::UniqueFd fd);

  // Gives a segment this process created its id and lists it among the live ones.
  PROCPOOL_DECL static std::shared_ptr<Segment> enlist(std::shared_ptr<Segment> s);

  /// Maps a segment received from another process (the descriptor is closed after mapping). A
  /// size of 0 is a descriptor segment (see `create_descriptor`): its descriptor is kept instead.
  PROCPOOL_DECL static std::shared_ptr<Segment> adopt(std::uint64_t id, posix::UniqueFd fd,
                                                      std::size_t size);

  PROCPOOL_DECL ~Segment();

  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  std::uint64_t id() const noexcept { return id_; }
  std::size_t size() const noexcept { return size_; }
  void* data() const noexcept { return map_.get(); }
  /// The memory file, in the process that created it; -1 elsewhere. A descriptor segment's
  /// descriptor, in every process that has it.
  int fd() const noexcept { return fd_.get(); }
  /// True for a descriptor segment (size 0, nothing mapped).
  bool is_descriptor() const noexcept { return size_ == 0; }

 private:
  Segment() = default;

  std::uint64_t id_ = 0;
  std::size_t size_ = 0;
  bool creator_ = false;
  posix::UniqueFd fd_;
  posix::SharedMapping map_;
};

/// A message on a worker's control socket.
struct ControlMessage {
  enum Kind : std::uint64_t { segment = 1, forget = 2 };
  std::uint64_t kind;
  std::uint64_t id;
  std::uint64_t size;
};

PROCPOOL_SEPARATE_BEGIN

/// Reads what the pool has sent on the control socket; with `until` != 0, waits until that
/// segment has arrived. Returns false if the socket closed first.
PROCPOOL_DECL bool receive_segments(std::uint64_t until);

PROCPOOL_SEPARATE_END

// Segments referenced while encoding a task's arguments, so the pool can send them to the
// worker that gets the task.
inline thread_local std::vector<std::shared_ptr<Segment>>* current_attachments = nullptr;

class AttachScope {
 public:
  explicit AttachScope(std::vector<std::shared_ptr<Segment>>& into) noexcept
      : saved_(current_attachments) {
    current_attachments = &into;
  }
  ~AttachScope() { current_attachments = saved_; }
  AttachScope(const AttachScope&) = delete;
  AttachScope& operator=(const AttachScope&) = delete;

 private:
  std::vector<std::shared_ptr<Segment>>* saved_;
};

/// Encodes a reference to `s` (its id and size: the bytes themselves never travel).
inline void write_segment(Writer& w, const std::shared_ptr<Segment>& s) {
  w.write(s->id());
  w.write(static_cast<std::uint64_t>(s->size()));
  if (current_attachments) current_attachments->push_back(s);
}

PROCPOOL_SEPARATE_BEGIN

/// The segment `id`, mapped here already or sent by the pool (waited for); nullptr if the pool
/// is gone before it came.
PROCPOOL_DECL std::shared_ptr<Segment> find_segment(std::uint64_t id);

/// Finds the segment a handle refers to: mapped here already, or sent by the pool.
PROCPOOL_DECL std::shared_ptr<Segment> read_segment(Reader& r);

PROCPOOL_SEPARATE_END

}  // namespace procpool::detail

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/segment_impl.hpp>
#endif
