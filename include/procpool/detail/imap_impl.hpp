#pragma once
// Definitions of ImapPump's operations (what an imap does whatever its types): inline in a
// header-only build, compiled once by src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>

#include <procpool/detail/pool_handle.hpp>
#include <procpool/detail/worker_record.hpp>
#include <procpool/imap.hpp>

namespace procpool::detail {

/// Completed chunks waiting to be read by an imap_unordered; fed by the pool's thread.
struct ReadyQueue final : BellWaiter {
  std::mutex m;
  std::condition_variable cv;
  std::deque<const Completion*> ready;  // identities only; ImapPump holds the owners
  std::atomic<std::size_t> count{0};    // ready.size(), to watch without the lock
  ResultBell* bell = nullptr;           // the iterating thread sleeps on it

  bool attach_bell(ResultBell* b) noexcept override {
    std::lock_guard lock(m);
    if (b && !ready.empty()) return false;
    bell = b;
    return true;
  }
  bool one_result() const noexcept override { return true; }
};

PROCPOOL_DECL ImapPump::ImapPump(std::shared_ptr<Supervisor> pool, Producer produce, bool ordered,
                                 std::size_t window)
    : pool_(std::move(pool)),
      handle_(pool_handle(pool_)),
      produce_(std::move(produce)),
      ordered_(ordered),
      window_(window),
      ready_(std::make_shared<ReadyQueue>()) {
}

PROCPOOL_DECL ImapPump::~ImapPump() {
  for (auto& c : inflight_)
    if (!c->done()) handle_->cancel(c, false);
}

PROCPOOL_DECL std::shared_ptr<Completion> ImapPump::next_chunk(
    std::optional<Clock::time_point> deadline, const std::string& timeout) {
  top_up();
  if (inflight_.empty()) return nullptr;
  std::shared_ptr<Completion> c;
  if (ordered_) {
    c = inflight_.front();
    if (!c->wait_until(deadline)) throw TimeoutError("no imap result within " + timeout);
    inflight_.pop_front();
  } else {
    c = wait_ready(deadline);  // also takes it out of inflight_
    if (!c) throw TimeoutError("no imap result within " + timeout);
  }
  return c;
}

PROCPOOL_DECL void ImapPump::top_up() {
  // Members, kept between calls: one chunk read is usually one chunk added, so fresh vectors
  // would cost two allocations per chunk. (Cleared first too: a submit that threw left them.)
  batch_.clear();
  started_.clear();
  std::size_t items = 0;
  while (!input_done_ && inflight_.size() + batch_.size() < window_) {
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
    c->pool = handle_;
    if (!ordered_) {
      // The queue outlives this pump while a chunk it cancelled may still complete.
      c->on_complete([queue = ready_](Completion& done) {
        std::lock_guard lock(queue->m);
        queue->ready.push_back(&done);
        queue->count.store(queue->ready.size(), std::memory_order_release);
        queue->cv.notify_all();
        if (queue->bell) queue->bell->ring();
      });
    }
    items += job.count;
    batch_.push_back(std::move(job));
    started_.push_back(std::move(c));
  }
  if (batch_.empty()) return;
  pool_submit(*pool_, batch_, items);  // throws PoolClosed before anything is in flight
  for (auto& c : started_) inflight_.push_back(std::move(c));
  batch_.clear();
  started_.clear();
}

PROCPOOL_DECL std::shared_ptr<Completion> ImapPump::wait_ready(
    std::optional<Clock::time_point> deadline) {
  auto ready = [this] { return ready_->count.load(std::memory_order_acquire) != 0; };
  // Only a wait that found nothing ready teaches the pool how long results take.
  std::optional<Clock::time_point> t0;
  if (!ready()) {
    t0 = Clock::now();
    (void)handle_->help(ready, deadline.value_or(Clock::time_point::max()), ready_.get());
  }
  std::shared_ptr<Completion> c = take_ready(deadline);
  if (t0) handle_->waited(Clock::now() - *t0);
  return c;
}

PROCPOOL_DECL std::shared_ptr<Completion> ImapPump::take_ready(
    std::optional<Clock::time_point> deadline) {
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

}  // namespace procpool::detail
