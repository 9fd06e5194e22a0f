#pragma once
// The process's table of shared memory segments: the engine's side of segment.hpp (a worker's
// control socket, a forked child's reset).

#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>

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

}  // namespace procpool::detail
