#pragma once
// The submission queue: the only part of the engine that callers touch (Pool, AsyncResult,
// ImapPump, through engine.hpp's functions and PoolHandle: submit, cancel, close, terminate,
// stats, pids). It owns the queued jobs, the requests not yet seen by the supervisor, the pool's
// counters and the list of live workers, all behind one mutex. The supervisor takes requests and
// jobs from it each round, and the workforce puts back the jobs of a worker that died or was
// recycled.

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <procpool/detail/completion.hpp>
#include <procpool/detail/worker_record.hpp>
#include <procpool/errors.hpp>
#include <procpool/options.hpp>

namespace procpool::detail {

/// Something to wake when a request arrives (the supervisor).
class Waker {
 public:
  virtual void wake() noexcept = 0;
  /// Jobs were queued (wake() for any other request).
  virtual void submitted() noexcept = 0;

 protected:
  ~Waker() = default;
};

class SubmissionQueue {
 public:
  explicit SubmissionQueue(Waker& waker) : waker_(waker) {}

  std::uint64_t next_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  /// Queues jobs holding `items` tasks; throws PoolClosed after close() or terminate().
  void submit(std::vector<Job>& jobs, std::size_t items) {
    {
      std::lock_guard lock(m_);
      check_open_locked();
      for (auto& j : jobs) pending_.push_back(std::move(j));
      submitted_ += items;
      ++requests_;
    }
    waker_.submitted();
  }

  void submit(Job&& job) {
    {
      std::lock_guard lock(m_);
      check_open_locked();
      pending_.push_back(std::move(job));
      ++submitted_;
      ++requests_;
    }
    waker_.submitted();
  }

  /// Throws PoolClosed after close() or terminate().
  void check_open() const {
    std::lock_guard lock(m_);
    check_open_locked();
  }

  /// Cancels the jobs of `c`: queued ones are dropped; the supervisor revokes those in a
  /// worker's window, and with `kill_running` kills a worker running one. Returns false if `c`
  /// had already completed.
  bool cancel(const std::shared_ptr<Completion>& c, bool kill_running) {
    ErrorInfo e;
    e.kind = ErrorInfo::Kind::cancelled;
    e.message = "the task was cancelled";
    // Every task of `c` without an outcome fails now, wherever it is (queued, in a worker's
    // window, running): whatever comes back for it later is not counted again.
    if (!c->fail_all(e, [&](std::uint64_t n) { count_failed(n); })) return false;
    {
      std::lock_guard lock(m_);
      std::erase_if(pending_, [&](const Job& j) { return j.completion == c; });
      cancels_.push_back({c, kill_running});
      ++requests_;
    }
    waker_.wake();
    return true;
  }

  void close() {
    request([&] { closed_ = true; });
  }

  void terminate() {
    request([&] {
      closed_ = true;
      terminating_ = true;
    });
  }

  bool closed() const {
    std::lock_guard lock(m_);
    return closed_;
  }

  bool terminating() const {
    std::lock_guard lock(m_);
    return terminating_;
  }

  Stats stats() const {
    Stats s;
    {
      std::lock_guard lock(m_);
      s.submitted = submitted_;
      s.restarts = restarts_;
    }
    s.completed = completed_.load(std::memory_order_relaxed);
    s.failed = failed_.load(std::memory_order_relaxed);
    return s;
  }

  std::vector<pid_t> pids() const {
    std::lock_guard lock(m_);
    return live_pids_;
  }

  // ---- The supervisor's side ------------------------------------------------------------------

  struct CancelRequest {
    std::shared_ptr<Completion> completion;
    bool kill_running;
  };
  struct Requests {
    std::vector<CancelRequest> cancels;
    bool closed = false;
    bool terminating = false;
  };

  /// The requests made since the last call.
  Requests take_requests() {
    Requests r;
    std::lock_guard lock(m_);
    r.cancels.swap(cancels_);
    r.closed = closed_;
    r.terminating = terminating_;
    seen_requests_ = requests_;
    return r;
  }

  /// True if a request came after the last take_requests(): queued work that no worker has room
  /// for is no reason to stay awake, a new request is.
  bool new_requests() const {
    std::lock_guard lock(m_);
    return requests_ != seen_requests_;
  }

  bool empty() const {
    std::lock_guard lock(m_);
    return pending_.empty();
  }

  /// Runs `f(pending)` under the queue's lock (the scheduler's assign).
  template <class F>
  decltype(auto) with_pending(F&& f) {
    std::lock_guard lock(m_);
    return f(pending_);
  }

  /// Puts `jobs` back at the front of the queue, in their order.
  void requeue_front(std::deque<Job>& jobs) {
    if (jobs.empty()) return;
    std::lock_guard lock(m_);
    for (auto it = jobs.rbegin(); it != jobs.rend(); ++it) pending_.push_front(std::move(*it));
    jobs.clear();
  }

  /// The pool cannot go on: it refuses work from now on; returns everything queued.
  std::deque<Job> break_and_take_all() {
    std::deque<Job> jobs;
    std::lock_guard lock(m_);
    closed_ = true;
    broken_ = true;
    jobs.swap(pending_);
    return jobs;
  }

  bool broken() const {
    std::lock_guard lock(m_);
    return broken_;
  }

  void add_pid(pid_t pid) {
    std::lock_guard lock(m_);
    live_pids_.push_back(pid);
  }
  void remove_pid(pid_t pid) {
    std::lock_guard lock(m_);
    std::erase(live_pids_, pid);
  }
  void clear_pids() {
    std::lock_guard lock(m_);
    live_pids_.clear();
  }
  void count_restart() {
    std::lock_guard lock(m_);
    ++restarts_;
  }
  // Counted while a Completion's lock is held (see Completion::settle), so never under m_.
  void count_completed(std::uint64_t n) noexcept {
    completed_.fetch_add(n, std::memory_order_relaxed);
  }
  void count_failed(std::uint64_t n) noexcept { failed_.fetch_add(n, std::memory_order_relaxed); }

 private:
  void check_open_locked() const {
    if (closed_) throw PoolClosed("the pool is closed; no new tasks are accepted");
  }

  template <class F>
  void request(F&& f) {
    {
      std::lock_guard lock(m_);
      f();
      ++requests_;
    }
    waker_.wake();
  }

  Waker& waker_;
  mutable std::mutex m_;
  std::deque<Job> pending_;
  std::vector<CancelRequest> cancels_;
  bool closed_ = false;
  bool terminating_ = false;
  bool broken_ = false;
  std::uint64_t requests_ = 0;
  std::uint64_t seen_requests_ = 0;
  std::uint64_t submitted_ = 0;
  std::uint64_t restarts_ = 0;
  std::vector<pid_t> live_pids_;
  std::atomic<std::uint64_t> completed_{0}, failed_{0};
  std::atomic<std::uint64_t> next_id_{1};
};

}  // namespace procpool::detail
