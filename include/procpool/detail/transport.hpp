#pragma once
// The transport seam: how the pool reaches its workers, whatever carries the bytes. The engine
// (Supervisor, Workforce, Scheduler) talks to workers only through these two interfaces, and
// never assumes file descriptors: a transport whose requests cannot be polled with epoll (MPI,
// say) implements `run` with its own test-and-wait. Calls are per batch (a round of the loop, a
// flush of a worker's window), never per byte.
//
// The one implementation today is local/ (pipes, status slots in shared memory, epoll, pidfds).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/result_bell.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/detail/worker_record.hpp>

namespace procpool::detail {

/// One complete, validated frame from a worker, valid during the call that receives it.
struct IncomingFrame {
  FrameHeader header;
  std::span<const std::byte> bytes;  // the whole frame, header included
  Buffer* whole = nullptr;           // if set, holds exactly this frame and may be moved from
  // If set, `bytes` lie in memory lent by the worker (see local/shared_frame.hpp), held for as
  // long as this pointer or a copy lives: the frame may be kept there instead of copied.
  std::shared_ptr<const std::byte> lent;

  std::span<const std::byte> payload() const { return bytes.subspan(sizeof(FrameHeader)); }
  /// The frame as a Buffer of its own: handed over when possible, else copied.
  Buffer take() const {
    if (whole) return std::move(*whole);
    Buffer b;
    b.append(bytes.data(), bytes.size());
    return b;
  }
};

/// Receives what a link collects, in the order the worker answered.
class FrameSink {
 public:
  /// One frame for the worker in `slot`; false if it is not a valid answer (the worker is then
  /// killed, and nothing more from it is trusted).
  virtual bool on_frame(std::size_t slot, const IncomingFrame& f) = 0;

 protected:
  ~FrameSink() = default;
};

/// Receives what happened during Transport::run.
class EventSink {
 public:
  virtual void readable(std::size_t slot) = 0;  // results may be waiting: collect them
  virtual void writable(std::size_t slot) = 0;  // the worker can take more: flush it
  virtual void died(std::size_t slot) = 0;      // the worker has ended: reap and bury it

 protected:
  ~EventSink() = default;
};

/// How a worker ended.
struct ExitReport {
  int signal = 0;  // the signal that killed it, or 0
  int code = -1;   // its exit code, when no signal killed it
};

/// One worker, wherever it runs.
class WorkerLink {
 public:
  virtual ~WorkerLink() = default;
  /// How the worker is named to the user (a process id here).
  virtual std::int64_t id() const noexcept = 0;
  /// Writes the jobs of `w.inflight` from `w.unsent` on, as far as the channel takes them now;
  /// the rest goes when the transport reports the worker writable.
  virtual void flush(WorkerRecord& w) = 0;
  /// Cheap: true if the worker may have answered since the last collect.
  virtual bool has_news() const noexcept = 0;
  /// Hands every complete answer to `sink`, in order. False if the worker sent something
  /// malformed (it is then killed and nothing more is read from it).
  virtual bool collect(std::size_t slot, const WorkerRecord& w, FrameSink& sink) = 0;
  virtual LinkStatus status() const noexcept = 0;
  /// The worker skips `job` if it has not started it. False if it cannot be told (it holds as
  /// many revoked jobs as a window has): the job is then not revoked.
  virtual bool revoke(std::uint64_t job) noexcept = 0;
  /// A pooled link's `job` was cancelled: the pool there drops it, and kills the worker running
  /// it only if `kill_running` (as the scheduler does for a worker of its own).
  virtual void cancel(std::uint64_t job, bool kill_running) noexcept {
    (void)kill_running;
    (void)revoke(job);
  }
  /// The answer to `job` came: a revocation of it can be forgotten.
  virtual void answered(std::uint64_t job) noexcept = 0;
  /// No more work: the worker finishes what it has, then exits.
  virtual void stop() noexcept = 0;
  /// Ends the worker: gently (it may clean up) or at once.
  virtual void kill(bool gently) noexcept = 0;
  /// True if the link fronts a pool of workers elsewhere (another machine): it answers in any
  /// order, reports failed jobs itself (FrameKind::failed), and time limits and
  /// maxtasksperchild are enforced there.
  virtual bool pooled() const noexcept { return false; }
  /// How many jobs it runs at once; for a pooled link, known for sure once it said hello.
  virtual std::size_t capacity() const noexcept { return 1; }
};

/// How workers are reached (cf. asio's scheduler_task): started, waited on, reaped.
class Transport {
 public:
  virtual ~Transport() = default;
  /// Starts the worker for `slot` (`gen` tells its events from a predecessor's). Throws
  /// SystemError if it cannot.
  virtual std::unique_ptr<WorkerLink> launch(std::size_t slot, std::uint32_t gen) = 0;
  /// Waits at most `max_wait` (negative: no limit; zero: only looks) for events and delivers them
  /// to `sink`. Deaths go to `sink` too. Returns the number of events delivered. A waiting call
  /// returns early when a worker answers, or on interrupt().
  virtual int run(std::chrono::nanoseconds max_wait, EventSink& sink) = 0;
  /// Ends a run() that waits; callable from any thread.
  virtual void interrupt() noexcept = 0;
  /// Housekeeping between rounds (here: telling workers to unmap destroyed shared memory).
  virtual void tidy() = 0;
  /// Collects how a dead worker ended, and forgets it.
  virtual ExitReport reap(WorkerLink& link) = 0;
  /// The pool's thread will sleep in run(): workers must announce their next answer. False if
  /// one is waiting already (the sleep is off).
  virtual bool prepare_sleep() noexcept = 0;
  virtual void end_sleep() noexcept = 0;
  /// Memory kept for reuse by the next large message (given back when the pool idles a while).
  virtual std::size_t kept_bytes() const noexcept { return 0; }
  virtual void let_go() noexcept {}
  /// True if answers are announced by interrupt() (they come from another thread, as over MPI):
  /// the pool's thread then naps in run(), never elsewhere, so an answer ends every nap.
  virtual bool answers_interrupt() const noexcept { return false; }
  /// Where a waiting thread may sleep to be woken by the worker that brings a result (see
  /// ResultBell); nullptr if the transport has none.
  virtual ResultBell* result_bell() noexcept { return nullptr; }
  /// While the pool's thread sleeps in run(), another thread collected answers (from the bell):
  /// the announcements it may have taken with them are asked for again. False if an answer is
  /// waiting already. Only transports with a result bell are asked.
  virtual bool rearm_sleep() noexcept { return true; }
};

}  // namespace procpool::detail
