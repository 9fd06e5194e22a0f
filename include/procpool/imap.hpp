#pragma once

#include <procpool/detail/cxx20.hpp>

#include <cstddef>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <procpool/async_result.hpp>
#include <procpool/detail/callback.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/completion.hpp>
#include <procpool/detail/engine.hpp>
#include <procpool/detail/separate.hpp>
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

struct ReadyQueue;

/// What an imap does whatever its types: reads the input a chunk at a time (`produce`, run by
/// the thread that iterates), keeps at most `window` chunks in flight, and hands back finished
/// chunks in input order (`ordered`) or as they finish.
class ImapPump {
 public:
  // Builds the next job from the input; false at the end of the input. May throw what the
  // input range throws.
  using Producer = detail::Callback<bool(Job&)>;

  PROCPOOL_DECL ImapPump(std::shared_ptr<Supervisor> pool, Producer produce, bool ordered,
                         std::size_t window);
  /// Dropped early: whatever is still queued is discarded, so a huge input stops here.
  PROCPOOL_DECL ~ImapPump();
  ImapPump(const ImapPump&) = delete;
  ImapPump& operator=(const ImapPump&) = delete;

  /// The next finished chunk; nullptr once the input is exhausted and every chunk was handed
  /// back (or the input threw: see take_input_error). Throws TimeoutError, naming `timeout`, if
  /// none finishes by `deadline`.
  PROCPOOL_DECL std::shared_ptr<Completion> next_chunk(std::optional<Clock::time_point> deadline,
                                                       const std::string& timeout);

  /// The input range's own exception, once: it surfaces after the results read before it.
  std::exception_ptr take_input_error() noexcept { return std::exchange(input_error_, nullptr); }

 private:
  // Reads input until the window is full, and queues what it read in one go.
  PROCPOOL_DECL void top_up();
  PROCPOOL_DECL std::shared_ptr<Completion> wait_ready(std::optional<Clock::time_point> deadline);
  PROCPOOL_DECL std::shared_ptr<Completion> take_ready(std::optional<Clock::time_point> deadline);

  std::shared_ptr<Supervisor> pool_;
  std::shared_ptr<PoolHandle> handle_;  // the same pool, as the completions see it
  Producer produce_;
  bool ordered_;
  std::size_t window_;
  std::shared_ptr<ReadyQueue> ready_;  // completed chunks, for an unordered imap
  std::deque<std::shared_ptr<Completion>> inflight_;
  std::vector<Job> batch_;  // top_up's, kept for reuse
  std::vector<std::shared_ptr<Completion>> started_;
  bool input_done_ = false;
  std::exception_ptr input_error_;
};

/// The shared state of one imap / imap_unordered: its pump, and the decoded items of the
/// chunk being read.
template <class R>
class ImapState {
 public:
  using Producer = ImapPump::Producer;
  // Decodes one chunk's items.
  using Decoder = void (*)(const Completion&, std::deque<ImapItem<R>>&);

  ImapState(std::shared_ptr<Supervisor> pool, Producer produce, Decoder decode, bool ordered,
            std::size_t window)
      : pump_(std::move(pool), std::move(produce), ordered, window), decode_(decode) {}

  /// The next item, or nothing at the end. Throws TimeoutError if none arrives by `deadline`.
  std::optional<ImapItem<R>> fetch(std::optional<Clock::time_point> deadline,
                                   const std::string& timeout = {}) {
    for (;;) {
      if (!items_.empty()) {
        ImapItem<R> it = std::move(items_.front());
        items_.pop_front();
        return it;
      }
      std::shared_ptr<Completion> c = pump_.next_chunk(deadline, timeout);
      if (!c) {
        std::exception_ptr e = pump_.take_input_error();
        if (!e) return std::nullopt;
        ImapItem<R> it;
        it.input_error = std::move(e);
        return it;
      }
      decode_(*c, items_);
    }
  }

 private:
  ImapPump pump_;
  Decoder decode_;
  std::deque<ImapItem<R>> items_;
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

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/imap_impl.hpp>
#endif
