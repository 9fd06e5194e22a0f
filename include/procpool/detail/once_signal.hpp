#pragma once

#include <condition_variable>
#include <exception>
#include <mutex>
#include <utility>

namespace procpool::detail {

/// A value-less promise set once, by one thread, for another to wait on: the first
/// set_value()/set_exception() counts, later ones are ignored. (Not std::promise: <future> would
/// cost every program that includes procpool.)
class OnceSignal {
 public:
  void set_value() { set(nullptr); }
  void set_exception(std::exception_ptr e) { set(std::move(e)); }
  /// Waits for the signal; rethrows the error it carries.
  void get() {
    std::unique_lock l(m_);
    cv_.wait(l, [&] { return set_; });
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void set(std::exception_ptr e) {
    std::lock_guard l(m_);
    if (set_) return;
    set_ = true;
    error_ = std::move(e);
    cv_.notify_all();
  }
  std::mutex m_;
  std::condition_variable cv_;
  bool set_ = false;
  std::exception_ptr error_;
};

}  // namespace procpool::detail
