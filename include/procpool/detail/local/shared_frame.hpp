#pragma once
// Large task frames through shared memory. A frame of `config::shared_frame_min` bytes or more is
// copied into a memory file that the worker maps once, and the task pipe carries only a
// reference to it: the pool never waits for a worker to drain a 1 MiB pipe (on a busy machine a
// wake-up per pipeful, 30-300 µs each, cost more than the copies), and the worker decodes the
// arguments in place instead of reading them into a buffer first.
//
// The files are kept for the next large frame (pages already mapped copy several times faster
// than fresh ones). A file is in use while a job holds it (Job::shared_frame, until the job's
// answer comes or it fails); one that only the cache holds is free. The job keeps its own frame
// too: if it goes to another kind of worker (a pool elsewhere), that one gets the bytes.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include <procpool/detail/config.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/detail/worker_record.hpp>

namespace procpool::detail::local {

class SharedFrames {
 public:
  /// The process's cache (the program's: workers send results through their pipes).
  static SharedFrames& process() noexcept {
    static SharedFrames* c = new SharedFrames;  // never destroyed: jobs may outlive statics
    return *c;
  }

  /// A memory file of at least `n` bytes that no job uses; nullptr if none can be had within
  /// the limits (the frame then goes through the pipe).
  std::shared_ptr<Segment> acquire(std::size_t n) noexcept {
    std::lock_guard lock(m_);
    std::shared_ptr<Segment>* best = nullptr;
    for (auto& f : files_)
      if (f.use_count() == 1 && f->size() >= n && f->size() / 2 <= n &&
          (!best || f->size() < (*best)->size()))
        best = &f;
    if (best) return *best;
    constexpr std::size_t step = std::size_t{64} << 10;
    const std::size_t size = (n + step - 1) / step * step;
    // Free files beyond the cache's budget go first. Files in use are bounded in number (each
    // is a descriptor here) and in bytes (each job also keeps its own frame).
    drop_free_until(config::buffer_cache_bytes > size ? config::buffer_cache_bytes - size : 0);
    if (files_.size() >= config::shared_frames_max ||
        bytes_ + size > std::max(config::buffer_cache_bytes, config::shared_frames_max_bytes))
      return nullptr;
    try {
      files_.push_back(Segment::create(size));
      bytes_ += size;
      return files_.back();
    } catch (...) {
      return nullptr;
    }
  }

  /// In a freshly forked worker: the parent's files are not its own (their descriptors are
  /// closed there, and another thread may have held the lock at the fork).
  static void reset_in_child() noexcept { new (&process()) SharedFrames; }

  /// Lets go of every file no job uses (an idle pool, a pool that ends).
  void clear_free() noexcept {
    std::lock_guard lock(m_);
    drop_free_until(0);
  }

  std::size_t bytes() const noexcept {
    std::lock_guard lock(m_);
    return bytes_;
  }

 private:
  void drop_free_until(std::size_t limit) noexcept {
    for (std::size_t i = files_.size(); i-- > 0 && bytes_ > limit;) {
      if (files_[i].use_count() != 1) continue;
      bytes_ -= files_[i]->size();
      files_.erase(files_.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }

  mutable std::mutex m_;
  std::vector<std::shared_ptr<Segment>> files_;
  std::size_t bytes_ = 0;
};

/// The payload of a shared task frame: where the whole task frame (header included) lies.
struct SharedFrameRef {
  std::uint64_t segment;
  std::uint64_t size;
};

/// Moves a large task frame's bytes into shared memory and gives `job` the small frame that
/// refers to them. False (and `job` unchanged) if it is small or no memory file can be had.
/// (Not for workers under a memory limit: the files they keep mapped would count against it.)
inline bool share_frame(Job& job) {
  if (job.frame.size() < config::shared_frame_min || job.shared_frame) return false;
  FrameHeader h;
  std::memcpy(&h, job.frame.data(), sizeof h);
  if (h.kind != static_cast<std::uint8_t>(FrameKind::task)) return false;
  auto file = SharedFrames::process().acquire(job.frame.size());
  if (!file) return false;
  std::memcpy(file->data(), job.frame.data(), job.frame.size());
  Buffer ref;
  std::size_t at = begin_frame(ref, FrameKind::shared_task, h.id);
  const SharedFrameRef r{file->id(), job.frame.size()};
  ref.append(&r, sizeof r);
  finish_frame(ref, at, h.count, h.flags);
  job.indirect = std::move(ref);
  job.shared_frame = std::move(file);
  return true;
}

/// In a worker: the task frame a shared frame refers to, and the file that holds it (keep it
/// while the frame is in use). An empty span if the reference is not valid.
inline std::span<const std::byte> resolve_shared_frame(const FrameHeader& outer,
                                                       std::span<const std::byte> payload,
                                                       std::shared_ptr<Segment>& file) {
  SharedFrameRef r;
  if (payload.size() != sizeof r) return {};
  std::memcpy(&r, payload.data(), sizeof r);
  try {
    file = find_segment(r.segment);
  } catch (const std::exception&) {  // cannot be mapped here (out of address space, say)
    return {};
  }
  if (!file || file->is_descriptor() || r.size > file->size() || r.size < sizeof(FrameHeader))
    return {};
  std::span<const std::byte> frame(static_cast<const std::byte*>(file->data()),
                                   static_cast<std::size_t>(r.size));
  FrameHeader inner;
  std::memcpy(&inner, frame.data(), sizeof inner);
  if (inner.magic != frame_magic || inner.kind != static_cast<std::uint8_t>(FrameKind::task) ||
      inner.id != outer.id || inner.count != outer.count ||
      inner.size != r.size - sizeof(FrameHeader))
    return {};
  return frame;
}

}  // namespace procpool::detail::local
