#pragma once
// Shared memory segments: creating, adopting and finding them. Inline in a header-only build,
// compiled once by src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <string>

#include <procpool/detail/posix/random.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/segment_table.hpp>

namespace procpool::detail {

PROCPOOL_SEPARATE_BEGIN

PROCPOOL_DECL std::atomic<std::uint64_t>& segment_deaths() {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

PROCPOOL_SEPARATE_END

PROCPOOL_DECL std::shared_ptr<Segment> Segment::create(std::size_t size) {
  auto s = std::shared_ptr<Segment>(new Segment);
  // Registered (as every descriptor the library makes) so that a worker forked later does not
  // inherit it: workers get segments through their control socket, which also tells them when
  // to let go.
  posix::check(posix::make_memfd(size, s->fd_), "memfd_create");
  posix::check(s->map_.map_fd(s->fd_.get(), size), "mmap");
  s->size_ = size;
  return enlist(std::move(s));
}

PROCPOOL_DECL std::shared_ptr<Segment> Segment::create_descriptor(posix::UniqueFd fd) {
  auto s = std::shared_ptr<Segment>(new Segment);
  s->fd_ = std::move(fd);  // registered: a worker forked later gets it only if a task names it
  return enlist(std::move(s));
}

PROCPOOL_DECL std::shared_ptr<Segment> Segment::enlist(std::shared_ptr<Segment> s) {
  s->id_ = posix::unique_id();
  s->creator_ = true;
  auto& t = SegmentTable::get();
  std::lock_guard lock(t.m);
  t.live[s->id_] = s;
  return s;
}

PROCPOOL_DECL std::shared_ptr<Segment> Segment::adopt(std::uint64_t id, posix::UniqueFd fd,
                                                      std::size_t size) {
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

PROCPOOL_DECL Segment::~Segment() {
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

PROCPOOL_SEPARATE_BEGIN

PROCPOOL_DECL bool receive_segments(std::uint64_t until) {
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

PROCPOOL_DECL std::shared_ptr<Segment> find_segment(std::uint64_t id) {
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

PROCPOOL_DECL std::shared_ptr<Segment> read_segment(Reader& r) {
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

PROCPOOL_SEPARATE_END

}  // namespace procpool::detail
