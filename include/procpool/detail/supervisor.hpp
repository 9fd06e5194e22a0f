#pragma once
// The supervisor: the engine of one pool, and the one place that decides which thread drives
// it. It owns the parts (SubmissionQueue, Scheduler, Workforce, Transport), the pool's thread and
// the drive lock: whoever holds that lock runs a round of the loop, so all the parts' state
// except the queue has a single owner at a time. The pool's thread runs the loop; a thread
// waiting for a result may run rounds too for a moment (help, the waiter-helps protocol), so a
// result microseconds away reaches it without waking the pool's thread and then itself. Pool
// owns it; Completions reach it as their PoolHandle.
//
// One round: take the callers' requests (cancel, close, terminate), let the scheduler move jobs
// into windows and take back stuck ones, flush the links, collect answers (Workforce settles
// them), let the transport report deaths and writable channels, enforce deadlines.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/clock.hpp>
#include <procpool/detail/completion.hpp>
#include <procpool/detail/config.hpp>
#include <procpool/detail/cpu_relax.hpp>
#include <procpool/detail/event_sinks.hpp>
#include <procpool/detail/once_signal.hpp>
#include <procpool/detail/pool_handle.hpp>
#include <procpool/detail/posix/process.hpp>
#include <procpool/detail/scheduler.hpp>
#include <procpool/detail/spin_governor.hpp>
#include <procpool/detail/submission_queue.hpp>
#include <procpool/detail/transport.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/detail/workforce.hpp>
#include <procpool/errors.hpp>
#include <procpool/options.hpp>

namespace procpool::detail {

// Whether this thread's last wait for a result helped the pool (and so spun).
inline thread_local bool helped_last_wait = false;

class Supervisor final : public PoolHandle, public Waker {
 public:
  Supervisor(const Options& opts, std::unique_ptr<Transport> transport)
      : size_(opts.processes),
        queue_(*this),
        scheduler_(opts.maxtasksperchild),
        transport_(std::move(transport)),
        workforce_(opts.processes, *transport_, queue_) {}

  ~Supervisor() {
    // A Supervisor whose thread still runs means the Pool was not joined; finish it here so no
    // worker outlives its pool.
    if (thread_.joinable()) {
      queue_.terminate();
      thread_.join();
    }
  }

  /// Starts the workers; throws if they cannot start or the initializer fails.
  void start() {
    {
      // The pool's thread blocks every signal (see posix::BlockAllSignals).
      posix::BlockAllSignals blocked;
      thread_ = std::thread([this] { supervise(); });
    }
    try {
      started_.get();
    } catch (...) {
      thread_.join();
      throw;
    }
  }

  SubmissionQueue& queue() noexcept { return queue_; }
  const SubmissionQueue& queue() const noexcept { return queue_; }
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  /// Workers in all: more than the slots when a link fronts several (see WorkerLink::capacity).
  void set_size(std::size_t n) noexcept { size_.store(n, std::memory_order_relaxed); }

  void join() {
    if (!queue_.closed()) throw std::logic_error(prefixed("join() before close() or terminate()"));
    if (std::this_thread::get_id() == thread_id_ || driving_here())
      throw std::logic_error(prefixed("join() from a result callback would wait for itself"));
    std::lock_guard lock(join_m_);
    if (thread_.joinable()) thread_.join();
  }

  // ---- PoolHandle: cancel, and the waiter-helps protocol --------------------------------------

  bool cancel(const std::shared_ptr<Completion>& c, bool kill_running) override {
    return queue_.cancel(c, kill_running);
  }

  /// Does the pool's work while waiting for `done()`, or sleeps on the result bell (see
  /// supervisor_wait.hpp, with the two below).
  inline bool help(Predicate done, Clock::time_point until, BellWaiter* waiter) noexcept override;
  /// Waits on the result bell until `done()` or `until`; false if this thread cannot.
  bool sleep_on_bell(Predicate done, Clock::time_point until, BellWaiter& waiter) noexcept;
  /// A round from a thread on the result bell; false if another thread drives.
  bool collect() noexcept;

  // Results that come within a spin's reach keep the full spin; long waits halve it, so a pool
  // of long tasks does not burn a core beside its workers on every wait. Only waits that helped
  // teach (the others did not spin), so the budget never falls below an eighth: at 0 no wait
  // would help, none would teach, and a pool that had a few slow waits (its start, a hiccup)
  // stayed at sleeping round trips, 2-5x slower, for the rest of its life.
  void waited(std::chrono::nanoseconds total) noexcept override {
    SpinGovernor::process().record_wait(total.count(), now_ns());
    if (!helped_last_wait) return;
    constexpr int full = config::wait_spin_us;
    if (total < std::chrono::microseconds(2 * full)) {
      spin_budget_us_.store(full, std::memory_order_relaxed);
    } else {
      int b = spin_budget_us_.load(std::memory_order_relaxed);
      spin_budget_us_.store(std::max(b / 2, full / 8), std::memory_order_relaxed);
    }
  }

  /// Waker: a request arrived; the pool's thread is woken only if it sleeps.
  void wake() noexcept override {
    if (sleeping_.load(std::memory_order_acquire)) transport_->interrupt();
  }

  /// Waker: jobs arrived. If the pool's thread sleeps, this thread hands them to workers itself
  /// when it can, which spares a wake-up: the pool's thread wakes for the answer anyway (its
  /// sleep is armed for every worker's answer; see Transport::prepare_sleep).
  void submitted() noexcept override {
    if (!sleeping_.load(std::memory_order_seq_cst)) return;
    if (dispatch_here())
      submitter_dispatches().fetch_add(1, std::memory_order_relaxed);
    else
      transport_->interrupt();
  }

  /// How often a waiting thread slept on the result bell, in this process (for tests).
  static std::atomic<std::uint64_t>& bell_waits() noexcept {
    static std::atomic<std::uint64_t> n{0};
    return n;
  }

  /// How often a submitting thread sent its jobs itself, in this process (for tests).
  static std::atomic<std::uint64_t>& submitter_dispatches() noexcept {
    static std::atomic<std::uint64_t> n{0};
    return n;
  }

 private:
  // The pool's thread between rounds with nothing to do: spin on while the governor allows and
  // the thread keeps its core (an idle round takes a few microseconds, so a much longer gap
  // between two means it was descheduled, if it was switched out: see SpinGovernor).
  bool keep_spinning(std::int64_t now) noexcept {
    auto& governor = SpinGovernor::process();
    const bool lost =
        spin_step_ >= 0 && now - spin_step_ > SpinGovernor::round_gap_ns && governor.preempted();
    if (lost) governor.lost_core(now);
    spin_step_ = lost || !governor.spinning() || !governor.may_spin(now) ? -1 : now;
    return spin_step_ >= 0;
  }

  void stop_helping(bool gave_up) noexcept {
    // A waiter that is about to sleep hands the work back at once; one that got its result
    // probably asks again soon, and the pool's thread looks again within helped_wait anyway.
    if (!gave_up) last_helped_.store(now_ns(), std::memory_order_seq_cst);
    const bool last = helpers_.fetch_sub(1, std::memory_order_seq_cst) == 1;
    if (gave_up) {
      if (last) hand_back(true);
    } else if (sleeping_.load(std::memory_order_acquire)) {
      transport_->interrupt();
    }
  }

  // A waiter is about to sleep and no thread helps: the pool's thread must not nap as if
  // waiters did the I/O (its nap would delay the next job and result by up to the nap), so the
  // waiters' last help is forgotten, and a nap already begun is ended. Either the napping
  // thread sees last_helped_ cleared, or this thread sees napping_ (both sequentially
  // consistent). A pool's thread that sleeps is woken only after a helper (`helped`): the
  // helper may have read the doorbell meant for it. One that never helped leaves a sleeping
  // thread alone, whose doorbells are armed (on a busy machine, where waiters do not help,
  // that spares a wake-up per wait).
  void hand_back(bool helped) noexcept {
    if (helpers_.load(std::memory_order_seq_cst) > 0) return;  // a helper drives
    handed_back_.store(true, std::memory_order_relaxed);
    last_helped_.store(0, std::memory_order_seq_cst);
    if (napping_.load(std::memory_order_seq_cst) ||
        (helped && sleeping_.load(std::memory_order_seq_cst)))
      notify_supervisor();
  }

  // Runs `body` as this thread's turn at driving the pool: only when no other thread drives
  // (nor this one, from a result callback waiting for another result) and the loop runs. An
  // exception from `body` is kept for the pool's thread, which rethrows it. Returns whether
  // `body` ran, and whether it threw.
  enum class Turn { skipped, ran, threw };
  template <class Body>
  Turn take_turn(Body&& body) noexcept {
    if (driving_here()) return Turn::skipped;
    std::unique_lock lock(drive_m_, std::try_to_lock);
    if (!lock.owns_lock() || !loop_running_) return Turn::skipped;
    driving_here() = true;
    Turn t = Turn::ran;
    try {
      body();
    } catch (...) {
      if (!helper_error_) helper_error_ = std::current_exception();
      t = Turn::threw;
    }
    driving_here() = false;
    return t;
  }

  // One non-blocking round, unless another thread is driving. Deaths are left to the pool's
  // thread (see HelperSink).
  void drive() noexcept {
    bool death = false;
    const Turn t = take_turn([&] {
      round();
      // Results are found through the workers' own counters; the transport is asked only now
      // and then (for a full task pipe, say), so polling does not compete with the workers.
      const bool any = workforce_.poll();
      if (any) dispatch();  // the results may have made room: keep the workers busy
      HelperSink sink(workforce_);
      int n = 0;
      if (++drive_rounds_ % config::helper_event_period == 0)
        n = transport_->run(std::chrono::nanoseconds::zero(), sink);
      death = sink.death;
      if (any || n > 0) last_activity_ = now_ns();
      scheduler_.enforce_deadlines(workforce_.records(), workforce_, now_ns());
    });
    if (death || t == Turn::threw) notify_supervisor();
  }

  // Dispatches queued jobs from a submitting thread while the pool's thread sleeps. True only
  // if that leaves the pool's thread nothing to do before an answer or a death wakes it: every
  // job is out in full and none has a time limit or may be taken back from a stuck worker
  // (next_wait: those need the pool's thread awake at a time). A pool that had such a timer
  // already is left to its thread (a due one must act before new jobs take the idle workers).
  // Transports whose answers come by interrupt (MPI) are left alone.
  bool dispatch_here() noexcept {
    if (transport_->answers_interrupt()) return false;
    bool done = false;
    (void)take_turn([&] {
      if (!sleeping_.load(std::memory_order_seq_cst) || next_wait().count() >= 0) return;
      dispatch();
      // Work went out: the pool's thread must not take its sleep for an idle one (and give
      // back the buffers kept for reuse).
      last_activity_ = now_ns();
      done = queue_.empty() && !workforce_.any_unsent() && next_wait().count() < 0;
    });
    return done;
  }

  void notify_supervisor() noexcept {
    { std::lock_guard lock(helped_m_); }
    helped_cv_.notify_one();
    if (sleeping_.load(std::memory_order_seq_cst) || napping_.load(std::memory_order_seq_cst))
      transport_->interrupt();
  }

  bool helped_recently() const noexcept {
    return helpers_.load(std::memory_order_seq_cst) > 0 ||
           now_ns() - last_helped_.load(std::memory_order_seq_cst) < config::helped_recently_ns;
  }

  static bool& driving_here() noexcept {
    thread_local bool driving = false;
    return driving;
  }

  // ---- The pool's thread ----------------------------------------------------------------------

  void supervise() {
    thread_id_ = std::this_thread::get_id();
    driving_here() = true;  // this thread holds drive_m_ whenever it runs pool code
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
        workforce_.fail_everything(info);
      } catch (...) {
      }
      workforce_.kill_all(KillReason::terminate);
      workforce_.reap_all_blocking();
      if (!started_ok_ && !startup_reported_) started_.set_exception(info.make());
    }
  }

  void fail_startup(std::exception_ptr e) {
    loop_running_ = false;
    workforce_.kill_all(KillReason::terminate);
    workforce_.reap_all_blocking();
    startup_reported_ = true;
    started_.set_exception(std::move(e));
  }

  void run_loop() {
    std::unique_lock drive(drive_m_);
    try {
      workforce_.launch_all();
    } catch (...) {
      fail_startup(std::current_exception());
      return;
    }
    last_activity_ = now_ns();
    loop_running_ = true;
    DirectSink direct(workforce_);
    DeferredSink deferred;
    for (;;) {
      if (!drive.owns_lock()) drive.lock();
      if (helper_error_) std::rethrow_exception(std::exchange(helper_error_, nullptr));
      if (!started_ok_) {
        if (auto& e = workforce_.startup_error()) {
          fail_startup(e->make());
          return;
        }
        if (workforce_.all_ready()) {
          started_ok_ = true;
          workforce_.mark_started();
          started_.set_value();
        }
      }
      if (!round()) break;

      // Results taken here may have freed a worker's window (or a replacement said hello):
      // dispatch() must run again before this thread may sleep, whatever the clock says.
      const bool progressed = workforce_.poll();
      if (progressed) {
        last_activity_ = now_ns();
        spin_step_ = -1;  // the gap to the next idle round includes this work
      }
      int n = transport_->run(std::chrono::nanoseconds::zero(), direct);
      if (n == 0 && helped_recently()) {
        // Threads waiting for results do the I/O now (or did a moment ago, and will again): look
        // again soon for deaths and deadlines, but leave the cores to them and the workers.
        spin_step_ = -1;
        napping_.store(true, std::memory_order_seq_cst);
        if (!helped_recently()) {  // a waiter handed back meanwhile (see hand_back)
          napping_.store(false, std::memory_order_relaxed);
          continue;
        }
        if (workforce_.any_unsent() || transport_->answers_interrupt()) {
          // Frames wait for room: a helper looks at the channels only now and then, so the nap
          // is taken on the transport, which wakes this thread as soon as a channel drains (or,
          // for a transport whose answers come with an interrupt, as soon as one comes).
          drive.unlock();
          n = transport_->run(config::helped_wait, deferred);
          napping_.store(false, std::memory_order_relaxed);
          drive.lock();
          deferred.replay(direct);
          continue;
        }
        drive.unlock();
        {
          std::unique_lock lock(helped_m_);
          helped_cv_.wait_for(lock, config::helped_wait);
        }
        napping_.store(false, std::memory_order_relaxed);
        continue;
      }
      const std::int64_t t = now_ns();
      // A waiter that handed back found spinning not worth it (its wait is long, or the cores
      // are busy): this thread does not spin either.
      const bool handed_back = handed_back_.exchange(false, std::memory_order_relaxed);
      // Until every worker said hello there is nothing to spin for, and a new worker often
      // waits for this very core: sleeping at once made a fork pool's start 10% faster.
      if (n == 0 && !progressed &&
          (!started_ok_ || handed_back || t - last_activity_ >= config::supervisor_spin_ns ||
           !keep_spinning(t))) {
        spin_step_ = -1;
        sleeping_.store(true, std::memory_order_seq_cst);
        // Re-check after announcing sleep: a submit that saw sleeping_ == false did not wake us.
        if (!queue_.new_requests() && helpers_.load(std::memory_order_seq_cst) == 0 &&
            transport_->prepare_sleep()) {
          auto wait = next_wait();
          // Large buffers kept for reuse are given back after an idle second.
          const bool trim = (BufferCache::process().bytes() > 0 || transport_->kept_bytes() > 0) &&
                            (wait.count() < 0 || wait >= config::buffer_idle_keep);
          if (trim) wait = config::buffer_idle_keep;
          drive.unlock();
          n = transport_->run(wait, deferred);
          drive.lock();
          transport_->end_sleep();
          deferred.replay(direct);
          // Only once the pool has been idle a whole second (the transport may return sooner,
          // and a wake-up for new work is no event either).
          if (trim && n == 0 &&
              now_ns() - last_activity_ >=
                  std::chrono::nanoseconds(config::buffer_idle_keep).count()) {
            BufferCache::process().clear();
            transport_->let_go();
          }
        }
        sleeping_.store(false, std::memory_order_relaxed);
      } else if (n == 0) {
        drive.unlock();  // spinning: a waiting thread may take a round in between
        continue;
      }
      if (n > 0) {
        last_activity_ = now_ns();
        spin_step_ = -1;
      }
      scheduler_.enforce_deadlines(workforce_.records(), workforce_, now_ns());
    }
    loop_running_ = false;
    if (!started_ok_) {
      startup_reported_ = true;
      if (auto& e = workforce_.startup_error()) {
        started_.set_exception(e->make());
      } else {
        started_.set_exception(std::make_exception_ptr(Error("the pool's workers did not start")));
      }
    }
  }

  // Applies the callers' requests, hands out work and shuts down when finished. Returns false
  // once the pool is finished and every worker is reaped.
  bool round() {
    auto req = queue_.take_requests();
    if (req.terminating && !workforce_.terminated()) workforce_.terminate();
    for (auto& c : req.cancels)
      scheduler_.revoke_cancelled(c.completion.get(), c.kill_running, workforce_.records(),
                                  workforce_);
    if (!req.terminating) {
      transport_->tidy();
      if (Scheduler::someone_idle(workforce_.records())) {  // (work stealing needs an idle one)
        scheduler_.rebalance(
            workforce_.records(), workforce_, now_ns(), [&] { return queue_.next_id(); }, stolen_);
        queue_.requeue_front(stolen_);
      }
      dispatch();
    }
    const bool any_alive = workforce_.any_alive();
    if (req.closed && !req.terminating && queue_.empty() && workforce_.all_idle())
      workforce_.stop_all();
    return any_alive || !(req.closed || queue_.broken());
  }

  // Queued jobs into the workers' windows, then out to the workers.
  void dispatch() {
    const bool any = queue_.with_pending([&](std::deque<Job>& pending) {
      if (pending.empty()) return false;
      scheduler_.assign(pending, workforce_.records(), !SpinGovernor::process().spinning());
      return true;
    });
    if (any) workforce_.flush_all();
  }

  // How long the pool's thread may sleep: until the scheduler's next deadline, or for good.
  std::chrono::nanoseconds next_wait() const {
    const auto now = now_ns();
    const auto next = scheduler_.next_wakeup(std::as_const(workforce_).records(), workforce_, now);
    if (next == 0) return std::chrono::nanoseconds(-1);
    return std::chrono::nanoseconds(std::max<std::int64_t>(0, next - now));
  }

  std::atomic<std::size_t> size_;
  SubmissionQueue queue_;
  Scheduler scheduler_;
  std::unique_ptr<Transport> transport_;
  Workforce workforce_;

  std::deque<Job> stolen_;  // rebalance's output, kept: an empty deque still allocates

  // Who drives: the pool's thread, or for a moment a waiting thread (see help).
  std::mutex drive_m_;
  bool loop_running_ = false;
  std::uint32_t drive_rounds_ = 0;
  std::int64_t last_activity_ = 0;
  std::exception_ptr helper_error_;
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> napping_{false};      // napping while waiting threads do the I/O (run_loop)
  std::atomic<bool> handed_back_{false};  // a waiter went to sleep: see hand_back
  std::atomic<int> helpers_{0};           // 0 or 1: one thread helps at a time
  std::atomic<bool> bell_taken_{false};   // a waiter sleeps on the result bell
  std::int64_t spin_step_ = -1;  // when the pool's thread last spun a round; -1: not spinning
  std::atomic<int> spin_budget_us_{config::wait_spin_us};
  std::atomic<std::int64_t> last_helped_{0};  // when a waiting thread last stopped helping
  std::mutex helped_m_;
  std::condition_variable helped_cv_;

  // Startup: the pool's thread says once whether the workers started; start() waits for it.
  OnceSignal started_;
  bool started_ok_ = false;        // every worker said hello; the promise is kept
  bool startup_reported_ = false;  // the promise was broken with the startup error
  std::thread thread_;
  std::thread::id thread_id_;
  std::mutex join_m_;
};

}  // namespace procpool::detail

#include <procpool/detail/supervisor_wait.hpp>
