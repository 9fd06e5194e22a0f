#pragma once
// A local worker's link: the pool's ends of its channels. It owns the task pipe (frames out), the
// result pipe (frames in, through a FrameReader), the control socket (shared memory segments
// go to the worker with their descriptors; the worker's files for large results come back), the
// worker's pidfd and its view of the worker's status slot (running job, cancel marks, the
// small-result ring). Made by LocalTransport::launch; called by Workforce (flush, collect, kill)
// and Scheduler (status, revoke, through Workforce).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <sys/types.h>

#include <procpool/detail/config.hpp>
#include <procpool/detail/frame_reader.hpp>
#include <procpool/detail/local/shared_frame.hpp>
#include <procpool/detail/local/worker_slot.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/process.hpp>
#include <procpool/detail/posix/socket.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/transport.hpp>
#include <procpool/detail/wire.hpp>

namespace procpool::detail::local {

/// Tags of epoll events: kind, slot and generation in 64 bits.
enum TagKind : std::uint64_t { kWake = 1, kResult = 3, kTask = 4, kPidfd = 5, kControl = 6 };
inline std::uint64_t tag(std::uint64_t kind, std::uint64_t slot, std::uint64_t gen) {
  return kind << 56 | (slot & 0xffffff) << 32 | (gen & 0xffffffff);
}
inline std::uint64_t tag_kind(std::uint64_t t) {
  return t >> 56;
}
inline std::size_t tag_slot(std::uint64_t t) {
  return static_cast<std::size_t>((t >> 32) & 0xffffff);
}
inline std::uint32_t tag_gen(std::uint64_t t) {
  return static_cast<std::uint32_t>(t & 0xffffffff);
}

/// What the links of one transport share (owned by LocalTransport).
struct LinkContext {
  posix::Epoll epoll;
  // Segments sent to any worker, so that their deaths can be told (see LocalTransport::tidy).
  std::unordered_map<std::uint64_t, std::weak_ptr<Segment>> sent_segments;
  // Large task frames go through shared memory (see shared_frame.hpp); not to workers under a
  // memory limit, whose address space the files they keep mapped would fill.
  bool share_frames = true;
};

/// The channels of a new worker, parent's ends.
struct LinkChannels {
  pid_t pid = 0;
  posix::UniqueFd pidfd, task_w, result_r, control;
  // The task pipe's read end, held so that the pipe never loses its last reader: a write to a
  // worker that died fills the pipe instead of raising SIGPIPE in whichever thread wrote it
  // (blocking that signal around each write cost two system calls per task). The death is
  // seen on the pidfd, as it is anyway.
  posix::UniqueFd task_r;
};

class LocalLink : public WorkerLink {
 public:
  LocalLink(LinkContext& ctx, std::size_t slot, std::uint32_t gen, WorkerSlot* s, LinkChannels ch)
      : ctx_(ctx),
        slot_index_(slot),
        gen_(gen),
        slot_(s),
        pid_(ch.pid),
        pidfd_(std::move(ch.pidfd)),
        task_w_(std::move(ch.task_w)),
        task_r_(std::move(ch.task_r)),
        result_r_(std::move(ch.result_r)),
        control_(std::move(ch.control)) {
    auto& ep = ctx_.epoll;
    posix::check(ep.add(result_r_.get(), posix::Epoll::in, tag(kResult, slot, gen)), "epoll_ctl");
    posix::check(ep.add(pidfd_.get(), posix::Epoll::in, tag(kPidfd, slot, gen)), "epoll_ctl");
    posix::check(ep.add(task_w_.get(), 0, tag(kTask, slot, gen)), "epoll_ctl");
    posix::check(ep.add(control_.get(), 0, tag(kControl, slot, gen)), "epoll_ctl");
  }

  ~LocalLink() override { unwatch(); }

  std::int64_t id() const noexcept override { return pid_; }
  pid_t pid() const noexcept { return pid_; }
  std::uint32_t gen() const noexcept { return gen_; }

  void flush(WorkerRecord& w) override {
    if (control_hangup_.load(std::memory_order_relaxed)) let_go();
    bool ctl_full = false;
    while (task_w_ && w.unsent < w.inflight.size()) {
      posix::IoSlice iov[config::write_batch];
      int n = 0;
      for (std::size_t i = w.unsent; i < w.inflight.size() && n < config::write_batch; ++i, ++n) {
        Job& job = w.inflight[i];
        // A job's segments go ahead of its frame (unless the frame is already partly written);
        // so does a large frame, through shared memory.
        if (!(i == w.unsent && w.unsent_off > 0)) {
          if (ctx_.share_frames) (void)share_frame(job);
          if ((!job.attachments.empty() || job.shared_frame) && !send_segments(job)) {
            ctl_full = true;
            break;
          }
        }
        const Buffer& f = wire(job);
        std::size_t off = i == w.unsent ? w.unsent_off : 0;
        iov[n] = {f.data() + off, f.size() - off};
      }
      if (n == 0) break;
      std::error_code ec;
      auto r = posix::write_slices(task_w_.get(), iov, n, ec);
      if (r < 0) {
        if (ec == std::errc::resource_unavailable_try_again) break;
        // The pipe failed (never EPIPE: this side holds a reader); the pidfd reports the death.
        stop();
        return;
      }
      auto left = static_cast<std::size_t>(r);
      slot_->sent.fetch_add(left, std::memory_order_release);
      while (left > 0) {
        std::size_t rest = wire(w.inflight[w.unsent]).size() - w.unsent_off;
        if (left >= rest) {
          left -= rest;
          ++w.unsent;
          w.unsent_off = 0;
        } else {
          w.unsent_off += left;
          left = 0;
        }
      }
    }
    bool want = task_w_ && w.unsent < w.inflight.size() && !ctl_full;
    if (want != want_out_ && task_w_) {
      (void)ctx_.epoll.modify(task_w_.get(), want ? posix::Epoll::out : 0,
                              tag(kTask, slot_index_, gen_));
      want_out_ = want;
    }
    if (ctl_full != want_ctl_out_ && control_ && !control_hung_) {
      (void)ctx_.epoll.modify(control_.get(), ctl_full ? posix::Epoll::out : 0,
                              tag(kControl, slot_index_, gen_));
      want_ctl_out_ = ctl_full;
    }
  }

  /// Writes the initializer's frame (and its segments) first, blocking: the worker reads nothing
  /// else before it, so this cannot wait on anything but the worker itself.
  void send_init(const Buffer& frame, const std::vector<std::shared_ptr<Segment>>& segments) {
    Job init;
    init.attachments = segments;
    (void)send_segments(init);
    if (!posix::write_all_while_alive(task_w_.get(), frame.data(), frame.size(), pidfd_.get()))
      slot_->sent.fetch_add(frame.size(), std::memory_order_release);
  }

  /// News is what the worker wrote and this side has not read. Not "differs": the worker counts
  /// its bytes after writing them, so for a moment this side may have read more than it counted;
  /// that looked like news to a spinning pool's thread, which then kept the core the worker
  /// needed to count them (measured: a prime sieve's pool thread spinning for whole time slices).
  bool has_news() const noexcept override {
    return result_r_ &&
           (ring_pending() || slot_->returned.load(std::memory_order_acquire) > received_);
  }

  /// Every complete result, in the order of the worker's jobs: from the pipe, or from the slot's
  /// ring (see WorkerSlot), whichever holds the next job's.
  bool collect(std::size_t slot, const WorkerRecord& w, FrameSink& sink) override {
    if (!result_r_) return true;  // closed after a malformed message: nothing more is read
    // The ring is looked at only once the pipe has given all it had: whatever the worker wrote
    // to the pipe before a result it put in the ring is judged first. Frames the worker put in
    // the ring before this point were preceded by all it wrote to the pipe for earlier jobs, so
    // once the pipe is drained they must answer the current job.
    const std::uint64_t ring_limit = slot_->ring_tail.load(std::memory_order_seq_cst);
    bool drained = false;
    for (;;) {
      bool ok;
      std::span<std::byte> room;
      try {
        ok = parse(slot, w, sink, drained ? ring_limit : ring_head_);
        if (ok && !drained) room = reader_.space();
      } catch (const std::bad_alloc&) {
        ok = false;  // a result too large for this process's memory: that worker's failure
      }
      if (!ok) {
        unwatch_results();
        reader_.reset();
        return false;
      }
      if (drained) return true;
      // Always read, even when the worker's count says every byte it wrote is read already: a
      // task may write to this pipe itself, and its stray bytes must be judged before the ring's
      // frames, not blamed on a later job (a read per result; wire_test's "straight to the
      // pipe" cases).
      std::error_code ec;
      auto n = posix::read_some(result_r_.get(), room.data(), room.size(), ec);
      if (n > 0) {
        reader_.commit(static_cast<std::size_t>(n));
        received_ += static_cast<std::uint64_t>(n);
        continue;
      }
      if (n == 0) ctx_.epoll.remove(result_r_.get());  // EOF: the death follows on the pidfd
      drained = true;
    }
  }

  LinkStatus status() const noexcept override {
    LinkStatus s;
    // `job` first: the worker stores the start time before the job, so this time is its job's.
    // seq_cst: after a revoke, this read decides whether the worker may still run the job.
    s.running_job = slot_->job.load(std::memory_order_seq_cst);
    s.item_start_ns = slot_->item_start.load(std::memory_order_acquire);
    return s;
  }

  bool revoke(std::uint64_t job) noexcept override {
    std::atomic<std::uint64_t>* free = nullptr;
    for (auto& c : slot_->cancelled) {
      const std::uint64_t v = c.load(std::memory_order_relaxed);  // only this side writes them
      if (v == job) return true;
      if (v == 0 && !free) free = &c;
    }
    if (!free) return false;
    slot_->cancel_live.fetch_add(1);
    free->store(job);
    ++revoked_;
    return true;
  }

  void answered(std::uint64_t job) noexcept override {
    if (revoked_ == 0) return;
    for (auto& c : slot_->cancelled) {
      if (c.load(std::memory_order_relaxed) != job) continue;
      c.store(0);
      slot_->cancel_live.fetch_sub(1);
      --revoked_;
      return;
    }
  }

  /// Closing the task pipe is the stop signal: the worker exits at EOF.
  void stop() noexcept override {
    if (!task_w_) return;
    ctx_.epoll.remove(task_w_.get());
    task_w_.reset();
  }

  void kill(bool gently) noexcept override {
    posix::kill_group(pid_, gently ? posix::sig_term : posix::sig_kill);
  }

  /// Before the pool's thread sleeps: the worker rings the doorbell (a frame on the result pipe)
  /// for what it puts in its ring from now on. False if the ring has something already.
  bool arm_doorbell(bool on) noexcept {
    slot_->reader_sleeping.store(on ? 1 : 0, std::memory_order_seq_cst);
    return !(on && result_r_ && ring_pending());
  }

  /// While the pool's thread sleeps, after another thread collected: the worker may have rung
  /// the doorbell (and so stopped ringing) for a result that thread took, the doorbell frame
  /// with it, so it is asked again. False if the ring has something already.
  bool rearm_doorbell() noexcept {
    if (slot_->reader_sleeping.load(std::memory_order_seq_cst) == 0)
      slot_->reader_sleeping.store(1, std::memory_order_seq_cst);
    return !(result_r_ && ring_pending());
  }

  /// Tells the worker to unmap segments the program has destroyed; what does not fit now stays
  /// queued for the next round.
  void forget_segments() {
    std::size_t sent = 0;
    for (; sent < forget_.size(); ++sent) {
      ControlMessage msg{ControlMessage::forget, forget_[sent], 0};
      auto ec = posix::send_message(control_.get(), &msg, sizeof msg, -1);
      if (ec == std::errc::resource_unavailable_try_again) break;
    }
    forget_.erase(forget_.begin(), forget_.begin() + static_cast<std::ptrdiff_t>(sent));
  }
  /// The segment `id` is gone: if the worker has it, it is told to let go.
  void segment_died(std::uint64_t id) {
    if (segments_.erase(id)) forget_.push_back(id);
  }
  bool forgets_pending() const noexcept { return !forget_.empty(); }

  /// Unmaps the worker's result files that no outcome holds (the pool is idle).
  void drop_result_files() noexcept { result_files_.drop_free(); }
  /// How many of the worker's result files the pool has mapped.
  std::size_t result_files() const noexcept { return result_files_.size(); }

  /// The worker closed its control socket (it does as it exits). The socket reports that to every
  /// wait until the worker is reaped, which would keep the pool's thread spinning for as long as
  /// the exit takes, so it is left out of the waits (a send on it fails); the death comes on the
  /// pidfd. (The task pipe never hangs up: the pool holds a reader of its own.) Only noted here:
  /// the wait that saw it may run without the drive lock, so the next flush (which follows the
  /// event, under the lock) acts on it.
  void control_hung_up() noexcept { control_hangup_.store(true, std::memory_order_release); }

  /// Stops watching every channel (before the worker is reaped).
  void unwatch() noexcept {
    if (pidfd_) ctx_.epoll.remove(pidfd_.get());
    unwatch_results();
    if (task_w_) ctx_.epoll.remove(task_w_.get());
    if (control_) ctx_.epoll.remove(control_.get());
  }

 private:
  void let_go() noexcept {
    if (control_hangup_.exchange(false, std::memory_order_acquire) && control_ && !control_hung_) {
      control_hung_ = true;
      ctx_.epoll.remove(control_.get());
    }
  }

  void unwatch_results() noexcept {
    if (!result_r_) return;
    ctx_.epoll.remove(result_r_.get());
    result_r_.reset();
  }

  bool ring_pending() const noexcept {
    return slot_->ring_tail.load(std::memory_order_seq_cst) != ring_head_;
  }

  // Sends the shared memory segments `job` refers to and the worker lacks. False if the control
  // socket is full (retried when it drains).
  bool send_segments(Job& job) {
    for (const auto& seg : job.attachments)
      if (send_segment(seg) == Sent::later) return false;
    if (!job.shared_frame) return true;
    const Sent s = send_segment(job.shared_frame);
    if (s == Sent::not_sent) {  // the frame goes through the pipe instead
      job.shared_frame.reset();
      job.indirect = Buffer();
    }
    return s != Sent::later;
  }

  enum class Sent { yes, later, not_sent };
  // `later` if the control socket is full (try again when it drains); `not_sent` if the socket
  // refused it (too many descriptors in flight, say) or the worker is gone (its pidfd says so).
  Sent send_segment(const std::shared_ptr<Segment>& seg) {
    if (segments_.count(seg->id())) return Sent::yes;
    ControlMessage msg{ControlMessage::segment, seg->id(), seg->size()};
    auto ec = posix::send_message(control_.get(), &msg, sizeof msg, seg->fd());
    if (ec == std::errc::resource_unavailable_try_again) return Sent::later;
    if (ec) return Sent::not_sent;
    segments_.insert(seg->id());
    ctx_.sent_segments.emplace(seg->id(), seg);
    return Sent::yes;
  }

  // What goes down the task pipe for `job`.
  static const Buffer& wire(const Job& job) noexcept {
    return job.shared_frame ? job.indirect : job.frame;
  }

  bool parse(std::size_t slot, const WorkerRecord& w, FrameSink& sink, std::uint64_t ring_limit) {
    for (;;) {
      FrameHeader h;
      auto p = reader_.peek(h);
      if (p == FrameReader::Peek::bad) return false;
      const bool piped = p == FrameReader::Peek::frame;
      if (piped && h.kind == static_cast<std::uint8_t>(FrameKind::doorbell)) {
        if (h.size != 0) return false;
        reader_.next(h);
        continue;
      }
      const bool shared = h.kind == static_cast<std::uint8_t>(FrameKind::shared_result);
      if (piped && ((h.kind != static_cast<std::uint8_t>(FrameKind::result) && !shared) ||
                    (!w.inflight.empty() && h.id == w.inflight.front().id))) {
        if (!(shared ? take_shared(slot, reader_.frame(h), sink)
                     : sink.on_frame(slot, reader_.frame(h))))
          return false;
        reader_.next(h);
        continue;
      }
      // The pipe's next result answers a later job: the current one's is in the ring.
      if (piped && !w.was_sent(h.id)) return false;
      int r = take_from_ring(slot, w, sink, ring_limit);
      if (r < 0) return false;
      if (r == 0) break;
    }
    reader_.compact();
    return true;
  }

  // A result that lies in one of the worker's memory files, decoded from there.
  bool take_shared(std::size_t slot, const IncomingFrame& ref, FrameSink& sink) {
    IncomingFrame f;
    std::size_t size = 0;
    f.lent = result_files_.lend(ref.header, ref.payload(), control_.get(), f.header, size);
    if (!f.lent) return false;
    f.bytes = {f.lent.get(), size};
    return sink.on_frame(slot, f);
  }

  // The ring's next frame (up to `tail`), which must answer the worker's current job: 1 taken,
  // 0 none, -1 malformed. The pool keeps its own head: the ring's memory is the worker's to
  // scribble on, so everything read from it is copied, then checked.
  int take_from_ring(std::size_t slot, const WorkerRecord& w, FrameSink& sink, std::uint64_t tail) {
    const std::uint64_t avail = tail - ring_head_;
    if (avail == 0) return 0;
    if (avail > WorkerSlot::ring_size || avail < sizeof(FrameHeader)) return -1;
    FrameHeader h;
    slot_->ring_read(ring_head_, &h, sizeof h);
    if (h.magic != frame_magic || h.kind != static_cast<std::uint8_t>(FrameKind::result) ||
        h.size > avail - sizeof h)
      return -1;
    if (w.expected() != h.id) return -1;
    const std::size_t len = sizeof h + static_cast<std::size_t>(h.size);
    Buffer frame;
    frame.resize(len);
    slot_->ring_read(ring_head_, frame.data(), len);
    if (std::memcmp(frame.data(), &h, sizeof h) != 0) return -1;  // changed while we read it
    ring_head_ += len;
    slot_->ring_head.store(ring_head_, std::memory_order_release);
    IncomingFrame f{h, {frame.data(), len}, &frame, {}};
    return sink.on_frame(slot, f) ? 1 : -1;
  }

  LinkContext& ctx_;
  std::size_t slot_index_;
  std::uint32_t gen_;
  WorkerSlot* slot_;
  std::size_t revoked_ = 0;  // entries of slot_->cancelled in use
  pid_t pid_;
  posix::UniqueFd pidfd_, task_w_, task_r_, result_r_, control_;
  bool want_out_ = false;                    // EPOLLOUT armed on task_w_
  bool want_ctl_out_ = false;                // EPOLLOUT armed on control_
  bool control_hung_ = false;                // control_ no longer watched (see control_hung_up)
  std::atomic<bool> control_hangup_{false};  // seen by a wait, not yet acted on (see above)
  FrameReader reader_;
  std::uint64_t received_ = 0;   // bytes read from result_r_ (see WorkerSlot::returned)
  std::uint64_t ring_head_ = 0;  // the pool's own copy of WorkerSlot::ring_head
  std::unordered_set<std::uint64_t> segments_;  // ids sent, not yet forgotten
  std::vector<std::uint64_t> forget_;           // ids to tell it to unmap
  ResultFileMap result_files_;                  // large results from the worker
};

}  // namespace procpool::detail::local
