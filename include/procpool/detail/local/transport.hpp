#pragma once
// The local transport: workers are processes on this machine. It owns the epoll set every
// channel is watched through, the eventfd that interrupts a wait, the status slots (one memory
// file, one WorkerSlot per worker, mapped here and in each worker), the launcher of the pool's
// start method, and the list of shared memory segments sent to workers. The supervisor drives
// it through the Transport interface; its links are LocalLinks.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/clock.hpp>
#include <procpool/detail/config.hpp>
#include <procpool/detail/local/launcher.hpp>
#include <procpool/detail/local/link.hpp>
#include <procpool/detail/local/shared_frame.hpp>
#include <procpool/detail/local/worker_slot.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/shm.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/spin_governor.hpp>
#include <procpool/detail/transport.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/options.hpp>

namespace procpool::detail::local {

class LocalTransport final : public Transport {
 public:
  /// `init_task`: the initializer's payload (empty: none), sent first to every worker, with the
  /// segments its arguments name.
  LocalTransport(const Options& opts, const Buffer& init_task,
                 std::vector<std::shared_ptr<Segment>> init_segments)
      : opts_(opts), init_segments_(std::move(init_segments)), links_(opts.processes, nullptr) {
    ctx_.share_frames = opts.memory_limit == 0;
    posix::check(ctx_.epoll.open(), "epoll_create1");
    posix::check(posix::make_eventfd(wake_), "eventfd");
    posix::check(ctx_.epoll.add(wake_.get(), posix::Epoll::in, tag(kWake, 0, 0)), "epoll_ctl");
    // The status slots live in a memory file, so a worker started by exec can map them too.
    const std::size_t bytes = SlotFile::bytes(opts_.processes);
    posix::check(posix::make_memfd(bytes, slots_fd_), "memfd_create");
    posix::check(slots_.map_fd(slots_fd_.get(), bytes), "mmap");
    launcher_ = make_launcher(opts_.start);
    if (!init_task.empty()) {
      std::size_t at = begin_frame(init_frame_, FrameKind::init, 0);
      init_frame_.append(init_task.data(), init_task.size());
      finish_frame(init_frame_, at, 1);
    }
  }

  ~LocalTransport() override { SharedFrames::process().clear_free(); }
  LocalTransport(const LocalTransport&) = delete;
  LocalTransport& operator=(const LocalTransport&) = delete;

  std::size_t kept_bytes() const noexcept override {
    std::size_t n = SharedFrames::process().bytes();
    for (const Link* l : links_)
      if (l) n += l->result_files();
    return n;
  }
  void let_go() noexcept override {
    SharedFrames::process().clear_free();
    for (Link* l : links_)
      if (l) l->drop_result_files();
  }

  std::unique_ptr<WorkerLink> launch(std::size_t slot, std::uint32_t gen) override {
    posix::PipeFds task, result;
    posix::check(posix::make_pipe(task, false), "pipe2");
    posix::check(posix::make_pipe(result, false), "pipe2");
    posix::grow_pipe(task.write_end.get(), config::pipe_bytes);
    posix::grow_pipe(result.write_end.get(), config::pipe_bytes);
    LinkChannels ch;
    posix::UniqueFd control_child;
    posix::check(posix::make_seqpacket_pair(ch.control, control_child), "socketpair");

    WorkerSlot* s = slot_of(slot);
    s->job.store(0);
    s->sent.store(0);
    s->returned.store(0);
    s->ring_tail.store(0);
    s->ring_head.store(0);
    s->reader_sleeping.store(0);
    s->may_poll.store(SpinGovernor::process().spinning() ? 1 : 0);
    // A predecessor's revocations are not this worker's: a job it had revoked may come again.
    for (auto& c : s->cancelled) c.store(0);
    s->cancel_live.store(0);
    LaunchRequest req;
    req.fds = {task.read_end.get(), result.write_end.get(), control_child.get(), slots_fd_.get()};
    req.params.slot = static_cast<std::uint32_t>(slot);
    req.params.maxtasks = opts_.maxtasksperchild;
    req.params.memory_limit = opts_.memory_limit;
    req.params.has_init = init_frame_.empty() ? 0 : 1;
    req.slot = s;
    req.bell = bell_of();
    Launched l = launcher_->launch(req);
    result.write_end.reset();
    control_child.reset();
    posix::check(posix::set_nonblocking(ch.control.get(), true), "fcntl");
    posix::check(posix::set_nonblocking(task.write_end.get(), true), "fcntl");
    posix::check(posix::set_nonblocking(result.read_end.get(), true), "fcntl");
    ch.pid = l.pid;
    ch.pidfd = std::move(l.pidfd);
    ch.task_w = std::move(task.write_end);
    ch.task_r = std::move(task.read_end);
    ch.result_r = std::move(result.read_end);
    auto link = std::make_unique<Link>(*this, ctx_, slot, gen, s, std::move(ch));
    if (!init_frame_.empty()) link->send_init(init_frame_, init_segments_);
    links_[slot] = link.get();
    return link;
  }

  int run(std::chrono::nanoseconds max_wait, EventSink& sink) override {
    int timeout_ms = 0;
    if (max_wait != std::chrono::nanoseconds::zero()) {
      std::int64_t ns = max_wait.count() < 0 ? -1 : max_wait.count();
      // Destroyed segments are noticed by looking: while workers may still map some, look often.
      // (Read from prepare_sleep: this wait runs without the drive lock that guards the links.)
      if (watch_while_asleep_ && (ns < 0 || ns > config::segment_check_ns))
        ns = config::segment_check_ns;
      timeout_ms = ns < 0 ? -1
                          : static_cast<int>(std::clamp<std::int64_t>(
                                (ns + 999'999) / 1'000'000, 0, config::max_sleep_ns / 1'000'000));
    }
    posix::Epoll::Event evs[config::event_batch];
    const int n = ctx_.epoll.wait(evs, config::event_batch, timeout_ms);
    for (int i = 0; i < n; ++i) {
      const std::uint64_t kind = tag_kind(evs[i].tag);
      if (kind == kWake) {
        posix::eventfd_drain(wake_.get());
        continue;
      }
      const std::size_t slot = tag_slot(evs[i].tag);
      if (slot >= links_.size() || !links_[slot] || links_[slot]->gen() != tag_gen(evs[i].tag))
        continue;  // an event of a worker already replaced
      if (kind == kResult) {
        sink.readable(slot);
      } else if (kind == kTask || kind == kControl) {
        if (kind == kControl && (evs[i].events & posix::Epoll::hangup))
          links_[slot]->control_hung_up();
        sink.writable(slot);
      } else if (kind == kPidfd) {
        sink.died(slot);
      }
    }
    return n;
  }

  void interrupt() noexcept override { posix::eventfd_signal(wake_.get()); }

  void tidy() override {
    // Workers poll for tasks only while this process's waits spin (see SpinGovernor).
    const auto& governor = SpinGovernor::process();
    if (const auto g = governor.mode_generation(); g != poll_mode_gen_) {
      poll_mode_gen_ = g;
      const std::uint32_t poll = governor.spinning() ? 1 : 0;
      for (std::size_t i = 0; i < opts_.processes; ++i)
        slot_of(i)->may_poll.store(poll, std::memory_order_relaxed);
    }
    auto deaths = segment_deaths().load(std::memory_order_acquire);
    if (deaths != seen_deaths_) {
      seen_deaths_ = deaths;
      for (auto it = ctx_.sent_segments.begin(); it != ctx_.sent_segments.end();) {
        if (!it->second.expired()) {
          ++it;
          continue;
        }
        for (Link* l : links_)
          if (l) l->segment_died(it->first);
        it = ctx_.sent_segments.erase(it);
      }
    }
    for (Link* l : links_)
      if (l) l->forget_segments();
  }

  ExitReport reap(WorkerLink& link) override {
    auto& l = static_cast<Link&>(link);
    l.unwatch();
    posix::ExitStatus st = launcher_->reap(l.pid(), config::forkserver_report_ms);
    ExitReport r;
    r.signal = st.signal;
    r.code = st.code;
    return r;
  }

  bool prepare_sleep() noexcept override {
    watch_while_asleep_ = segments_watched();
    bool quiet = true;
    for (Link* l : links_)
      if (l && !l->arm_doorbell(true)) quiet = false;
    if (!quiet) end_sleep();
    return quiet;
  }

  ResultBell* result_bell() noexcept override { return bell_of(); }

  bool rearm_sleep() noexcept override {
    bool quiet = true;
    for (Link* l : links_)
      if (l && !l->rearm_doorbell()) quiet = false;
    return quiet;
  }

  void end_sleep() noexcept override {
    for (Link* l : links_)
      if (l) (void)l->arm_doorbell(false);
  }

 private:
  // A LocalLink that takes itself off the transport's list when it goes.
  class Link final : public LocalLink {
   public:
    Link(LocalTransport& t, LinkContext& ctx, std::size_t slot, std::uint32_t gen, WorkerSlot* s,
         LinkChannels ch)
        : LocalLink(ctx, slot, gen, s, std::move(ch)), t_(t), slot_(slot) {}
    ~Link() override {
      if (t_.links_[slot_] == this) t_.links_[slot_] = nullptr;
    }

   private:
    LocalTransport& t_;
    std::size_t slot_;
  };

  WorkerSlot* slot_of(std::size_t i) const { return SlotFile::slot(slots_.get(), i); }
  ResultBell* bell_of() const { return SlotFile::bell(slots_.get()); }

  bool segments_watched() const {
    if (!ctx_.sent_segments.empty()) return true;
    if (segment_deaths().load(std::memory_order_acquire) != seen_deaths_) return true;
    for (Link* l : links_)
      if (l && l->forgets_pending()) return true;
    return false;
  }

  Options opts_;
  bool watch_while_asleep_ = false;  // segments_watched() when the loop went to sleep
  std::vector<std::shared_ptr<Segment>> init_segments_;
  Buffer init_frame_;
  LinkContext ctx_;
  posix::UniqueFd wake_;
  posix::UniqueFd slots_fd_;
  posix::SharedMapping slots_;
  std::unique_ptr<Launcher> launcher_;
  std::vector<Link*> links_;  // by slot: the live worker's link, or none
  std::uint64_t seen_deaths_ = 0;
  std::uint32_t poll_mode_gen_ = 0;
};

}  // namespace procpool::detail::local
