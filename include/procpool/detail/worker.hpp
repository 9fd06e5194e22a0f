#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <thread>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/clock.hpp>
#include <procpool/detail/config.hpp>
#include <procpool/detail/cpu_relax.hpp>
#include <procpool/detail/invoke.hpp>
#include <procpool/detail/local/shared_frame.hpp>
#include <procpool/detail/local/worker_slot.hpp>
#include <procpool/detail/posix/cpu.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/launch.hpp>
#include <procpool/detail/posix/module.hpp>
#include <procpool/detail/posix/shm.hpp>
#include <procpool/detail/recycled_vectors.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/segment_table.hpp>
#include <procpool/detail/wire.hpp>

namespace procpool::detail {

/// Resolves image addresses in a worker, remembering recent ones.
class AddressCache {
 public:
  /// `modules`: the loaded objects as the parent saw them just before it forked this process
  /// (see posix::ModuleTable), looked up first; nullptr in a worker started otherwise.
  explicit AddressCache(const posix::ModuleTable* modules = nullptr) : modules_(modules) {}

  std::uintptr_t resolve(const posix::ImageAddress& a) {
    if (a.module == 0 && a.offset == 0) return 0;
    for (auto& e : entries_)
      if (e.used && e.addr.module == a.module && e.addr.offset == a.offset) return e.resolved;
    void* code = modules_ ? modules_->resolve(a) : nullptr;
    auto p = reinterpret_cast<std::uintptr_t>(code ? code : posix::resolve_code(a));
    if (p == 0) return 0;
    auto& slot = entries_[next_++ % std::size(entries_)];
    slot = {true, a, p};
    return p;
  }

 private:
  struct Entry {
    bool used = false;
    posix::ImageAddress addr;
    std::uintptr_t resolved = 0;
  };
  const posix::ModuleTable* modules_;
  Entry entries_[16];
  std::size_t next_ = 0;
};

/// Exit codes a worker uses for its own failures (a task's `exit(n)` uses the others).
enum WorkerExit : int {
  worker_ok = 0,
  worker_init_failed = 117,
  worker_bad_frame = 118,
  worker_io_error = 119,
};

/// What a worker needs from its parent: its channels (task and result streams, the control socket
/// for shared memory, the status slot) and its settings.
struct WorkerContext {
  int task_fd = -1;    // frames from the pool
  int result_fd = -1;  // frames to the pool
  std::size_t maxtasks = 0;
  bool has_init = false;       // an init frame comes first
  WorkerSlot* slot = nullptr;  // shared with the pool
  ResultBell* bell = nullptr;  // rung for a waiting thread (see ResultBell)
  int control_fd = -1;         // shared memory segments from the pool
  // fork: the parent's loaded objects at the fork, for resolving tasks (see posix::ModuleTable).
  const posix::ModuleTable* modules = nullptr;
};

class WorkerLoop {
 public:
  explicit WorkerLoop(const WorkerContext& ctx)
      : ctx_(ctx),
        // Under a memory limit the files would count against it: large results take the pipe.
        share_results_(ctx.control_fd >= 0 && !posix::address_space_limited()),
        cache_(ctx.modules) {
    in_.reserve(config::worker_in_bytes);
    if (share_results_) out_.use_source(&results_);  // large results are encoded into files
    // Kept vectors would count against a memory limit too.
    if (!posix::address_space_limited()) RecycledVectors::process().enable();
    out_.reserve(config::worker_out_bytes);
  }

  int run() {
    if (ctx_.control_fd >= 0) {
      (void)posix::set_nonblocking(ctx_.control_fd, true);
      SegmentTable::get().control_fd = ctx_.control_fd;
    }
    if (ctx_.has_init) {
      // From here on the start is the program's (its initializer), which the pool does not time.
      if (ctx_.slot) ctx_.slot->job.store(initializer_job);
      // The initializer's frame is the first thing the pool sends.
      while (!complete_frame()) {
        if (fill() <= 0) return worker_io_error;
      }
      FrameHeader h;
      std::memcpy(&h, in_.data(), sizeof h);
      if (h.magic != frame_magic || h.kind != static_cast<std::uint8_t>(FrameKind::init))
        return worker_bad_frame;
      std::size_t at = begin_frame(out_, FrameKind::init_error, 0);
      if (!run_items(std::span<const std::byte>(in_.data() + sizeof h, h.size), 1, true, 0)) {
        finish_frame(out_, at, 1);
        flush();
        return worker_init_failed;
      }
      out_.clear();
      in_.consume(sizeof h + h.size);
      if (ctx_.slot) ctx_.slot->job.store(0);
    }
    const std::size_t hello = begin_frame(out_, FrameKind::hello, 0);
    finish_frame(out_, hello, 0);
    note_frame_cpu(out_, hello, posix::current_cpu());
    if (!flush()) return worker_io_error;
    (void)posix::set_nonblocking(ctx_.task_fd, true);

    std::size_t pos = 0;
    for (;;) {
      while (in_.size() - pos >= sizeof(FrameHeader)) {
        FrameHeader h;
        std::memcpy(&h, in_.data() + pos, sizeof h);
        if (h.magic != frame_magic || h.size > max_frame) return worker_bad_frame;
        if (in_.size() - pos - sizeof h < h.size) {
          in_.reserve(pos + sizeof h + h.size);
          break;
        }
        std::span<const std::byte> payload(in_.data() + pos + sizeof h, h.size);
        pos += sizeof h + h.size;
        std::shared_ptr<Segment> shared;  // holds a task frame that lies in shared memory
        if (h.kind == static_cast<std::uint8_t>(FrameKind::shared_task)) {
          // Started from here on: if its file were never to come, the job's time limit still
          // applies (the pool measures it from this moment).
          if (ctx_.slot) {
            ctx_.slot->item_start.store(now_ns(), std::memory_order_release);
            ctx_.slot->job.store(h.id);
          }
          auto frame = local::resolve_shared_frame(h, payload, shared);
          if (frame.empty()) return worker_bad_frame;
          std::memcpy(&h, frame.data(), sizeof h);
          payload = frame.subspan(sizeof h);
        } else if (h.kind != static_cast<std::uint8_t>(FrameKind::task)) {
          return worker_bad_frame;
        }

        auto t0 = std::chrono::steady_clock::now();
        std::size_t at = begin_frame(out_, FrameKind::result, h.id);
        if (ctx_.slot) {
          // The start time first: the pool reads `job`, then the time it started.
          ctx_.slot->item_start.store(now_ns(), std::memory_order_release);
          ctx_.slot->job.store(h.id);
        }
        if (ctx_.slot && ctx_.slot->is_cancelled(h.id)) {
          for (std::uint32_t i = 0; i < h.count; ++i)
            finish_item(out_, begin_item(out_, ItemStatus::skipped));
          ctx_.slot->job.store(0);
        } else if (!run_items(payload, h.count, false, h.id, (h.flags & frame_timed) != 0)) {
          return worker_bad_frame;
        }
        // The run time tells the pool how many jobs to line up for this worker.
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::steady_clock::now() - t0)
                            .count();
        finish_frame(out_, at, h.count, 0, ns);
        if (out_.size() - at > max_frame) replace_oversized(at, h, ns);
        note_frame_cpu(out_, at, posix::current_cpu());
        ++done_;

        // Every job's result leaves before the next job starts: if that one crashes, nothing
        // already finished is lost or run twice. (A chunk of a map is one job, one result.)
        if (!publish()) return worker_io_error;
        if (ctx_.maxtasks != 0 && done_ >= ctx_.maxtasks) {
          flush();
          return worker_ok;
        }
      }
      in_.consume(pos);
      pos = 0;
      if (!out_.empty() && !flush()) return worker_io_error;
      int r = fill();
      if (r == 0) return worker_ok;  // the pool closed our pipe: shut down
      if (r < 0) return worker_io_error;
    }
  }

 private:
  bool complete_frame() const {
    if (in_.size() < sizeof(FrameHeader)) return false;
    FrameHeader h;
    std::memcpy(&h, in_.data(), sizeof h);
    return h.size <= max_frame && in_.size() - sizeof h >= h.size;
  }

  // Reads more input: 1 got some, 0 EOF, -1 error. Polls briefly before blocking.
  int fill() {
    if (in_.capacity() - in_.size() < 64 * 1024) in_.reserve(in_.size() + 64 * 1024);
    const std::int64_t t0 = now_ns();
    const std::int64_t spin_until = t0 + std::int64_t{config::worker_spin_us} * 1000;
    // Spins only while the pool says spinning pays (see SpinGovernor). No lost-core watch here:
    // each step yields, and a yield to another thread counts as an involuntary switch, which such
    // a watch takes for a neighbour taking the core (idle workers then slept on a quiet machine).
    bool spun = !may_poll();
    for (;;) {
      if (spun || !ctx_.slot || ctx_.slot->sent.load(std::memory_order_acquire) != received_) {
        std::error_code ec;
        auto n = posix::read_some(ctx_.task_fd, in_.data() + in_.size(),
                                  in_.capacity() - in_.size(), ec);
        if (n > 0) {
          in_.resize(in_.size() + static_cast<std::size_t>(n));
          received_ += static_cast<std::uint64_t>(n);
          return 1;
        }
        if (n == 0) return 0;
        if (ec != std::errc::resource_unavailable_try_again) return -1;
      }
      if (!spun) {
        const std::int64_t t = now_ns();
        if (t >= spin_until || !may_poll()) spun = true;
      }
      if (spun) {
        // Idle: also take in segments the pool sent, and let go of those it says are gone.
        // Large buffers are kept for the next large task, but not for an idle second.
        bool big = in_.capacity() > config::worker_keep_bytes ||
                   out_.capacity() > config::worker_keep_bytes ||
                   BufferCache::process().bytes() > 0 || RecycledVectors::process().bytes() > 0 ||
                   !results_.empty();
        int ready = posix::wait_either(ctx_.task_fd, ctx_.control_fd, big ? 1000 : -1);
        if (ready == 0) {
          if (in_.empty()) in_ = Buffer();
          out_.reset();
          BufferCache::process().clear();
          RecycledVectors::process().clear();
          results_.clear_free();
          in_.reserve(in_.size() + 64 * 1024);
        }
        if (ready & 2) receive_segments(0);
        continue;
      }
      for (int i = 0; i < 32; ++i) {
        if (ctx_.slot && ctx_.slot->sent.load(std::memory_order_acquire) != received_) break;
        cpu_relax();
      }
      std::this_thread::yield();  // a busy machine's other processes come first
    }
  }

  bool may_poll() const noexcept {
    return !ctx_.slot || ctx_.slot->may_poll.load(std::memory_order_relaxed) != 0;
  }

  // Hands the result in `out_` to the pool: through the slot's ring when it fits (see
  // WorkerSlot), else through the pipe.
  bool publish() {
    WorkerSlot* s = ctx_.slot;
    std::size_t n = out_.size();
    // A large result goes through one of this worker's memory files, its reference by the pipe.
    if (share_results_ && n >= config::shared_frame_min && results_.share(out_, ctx_.control_fd))
      return flush();
    if (!s || n == 0 || n > WorkerSlot::ring_max_frame) return flush();
    std::uint64_t tail = s->ring_tail.load(std::memory_order_relaxed);
    std::uint64_t head = s->ring_head.load(std::memory_order_acquire);
    if (tail - head > WorkerSlot::ring_size - n) return flush();
    s->ring_write(tail, out_.data(), n);
    s->ring_tail.store(tail + n, std::memory_order_seq_cst);
    out_.clear();
    // A thread waiting on the bell collects the result itself: the pool's thread sleeps on.
    if (ctx_.bell && ctx_.bell->ring_for_result()) return true;
    if (s->reader_sleeping.load(std::memory_order_seq_cst) != 0 &&
        s->reader_sleeping.exchange(0) != 0) {
      finish_frame(out_, begin_frame(out_, FrameKind::doorbell, 0), 0);
      return flush();
    }
    return true;
  }

  bool flush() {
    if (out_.empty()) return true;
    auto ec = posix::write_all(ctx_.result_fd, out_.data(), out_.size());
    if (!ec && ctx_.slot) ctx_.slot->returned.fetch_add(out_.size(), std::memory_order_release);
    out_.clear();
    return !ec;
  }

  // A result frame over the limit is replaced by one error per item.
  void replace_oversized(std::size_t at, const FrameHeader& task, std::int64_t run_ns) {
    std::size_t bytes = out_.size() - at;
    out_.resize(at);
    std::size_t f = begin_frame(out_, FrameKind::result, task.id);
    for (std::uint32_t i = 0; i < task.count; ++i)
      append_error_item(out_, ItemStatus::codec_error, {},
                        "result of " + std::to_string(bytes) +
                            " bytes exceeds the maximum frame size of " +
                            std::to_string(max_frame) + " bytes");
    finish_frame(out_, f, task.count, 0, run_ns);
  }

  // Runs every item of a task payload, appending one result item each.
  bool run_items(std::span<const std::byte> payload, std::uint32_t count, bool init,
                 std::uint64_t job, bool timed = false) {
    WireCursor c(payload);
    posix::ImageAddress tramp{c.u64(), c.u64()};
    posix::ImageAddress fn{c.u64(), c.u64()};
    if (c.bad) return false;
    auto t = cache_.resolve(tramp);
    auto f = cache_.resolve(fn);
    bool fn_ok = f != 0 || (fn.module == 0 && fn.offset == 0);
    bool ok = true;
    // A packed run (a map's chunk of plain values): its arguments back to back, one size.
    std::span<const std::byte> packed;
    std::size_t size = 0;
    if (count > 0 && c.left >= sizeof(std::uint64_t) &&
        std::memcmp(c.p, &packed_marker, sizeof packed_marker) == 0) {
      c.u64();
      const std::uint64_t n = c.u64();
      if (c.bad || n == 0 || !packed_run_fits(n, count, c.left)) return false;
      size = static_cast<std::size_t>(n);
      packed = c.bytes(c.left);
      // Untimed, the whole run is one call; timed, each item notes when it starts.
      if (t != 0 && fn_ok && !timed && !init) {
        std::bit_cast<Trampoline>(t)(f, packed, out_, count);
        if (ctx_.slot && job != 0) ctx_.slot->job.store(0, std::memory_order_release);
        return true;
      }
    }
    for (std::uint32_t i = 0; i < count; ++i) {
      auto args = size != 0 ? packed.subspan(i * size, size) : c.bytes(c.u64());
      if (c.bad) return false;
      if (t == 0 || !fn_ok) {
        append_error_item(out_, ItemStatus::codec_error, {},
                          "the task's function was not found in this worker's program image");
        ok = false;
        continue;
      }
      std::size_t before = out_.size();
      if (timed && i > 0 && ctx_.slot)
        ctx_.slot->item_start.store(now_ns(), std::memory_order_release);
      std::bit_cast<Trampoline>(t)(f, args, out_, 0);
      if (init && static_cast<std::uint8_t>(out_.data()[before]) != 0) ok = false;
    }
    if (ctx_.slot && job != 0) ctx_.slot->job.store(0, std::memory_order_release);
    return init ? ok : true;
  }

  WorkerContext ctx_;
  bool share_results_;
  local::ResultFiles results_;  // before out_, which takes blocks from it
  Buffer in_;
  Buffer out_;
  AddressCache cache_;
  std::size_t done_ = 0;
  std::uint64_t received_ = 0;  // bytes read from the task pipe (see WorkerSlot::sent)
};

/// The body of a worker process; returns its exit code.
inline int worker_main(void* ctx) {
  return WorkerLoop(*static_cast<WorkerContext*>(ctx)).run();
}

/// The body of a worker started by exec or by the fork server, from its descriptors.
inline int launched_worker_main(const posix::WorkerFds& fds, const posix::WorkerParams& p) {
  posix::SharedMapping slots;
  std::size_t size = posix::fd_size(fds.slots);
  if (slots.map_fd(fds.slots, size) || SlotFile::bytes(p.slot + 1) > size) return worker_io_error;
  posix::UniqueFd(fds.slots).reset();  // the mapping outlives the descriptor
  WorkerContext ctx;
  ctx.task_fd = fds.task;
  ctx.result_fd = fds.result;
  ctx.control_fd = fds.control;
  ctx.maxtasks = static_cast<std::size_t>(p.maxtasks);
  ctx.has_init = p.has_init != 0;
  ctx.slot = SlotFile::slot(slots.get(), p.slot);
  ctx.bell = SlotFile::bell(slots.get());
  return WorkerLoop(ctx).run();
}

}  // namespace procpool::detail
