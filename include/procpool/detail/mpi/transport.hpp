#pragma once
// Rank 0's transport for an mpi::Pool: the engine's slots are rank 0's own workers (a
// LocalTransport, when use_root) followed by one slot per other rank. A rank's slot is a pooled
// link (WorkerLink::pooled): it takes as many jobs as its agent has workers times the usual
// window, answers in any order, and reports crashes and time limits as failed jobs; so one engine
// (SubmissionQueue, Scheduler, Workforce) feeds local and remote workers alike, and ranks with
// idle workers get work first. No MPI call is made here: records go through the courier (Node),
// which delivers the answers back on its thread and interrupts the pool's wait.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/local/transport.hpp>
#include <procpool/detail/mpi/node.hpp>
#include <procpool/detail/mpi/protocol.hpp>
#include <procpool/detail/transport.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/detail/worker_record.hpp>
#include <procpool/options.hpp>

namespace procpool::detail::mpi {

class MpiTransport;

/// For tests only: sees (and may damage) each answer from another rank before the pool reads it.
inline std::atomic<void (*)(int rank, Buffer& frame)> answer_hook{nullptr};

/// One other rank, as a worker with many slots.
class RemoteLink final : public WorkerLink {
 public:
  RemoteLink(MpiTransport& t, Node& node, std::uint32_t pool, int rank)
      : t_(t), node_(node), pool_(pool), rank_(rank) {}
  inline ~RemoteLink() override;

  std::int64_t id() const noexcept override { return rank_; }

  void flush(WorkerRecord& w) override {
    for (; w.unsent < w.inflight.size(); ++w.unsent) {
      Job& j = w.inflight[w.unsent];
      const auto limit = static_cast<std::uint64_t>(j.timeout_ns);
      if (j.frame.size() >= detach_bytes) {
        // Sent as it is: a pooled link's jobs are neither taken back nor copied here (time
        // limits and replacements happen on the rank), so the job needs its frame no more.
        node_.post(rank_, pool_, Op::task, limit, std::move(j.frame));
      } else {
        node_.post(rank_, pool_, Op::task, limit, j.frame.span());
      }
    }
    w.unsent_off = 0;
  }

  bool has_news() const noexcept override { return news_.load(std::memory_order_acquire); }

  bool collect(std::size_t slot, const WorkerRecord&, FrameSink& sink) override {
    std::vector<Buffer> frames;
    std::vector<std::uint64_t> aux;
    {
      std::lock_guard l(m_);
      frames.swap(inbox_);
      aux.swap(inbox_aux_);
      news_.store(false, std::memory_order_release);
    }
    auto* hook = answer_hook.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < frames.size(); ++i) {
      if (hook) hook(rank_, frames[i]);
      IncomingFrame f;
      if (!read_frame_header(std::span<const std::byte>(frames[i].data(), frames[i].size()),
                             f.header))
        return false;
      if (f.header.kind == static_cast<std::uint8_t>(FrameKind::hello))
        capacity_.store(std::max<std::uint64_t>(aux[i], 1), std::memory_order_relaxed);
      f.bytes = std::span<const std::byte>(frames[i].data(), frames[i].size());
      f.whole = &frames[i];
      if (!sink.on_frame(slot, f)) return false;
    }
    return true;
  }

  LinkStatus status() const noexcept override { return {}; }  // time limits are kept there
  /// A pooled link's jobs are never taken back (see cancel).
  bool revoke(std::uint64_t) noexcept override { return false; }
  /// The agent cancels the job there: dropped if queued; if it runs, its worker is killed only
  /// if `kill_running` (AsyncResult::cancel), else it finishes (a dropped imap). The job stays
  /// in the window until its answer comes.
  void cancel(std::uint64_t job, bool kill_running) noexcept override {
    try {
      node_.post(rank_, pool_, kill_running ? Op::cancel : Op::revoke, job,
                 std::span<const std::byte>{});
    } catch (...) {
      // Out of memory: the task runs on, and its answer is dropped.
    }
  }
  void answered(std::uint64_t) noexcept override {}

  void stop() noexcept override { end(Op::close); }
  void kill(bool) noexcept override { end(Op::terminate); }

  bool pooled() const noexcept override { return true; }
  std::size_t capacity() const noexcept override {
    return static_cast<std::size_t>(capacity_.load(std::memory_order_relaxed));
  }

  // ---- The courier's side -------------------------------------------------------------------

  void deliver(const Record& r) {
    if (r.op == Op::stats) {
      note_restarts(r.aux);
      return;
    }
    if (r.op == Op::bye) {
      ended_.store(true, std::memory_order_release);
      return;
    }
    if (r.op != Op::frame) return;
    FrameHeader h;
    if (read_frame_header(r.bytes, h) && (h.kind == static_cast<std::uint8_t>(FrameKind::result) ||
                                          h.kind == static_cast<std::uint8_t>(FrameKind::failed)))
      note_restarts(r.aux);
    Buffer b;
    if (r.body) {
      b = std::move(*r.body);
    } else {
      b.append(r.bytes.data(), r.bytes.size());
    }
    std::lock_guard l(m_);
    inbox_.push_back(std::move(b));
    inbox_aux_.push_back(r.aux);
    news_.store(true, std::memory_order_release);
  }

  /// The agent's pool has ended (after close or terminate): the engine buries this slot.
  bool ended() const noexcept { return ended_.load(std::memory_order_acquire); }
  /// Workers the agent's pool has replaced, as it last said.
  std::uint64_t restarts() const noexcept { return restarts_.load(std::memory_order_relaxed); }
  bool reaped = false;  // guarded by the transport's lock

 private:
  void note_restarts(std::uint64_t n) noexcept {
    // (only the courier's thread stores it)
    if (n > restarts_.load(std::memory_order_relaxed))
      restarts_.store(n, std::memory_order_relaxed);
  }

  void end(Op op) noexcept {
    if (end_sent_) return;
    end_sent_ = true;
    try {
      node_.post(rank_, pool_, op, 0, std::span<const std::byte>{});
    } catch (...) {
      // Out of memory while posting: the job cannot go on cleanly.
      std::terminate();
    }
  }

  MpiTransport& t_;
  Node& node_;
  std::uint32_t pool_;
  int rank_;
  std::atomic<std::uint64_t> capacity_{1};
  bool end_sent_ = false;
  std::atomic<bool> news_{false};
  std::atomic<bool> ended_{false};
  std::atomic<std::uint64_t> restarts_{0};
  std::mutex m_;
  std::vector<Buffer> inbox_;  // frames from the agent, in its order
  std::vector<std::uint64_t> inbox_aux_;
};

class MpiTransport final : public Transport, public Receiver {
 public:
  /// `local`: rank 0's own workers (processes 0: none); `spec`: how the agents start theirs;
  /// `init_task`: the initializer's payload, for both.
  MpiTransport(Node& node, const Options& local, const OpenSpec& spec, const Buffer& init_task)
      : node_(node),
        pool_(node.new_pool_id()),
        local_slots_(local.processes),
        ranks_(static_cast<std::size_t>(node.size() - 1), nullptr) {
    if (local_slots_ > 0)
      local_ = std::make_unique<local::LocalTransport>(local, init_task,
                                                       std::vector<std::shared_ptr<Segment>>{});
    open_.append(&spec, sizeof spec);
    open_.append(init_task.data(), init_task.size());
    node_.attach(pool_, this);
  }

  ~MpiTransport() override { node_.detach(pool_); }

  std::size_t slots() const noexcept { return local_slots_ + ranks_.size(); }
  std::uint32_t pool() const noexcept { return pool_; }

  /// Workers in all, once every rank said hello.
  std::size_t workers() const {
    std::lock_guard l(m_);
    std::size_t n = local_slots_;
    for (auto* r : ranks_) n += r ? r->capacity() : 0;
    return n;
  }

  std::unique_ptr<WorkerLink> launch(std::size_t slot, std::uint32_t gen) override {
    if (slot < local_slots_) return local_->launch(slot, gen);
    const int rank = static_cast<int>(slot - local_slots_) + 1;
    auto link = std::make_unique<RemoteLink>(*this, node_, pool_, rank);
    {
      std::lock_guard l(m_);
      ranks_[static_cast<std::size_t>(rank - 1)] = link.get();
    }
    node_.post(rank, pool_, Op::open, 0, std::span<const std::byte>(open_.data(), open_.size()));
    return link;
  }

  int run(std::chrono::nanoseconds max_wait, EventSink& sink) override {
    int n = remote_events(sink);
    if (local_) {
      n += local_->run(n > 0 ? std::chrono::nanoseconds::zero() : max_wait, sink);
    } else if (n == 0 && max_wait != std::chrono::nanoseconds::zero()) {
      std::unique_lock l(wake_m_);
      auto woken = [&] { return poked_; };
      if (max_wait.count() < 0) {
        wake_cv_.wait(l, woken);
      } else {
        wake_cv_.wait_for(l, max_wait, woken);
      }
      poked_ = false;
    }
    if (n == 0) n += remote_events(sink);
    return n;
  }

  void interrupt() noexcept override {
    if (local_) {
      local_->interrupt();
      return;
    }
    {
      std::lock_guard l(wake_m_);
      poked_ = true;
    }
    wake_cv_.notify_one();
  }

  void tidy() override {
    if (local_) local_->tidy();
  }

  ExitReport reap(WorkerLink& link) override {
    if (auto* r = dynamic_cast<RemoteLink*>(&link)) {
      std::lock_guard l(m_);
      r->reaped = true;
      return ExitReport{0, 0};
    }
    return local_->reap(link);
  }

  bool prepare_sleep() noexcept override {
    {
      std::lock_guard l(m_);
      for (auto* r : ranks_)
        if (r && (r->has_news() || (r->ended() && !r->reaped))) return false;
    }
    return local_ ? local_->prepare_sleep() : true;
  }

  void end_sleep() noexcept override {
    if (local_) local_->end_sleep();
  }

  bool answers_interrupt() const noexcept override { return !ranks_.empty(); }

  // ---- Receiver (the courier's thread) ------------------------------------------------------

  void deliver(int from, const Record& rec) override {
    {
      std::lock_guard l(m_);
      if (from < 1 || static_cast<std::size_t>(from) > ranks_.size()) return;
      RemoteLink* r = ranks_[static_cast<std::size_t>(from - 1)];
      if (!r) return;  // its slot was buried already
      r->deliver(rec);
    }
    interrupt();
  }

  void forget(RemoteLink* link, int rank) {
    std::lock_guard l(m_);
    auto& r = ranks_[static_cast<std::size_t>(rank - 1)];
    if (r == link) r = nullptr;
    past_restarts_ += link->restarts();
  }

  /// Workers replaced on the other ranks (rank 0's own are the engine's count).
  std::uint64_t remote_restarts() const {
    std::lock_guard l(m_);
    std::uint64_t n = past_restarts_;
    for (auto* r : ranks_) n += r ? r->restarts() : 0;
    return n;
  }

 private:
  // Readable for ranks that answered, died for those whose pool has ended; reported until
  // handled (collected, reaped), as the local transport's level-triggered events are.
  int remote_events(EventSink& sink) {
    struct Event {
      std::size_t slot;
      bool dead;
    };
    std::vector<Event> events;  // (run may be called by two threads at once)
    {
      std::lock_guard l(m_);
      for (std::size_t i = 0; i < ranks_.size(); ++i) {
        RemoteLink* r = ranks_[i];
        if (!r) continue;
        const bool ended = r->ended() && !r->reaped;
        if (r->has_news() || ended) events.push_back({local_slots_ + i, ended});
      }
    }
    for (auto& e : events) {
      if (e.dead) {
        sink.died(e.slot);
      } else {
        sink.readable(e.slot);
      }
    }
    return static_cast<int>(events.size());
  }

  Node& node_;
  const std::uint32_t pool_;
  const std::size_t local_slots_;
  std::unique_ptr<local::LocalTransport> local_;
  Buffer open_;  // the open record's bytes
  mutable std::mutex m_;
  std::vector<RemoteLink*> ranks_;   // by rank - 1: the live link, or none
  std::uint64_t past_restarts_ = 0;  // of links that have ended
  std::mutex wake_m_;
  std::condition_variable wake_cv_;
  bool poked_ = false;
};

inline RemoteLink::~RemoteLink() {
  t_.forget(this, rank_);
}

}  // namespace procpool::detail::mpi
