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
//
// Large result frames go the other way the same way: a worker copies one into a memory file of
// its own (ResultFiles), sends that file once over the control socket, and the result pipe
// carries a reference. The pool decodes the result in place (ResultFileMap lends the frame to
// the job's outcome) and hands the file back when the outcome is let go. The result counts only
// once its reference arrives, which the worker writes after the whole frame: a worker that dies
// while copying loses nothing but its own job.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include <procpool/detail/atomic_ref.hpp>
#include <procpool/detail/config.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/detail/worker_record.hpp>

namespace procpool::detail::local {

class SharedFrames final : public BlockSource {
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
    drop_free_until(config::buffer_cache_bytes > size ? config::buffer_cache_bytes - size : 0,
                    config::shared_frames_max - 1);
    if (files_.size() >= config::shared_frames_max ||
        bytes_ + size > (config::buffer_cache_bytes > config::shared_frames_max_bytes
                             ? config::buffer_cache_bytes
                             : config::shared_frames_max_bytes))
      return nullptr;
    try {
      files_.push_back(Segment::create(size));
      bytes_ += size;
      return files_.back();
    } catch (...) {
      return nullptr;
    }
  }

  /// A task frame encoded straight into a file (see Buffer::use_source): share_frame then has
  /// nothing to copy.
  std::byte* get(std::size_t n, std::size_t& cap, std::shared_ptr<void>& owner) override {
    auto file = acquire(n);
    if (!file) return nullptr;
    cap = file->size();
    auto* p = static_cast<std::byte*>(file->data());
    owner = std::move(file);
    return p;
  }

  /// In a freshly forked worker: the parent's files are not its own (their descriptors are
  /// closed there, and another thread may have held the lock at the fork).
  static void reset_in_child() noexcept { new (&process()) SharedFrames; }

  /// Lets go of every file no job uses (an idle pool, a pool that ends).
  void clear_free() noexcept {
    std::lock_guard lock(m_);
    drop_free_until(0, 0);
  }

  std::size_t bytes() const noexcept {
    std::lock_guard lock(m_);
    return bytes_;
  }

 private:
  // Drops free files until at most `limit` bytes and `count` files are left (or none is free).
  void drop_free_until(std::size_t limit, std::size_t count) noexcept {
    for (std::size_t i = files_.size(); i-- > 0 && (bytes_ > limit || files_.size() > count);) {
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
  std::shared_ptr<Segment> file;
  if (job.frame.source() == &SharedFrames::process() && job.frame.owner()) {
    file = std::static_pointer_cast<Segment>(job.frame.owner());  // encoded there already
  } else {
    file = SharedFrames::process().acquire(job.frame.size());
    if (!file) return false;
    std::memcpy(file->data(), job.frame.data(), job.frame.size());
  }
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

// ---- Results --------------------------------------------------------------------------------

// A result file starts with a word that says who may touch it; the frame follows at
// `result_file_offset`. Pool and worker change it only by these steps:
//   free → lent (worker, about to write), dropped → lent (worker: it must send the file again),
//   lent → free (pool: the outcome let go), free → dropped (pool: unmapped while idle),
//   free/dropped → abandoned (worker: let go of it; the pool unmaps it when it sees that).
enum ResultFileState : std::uint32_t {
  result_file_free = 0,
  result_file_lent = 1,
  result_file_dropped = 2,
  result_file_abandoned = 3,
};
inline constexpr std::size_t result_file_offset = 64;

inline AtomicRef<std::uint32_t> result_file_state(const Segment& s) noexcept {
  return AtomicRef<std::uint32_t>(*static_cast<std::uint32_t*>(s.data()));
}

/// A worker's memory files for large results (at most config::result_files_max). Its result
/// buffer takes large blocks from here (Buffer::use_source), so a large result is encoded
/// straight into a file and only its reference is written to the pipe.
class ResultFiles final : public BlockSource {
 public:
  ResultFiles() = default;
  ResultFiles(const ResultFiles&) = delete;
  ResultFiles& operator=(const ResultFiles&) = delete;
  ~ResultFiles() { clear_free(); }

  std::byte* get(std::size_t n, std::size_t& cap, std::shared_ptr<void>& owner) override {
    File* f = claim(n);
    if (!f) return nullptr;
    try {
      owner = std::make_shared<Claim>(f->seg);
    } catch (...) {  // out of memory: the file stays free, the buffer uses malloc's
      result_file_state(*f->seg).store(result_file_free, std::memory_order_release);
      return nullptr;
    }
    cap = f->seg->size() - result_file_offset;
    return static_cast<std::byte*>(f->seg->data()) + result_file_offset;
  }

  /// Hands the one result frame in `out` to the pool through a memory file (copied there,
  /// unless it was encoded there) and leaves in `out` the small frame that refers to it. False
  /// (and `out` unchanged) if it is small or no file can be had: it then goes through the pipe.
  bool share(Buffer& out, int control_fd) {
    const std::size_t n = out.size();
    if (n < config::shared_frame_min || control_fd < 0) return false;
    FrameHeader h;
    std::memcpy(&h, out.data(), sizeof h);
    if (h.kind != static_cast<std::uint8_t>(FrameKind::result) || sizeof h + h.size != n)
      return false;
    std::shared_ptr<Claim> claimed;
    File* f = nullptr;
    if (out.source() == this && out.owner()) {  // encoded in place
      claimed = std::static_pointer_cast<Claim>(out.owner());
      for (auto& file : files_)
        if (file.seg == claimed->seg) f = &file;
    } else {
      f = claim(n);
    }
    if (!f) return false;
    if (!f->sent) {
      const ControlMessage msg{ControlMessage::segment, f->seg->id(), f->seg->size()};
      if (posix::send_message(control_fd, &msg, sizeof msg, f->seg->fd())) {
        if (!claimed) result_file_state(*f->seg).store(result_file_free);
        return false;
      }
      f->sent = true;
    }
    if (claimed) {
      claimed->published = true;  // the pool gives it back now
    } else {
      std::memcpy(static_cast<std::byte*>(f->seg->data()) + result_file_offset, out.data(), n);
    }
    out.reset();
    const std::size_t at = begin_frame(out, FrameKind::shared_result, h.id);
    const SharedFrameRef r{f->seg->id(), n};
    out.append(&r, sizeof r);
    finish_frame(out, at, h.count, 0, h.run_ns);
    return true;
  }

  bool empty() const noexcept { return files_.empty(); }

  /// Lets go of every file neither the pool nor the result buffer holds (an idle worker).
  void clear_free() noexcept {
    std::erase_if(files_, [](File& f) {
      std::uint32_t st = result_file_state(*f.seg).load(std::memory_order_acquire);
      while (st != result_file_lent)
        if (result_file_state(*f.seg).compare_exchange_weak(st, result_file_abandoned)) return true;
      return false;
    });
  }

 private:
  struct File {
    std::shared_ptr<Segment> seg;
    bool sent = false;  // the pool has the file (until it says it dropped it)
  };

  // A file the result buffer writes into: free again when the buffer lets go of it, unless it
  // went to the pool.
  struct Claim {
    explicit Claim(std::shared_ptr<Segment> s) noexcept : seg(std::move(s)) {}
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;
    ~Claim() {
      if (!published) result_file_state(*seg).store(result_file_free, std::memory_order_release);
    }
    std::shared_ptr<Segment> seg;
    bool published = false;
  };

  // A file of at least `n` bytes of frame, now lent; nullptr if none can be had.
  File* claim(std::size_t n) {
    const std::size_t need = result_file_offset + n;
    for (int pass = 0; pass < 2; ++pass) {
      File* best = nullptr;
      for (auto& f : files_)
        if (f.seg->size() >= need && f.seg->size() / 2 <= need &&
            result_file_state(*f.seg).load(std::memory_order_acquire) != result_file_lent &&
            (!best || f.seg->size() < best->seg->size()))
          best = &f;
      if (best && take(*best)) return best;
    }
    // None fits: make room by letting go of free ones, then make a new one.
    constexpr std::size_t step = std::size_t{64} << 10;
    const std::size_t size = (need + step - 1) / step * step;
    if (!room_for(size)) {
      clear_free();
      if (!room_for(size)) return nullptr;
    }
    try {
      files_.push_back(File{Segment::create(size), false});
    } catch (...) {  // out of memory or descriptors: the pipe will do
      return nullptr;
    }
    result_file_state(*files_.back().seg).store(result_file_lent, std::memory_order_release);
    return &files_.back();
  }

  bool room_for(std::size_t size) const noexcept {
    std::size_t bytes = 0;
    for (const auto& f : files_) bytes += f.seg->size();
    return files_.size() < config::result_files_max &&
           bytes + size <= config::shared_frames_max_bytes;
  }

  static bool take(File& f) noexcept {
    auto state = result_file_state(*f.seg);
    std::uint32_t st = state.load(std::memory_order_acquire);
    while (st == result_file_free || st == result_file_dropped) {
      if (state.compare_exchange_weak(st, result_file_lent, std::memory_order_acquire)) {
        if (st == result_file_dropped) f.sent = false;
        return true;
      }
    }
    return false;
  }

  std::vector<File> files_;
};

/// The pool's side of one worker's result files: what it has received on the control socket.
class ResultFileMap {
 public:
  /// The result frame a shared result frame (header `outer`, payload `ref`) refers to, lent
  /// until the returned pointer and its copies are let go (the file then goes back to the
  /// worker). Null if the reference is not valid: the worker is then not trusted any more.
  std::shared_ptr<const std::byte> lend(const FrameHeader& outer, std::span<const std::byte> ref,
                                        int control_fd, FrameHeader& inner,
                                        std::size_t& frame_size) {
    SharedFrameRef r;
    if (ref.size() != sizeof r) return nullptr;
    std::memcpy(&r, ref.data(), sizeof r);
    auto it = files_.find(r.segment);
    if (it == files_.end() && !receive(control_fd, r.segment)) return nullptr;
    it = files_.find(r.segment);
    if (it == files_.end()) return nullptr;
    const std::shared_ptr<Segment>& file = it->second;
    if (r.size < sizeof(FrameHeader) || r.size > file->size() - result_file_offset ||
        result_file_state(*file).load(std::memory_order_acquire) != result_file_lent)
      return nullptr;
    const auto* frame = static_cast<const std::byte*>(file->data()) + result_file_offset;
    std::memcpy(&inner, frame, sizeof inner);
    if (inner.magic != frame_magic || inner.kind != static_cast<std::uint8_t>(FrameKind::result) ||
        inner.id != outer.id || inner.count != outer.count ||
        inner.size != r.size - sizeof(FrameHeader))
      return nullptr;
    frame_size = static_cast<std::size_t>(r.size);
    auto lease = std::make_shared<Lease>(file);
    return std::shared_ptr<const std::byte>(std::move(lease), frame);
  }

  /// Unmaps the files no outcome holds (an idle pool): the worker sends one again before it
  /// uses it next.
  void drop_free() noexcept {
    std::erase_if(files_, [](auto& e) {
      if (e.second.use_count() != 1) return false;
      auto state = result_file_state(*e.second);
      std::uint32_t st = result_file_free;
      return state.compare_exchange_strong(st, result_file_dropped) || st == result_file_abandoned;
    });
  }

  std::size_t size() const noexcept { return files_.size(); }

 private:
  // Holds a lent file; letting go gives it back to the worker.
  struct Lease {
    explicit Lease(std::shared_ptr<Segment> f) noexcept : file(std::move(f)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { result_file_state(*file).store(result_file_free, std::memory_order_release); }
    std::shared_ptr<Segment> file;
  };

  // Takes in the files the worker has sent, until `id` is among them; false if it is not there
  // (the worker sends a file before any reference to it, so it would have to be).
  bool receive(int control_fd, std::uint64_t id) {
    for (;;) {
      ControlMessage msg{};
      posix::UniqueFd fd;
      std::error_code ec;
      const auto n = posix::recv_message(control_fd, &msg, sizeof msg, fd, ec);
      if (n != static_cast<std::ptrdiff_t>(sizeof msg)) return false;
      if (msg.kind != ControlMessage::segment || !fd || msg.size <= result_file_offset ||
          msg.size > max_frame + result_file_offset + (std::size_t{64} << 10))
        return false;
      try {
        files_[msg.id] = Segment::adopt(msg.id, std::move(fd), static_cast<std::size_t>(msg.size));
      } catch (const std::exception&) {  // cannot be mapped here
        return false;
      }
      if (msg.id == id) return true;
    }
  }

  std::unordered_map<std::uint64_t, std::shared_ptr<Segment>> files_;
};

}  // namespace procpool::detail::local
