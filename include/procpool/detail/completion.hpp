#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/demangle.hpp>
#include <procpool/detail/posix/process.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/errors.hpp>

#ifndef PROCPOOL_WAIT_SPIN_US
/// How long a caller waiting for a result polls before it sleeps.
#define PROCPOOL_WAIT_SPIN_US 50
#endif

namespace procpool::detail {

/// A failure as the pool records it. Each `raise()` throws a fresh exception, so two readers of
/// one result never share (and mutate) one exception object.
struct ErrorInfo {
  enum class Kind : std::uint8_t { remote, codec, crashed, timeout, cancelled, closed, system };
  Kind kind = Kind::remote;
  std::string type_name;
  std::string message;
  pid_t pid = 0;
  int signal = 0;
  int code = -1;
  std::error_code ec;

  [[noreturn]] void raise() const {
    switch (kind) {
      case Kind::remote:
        throw RemoteError(type_name, message);
      case Kind::codec:
        throw CodecError(message);
      case Kind::crashed:
        throw WorkerCrashed(message, pid, signal, code);
      case Kind::timeout:
        throw TaskTimeout(message);
      case Kind::cancelled:
        throw Cancelled(message);
      case Kind::closed:
        throw PoolClosed(message);
      case Kind::system:
        throw SystemError(ec, message);
    }
    throw Error(message);
  }

  std::exception_ptr make() const {
    try {
      raise();
    } catch (...) {
      return std::current_exception();
    }
  }

  static ErrorInfo from_item(const ItemView& item) {
    WireCursor c(item.bytes);
    ErrorInfo e;
    if (item.status == ItemStatus::remote_error) {
      e.kind = Kind::remote;
      e.type_name = c.str();
      e.message = c.str();
    } else {
      e.kind = Kind::codec;
      e.message = c.str();
    }
    if (c.bad) {
      e.kind = Kind::codec;
      e.message = "malformed error report from a worker";
    }
    return e;
  }
};

class Core;

/// The pool's side of waiting. A thread about to wait for a result does the pool's I/O itself
/// for a moment (`drive`), so a result that is microseconds away reaches it without waking the
/// pool's thread and then this one: on two cores, one party fewer competing for them.
class Driver {
 public:
  virtual void helping(bool on, bool gave_up) noexcept = 0;
  virtual void drive() noexcept = 0;
  // How long to help before sleeping: learned from how long waits took (see Core::waited).
  virtual std::chrono::microseconds spin_budget() const noexcept = 0;
  virtual void waited(std::chrono::nanoseconds total) noexcept = 0;

 protected:
  ~Driver() = default;
};

/// What one job (a task, or a chunk of a map) came back with.
struct JobOutcome {
  Buffer frame;                    // the whole result frame
  std::size_t offset = 0;          // where its payload starts in `frame`
  std::uint32_t count = 0;         // items in the payload
  std::optional<ErrorInfo> error;  // the whole job failed (crash, timeout, cancel, …)

  std::span<const std::byte> payload() const {
    return {frame.data() + offset, frame.size() - offset};
  }
};

/// Shared state behind an AsyncResult or an imap chunk: filled by the pool's thread, read by
/// whoever waits. It owns everything it needs, so it stays valid after the pool is gone.
class Completion {
 public:
  explicit Completion(std::size_t jobs) : outcomes_(jobs), remaining_(jobs) {
    if (jobs == 0) done_.store(true, std::memory_order_relaxed);  // e.g. a map over nothing
  }
  virtual ~Completion() = default;
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;

  bool done() const noexcept { return done_.load(std::memory_order_acquire); }

  void wait() {
    if (done()) return;
    const auto t0 = std::chrono::steady_clock::now();
    if (!spin_until_done(std::chrono::steady_clock::duration::max())) {
      std::unique_lock lock(m_);
      cv_.wait(lock, [&] { return done(); });
    }
    learn(t0);
  }

  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) {
    if (done()) return true;
    const auto t0 = std::chrono::steady_clock::now();
    const auto limit = std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
    bool ok = spin_until_done(limit);
    if (!ok) {
      std::unique_lock lock(m_);
      ok = cv_.wait_until(lock, t0 + limit, [&] { return done(); });
    }
    if (ok) learn(t0);
    return ok;
  }

  /// Records job `i`'s outcome, made of `job_items` tasks. `account()` runs, under this state's
  /// lock and before any waiter can see the result, only if the outcome is the one recorded (not
  /// one that came after a cancel): so each task is counted once in the pool's statistics.
  /// Returns true if the outcome was recorded.
  template <class Account>
  bool settle(std::size_t i, JobOutcome&& o, std::uint32_t job_items, Account&& account) {
    std::vector<std::function<void(Completion&)>> run;
    {
      std::lock_guard lock(m_);
      if (done() || settled(i)) return false;
      outcomes_[i] = std::move(o);
      mark(i);
      settled_items_ += job_items;
      account();
      if (--remaining_ > 0) return true;
      done_.store(true, std::memory_order_release);
      run.swap(callbacks_);
    }
    finish(run);
    return true;
  }

  /// Fails every job not yet settled (cancel, terminate); `account(n)` receives the number of
  /// tasks that had no outcome yet, as settle's does. Returns false if already complete.
  template <class Account>
  bool fail_all(const ErrorInfo& e, Account&& account) {
    std::vector<std::function<void(Completion&)>> run;
    {
      std::lock_guard lock(m_);
      if (done()) return false;
      forced_error_ = e;
      account(items > settled_items_ ? items - settled_items_ : 0);
      done_.store(true, std::memory_order_release);
      run.swap(callbacks_);
    }
    finish(run);
    return true;
  }

  /// Runs `cb` when complete: at once in this thread if it already is, else on the pool's thread.
  void on_complete(std::function<void(Completion&)> cb) {
    {
      std::lock_guard lock(m_);
      if (!done()) {
        callbacks_.push_back(std::move(cb));
        return;
      }
    }
    run_callback(cb);
  }

  const std::vector<JobOutcome>& outcomes() const noexcept { return outcomes_; }
  /// Set when the state was failed as a whole (cancel, terminate); it wins over outcomes.
  const std::optional<ErrorInfo>& forced_error() const noexcept { return forced_error_; }

  // Which jobs this state is made of, so that cancel() can find them.
  std::weak_ptr<Core> core;
  std::weak_ptr<Driver> driver;
  std::vector<std::uint64_t> job_ids;
  std::uint32_t items = 0;  // tasks in all its jobs

 private:
  // A result that is microseconds away is cheaper to watch for than to sleep for: a sleeping
  // thread costs a scheduler wake-up (tens of microseconds across cores).
  bool spin_until_done(std::chrono::steady_clock::duration limit) const {
    auto d = driver.lock();
    std::chrono::steady_clock::duration budget =
        d ? d->spin_budget() : std::chrono::microseconds(PROCPOOL_WAIT_SPIN_US);
    budget = std::min(budget, limit);
    if (budget <= std::chrono::steady_clock::duration::zero()) return done();
    if (d) d->helping(true, false);
    auto until = std::chrono::steady_clock::now() + budget;
    bool ok = false;
    do {
      if (d) d->drive();
      for (int i = 0; i < 16 && !ok; ++i) {
        ok = done();
        cpu_relax();
      }
      if (!ok && !d) std::this_thread::yield();  // on a busy machine, let others run
    } while (!ok && std::chrono::steady_clock::now() < until);
    ok = ok || done();
    if (d) d->helping(false, !ok);
    return ok;
  }

  // Tells the pool how long this wait took, so the next one spins only if it is likely to pay.
  void learn(std::chrono::steady_clock::time_point t0) const {
    if (auto d = driver.lock()) d->waited(std::chrono::steady_clock::now() - t0);
  }

  bool settled(std::size_t i) const {
    return i < bits_.size() * 64 && (bits_[i / 64] >> (i % 64)) & 1;
  }
  void mark(std::size_t i) {
    if (bits_.size() * 64 <= i) bits_.resize(i / 64 + 1);
    bits_[i / 64] |= std::uint64_t{1} << (i % 64);
  }

  void finish(std::vector<std::function<void(Completion&)>>& run) {
    {
      // Taking the lock orders the notify after a waiter's predicate check.
      std::lock_guard lock(m_);
    }
    cv_.notify_all();
    for (auto& cb : run) run_callback(cb);
  }

  void run_callback(std::function<void(Completion&)>& cb) {
    try {
      cb(*this);
    } catch (const std::exception& e) {
      // A callback has nobody to report to; the pool must keep working.
      std::fprintf(stderr, "procpool: a result callback threw %s: %s\n",
                   current_type_name().c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "procpool: a result callback threw %s\n", current_type_name().c_str());
    }
  }
  static std::string current_type_name() { return current_exception_type(); }

  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<bool> done_{false};
  std::vector<JobOutcome> outcomes_;
  std::vector<std::uint64_t> bits_;
  std::size_t remaining_;
  std::uint64_t settled_items_ = 0;  // tasks in the jobs settled so far
  std::optional<ErrorInfo> forced_error_;
  std::vector<std::function<void(Completion&)>> callbacks_;
};

}  // namespace procpool::detail
