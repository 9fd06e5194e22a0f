#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/completion.hpp>
#include <procpool/detail/posix/cpu.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/launch.hpp>
#include <procpool/detail/posix/process.hpp>
#include <procpool/detail/posix/shm.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/detail/worker.hpp>
#include <procpool/errors.hpp>
#include <procpool/options.hpp>

#ifndef PROCPOOL_SUPERVISOR_SPIN_US
/// How long the pool's thread polls for results before it sleeps, after recent activity.
#define PROCPOOL_SUPERVISOR_SPIN_US 50
#endif

namespace procpool::detail {

using Clock = std::chrono::steady_clock;

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

/// One frame of work: a task, or a chunk of a map.
struct Job {
  std::uint64_t id = 0;
  Buffer frame;  // header + payload, ready to write
  std::shared_ptr<Completion> completion;
  std::uint32_t index = 0;  // which of the completion's jobs this is
  std::uint32_t count = 1;  // items
  std::int64_t timeout_ns = 0;
  std::vector<std::shared_ptr<Segment>> attachments;  // shared memory its arguments refer to
  // Taken back from a worker that is stuck on a long task (see Core::rebalance): its result
  // from that worker is dropped if `cloned` (a copy went to the queue), else it decides.
  bool revoked = false;
  bool cloned = false;
};

/// The engine of a pool, independent of its codec. One thread (the supervisor) owns the workers:
/// it writes task frames, reads result frames, notices deaths (pidfd) and enforces time limits
/// (epoll timeouts), so every failure is handled in one place. Callers only touch the pending
/// queue.
class Core final : public Driver, public std::enable_shared_from_this<Core> {
 public:
  Core(const Options& opts, Buffer init_task, std::vector<std::shared_ptr<Segment>> init_segments)
      : opts_(opts), init_task_(std::move(init_task)), init_segments_(std::move(init_segments)) {}

  ~Core() {
    // A Core whose thread still runs means the Pool was not joined; finish it here so no worker
    // outlives its pool.
    if (thread_.joinable()) {
      terminate();
      thread_.join();
    }
  }

  /// Starts the workers; throws if they cannot start or the initializer fails.
  void start() {
    posix::check(epoll_.open(), "epoll_create1");
    posix::check(posix::make_eventfd(wake_), "eventfd");
    posix::check(epoll_.add(wake_.get(), posix::Epoll::in, tag(kWake, 0, 0)), "epoll_ctl");
    workers_.resize(opts_.processes);
    // The status slots live in a memory file, so a worker started by exec can map them too.
    posix::check(posix::make_memfd(sizeof(WorkerSlot) * opts_.processes, slots_fd_),
                 "memfd_create");
    posix::check(slots_.map_fd(slots_fd_.get(), sizeof(WorkerSlot) * opts_.processes), "mmap");
    if (opts_.start == StartMethod::forkserver) {
      posix::check(posix::make_seqpacket_pair(status_, status_child_), "socketpair");
    }
    if (!init_task_.empty()) {
      std::size_t at = begin_frame(init_frame_, FrameKind::init, 0);
      init_frame_.append(init_task_.data(), init_task_.size());
      finish_frame(init_frame_, at, 1);
    }
    oom_kills_ = posix::cgroup_oom_kills();
    std::future<void> started = started_.get_future();
    {
      // The pool's thread blocks every signal (see posix::BlockAllSignals).
      posix::BlockAllSignals blocked;
      thread_ = std::thread([this] { supervise(); });
    }
    try {
      started.get();
    } catch (...) {
      thread_.join();
      throw;
    }
  }

  std::uint64_t next_id() { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  /// Queues jobs; throws PoolClosed after close() or terminate().
  void submit(std::vector<Job>& jobs, std::size_t items) {
    {
      std::lock_guard lock(m_);
      if (closed_) throw PoolClosed("the pool is closed; no new tasks are accepted");
      for (auto& j : jobs) {
        mark_timed(j);
        pending_.push_back(std::move(j));
      }
      stats_.submitted += items;
      ++requests_;
    }
    wake();
  }

  /// Throws PoolClosed after close() or terminate().
  void check_open() const {
    std::lock_guard lock(m_);
    if (closed_) throw PoolClosed("the pool is closed; no new tasks are accepted");
  }

  void submit(Job&& job) {
    {
      std::lock_guard lock(m_);
      if (closed_) throw PoolClosed("the pool is closed; no new tasks are accepted");
      mark_timed(job);
      pending_.push_back(std::move(job));
      ++stats_.submitted;
      ++requests_;
    }
    wake();
  }

  /// Cancels the jobs of `c`: queued ones are dropped; with `kill_running`, a worker running one
  /// is killed and replaced. Returns false if `c` had already completed.
  bool cancel(const std::shared_ptr<Completion>& c, bool kill_running) {
    ErrorInfo e;
    e.kind = ErrorInfo::Kind::cancelled;
    e.message = "the task was cancelled";
    // Every task of `c` without an outcome fails now, wherever it is (queued, in a worker's
    // window, running): whatever comes back for it later is not counted again.
    if (!c->fail_all(e, [&](std::uint64_t n) { failed_.fetch_add(n, std::memory_order_relaxed); }))
      return false;
    {
      std::lock_guard lock(m_);
      std::erase_if(pending_, [&](const Job& j) { return j.completion == c; });
      cancels_.push_back({c, kill_running});
      ++requests_;
    }
    wake();
    return true;
  }

  void close() {
    {
      std::lock_guard lock(m_);
      closed_ = true;
      ++requests_;
    }
    wake();
  }

  void terminate() {
    {
      std::lock_guard lock(m_);
      closed_ = true;
      terminating_ = true;
      ++requests_;
    }
    wake();
  }

  void join() {
    {
      std::lock_guard lock(m_);
      if (!closed_) throw std::logic_error("procpool: join() before close() or terminate()");
    }
    if (std::this_thread::get_id() == thread_id_ || driving_here())
      throw std::logic_error("procpool: join() from a result callback would wait for itself");
    std::lock_guard lock(join_m_);
    if (thread_.joinable()) thread_.join();
  }

  Stats stats() const {
    Stats s;
    {
      std::lock_guard lock(m_);
      s = stats_;
    }
    s.completed = completed_.load(std::memory_order_relaxed);
    s.failed = failed_.load(std::memory_order_relaxed);
    return s;
  }

  std::vector<pid_t> pids() const {
    std::lock_guard lock(m_);
    return live_pids_;
  }

  std::size_t size() const { return opts_.processes; }

  // ---- threads waiting for results (see Driver) ----------------------------------------------

  void helping(bool on, bool gave_up) noexcept override {
    if (on) {
      helpers_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    last_helped_.store(now_ns(), std::memory_order_relaxed);
    bool last = helpers_.fetch_sub(1, std::memory_order_acq_rel) == 1;
    // A waiter that is about to sleep hands the work back at once; one that got its result
    // probably asks again soon, and the pool's thread looks again within helped_wait anyway.
    if (last && gave_up) {
      notify_supervisor();  // also rings the eventfd if the pool's thread sleeps
    } else if (sleeping_.load(std::memory_order_acquire)) {
      posix::eventfd_signal(wake_.get());
    }
  }

  std::chrono::microseconds spin_budget() const noexcept override {
    return std::chrono::microseconds(spin_budget_us_.load(std::memory_order_relaxed));
  }

  // Results that come within a spin's reach keep the full spin; long waits halve it, so a pool
  // of long tasks does not burn a core beside its workers on every wait.
  void waited(std::chrono::nanoseconds total) noexcept override {
    constexpr int full = PROCPOOL_WAIT_SPIN_US;
    if (total < std::chrono::microseconds(2 * full)) {
      spin_budget_us_.store(full, std::memory_order_relaxed);
    } else {
      int b = spin_budget_us_.load(std::memory_order_relaxed);
      spin_budget_us_.store(b / 2, std::memory_order_relaxed);
    }
  }

  // One non-blocking round of the supervisor's work, unless another thread is doing it. Worker
  // deaths are left to the pool's thread: a replacement must be forked from it (PDEATHSIG).
  void drive() noexcept override {
    if (driving_here()) return;  // a result callback waiting for another result
    std::unique_lock lock(drive_m_, std::try_to_lock);
    if (!lock.owns_lock() || !loop_running_) return;
    driving_here() = true;
    bool death = false;
    try {
      step_and_check_done();
      // Results are found through the workers' counters; the kernel is asked only now and then
      // (for a full task pipe, say), so the polling does not compete with the workers' writes.
      bool any = poll_workers();
      if (any) dispatch();  // the results may have made room: keep the workers busy
      posix::Epoll::Event evs[64];
      int n = 0;
      if (++drive_rounds_ % 16 == 0) n = epoll_.wait(evs, 64, 0);
      if (any) last_activity_ = now_ns();
      for (int i = 0; i < n; ++i) {
        if (evs[i].tag >> 56 == kPidfd) {
          death = true;
          continue;
        }
        handle(evs[i]);
      }
      if (n > 0) last_activity_ = now_ns();
      check_deadlines();
    } catch (...) {
      if (!helper_error_) helper_error_ = std::current_exception();
      death = true;
    }
    driving_here() = false;
    lock.unlock();
    if (death) notify_supervisor();
  }

 private:
  enum TagKind : std::uint64_t { kWake = 1, kResult = 3, kTask = 4, kPidfd = 5, kControl = 6 };
  static std::uint64_t tag(std::uint64_t kind, std::uint64_t slot, std::uint64_t gen) {
    return kind << 56 | (slot & 0xffffff) << 32 | (gen & 0xffffffff);
  }

  enum class KillReason { none, timeout, cancel, corrupt, terminate };

  struct Worker {
    bool alive = false;
    pid_t pid = 0;
    std::uint32_t gen = 0;
    posix::UniqueFd pidfd, task_w, result_r;
    posix::UniqueFd control;                     // sends shared memory segments
    std::unordered_set<std::uint64_t> segments;  // ids sent, not yet forgotten
    std::vector<std::uint64_t> forget;           // ids to tell it to unmap
    bool want_ctl_out = false;
    std::deque<Job> inflight;    // sent or being sent, in order; the front one runs
    std::size_t unsent = 0;      // index in inflight of the first job not fully written
    std::size_t unsent_off = 0;  // bytes of that job already written
    bool want_out = false;       // EPOLLOUT armed on task_w
    Buffer in;
    bool hello = false;
    bool stopping = false;      // no more work: stop sent, or being killed
    std::size_t sent_jobs = 0;  // for maxtasksperchild
    KillReason kill = KillReason::none;
    std::int64_t kill_deadline = 0;  // SIGKILL after this (ns) if still alive
    double avg_ns = 1e6;             // running mean of job run time, reported by the worker
    std::uint64_t received = 0;      // bytes read from result_r (see WorkerSlot::returned)
    std::uint64_t ring_head = 0;     // the pool's own copy of WorkerSlot::ring_head
    std::size_t want = 0;            // size of the partly read frame at the start of `in`
  };

  static void mark_timed(Job& j) {
    if (j.timeout_ns <= 0 || j.frame.size() < sizeof(FrameHeader)) return;
    FrameHeader h;
    std::memcpy(&h, j.frame.data(), sizeof h);
    h.flags |= frame_timed;
    std::memcpy(j.frame.data(), &h, sizeof h);
  }

  void wake() {
    if (sleeping_.load(std::memory_order_acquire)) posix::eventfd_signal(wake_.get());
  }

  void notify_supervisor() noexcept {
    { std::lock_guard lock(helped_m_); }
    helped_cv_.notify_one();
    if (sleeping_.load(std::memory_order_acquire)) posix::eventfd_signal(wake_.get());
  }

  static bool& driving_here() noexcept {
    thread_local bool driving = false;
    return driving;
  }

  // ---- the supervisor thread ----------------------------------------------------------------

  void supervise() {
    thread_id_ = std::this_thread::get_id();
    driving_here() = true;  // this thread owns drive_m_ whenever it runs pool code
    try {
      run_loop();
    } catch (const std::exception& e) {
      // Out of memory or an OS failure in the pool's own thread: no task may be left waiting.
      std::lock_guard lock(drive_m_);
      loop_running_ = false;
      ErrorInfo info;
      info.kind = ErrorInfo::Kind::crashed;
      info.message = std::string("the pool's supervisor failed: ") + e.what();
      try {
        fail_everything(info);
      } catch (...) {
      }
      kill_all(KillReason::terminate);
      reap_all_blocking();
      if (!all_hello_once_ && !startup_reported_) started_.set_exception(info.make());
    }
  }

  void run_loop() {
    std::unique_lock drive(drive_m_);
    bool reported = false;
    try {
      for (std::size_t i = 0; i < workers_.size(); ++i) spawn(i);
    } catch (...) {
      kill_all(KillReason::terminate);
      reap_all_blocking();
      startup_reported_ = true;
      started_.set_exception(std::current_exception());
      return;
    }
    last_activity_ = now_ns();
    loop_running_ = true;
    posix::Epoll::Event evs[64];
    for (;;) {
      if (!drive.owns_lock()) drive.lock();
      if (helper_error_) std::rethrow_exception(std::exchange(helper_error_, nullptr));
      if (!reported) {
        if (startup_error_) {
          loop_running_ = false;
          kill_all(KillReason::terminate);
          reap_all_blocking();
          startup_reported_ = true;
          started_.set_exception(startup_error_->make());
          return;
        }
        if (std::all_of(workers_.begin(), workers_.end(), [](auto& w) { return w.hello; })) {
          reported = all_hello_once_ = true;
          started_.set_value();
        }
      }
      if (!step_and_check_done()) break;

      // Results taken here may have freed a worker's window (or a replacement said hello):
      // dispatch() must run again before this thread may sleep, whatever the clock says.
      const bool progressed = poll_workers();
      if (progressed) last_activity_ = now_ns();
      int n = epoll_.wait(evs, 64, 0);
      if (n == 0 && (helpers_.load(std::memory_order_acquire) > 0 ||
                     now_ns() - last_helped_.load(std::memory_order_relaxed) < helped_recently)) {
        // Threads waiting for results do the I/O now (or did a moment ago, and will again): look
        // again soon for deaths and deadlines, but leave the cores to them and the workers.
        drive.unlock();
        std::unique_lock lock(helped_m_);
        helped_cv_.wait_for(lock, helped_wait);
        continue;
      }
      if (n == 0 && !progressed &&
          now_ns() - last_activity_ >= PROCPOOL_SUPERVISOR_SPIN_US * 1000) {
        sleeping_.store(true, std::memory_order_seq_cst);
        // Re-check after announcing sleep: a submit that saw sleeping_ == false did not signal.
        bool work;
        {
          std::lock_guard lock(m_);
          work = requests_ != seen_requests_;
        }
        if (!work && helpers_.load(std::memory_order_seq_cst) == 0 && arm_doorbells(true)) {
          int timeout = next_timeout_ms();
          drive.unlock();
          n = epoll_.wait(evs, 64, timeout);
          drive.lock();
          arm_doorbells(false);
        }
        sleeping_.store(false, std::memory_order_relaxed);
      } else if (n == 0) {
        drive.unlock();  // spinning: a waiting thread may take a round in between
        continue;
      }
      if (n > 0) last_activity_ = now_ns();
      for (int i = 0; i < n; ++i) handle(evs[i]);
      check_deadlines();
    }
    loop_running_ = false;
    if (!reported) {
      startup_reported_ = true;
      if (startup_error_) {
        started_.set_exception(startup_error_->make());
      } else {
        started_.set_exception(std::make_exception_ptr(Error("the pool's workers did not start")));
      }
    }
  }

  // Applies queued requests, hands out work and shuts down when finished. Returns false once the
  // pool is finished and every worker is reaped.
  bool step_and_check_done() {
    std::vector<CancelRequest> cancels;
    bool terminating, closed;
    {
      std::lock_guard lock(m_);
      cancels.swap(cancels_);
      terminating = terminating_;
      closed = closed_;
      seen_requests_ = requests_;
    }
    if (terminating && !terminated_) do_terminate();
    for (auto& c : cancels) cancel_sent(c.completion, c.kill_running);
    if (!terminating) {
      forget_dead_segments();
      rebalance();
      dispatch();
    }
    bool any_alive = std::any_of(workers_.begin(), workers_.end(), [](auto& w) { return w.alive; });
    if (closed && !terminating) {
      bool idle;
      {
        std::lock_guard lock(m_);
        idle = pending_.empty();
      }
      for (auto& w : workers_) idle = idle && w.inflight.empty();
      if (idle) {
        // Closing the task pipe is the stop signal: the worker exits at EOF.
        for (auto& w : workers_) {
          if (w.alive && !w.stopping) {
            w.stopping = true;
            epoll_.remove(w.task_w.get());
            w.task_w.reset();
          }
        }
      }
    }
    return any_alive || !(closed || broken_);
  }

  void handle(const posix::Epoll::Event& ev) {
    auto kind = ev.tag >> 56;
    auto slot = static_cast<std::size_t>((ev.tag >> 32) & 0xffffff);
    auto gen = static_cast<std::uint32_t>(ev.tag & 0xffffffff);
    if (kind == kWake) {
      posix::eventfd_drain(wake_.get());
      return;
    }
    if (slot >= workers_.size()) return;
    Worker& w = workers_[slot];
    if (!w.alive || w.gen != gen) return;  // an event of a worker already replaced
    if (kind == kResult) {
      read_results(slot);
    } else if (kind == kTask) {
      write_tasks(w);
    } else if (kind == kPidfd) {
      on_death(slot);
    } else if (kind == kControl) {
      write_tasks(w);
    }
  }

  void spawn(std::size_t slot) {
    Worker& w = workers_[slot];
    posix::PipeFds task, result;
    posix::check(posix::make_pipe(task, false), "pipe2");
    posix::check(posix::make_pipe(result, false), "pipe2");
    posix::grow_pipe(task.write_end.get(), 1 << 20);
    posix::grow_pipe(result.write_end.get(), 1 << 20);
    posix::UniqueFd control, control_child;
    posix::check(posix::make_seqpacket_pair(control, control_child), "socketpair");

    pid_t pid = 0;
    posix::UniqueFd pidfd;
    slot_of(slot)->job.store(0);
    slot_of(slot)->sent.store(0);
    slot_of(slot)->returned.store(0);
    slot_of(slot)->ring_tail.store(0);
    slot_of(slot)->ring_head.store(0);
    slot_of(slot)->reader_sleeping.store(0);
    if (opts_.start == StartMethod::fork) {
      WorkerContext ctx;
      ctx.task_fd = task.read_end.get();
      ctx.result_fd = result.write_end.get();
      ctx.maxtasks = opts_.maxtasksperchild;
      ctx.has_init = !init_task_.empty();
      ctx.slot = slot_of(slot);
      ctx.control_fd = control_child.get();
      posix::ChildSpec spec;
      spec.body = &worker_main;
      spec.ctx = &ctx;
      spec.memory_limit = opts_.memory_limit;
      spec.in_child = &SegmentTable::reset_in_child;
      spec.keep[0] = ctx.task_fd;
      spec.keep[1] = ctx.result_fd;
      spec.keep[2] = ctx.control_fd;
      posix::check(posix::fork_child(spec, pid, pidfd), "fork");
    } else {
      posix::WorkerFds fds{task.read_end.get(), result.write_end.get(), control_child.get(),
                           slots_fd_.get()};
      posix::WorkerParams params;
      params.slot = static_cast<std::uint32_t>(slot);
      params.maxtasks = opts_.maxtasksperchild;
      params.memory_limit = opts_.memory_limit;
      params.has_init = init_task_.empty() ? 0 : 1;
      if (opts_.start == StartMethod::spawn) {
        posix::check(posix::spawn_worker(fds, params, pid, pidfd), "spawning a worker");
      } else {
        posix::check(posix::forkserver_worker(fds, status_child_.get(), params, pid, pidfd),
                     "the fork server");
      }
    }
    task.read_end.reset();
    result.write_end.reset();
    control_child.reset();
    posix::check(posix::set_nonblocking(control.get(), true), "fcntl");
    posix::check(posix::set_nonblocking(task.write_end.get(), true), "fcntl");
    posix::check(posix::set_nonblocking(result.read_end.get(), true), "fcntl");

    w = Worker{};
    w.alive = true;
    w.pid = pid;
    w.gen = ++gen_counter_;
    w.pidfd = std::move(pidfd);
    w.task_w = std::move(task.write_end);
    w.result_r = std::move(result.read_end);
    w.control = std::move(control);
    w.in.reserve(64 * 1024);
    posix::check(epoll_.add(w.result_r.get(), posix::Epoll::in, tag(kResult, slot, w.gen)),
                 "epoll_ctl");
    posix::check(epoll_.add(w.pidfd.get(), posix::Epoll::in, tag(kPidfd, slot, w.gen)),
                 "epoll_ctl");
    posix::check(epoll_.add(w.task_w.get(), 0, tag(kTask, slot, w.gen)), "epoll_ctl");
    posix::check(epoll_.add(w.control.get(), 0, tag(kControl, slot, w.gen)), "epoll_ctl");
    if (!init_task_.empty()) {
      Job init;
      init.attachments = init_segments_;
      (void)send_segments(w, init);
      // The initializer goes first, with a blocking write: the worker reads nothing else
      // before it, so this cannot wait on anything but the worker itself.
      (void)posix::set_nonblocking(w.task_w.get(), false);
      if (!posix::write_all(w.task_w.get(), init_frame_.data(), init_frame_.size()))
        slot_of(slot)->sent.fetch_add(init_frame_.size(), std::memory_order_release);
      (void)posix::set_nonblocking(w.task_w.get(), true);
    }
    std::lock_guard lock(m_);
    live_pids_.push_back(pid);
  }

  // How many jobs a worker may hold: one when jobs are slow (so none waits behind a long one
  // while another worker idles), more when they are short (so the pipes stay busy).
  std::size_t window(const Worker& w) const {
    double budget = 1'000'000.0;  // ns of queued work per worker
    auto n = static_cast<std::size_t>(budget / std::max(w.avg_ns, 1.0));
    n = std::clamp<std::size_t>(n, 2, 64);
    if (opts_.maxtasksperchild != 0) {
      std::size_t left = opts_.maxtasksperchild - std::min(opts_.maxtasksperchild, w.sent_jobs);
      n = std::min(n, left);
    }
    return n;
  }

  void dispatch() {
    std::unique_lock lock(m_);
    if (pending_.empty()) return;
    bool sent_any = true;
    while (!pending_.empty() && sent_any) {
      sent_any = false;
      // Least-loaded worker first.
      Worker* best = nullptr;
      for (auto& w : workers_) {
        if (!w.alive || !w.hello || w.stopping || w.inflight.size() >= window(w)) continue;
        if (!best || w.inflight.size() < best->inflight.size()) best = &w;
      }
      if (!best) break;
      Job job = std::move(pending_.front());
      pending_.pop_front();
      if (job.completion->done()) {  // cancelled while queued: look at the next one
        sent_any = true;
        continue;
      }
      best->inflight.push_back(std::move(job));
      ++best->sent_jobs;
      sent_any = true;
    }
    lock.unlock();
    for (auto& w : workers_)
      if (w.alive && w.unsent < w.inflight.size()) write_tasks(w);
  }

  // Sends the shared memory segments job `i` refers to and the worker lacks, ahead of its frame.
  // Returns false if the control socket is full (retried when it drains).
  bool send_segments(Worker& w, const Job& job) {
    for (const auto& seg : job.attachments) {
      if (w.segments.count(seg->id())) continue;
      ControlMessage msg{ControlMessage::segment, seg->id(), seg->size()};
      auto ec = posix::send_message(w.control.get(), &msg, sizeof msg, seg->fd());
      if (ec == std::errc::resource_unavailable_try_again) return false;
      if (ec) return true;  // the worker is gone: its pidfd reports it
      w.segments.insert(seg->id());
      sent_segments_.emplace(seg->id(), seg);
    }
    return true;
  }

  // Tells workers to unmap segments the program has destroyed since the last look. A message
  // that does not fit now stays queued for the next round.
  void forget_dead_segments() {
    auto deaths = segment_deaths().load(std::memory_order_acquire);
    if (deaths != seen_deaths_) {
      seen_deaths_ = deaths;
      for (auto it = sent_segments_.begin(); it != sent_segments_.end();) {
        if (!it->second.expired()) {
          ++it;
          continue;
        }
        for (auto& w : workers_)
          if (w.alive && w.segments.erase(it->first)) w.forget.push_back(it->first);
        it = sent_segments_.erase(it);
      }
    }
    for (auto& w : workers_) {
      std::size_t sent = 0;
      for (; sent < w.forget.size() && w.alive; ++sent) {
        ControlMessage msg{ControlMessage::forget, w.forget[sent], 0};
        auto ec = posix::send_message(w.control.get(), &msg, sizeof msg, -1);
        if (ec == std::errc::resource_unavailable_try_again) break;
      }
      w.forget.erase(w.forget.begin(), w.forget.begin() + static_cast<std::ptrdiff_t>(sent));
    }
  }

  bool forgets_pending() const {
    if (segment_deaths().load(std::memory_order_acquire) != seen_deaths_) return true;
    for (auto& w : workers_)
      if (w.alive && !w.forget.empty()) return true;
    return false;
  }

  void write_tasks(Worker& w) {
    bool ctl_full = false;
    std::optional<posix::QuietSigpipe> quiet;  // the pool's thread blocks signals already
    if (w.unsent < w.inflight.size() && std::this_thread::get_id() != thread_id_) quiet.emplace();
    while (w.task_w && w.unsent < w.inflight.size()) {
      iovec iov[64];
      int n = 0;
      for (std::size_t i = w.unsent; i < w.inflight.size() && n < 64; ++i, ++n) {
        if (!(i == w.unsent && w.unsent_off > 0) && !w.inflight[i].attachments.empty() &&
            !send_segments(w, w.inflight[i])) {
          ctl_full = true;
          break;
        }
        const Buffer& f = w.inflight[i].frame;
        std::size_t off = i == w.unsent ? w.unsent_off : 0;
        iov[n].iov_base = const_cast<std::byte*>(f.data() + off);
        iov[n].iov_len = f.size() - off;
      }
      if (n == 0) break;
      std::error_code ec;
      auto r = posix::write_some(w.task_w.get(), iov, n, ec);
      if (r < 0) {
        if (ec == std::errc::resource_unavailable_try_again) break;
        // EPIPE: the worker is gone; its pidfd reports the death.
        if (quiet) quiet->broke();
        epoll_.remove(w.task_w.get());
        w.task_w.reset();
        return;
      }
      auto left = static_cast<std::size_t>(r);
      slot_of(static_cast<std::size_t>(&w - workers_.data()))
          ->sent.fetch_add(left, std::memory_order_release);
      while (left > 0) {
        std::size_t rest = w.inflight[w.unsent].frame.size() - w.unsent_off;
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
    auto slot = static_cast<std::size_t>(&w - workers_.data());
    bool want = w.task_w && w.unsent < w.inflight.size() && !ctl_full;
    if (want != w.want_out && w.task_w) {
      (void)epoll_.modify(w.task_w.get(), want ? posix::Epoll::out : 0, tag(kTask, slot, w.gen));
      w.want_out = want;
    }
    if (ctl_full != w.want_ctl_out && w.control) {
      (void)epoll_.modify(w.control.get(), ctl_full ? posix::Epoll::out : 0,
                          tag(kControl, slot, w.gen));
      w.want_ctl_out = ctl_full;
    }
  }

  // Reads every complete result frame a worker has sent. Returns false if the worker sent
  // something malformed (it is then killed).
  bool read_results(std::size_t slot) {
    Worker& w = workers_[slot];
    if (!w.result_r) return false;  // closed after a malformed message: nothing more is trusted
    // The ring is looked at only once the pipe has given all it had: whatever the worker wrote
    // to the pipe before a result it put in the ring is judged first.
    bool drained = false;
    // Frames the worker put in the ring before this point were preceded by all it wrote to the
    // pipe for earlier jobs, so once the pipe is drained they must answer the current job.
    const std::uint64_t ring_limit = slot_of(slot)->ring_tail.load(std::memory_order_seq_cst);
    for (;;) {
      bool ok;
      try {
        ok = parse_results(slot, drained ? ring_limit : w.ring_head);
        // A large frame gets its whole buffer at once (its pages are touched only as bytes
        // arrive): growing it step by step would copy it again and again.
        if (ok && w.want > w.in.capacity() && w.want <= (std::size_t{256} << 20))
          w.in.reserve(w.want);
        if (ok && w.in.capacity() - w.in.size() < 16 * 1024) w.in.reserve(w.in.size() + 64 * 1024);
      } catch (const std::bad_alloc&) {
        ok = false;  // a result too large for this process's memory: that worker's failure
      }
      if (!ok) {
        kill_worker(w, KillReason::corrupt);
        epoll_.remove(w.result_r.get());
        w.result_r.reset();  // nothing more from it can be trusted
        w.in.clear();
        return false;
      }
      if (drained) return true;
      std::error_code ec;
      auto n = posix::read_some(w.result_r.get(), w.in.data() + w.in.size(),
                                w.in.capacity() - w.in.size(), ec);
      if (n > 0) {
        w.in.resize(w.in.size() + static_cast<std::size_t>(n));
        w.received += static_cast<std::uint64_t>(n);
        continue;
      }
      if (n == 0) epoll_.remove(w.result_r.get());  // EOF: the death follows on the pidfd
      drained = true;
    }
  }

  // Takes every result that is complete, in the order of the worker's jobs: from the pipe, or
  // from the slot's ring (see WorkerSlot), whichever holds the next job's.
  bool parse_results(std::size_t slot, std::uint64_t ring_limit) {
    Worker& w = workers_[slot];
    std::size_t pos = 0;
    w.want = 0;
    for (;;) {
      std::optional<FrameHeader> piped;
      if (w.in.size() - pos >= sizeof(FrameHeader)) {
        FrameHeader h;
        std::memcpy(&h, w.in.data() + pos, sizeof h);
        if (h.magic != frame_magic || h.size > max_frame) return false;
        // The buffer grows as bytes arrive, not as the header claims: a lying header costs
        // nothing, and a worker's memory cannot be used to exhaust ours.
        if (w.in.size() - pos - sizeof h >= h.size) {
          piped = h;
        } else {
          w.want = sizeof h + static_cast<std::size_t>(h.size);
        }
      }
      if (piped && piped->kind == static_cast<std::uint8_t>(FrameKind::doorbell)) {
        if (piped->size != 0) return false;
        pos += sizeof(FrameHeader);
        continue;
      }
      if (piped && (piped->kind != static_cast<std::uint8_t>(FrameKind::result) ||
                    (!w.inflight.empty() && piped->id == w.inflight.front().id))) {
        std::size_t frame_len = sizeof(FrameHeader) + static_cast<std::size_t>(piped->size);
        const std::byte* before = w.in.data();
        if (!on_frame(slot, *piped, w.in, pos, frame_len)) return false;
        if (w.in.data() != before) {  // the frame's buffer was handed over whole
          pos = 0;
          continue;
        }
        pos += frame_len;
        continue;
      }
      if (piped && !expects(w, piped->id)) return false;
      int r = take_from_ring(slot, ring_limit);
      if (r < 0) return false;
      if (r == 0) break;
    }
    w.in.consume(pos);
    return true;
  }

  static bool expects(const Worker& w, std::uint64_t id) {
    for (std::size_t i = 0; i < w.unsent && i < w.inflight.size(); ++i)
      if (w.inflight[i].id == id) return true;
    return false;
  }

  bool ring_pending(std::size_t slot) const {
    return slot_of(slot)->ring_tail.load(std::memory_order_seq_cst) != workers_[slot].ring_head;
  }

  // The ring's next frame (up to `tail`), which must answer the worker's current job: 1 taken,
  // 0 none, -1 the worker wrote something malformed. The pool keeps its own head: the ring's memory
  // is the worker's to scribble on, so everything read from it is copied, then checked.
  int take_from_ring(std::size_t slot, std::uint64_t tail) {
    Worker& w = workers_[slot];
    WorkerSlot* s = slot_of(slot);
    const std::uint64_t avail = tail - w.ring_head;
    if (avail == 0) return 0;
    if (avail > WorkerSlot::ring_size || avail < sizeof(FrameHeader)) return -1;
    FrameHeader h;
    s->ring_read(w.ring_head, &h, sizeof h);
    if (h.magic != frame_magic || h.kind != static_cast<std::uint8_t>(FrameKind::result) ||
        h.size > avail - sizeof h)
      return -1;
    if (w.inflight.empty() || h.id != w.inflight.front().id || w.unsent == 0) return -1;
    const std::size_t len = sizeof h + static_cast<std::size_t>(h.size);
    Buffer frame;
    frame.resize(len);
    s->ring_read(w.ring_head, frame.data(), len);
    FrameHeader copy;
    std::memcpy(&copy, frame.data(), sizeof copy);
    if (std::memcmp(&copy, &h, sizeof h) != 0) return -1;  // changed while we read it
    w.ring_head += len;
    s->ring_head.store(w.ring_head, std::memory_order_release);
    return on_frame(slot, h, frame, 0, len) ? 1 : -1;
  }

  // Before the pool's thread sleeps: workers ring the doorbell for what they put in their rings
  // from now on. Returns false (and disarms) if a ring has something already.
  bool arm_doorbells(bool on) {
    for (std::size_t i = 0; i < workers_.size(); ++i)
      if (workers_[i].alive)
        slot_of(i)->reader_sleeping.store(on ? 1 : 0, std::memory_order_seq_cst);
    if (!on) return true;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i].alive && workers_[i].result_r && ring_pending(i)) {
        arm_doorbells(false);
        return false;
      }
    }
    return true;
  }

  // Reads results from workers whose ring or pipe has something new; true if any had.
  bool poll_workers() {
    bool any = false;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      Worker& w = workers_[i];
      if (!w.alive || !w.result_r) continue;
      if (ring_pending(i) || slot_of(i)->returned.load(std::memory_order_acquire) != w.received) {
        read_results(i);
        any = true;
      }
    }
    return any;
  }

  // One frame of `src` (the pipe's buffer, or a frame copied from the ring).
  bool on_frame(std::size_t slot, const FrameHeader& h, Buffer& src, std::size_t pos,
                std::size_t len) {
    Worker& w = workers_[slot];
    std::span<const std::byte> payload(src.data() + pos + sizeof h, len - sizeof h);
    switch (static_cast<FrameKind>(h.kind)) {
      case FrameKind::hello:
        if (w.hello) return false;  // only a starting worker says hello
        w.hello = true;
        start_failures_ = 0;
        return true;
      case FrameKind::init_error: {
        if (w.hello) return false;  // a running worker has no initializer to report on
        ErrorInfo e;
        bool ok = for_each_item(payload, h.count,
                                [&](const ItemView& it) { e = ErrorInfo::from_item(it); });
        if (!ok || h.count != 1) return false;
        if (e.kind == ErrorInfo::Kind::remote) e.message = "the initializer failed: " + e.message;
        init_failed(e);
        return true;
      }
      case FrameKind::result:
        break;
      default:
        return false;
    }
    if (w.inflight.empty() || w.inflight.front().id != h.id || w.unsent == 0) return false;
    if (!for_each_item(payload, h.count, [](const ItemView&) {}) ||
        h.count != w.inflight.front().count)
      return false;
    Job job = std::move(w.inflight.front());
    w.inflight.pop_front();
    --w.unsent;
    if (job.revoked) {
      bool skipped = false;
      for_each_item(payload, h.count,
                    [&](const ItemView& it) { skipped = it.status == ItemStatus::skipped; });
      if (job.cloned) return true;  // its copy runs elsewhere
      if (skipped) {                // the worker skipped it: now it goes elsewhere
        requeue_copy(job);
        return true;
      }
    }
    w.avg_ns = w.avg_ns * 0.75 + static_cast<double>(h.reserved2) * 0.25;

    JobOutcome o;
    o.count = h.count;
    if (&src != &w.in) {
      o.frame = std::move(src);
    } else if (pos == 0 && len == w.in.size() && len >= 64 * 1024) {
      // A large frame alone in the buffer: hand the buffer over instead of copying it.
      o.frame = std::move(w.in);
      w.in = Buffer();
      w.in.reserve(64 * 1024);
    } else {
      o.frame.append(w.in.data() + pos, len);
    }
    o.offset = sizeof(FrameHeader);
    std::uint64_t ok_items = 0, failed_items = 0;
    for_each_item(o.payload(), o.count, [&](const ItemView& it) {
      (it.status == ItemStatus::ok ? ok_items : failed_items)++;
    });
    job.completion->settle(job.index, std::move(o), job.count, [&] {
      completed_.fetch_add(ok_items, std::memory_order_relaxed);
      failed_.fetch_add(failed_items, std::memory_order_relaxed);
    });
    return true;
  }

  void init_failed(const ErrorInfo& e) {
    if (!started_reported()) {
      startup_error_ = e;
      return;
    }
    // A replacement's initializer failed: respawning would loop, so the pool stops here.
    fail_everything(e);
  }

  bool started_reported() const { return !startup_error_ && all_hello_once_; }

  void fail_everything(const ErrorInfo& e) {
    std::deque<Job> jobs;
    {
      std::lock_guard lock(m_);
      closed_ = true;
      broken_ = true;
      jobs.swap(pending_);
    }
    for (auto& w : workers_) {
      for (auto& j : w.inflight) jobs.push_back(std::move(j));
      w.inflight.clear();
      w.unsent = w.unsent_off = 0;
      if (w.alive) kill_worker(w, KillReason::terminate);
    }
    fail_jobs(jobs, e);
  }

  void fail_jobs(std::deque<Job>& jobs, const ErrorInfo& e) {
    for (auto& j : jobs) {
      JobOutcome o;
      o.error = e;
      j.completion->settle(j.index, std::move(o), j.count,
                           [&] { failed_.fetch_add(j.count, std::memory_order_relaxed); });
    }
  }

  void on_death(std::size_t slot) {
    // The task that died fails last, after its replacement has started, so whoever it wakes
    // already sees the pool as it will be (stats, pids).
    std::deque<Job> failed;
    ErrorInfo why;
    bury(slot, failed, why);
    if (!failed.empty()) fail_jobs(failed, why);
  }

  // Reaps a dead worker, requeues what it had not started, and starts a replacement.
  void bury(std::size_t slot, std::deque<Job>& failed, ErrorInfo& why) {
    Worker& w = workers_[slot];
    if (w.result_r) read_results(slot);  // results written before the death still count
    posix::ExitStatus st = reap(w.pid);
    epoll_.remove(w.pidfd.get());
    if (w.result_r) epoll_.remove(w.result_r.get());
    if (w.task_w) epoll_.remove(w.task_w.get());
    if (w.control) epoll_.remove(w.control.get());
    w.alive = false;
    {
      std::lock_guard lock(m_);
      live_pids_.erase(std::remove(live_pids_.begin(), live_pids_.end(), w.pid), live_pids_.end());
    }
    bool was_ready = w.hello;
    // The front job failed only if the worker had started it; a worker that died between jobs
    // (killed while idle, say) fails nothing, and its jobs go to other workers.
    // A worker killed for a malformed message fails the job that message answered.
    bool front_started =
        !w.inflight.empty() && w.unsent > 0 &&
        (w.kill == KillReason::corrupt ||
         slot_of(slot)->job.load(std::memory_order_acquire) == w.inflight.front().id);
    if (front_started) {
      why = death_error(w, st);
      failed.push_back(std::move(w.inflight.front()));
      w.inflight.pop_front();
    }
    {
      // Jobs sent but not started go back to the front of the queue, in order.
      std::lock_guard lock(m_);
      for (auto it = w.inflight.rbegin(); it != w.inflight.rend(); ++it) {
        if (it->cloned) continue;  // its copy is queued already
        it->revoked = false;
        pending_.push_front(std::move(*it));
      }
      w.inflight.clear();
    }
    w.unsent = w.unsent_off = 0;
    w.pidfd.reset();
    w.result_r.reset();
    w.task_w.reset();
    w.control.reset();
    w.segments.clear();
    w.forget.clear();

    bool terminating, closed;
    {
      std::lock_guard lock(m_);
      terminating = terminating_;
      closed = closed_;
    }
    if (terminating || broken_) return;
    if (!started_reported() && startup_error_) return;
    if (!was_ready && !startup_error_) {
      ++start_failures_;
      if (start_failures_ >= 3 || !started_reported()) {
        ErrorInfo e = death_error(w, st);
        e.message = "workers keep dying before they are ready: " + e.message;
        if (!started_reported()) {
          startup_error_ = e;
        } else {
          fail_everything(e);
        }
        return;
      }
    }
    bool need;
    {
      std::lock_guard lock(m_);
      need = !closed || !pending_.empty();
    }
    for (auto& o : workers_) need = need || !o.inflight.empty();
    if (!need) return;
    try {
      spawn(slot);
      std::lock_guard lock(m_);
      ++stats_.restarts;
    } catch (const SystemError& e) {
      ErrorInfo info;
      info.kind = ErrorInfo::Kind::system;
      info.ec = e.code();
      info.message = "starting a replacement worker";
      if (std::none_of(workers_.begin(), workers_.end(), [](auto& x) { return x.alive; }))
        fail_everything(info);
    }
  }

  // Waits for a dead worker's exit status: ours to reap, or reported by the fork server.
  posix::ExitStatus reap(pid_t pid) {
    if (opts_.start != StartMethod::forkserver) return posix::reap(pid, true);
    return posix::await_exit_report(status_.get(), pid, exit_reports_, 5000);
  }

  ErrorInfo death_error(const Worker& w, const posix::ExitStatus& st) {
    ErrorInfo e;
    switch (w.kill) {
      case KillReason::timeout:
        e.kind = ErrorInfo::Kind::timeout;
        e.message =
            "the task exceeded its time limit of " +
            std::to_string(w.inflight.empty() ? 0 : w.inflight.front().timeout_ns / 1'000'000) +
            " ms; worker " + std::to_string(w.pid) + " was killed and replaced";
        return e;
      case KillReason::cancel:
      case KillReason::terminate:
        e.kind = ErrorInfo::Kind::cancelled;
        e.message =
            w.kill == KillReason::cancel ? "the task was cancelled" : "the pool was terminated";
        return e;
      case KillReason::corrupt:
      case KillReason::none:
        break;
    }
    e.kind = ErrorInfo::Kind::crashed;
    e.pid = w.pid;
    e.signal = st.signal;
    e.code = st.code;
    std::string how = st.signal != 0 ? std::string("killed by SIG") + posix::signal_name(st.signal)
                                     : "exit code " + std::to_string(st.code);
    e.message = "worker " + std::to_string(w.pid) +
                (w.hello ? " died while running the task (" : " died while starting (") + how + ")";
    if (w.kill == KillReason::corrupt)
      e.message = "worker " + std::to_string(w.pid) +
                  " sent a malformed or oversized result for the task (" + how +
                  "); it was replaced";
    if (st.signal == SIGKILL && w.kill == KillReason::none) {
      long long kills = posix::cgroup_oom_kills();
      if (kills > oom_kills_ && oom_kills_ >= 0) e.message += "; the kernel's OOM killer killed it";
      oom_kills_ = kills;
    }
    return e;
  }

  void kill_worker(Worker& w, KillReason why) {
    if (!w.alive) return;
    if (w.kill == KillReason::none || why == KillReason::terminate) w.kill = why;
    w.stopping = true;
    posix::kill_group(w.pid, why == KillReason::timeout ? SIGTERM : SIGKILL);
    if (why == KillReason::timeout) w.kill_deadline = now_ns() + kill_grace_ns;
  }

  void kill_all(KillReason why) {
    for (auto& w : workers_) kill_worker(w, why);
  }

  void reap_all_blocking() {
    for (auto& w : workers_) {
      if (!w.alive) continue;
      reap(w.pid);
      w.alive = false;
    }
    std::lock_guard lock(m_);
    live_pids_.clear();
  }

  void do_terminate() {
    terminated_ = true;
    ErrorInfo e;
    e.kind = ErrorInfo::Kind::cancelled;
    e.message = "the pool was terminated before the task finished";
    fail_everything(e);
    kill_all(KillReason::terminate);
  }

  // A copy of a job under a fresh id, at the front of the queue (its frame names the id).
  void requeue_copy(const Job& job) {
    Job copy;
    copy.id = next_id();
    copy.frame.append(job.frame.data(), job.frame.size());
    FrameHeader h;
    std::memcpy(&h, copy.frame.data(), sizeof h);
    h.id = copy.id;
    std::memcpy(copy.frame.data(), &h, sizeof h);
    copy.completion = job.completion;
    copy.index = job.index;
    copy.count = job.count;
    copy.timeout_ns = job.timeout_ns;
    copy.attachments = job.attachments;
    std::lock_guard lock(m_);
    pending_.push_front(std::move(copy));
  }

  // How long the front job must have run before the jobs queued behind it are taken back.
  std::int64_t stuck_after(const Worker& w) const {
    return std::max<std::int64_t>(2'000'000, static_cast<std::int64_t>(4 * w.avg_ns));
  }

  bool someone_idle() const {
    for (auto& o : workers_)
      if (o.alive && o.hello && !o.stopping && o.inflight.empty()) return true;
    return false;
  }

  // Work stealing, for task lengths that vary wildly: when a worker's front job runs far longer
  // than its tasks usually take and another worker idles, the jobs waiting behind it are taken
  // back. The worker is told to skip them (its slot's ring); if it provably has not moved past
  // the front job, copies go to the queue at once, else its answers decide (skipped: requeue).
  void rebalance() {
    if (!someone_idle()) return;
    auto now = now_ns();
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      Worker& w = workers_[i];
      if (!w.alive || w.kill != KillReason::none || w.inflight.size() < 2 || w.unsent == 0)
        continue;
      WorkerSlot* s = slot_of(i);
      const std::uint64_t front = w.inflight.front().id;
      if (s->job.load() != front || now - s->item_start.load() < stuck_after(w)) continue;
      // Jobs not yet written at all simply go back.
      std::size_t first_unwritten = w.unsent + (w.unsent_off > 0 ? 1 : 0);
      {
        std::lock_guard lock(m_);
        while (w.inflight.size() > first_unwritten) {
          pending_.push_front(std::move(w.inflight.back()));
          w.inflight.pop_back();
          --w.sent_jobs;
        }
      }
      std::vector<Job*> taken;
      for (std::size_t k = 1; k < w.inflight.size(); ++k) {
        Job& j = w.inflight[k];
        if (j.revoked) continue;
        s->cancelled[s->cancel_next.fetch_add(1) % WorkerSlot::cancel_slots].store(j.id);
        j.revoked = true;
        taken.push_back(&j);
      }
      if (taken.empty()) continue;
      if (s->job.load() == front) {
        // Still on the front job after the marks were made: it will skip every one of them.
        for (auto it = taken.rbegin(); it != taken.rend(); ++it) {
          (*it)->cloned = true;
          requeue_copy(**it);
        }
      }
    }
  }

  // When rebalance() should look again (0: no need).
  std::int64_t next_rebalance(std::int64_t now) const {
    if (!someone_idle()) return 0;
    std::int64_t next = 0;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      const Worker& w = workers_[i];
      if (!w.alive || w.kill != KillReason::none || w.inflight.size() < 2 || w.unsent == 0)
        continue;
      const WorkerSlot* s = slot_of(i);
      if (s->job.load() != w.inflight.front().id) continue;
      bool open = false;
      for (std::size_t k = 1; k < w.inflight.size(); ++k) open = open || !w.inflight[k].revoked;
      if (!open) continue;
      std::int64_t t = std::max(now, s->item_start.load() + stuck_after(w));
      next = next == 0 ? t : std::min(next, t);
    }
    return next;
  }

  // Jobs of a cancelled completion that already sit in a worker's window: the worker is told to
  // skip them; one it has already started is killed with its worker, if so asked.
  void cancel_sent(const std::shared_ptr<Completion>& c, bool kill_started) {
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      Worker& w = workers_[i];
      if (!w.alive) continue;
      WorkerSlot* s = slot_of(i);
      for (std::size_t k = 0; k < w.inflight.size() && k < w.unsent + 1; ++k) {
        const Job& j = w.inflight[k];
        if (j.completion != c) continue;
        s->cancelled[s->cancel_next.fetch_add(1) % WorkerSlot::cancel_slots].store(j.id);
        if (kill_started && s->job.load() == j.id) kill_worker(w, KillReason::cancel);
      }
    }
  }

  // Hard time limits, per task from its real start (the worker's slot says when).
  void check_deadlines() {
    auto now = now_ns();
    for (auto& w : workers_) {
      if (!w.alive) continue;
      if (w.kill_deadline != 0 && now >= w.kill_deadline) {
        posix::kill_group(w.pid, SIGKILL);
        w.kill_deadline = 0;
      }
      if (w.kill != KillReason::none) continue;
      auto d = deadline_of(w, now);
      if (d != 0 && now >= d) {
        const WorkerSlot* s = slot_of(static_cast<std::size_t>(&w - workers_.data()));
        if (s->job.load(std::memory_order_acquire) == w.inflight.front().id)
          kill_worker(w, KillReason::timeout);
      }
    }
  }

  int next_timeout_ms() {
    std::int64_t next = -1;
    auto now = now_ns();
    for (auto& w : workers_) {
      if (!w.alive) continue;
      std::int64_t d = w.kill_deadline != 0 ? w.kill_deadline : -1;
      if (w.kill == KillReason::none) {
        auto t = deadline_of(w, now);
        if (t != 0) d = d < 0 ? t : std::min(d, t);
      }
      if (d >= 0 && (next < 0 || d < next)) next = d;
    }
    if (auto t = next_rebalance(now); t != 0) next = next < 0 ? t : std::min(next, t);
    // Destroyed segments are noticed by looking: while workers may still map some, look often.
    if (!sent_segments_.empty() || forgets_pending()) {
      std::int64_t soon = now + 100'000'000;
      next = next < 0 ? soon : std::min(next, soon);
    }
    if (next < 0) return -1;
    auto ms = (next - now + 999'999) / 1'000'000;
    return static_cast<int>(std::clamp<std::int64_t>(ms, 0, 60'000));
  }

  static constexpr std::int64_t kill_grace_ns = 500'000'000;

  WorkerSlot* slot_of(std::size_t i) const { return static_cast<WorkerSlot*>(slots_.get()) + i; }

  // When the front job's current item must end (ns), or 0 if it has no limit. A job the worker
  // has not started yet is given its whole limit from now; the check then runs again.
  std::int64_t deadline_of(const Worker& w, std::int64_t now) const {
    if (w.inflight.empty() || w.unsent == 0) return 0;
    const Job& front = w.inflight.front();
    if (front.timeout_ns <= 0) return 0;
    const WorkerSlot* s = slot_of(static_cast<std::size_t>(&w - workers_.data()));
    std::int64_t start = s->item_start.load(std::memory_order_acquire);
    if (s->job.load(std::memory_order_acquire) != front.id) return now + front.timeout_ns;
    start = std::max(start, s->item_start.load(std::memory_order_acquire));
    return start + front.timeout_ns;
  }

  Options opts_;
  Buffer init_task_;
  std::vector<std::shared_ptr<Segment>> init_segments_;  // what the initializer's arguments name
  posix::SharedMapping slots_;
  posix::UniqueFd slots_fd_;
  Buffer init_frame_;
  posix::UniqueFd status_, status_child_;  // fork server: exit reports of our workers
  std::unordered_map<pid_t, int> exit_reports_;
  std::unordered_map<std::uint64_t, std::weak_ptr<Segment>> sent_segments_;
  std::uint64_t seen_deaths_ = 0;
  long long oom_kills_ = -1;

  // Shared with callers, under m_.
  mutable std::mutex m_;
  std::deque<Job> pending_;
  struct CancelRequest {
    std::shared_ptr<Completion> completion;
    bool kill_running;
  };
  std::vector<CancelRequest> cancels_;
  bool closed_ = false;
  bool terminating_ = false;
  // Counts submissions and requests, so the supervisor can tell whether anything changed since
  // it last looked (pending work that no worker has room for is no reason to stay awake).
  std::uint64_t requests_ = 0;
  std::uint64_t seen_requests_ = 0;
  Stats stats_;  // submitted and restarts; the outcomes are counted in the atomics below
  // Counted while a Completion's lock is held (see Completion::settle), never under m_.
  std::atomic<std::uint64_t> completed_{0}, failed_{0};
  std::vector<pid_t> live_pids_;
  std::atomic<bool> sleeping_{false};
  std::atomic<std::uint64_t> next_id_{1};

  // Owned by the supervisor thread.
  std::vector<Worker> workers_;
  posix::Epoll epoll_;
  posix::UniqueFd wake_;
  std::uint32_t gen_counter_ = 0;
  int start_failures_ = 0;
  bool broken_ = false;
  bool terminated_ = false;
  bool all_hello_once_ = false;
  bool startup_reported_ = false;
  std::optional<ErrorInfo> startup_error_;

  // The supervisor's state above is driven under drive_m_: by the pool's thread, or for a moment
  // by a thread waiting for a result (Driver).
  std::mutex drive_m_;
  bool loop_running_ = false;
  std::uint32_t drive_rounds_ = 0;
  std::int64_t last_activity_ = 0;
  std::exception_ptr helper_error_;
  std::atomic<int> helpers_{0};
  std::atomic<int> spin_budget_us_{PROCPOOL_WAIT_SPIN_US};
  std::atomic<std::int64_t> last_helped_{0};  // when a waiting thread last stopped helping
  static constexpr std::int64_t helped_recently = 1'000'000;  // ns
  std::mutex helped_m_;
  std::condition_variable helped_cv_;
  static constexpr std::chrono::microseconds helped_wait{200};

  std::promise<void> started_;
  std::thread thread_;
  std::thread::id thread_id_;
  std::mutex join_m_;
};

}  // namespace procpool::detail
