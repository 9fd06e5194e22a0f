#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/callback.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/clock.hpp>
#include <procpool/detail/pool_handle.hpp>
#include <procpool/detail/result_bell.hpp>
#include <procpool/detail/separate.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/errors.hpp>

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

  [[noreturn]] PROCPOOL_DECL void raise() const;

  PROCPOOL_DECL std::exception_ptr make() const;

  /// The whole error as bytes, for a failure that happened elsewhere (FrameKind::failed).
  PROCPOOL_DECL void put_report(Buffer& out) const;

  /// Reads put_report's bytes; false if they are malformed.
  PROCPOOL_DECL static bool from_report(std::span<const std::byte> bytes, ErrorInfo& e);

  PROCPOOL_DECL static ErrorInfo from_item(const ItemView& item);
};

/// An ErrorInfo or none, one pointer wide. A map holds one outcome per chunk, and nearly all
/// carry none: kept small, 200,000 of them stay in the heap malloc reuses (below its 32 MiB
/// mmap limit) instead of taking fresh, zeroed pages on every map.
class MaybeError {
 public:
  MaybeError() = default;
  MaybeError& operator=(ErrorInfo e) {
    p_ = std::make_unique<ErrorInfo>(std::move(e));
    return *this;
  }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  const ErrorInfo& operator*() const noexcept { return *p_; }
  const ErrorInfo* operator->() const noexcept { return p_.get(); }

 private:
  std::unique_ptr<ErrorInfo> p_;
};

/// What one job (a task, or a chunk of a map) came back with.
struct JobOutcome {
  Buffer frame;             // the whole result frame
  std::size_t offset = 0;   // where its payload starts in the frame
  std::uint32_t count = 0;  // items in the payload
  MaybeError error;         // the whole job failed (crash, timeout, cancel, …)
  // Or the frame lies in a worker's memory file, lent while this is held (a large result is
  // decoded in place: see local/shared_frame.hpp).
  std::shared_ptr<const std::byte> lent;
  std::size_t lent_size = 0;

  std::span<const std::byte> payload() const {
    if (lent) return {lent.get() + offset, lent_size - offset};
    return {frame.data() + offset, frame.size() - offset};
  }
  /// The whole frame as a Buffer of its own (a lent one is copied and given back).
  PROCPOOL_DECL Buffer take_frame();

  /// Lets go of the frame once it has been decoded.
  void release() noexcept {
    frame = Buffer();
    lent.reset();
  }
};

/// Shared state behind an AsyncResult or an imap chunk: filled by the pool's thread, read by
/// whoever waits. It owns everything it needs, so it stays valid after the pool is gone.
class Completion : public BellWaiter {
 public:
  explicit Completion(std::size_t jobs) : outcomes_(jobs), remaining_(jobs) {
    if (jobs == 0) done_.store(true, std::memory_order_relaxed);  // e.g. a map over nothing
  }
  PROCPOOL_DECL virtual ~Completion();
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;

  bool done() const noexcept { return done_.load(std::memory_order_acquire); }

  void wait() { (void)wait_until(std::nullopt); }

  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) {
    if (done()) return true;
    return wait_until(Clock::now() + std::chrono::duration_cast<Clock::duration>(d));
  }

  /// Waits until complete or `deadline`; true when complete. The pool is helped first (see
  /// PoolHandle::help), then this thread sleeps.
  PROCPOOL_DECL bool wait_until(std::optional<Clock::time_point> deadline);

  /// Records job `i`'s outcome, made of `job_items` tasks. `account()` runs, under this state's
  /// lock and before any waiter can see the result, only if the outcome is the one recorded (not
  /// one that came after a cancel): so each task is counted once in the pool's statistics.
  /// Returns true if the outcome was recorded.
  template <class Account>
  bool settle(std::size_t i, JobOutcome&& o, std::uint32_t job_items, Account&& account) {
    Callbacks run;
    {
      std::lock_guard lock(m_);
      if (done() || settled(i)) return false;
      outcomes_[i] = std::move(o);
      mark(i);
      settled_items_ += job_items;
      account();
      if (--remaining_ > 0) return true;
      done_.store(true, std::memory_order_release);
      run = std::move(callbacks_);
      ring_bell();
    }
    finish(run);
    return true;
  }

  /// Fails every job not yet settled (cancel, terminate); `account(n)` receives the number of
  /// tasks that had no outcome yet, as settle's does. Returns false if already complete.
  template <class Account>
  bool fail_all(const ErrorInfo& e, Account&& account) {
    Callbacks run;
    {
      std::lock_guard lock(m_);
      if (done()) return false;
      forced_error_ = e;
      account(items > settled_items_ ? items - settled_items_ : 0);
      done_.store(true, std::memory_order_release);
      run = std::move(callbacks_);
      ring_bell();
    }
    finish(run);
    return true;
  }

  bool attach_bell(ResultBell* bell) noexcept override {
    std::lock_guard lock(m_);
    if (bell && done()) return false;
    bell_ = bell;
    return true;
  }

  bool one_result() const noexcept override { return outcomes_.size() == 1; }

  /// Runs `cb` when complete: at once in this thread if it already is, else on the pool's thread.
  void on_complete(Callback<void(Completion&)> cb) {
    {
      std::lock_guard lock(m_);
      if (!done()) {
        callbacks_.add(std::move(cb));
        return;
      }
    }
    run_callback(cb);
  }

  const std::vector<JobOutcome>& outcomes() const noexcept { return outcomes_; }
  /// After the outcomes have been decoded for good: their frames are not needed any more (a
  /// worker gets its lent file back, a large buffer goes back to the allocator).
  void release_outcomes() noexcept {
    for (auto& o : outcomes_) o.release();
  }
  /// Set when the state was failed as a whole (cancel, terminate); it wins over outcomes.
  const std::optional<ErrorInfo>& forced_error() const noexcept { return forced_error_; }

  /// The pool this state belongs to: it cancels, and is helped while waiting.
  std::weak_ptr<PoolHandle> pool;
  std::uint32_t items = 0;  // tasks in all its jobs

 private:
  // The first callback and the first 64 jobs' bits are kept in place: a task's state (one job, at
  // most one callback: an imap's) then allocates nothing beyond its outcomes.
  struct Callbacks {
    Callback<void(Completion&)> first;
    std::vector<Callback<void(Completion&)>> more;
    void add(Callback<void(Completion&)>&& cb) {
      if (!first)
        first = std::move(cb);
      else
        more.push_back(std::move(cb));
    }
  };

  bool settled(std::size_t i) const {
    if (i < 64) return (bits0_ >> i) & 1;
    i -= 64;
    return i < bits_.size() * 64 && (bits_[i / 64] >> (i % 64)) & 1;
  }
  void mark(std::size_t i) {
    if (i < 64) {
      bits0_ |= std::uint64_t{1} << i;
      return;
    }
    i -= 64;
    if (bits_.size() * 64 <= i) bits_.resize(i / 64 + 1);
    bits_[i / 64] |= std::uint64_t{1} << (i % 64);
  }

  // Under the lock: the waiter detaches its bell under it too, so the bell is rung only while
  // the waiter keeps its pool (and so the bell's memory) alive.
  void ring_bell() noexcept {
    if (bell_) bell_->ring();
  }

  PROCPOOL_DECL void finish(Callbacks& run);
  PROCPOOL_DECL void run_callback(Callback<void(Completion&)>& cb);

  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<bool> done_{false};
  std::vector<JobOutcome> outcomes_;
  std::uint64_t bits0_ = 0;          // jobs 0-63 settled
  std::vector<std::uint64_t> bits_;  // jobs 64 and up
  std::size_t remaining_;
  std::uint64_t settled_items_ = 0;  // tasks in the jobs settled so far
  std::optional<ErrorInfo> forced_error_;
  Callbacks callbacks_;
  ResultBell* bell_ = nullptr;  // a waiter sleeps on it (see Supervisor::sleep_on_bell)
};

/// A Completion whose outcomes are decoded once, by the first thread that asks, into the value
/// a TypedCompletion holds: `decode` knows the type, the rest is here.
class ResultState : public Completion {
 public:
  using Decode = void (*)(ResultState&);
  ResultState(std::size_t jobs, Decode decode) : Completion(jobs), decode_(decode) {}

  /// Decodes the outcomes, once: a failure, or a codec's error, ends in `error`.
  PROCPOOL_DECL void resolve();

  std::optional<ErrorInfo> error;

 private:
  Decode decode_;
  // Not std::call_once: glibc's pthread_once makes a futex system call whenever a flag is first
  // set, which is once per task here (measured: the only futex call of a round trip).
  std::atomic<bool> resolved_{false};
  std::mutex resolve_m_;
};

}  // namespace procpool::detail

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/completion_impl.hpp>
#endif
