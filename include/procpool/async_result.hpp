#pragma once

#include <procpool/detail/cxx20.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include <procpool/detail/chrono.hpp>
#include <procpool/detail/completion.hpp>
#include <procpool/errors.hpp>

namespace procpool {

namespace detail {
template <class Codec, class ArgCheck>
class PoolFront;

/// A wait's length for a message: "250 ms", "2.5 s".
template <class Rep, class Period>
std::string describe(std::chrono::duration<Rep, Period> d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  if (us < 1000) return std::to_string(us) + " us";
  if (us < 10'000'000) {
    const auto ms = us / 1000, frac = (us % 1000) / 100;
    return std::to_string(ms) + (frac != 0 ? "." + std::to_string(frac) : std::string()) + " ms";
  }
  return std::to_string(us / 1'000'000) + " s";
}

template <class T>
using stored_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// A ResultState that holds a `T` (decoded once, on first use, by the thread that asks).
template <class T>
class TypedCompletion : public ResultState {
 public:
  using ResultState::ResultState;

  std::optional<stored_t<T>> value;
};

}  // namespace detail

/// The result of a task that may not have finished yet. It owns its state: it stays valid after
/// the pool is gone. Copies share one state.
template <class T>
class AsyncResult {
 public:
  using value_type = T;

  AsyncResult() = default;
  explicit AsyncResult(std::shared_ptr<detail::TypedCompletion<T>> s) : s_(std::move(s)) {}

  /// Waits for the result and returns it; rethrows the task's error. On an AsyncResult that is
  /// going away (`pool.apply_async(...).get()`, `std::move(r).get()`) and has no copies left,
  /// the value is handed over instead of copied: for a large result, that is a copy saved.
  T get() & {
    check();
    s_->wait();
    return take(false);
  }
  T get() && {
    check();
    s_->wait();
    return take(true);
  }

  /// Like `get()`, but throws `TimeoutError` if the result is not ready in time. The task is
  /// left alone.
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) & {
    wait_or_throw(timeout);
    return take(false);
  }
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) && {
    wait_or_throw(timeout);
    return take(true);
  }

  void wait() const {
    check();
    s_->wait();
  }

  /// Waits up to `timeout`; true when the result is ready.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    check();
    return s_->wait_for(timeout);
  }

  bool ready() const {
    check();
    return s_->done();
  }

  /// True if the task returned a value. Throws `std::logic_error` before it is ready.
  bool successful() const {
    check();
    if (!s_->done())
      throw std::logic_error(detail::prefixed("successful() called before the result is ready"));
    s_->resolve();
    return !s_->error;
  }

  /// Cancels the task: a queued one never runs; a running one has its worker killed and replaced.
  /// Returns true unless the task had already finished; `get()` then throws `Cancelled`.
  bool cancel() {
    check();
    auto pool = s_->pool.lock();
    if (!pool) return false;  // its pool is gone, and so every task of it has finished
    return pool->cancel(s_, true);
  }

  /// Registers callbacks, like Python's callback / error_callback. `on_value` receives the value
  /// (nothing for `void`); `on_error` receives a `std::exception_ptr` or a `const
  /// procpool::Error&`. They run when the task completes on the thread that collects its result
  /// (the pool's thread, or a thread that is waiting for a result of the same pool), or at once in
  /// the caller if it already has. Like Python's, they should return quickly and must not wait
  /// for results of the same pool. A callback that throws is reported on stderr and otherwise
  /// ignored.
  template <class OnValue, class OnError = std::nullptr_t>
  AsyncResult& then(OnValue on_value, OnError on_error = nullptr) {
    check();
    s_->on_complete([on_value = std::move(on_value),
                     on_error = std::move(on_error)](detail::Completion& c) mutable {
      auto& t = static_cast<detail::TypedCompletion<T>&>(c);
      t.resolve();
      if (t.error) {
        if constexpr (!std::is_same_v<OnError, std::nullptr_t>) {
          if constexpr (std::is_invocable_v<OnError&, std::exception_ptr>) {
            on_error(t.error->make());
          } else {
            try {
              t.error->raise();
            } catch (const Error& e) {
              on_error(e);
            }
          }
        }
      } else if constexpr (std::is_void_v<T>) {
        on_value();
      } else {
        on_value(*t.value);
      }
    });
    return *this;
  }

  /// True if this refers to a task (a default-constructed AsyncResult does not).
  bool valid() const noexcept { return s_ != nullptr; }

 private:
  void check() const {
    if (!s_) throw std::logic_error(detail::prefixed("AsyncResult does not refer to a task"));
  }

  template <class Rep, class Period>
  void wait_or_throw(std::chrono::duration<Rep, Period> timeout) const {
    check();
    if (!s_->wait_for(timeout)) throw TimeoutError("no result within " + detail::describe(timeout));
  }

  // `last`: this AsyncResult is going away; if no copy shares its state, nobody else can see
  // the value, so it is moved out.
  T take(bool last) {
    s_->resolve();
    if (s_->error) s_->error->raise();
    if constexpr (std::is_void_v<T>) {
      return;
    } else if constexpr (std::is_copy_constructible_v<T>) {
      if (last && s_.use_count() == 1) return std::move(*s_->value);
      return *s_->value;
    } else {
      return std::move(*s_->value);
    }
  }

  template <class, class>
  friend class detail::PoolFront;
  std::shared_ptr<detail::TypedCompletion<T>> s_;

  // Moves the value out: for the blocking calls, whose AsyncResult nobody else sees.
  T take_once() {
    check();
    s_->wait();
    s_->resolve();
    if (s_->error) s_->error->raise();
    if constexpr (!std::is_void_v<T>) {
      T v = std::move(*s_->value);
      s_->value.reset();  // the pool keeps no copy of a result it has handed over
      return v;
    }
  }
};

}  // namespace procpool
