#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include <procpool/codec.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/random.hpp>
#include <procpool/detail/posix/shm.hpp>
#include <procpool/errors.hpp>

namespace procpool::detail {

class Segment;

/// What a process knows about shared memory: every segment mapped here (by id), and in a worker,
/// the socket its pool sends segments on.
struct SegmentTable {
  std::mutex m;
  std::unordered_map<std::uint64_t, std::weak_ptr<Segment>> live;
  // A worker keeps what its pool sent until the pool says the segment is gone.
  std::unordered_map<std::uint64_t, std::shared_ptr<Segment>> held;
  int control_fd = -1;

  static SegmentTable& get() {
    static SegmentTable* t = new SegmentTable;  // never destroyed: segments may outlive statics
    return *t;
  }
  /// In a freshly forked worker: another thread may have held the lock at the fork, and the
  /// parent's segments reach the worker through its control socket anyway.
  static void reset_in_child() { new (&get()) SegmentTable; }
};

/// Counts segment destructions, so a pool can tell cheaply when to tell its workers to forget.
inline std::atomic<std::uint64_t>& segment_deaths() {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

/// A block of shared memory: an anonymous memory file, mapped here. Every handle in this process
/// (Value, Array, Mutex, …) shares one Segment; it is unmapped when the last handle goes.
class Segment {
 public:
  /// Creates `size` zero-filled bytes of shared memory.
  static std::shared_ptr<Segment> create(std::size_t size) {
    auto s = std::shared_ptr<Segment>(new Segment);
    // Registered (as every descriptor the library makes) so that a worker forked later does not
    // inherit it: workers get segments through their control socket, which also tells them when
    // to let go.
    posix::check(posix::make_memfd(size, s->fd_), "memfd_create");
    posix::check(s->map_.map_fd(s->fd_.get(), size), "mmap");
    s->size_ = size;
    return enlist(std::move(s));
  }

  /// Wraps a descriptor that is not memory (a pipe end) so it travels to workers the way
  /// segments do. Its size is 0, which no memory segment has, and it is never mapped.
  static std::shared_ptr<Segment> create_descriptor(posix::UniqueFd fd) {
    auto s = std::shared_ptr<Segment>(new Segment);
    s->fd_ = std::move(fd);  // registered: a worker forked later gets it only if a task names it
    return enlist(std::move(s));
  }

  // Gives a segment this process created its id and lists it among the live ones.
  static std::shared_ptr<Segment> enlist(std::shared_ptr<Segment> s) {
    s->id_ = random_id();
    s->creator_ = true;
    auto& t = SegmentTable::get();
    std::lock_guard lock(t.m);
    t.live[s->id_] = s;
    return s;
  }

  /// Maps a segment received from another process (the descriptor is closed after mapping). A
  /// size of 0 is a descriptor segment (see `create_descriptor`): its descriptor is kept instead.
  static std::shared_ptr<Segment> adopt(std::uint64_t id, posix::UniqueFd fd, std::size_t size) {
    if (size == 0) {
      auto s = std::shared_ptr<Segment>(new Segment);
      s->fd_ = std::move(fd);
      s->id_ = id;
      return s;
    }
    std::size_t actual = 0;
    posix::check(posix::file_size(fd.get(), actual), "lseek");
    if (actual < size) throw CodecError("shared memory segment is smaller than its handle says");
    auto s = std::shared_ptr<Segment>(new Segment);
    posix::check(s->map_.map_fd(fd.get(), size), "mmap");
    s->size_ = size;
    s->id_ = id;
    return s;
  }

  ~Segment() {
    if (creator_) {
      auto& t = SegmentTable::get();
      {
        std::lock_guard lock(t.m);
        auto it = t.live.find(id_);
        if (it != t.live.end() && it->second.expired()) t.live.erase(it);
      }
      segment_deaths().fetch_add(1, std::memory_order_release);
    }
  }

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

  static std::uint64_t random_id() noexcept { return posix::unique_id(); }

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

/// Reads what the pool has sent on the control socket; with `until` != 0, waits until that
/// segment has arrived. Returns false if the socket closed first.
inline bool receive_segments(std::uint64_t until) {
  auto& t = SegmentTable::get();
  if (t.control_fd < 0) return false;
  for (;;) {
    if (until != 0) {
      std::lock_guard lock(t.m);
      if (t.held.count(until)) return true;
    }
    ControlMessage msg{};
    posix::UniqueFd fd;
    std::error_code ec;
    auto n = posix::recv_message(t.control_fd, &msg, sizeof msg, fd, ec);
    if (n < 0 && ec == std::errc::resource_unavailable_try_again) {
      if (until == 0) return true;
      posix::wait_readable(t.control_fd, -1);
      continue;
    }
    if (n <= 0) return false;
    if (n != static_cast<std::ptrdiff_t>(sizeof msg)) continue;
    if (msg.kind == ControlMessage::forget) {
      std::lock_guard lock(t.m);
      t.held.erase(msg.id);
    } else if (msg.kind == ControlMessage::segment && !fd) {
      // Its descriptor was dropped on the way (this process had too many open): the one
      // waited for will not come.
      if (msg.id == until) return false;
    } else if (msg.kind == ControlMessage::segment) {
      auto s = Segment::adopt(msg.id, std::move(fd), msg.size);
      std::lock_guard lock(t.m);
      t.live[msg.id] = s;
      t.held[msg.id] = std::move(s);
    }
  }
}

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

/// The segment `id`, mapped here already or sent by the pool (waited for); nullptr if the pool
/// is gone before it came.
inline std::shared_ptr<Segment> find_segment(std::uint64_t id) {
  auto& t = SegmentTable::get();
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      std::lock_guard lock(t.m);
      auto it = t.live.find(id);
      if (it != t.live.end())
        if (auto s = it->second.lock()) return s;
    }
    if (attempt == 0 && !receive_segments(id)) break;
  }
  return nullptr;
}

/// Finds the segment a handle refers to: mapped here already, or sent by the pool.
inline std::shared_ptr<Segment> read_segment(Reader& r) {
  auto id = r.read<std::uint64_t>();
  auto size = r.read<std::uint64_t>();
  auto& t = SegmentTable::get();
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      std::lock_guard lock(t.m);
      auto it = t.live.find(id);
      if (it != t.live.end()) {
        if (auto s = it->second.lock()) {
          if (s->size() < size) r.fail("shared memory handle is larger than its segment");
          return s;
        }
      }
    }
    if (attempt == 0 && !receive_segments(id)) break;
  }
  r.fail("shared memory segment " + std::to_string(id) + " is not available in this process");
}

}  // namespace procpool::detail
