#pragma once

#include <procpool/detail/cxx20.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <procpool/async_result.hpp>
#include <procpool/detail/callback.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/completion.hpp>
#include <procpool/detail/engine.hpp>
#include <procpool/errors.hpp>

namespace procpool {

namespace detail {

/// One result of an imap: a value, the task's error, or the input range's own exception.
template <class R>
struct ImapItem {
  std::optional<stored_t<R>> value;
  std::optional<ErrorInfo> error;
  std::exception_ptr input_error;
};

/// Completed chunks waiting to be read by an imap_unordered; fed by the pool's thread.
struct ReadyQueue {
  std::mutex m;
  std::condition_variable cv;
  std::deque<const Completion*> ready;  // identities only; ImapState holds the owners
  std::atomic<std::size_t> count{0};    // ready.size(), to watch without the lock
};

/// The shared state of one imap / imap_unordered: the input is read and submitted a chunk at a
/// time, by the thread that iterates, with at most `window` chunks in flight.
template <class R>
class ImapState {
 public:
  // Builds the next job from the input; false at the end of the input. May throw what the
  // input range throws.
  using Producer = detail::Callback<bool(Job&)>;
  // Decodes one chunk's items.
  using Decoder = void (*)(const Completion&, std::deque<ImapItem<R>>&);

  ImapState(std::shared_ptr<Supervisor> pool, Producer produce, Decoder decode, bool ordered,
            std::size_t window)
      : pool_(std::move(pool)),
        produce_(std::move(produce)),
        decode_(decode),
        ordered_(ordered),
        window_(window),
        ready_(std::make_shared<ReadyQueue>()) {}

  ~ImapState() {
    // Dropped early: whatever is still queued is discarded, so a huge input stops here.
    for (auto& c : inflight_)
      if (!c->done()) pool_handle(pool_)->cancel(c, false);
  }
  ImapState(const ImapState&) = delete;
  ImapState& operator=(const ImapState&) = delete;

  /// The next item, or nothing at the end. Throws TimeoutError if none arrives by `deadline`.
  std::optional<ImapItem<R>> fetch(std::optional<Clock::time_point> deadline,
                                   const std::string& timeout = {}) {
    for (;;) {
      if (!items_.empty()) {
        ImapItem<R> it = std::move(items_.front());
        items_.pop_front();
        return it;
      }
      top_up();
      if (inflight_.empty()) {
        if (input_error_) {
          ImapItem<R> it;
          it.input_error = std::exchange(input_error_, nullptr);
          return it;
        }
        return std::nullopt;
      }
      std::shared_ptr<Completion> c;
      if (ordered_) {
        c = inflight_.front();
        if (!c->wait_until(deadline)) throw TimeoutError("no imap result within " + timeout);
        inflight_.pop_front();
      } else {
        c = wait_ready(deadline);  // also takes it out of inflight_
        if (!c) throw TimeoutError("no imap result within " + timeout);
      }
      decode_(*c, items_);
    }
  }

 private:
  // Reads input until the window is full, and queues what it read in one go.
  void top_up() {
    std::vector<Job> batch;
    std::vector<std::shared_ptr<Completion>> started;
    std::size_t items = 0;
    while (!input_done_ && inflight_.size() + batch.size() < window_) {
      Job job;
      bool more;
      try {
        more = produce_(job);
      } catch (...) {
        // The input's own exception: it surfaces after the results read before it.
        input_error_ = std::current_exception();
        input_done_ = true;
        break;
      }
      if (!more) {
        input_done_ = true;
        break;
      }
      auto c = job.completion;
      c->pool = pool_handle(pool_);
      if (!ordered_) {
        std::weak_ptr<ReadyQueue> q = ready_;
        c->on_complete([q](Completion& done) {
          if (auto queue = q.lock()) {
            std::lock_guard lock(queue->m);
            queue->ready.push_back(&done);
            queue->count.store(queue->ready.size(), std::memory_order_release);
            queue->cv.notify_all();
          }
        });
      }
      items += job.count;
      batch.push_back(std::move(job));
      started.push_back(std::move(c));
    }
    if (batch.empty()) return;
    pool_submit(*pool_, batch, items);  // throws PoolClosed before anything is in flight
    for (auto& c : started) inflight_.push_back(std::move(c));
  }

  std::shared_ptr<Completion> wait_ready(std::optional<Clock::time_point> deadline) {
    auto ready = [this] { return ready_->count.load(std::memory_order_acquire) != 0; };
    // Only a wait that found nothing ready teaches the pool how long results take.
    std::optional<Clock::time_point> t0;
    if (!ready()) {
      t0 = Clock::now();
      (void)pool_handle(pool_)->help(ready, deadline.value_or(Clock::time_point::max()));
    }
    std::shared_ptr<Completion> c = take_ready(deadline);
    if (t0) pool_handle(pool_)->waited(Clock::now() - *t0);
    return c;
  }

  std::shared_ptr<Completion> take_ready(std::optional<Clock::time_point> deadline) {
    std::unique_lock lock(ready_->m);
    auto pred = [&] { return !ready_->ready.empty(); };
    if (deadline) {
      if (!ready_->cv.wait_until(lock, *deadline, pred)) return nullptr;
    } else {
      ready_->cv.wait(lock, pred);
    }
    const Completion* raw = ready_->ready.front();
    ready_->ready.pop_front();
    ready_->count.store(ready_->ready.size(), std::memory_order_release);
    // Unordered: the last one takes the finished one's place.
    for (auto& c : inflight_) {
      if (c.get() != raw) continue;
      std::shared_ptr<Completion> found = std::move(c);
      c = std::move(inflight_.back());
      inflight_.pop_back();
      return found;
    }
    return nullptr;
  }

  std::shared_ptr<Supervisor> pool_;
  Producer produce_;
  Decoder decode_;
  bool ordered_;
  std::size_t window_;
  std::shared_ptr<ReadyQueue> ready_;
  std::deque<std::shared_ptr<Completion>> inflight_;
  std::deque<ImapItem<R>> items_;
  bool input_done_ = false;
  std::exception_ptr input_error_;
};

}  // namespace detail

/// The lazy result range of `Pool::imap` and `Pool::imap_unordered`. Works in a range-for loop
/// (a failed task throws from `*it`; `++it` then moves past it) and offers `next(timeout)`.
/// Destroying it, or leaving the loop early, stops reading the input and drops queued tasks.
template <class R>
class ImapRange {
 public:
  using value_type = detail::stored_t<R>;

  explicit ImapRange(std::shared_ptr<detail::ImapState<R>> s) : s_(std::move(s)) {}

  /// The next result; empty at the end. Throws `TimeoutError` if none arrives in time, and the
  /// task's error when a failed task's turn comes (the next call continues after it).
  template <class Rep, class Period>
  std::optional<value_type> next(std::chrono::duration<Rep, Period> timeout) {
    auto deadline =
        detail::Clock::now() + std::chrono::duration_cast<detail::Clock::duration>(timeout);
    return unwrap(s_->fetch(deadline, detail::describe(timeout)));
  }

  /// The next result, waiting as long as it takes; empty at the end.
  std::optional<value_type> next() { return unwrap(s_->fetch(std::nullopt)); }

  class iterator {
   public:
    using value_type = ImapRange::value_type;
    using difference_type = std::ptrdiff_t;
    using iterator_category = std::input_iterator_tag;

    iterator() = default;
    explicit iterator(detail::ImapState<R>* s) : s_(s) { advance(); }

    const value_type& operator*() const {
      if (cur_->input_error) std::rethrow_exception(cur_->input_error);
      if (cur_->error) cur_->error->raise();
      return *cur_->value;
    }
    const value_type* operator->() const { return &**this; }
    iterator& operator++() {
      advance();
      return *this;
    }
    void operator++(int) { advance(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return !it.cur_; }

   private:
    void advance() { cur_ = s_->fetch(std::nullopt); }
    detail::ImapState<R>* s_ = nullptr;
    std::optional<detail::ImapItem<R>> cur_;
  };

  iterator begin() { return iterator(s_.get()); }
  std::default_sentinel_t end() { return {}; }

 private:
  static std::optional<value_type> unwrap(std::optional<detail::ImapItem<R>> it) {
    if (!it) return std::nullopt;
    if (it->input_error) std::rethrow_exception(it->input_error);
    if (it->error) it->error->raise();
    return std::move(*it->value);
  }
  std::shared_ptr<detail::ImapState<R>> s_;
};

}  // namespace procpool
