#pragma once

#include <procpool/detail/cxx20.hpp>

#include <atomic>
#include <bit>
#include <procpool/detail/chrono.hpp>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <procpool/codec.hpp>
#include <procpool/detail/buffer.hpp>
#include <procpool/detail/callback.hpp>
#include <procpool/detail/demangle.hpp>
#include <procpool/detail/invoke.hpp>
#include <procpool/detail/local/launcher.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/launch.hpp>
#include <procpool/detail/posix/process.hpp>
#include <procpool/detail/posix/shm.hpp>
#include <procpool/detail/posix/socket.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/detail/worker.hpp>
#include <procpool/errors.hpp>
#include <procpool/init.hpp>
#include <procpool/options.hpp>

namespace procpool {

namespace detail {

// ---- The child's side ---------------------------------------------------------------------------

/// Ends a Process child: what the task printed is flushed, then the process exits without running
/// the parent's exit handlers (a forked child shares their state).
[[noreturn]] inline void process_exit(int code) noexcept {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  posix::child::die(code);
}

/// The trampoline of a `Process` task. A Process child is an ordinary worker that is sent one
/// task; this trampoline runs it and ends the process instead of returning a result: exit code 0,
/// or 1 with the error on stderr if the task threw (as Python's Process does).
template <class Codec, class F, class Tuple>
struct ProcessInvoker;
template <class Codec, class F, class... W>
struct ProcessInvoker<Codec, F, std::tuple<W...>> {
  static void run(std::uintptr_t fn, std::span<const std::byte> args, Buffer&) noexcept {
    int code = 0;
    try {
      Reader r(args);
      // Braced initialization decodes the arguments left to right.
      std::tuple<W...> t{decode_value<Codec, W>(r)...};
      if (!r.at_end()) throw CodecError("task arguments have trailing bytes");
      F f = Invoker<Codec, F, std::tuple<W...>>::make(fn);
      std::apply([&](W&... a) { (void)f(std::move(a)...); }, t);
    } catch (const std::exception& e) {
      report(demangle(typeid(e).name()).c_str(), e.what());
      code = 1;
    } catch (...) {
      report(current_exception_type().c_str(), "(not derived from std::exception)");
      code = 1;
    }
    process_exit(code);
  }

  static void report(const char* type, const char* what) noexcept {
    std::fflush(stdout);
    std::fprintf(stderr, "procpool::Process %d: task raised %s: %s\n",
                 static_cast<int>(posix::current_pid()), type, what);
    std::fflush(stderr);
  }
};

template <class Codec, class F, class W>
TaskRef process_task_ref(F f) {
  static const posix::ImageAddress tramp = locate_or_throw(
      std::bit_cast<std::uintptr_t>(&ProcessInvoker<Codec, F, W>::run), "task trampoline");
  TaskRef r{tramp, {}};
  if constexpr (std::is_pointer_v<F>) {
    r.fn = locate_or_throw(std::bit_cast<std::uintptr_t>(f), "task function");
  } else {
    (void)f;
  }
  return r;
}

// ---- The launcher thread ------------------------------------------------------------------------

/// Runs process launches on one thread that lives as long as the program. A child dies with the
/// thread that forked it (PR_SET_PDEATHSIG is per thread), so forking on the caller's thread
/// would kill a Process as soon as that thread ended.
class LaunchThread {
 public:
  static void run(Callback<void()> job) {
    LaunchThread& l = get();
    Request req{&job, nullptr, false};
    std::unique_lock lock(l.m_);
    l.queue_.push_back(&req);
    l.cv_.notify_all();
    l.cv_.wait(lock, [&] { return req.done; });
    if (req.error) std::rethrow_exception(req.error);
  }

 private:
  struct Request {
    Callback<void()>* job;
    std::exception_ptr error;
    bool done;
  };

  static LaunchThread& get() {
    // No mutex here: a child forked while another thread held one could never take it.
    static std::atomic<LaunchThread*> current{nullptr};
    const pid_t me = posix::current_pid();
    LaunchThread* l = current.load();
    // In a child forked from this program the thread does not exist: start another.
    while (l == nullptr || l->owner_ != me) {
      auto* fresh = new LaunchThread;  // never destroyed: the thread may outlive static destructors
      if (current.compare_exchange_strong(l, fresh)) {
        std::thread([fresh] { fresh->loop(); }).detach();
        return *fresh;
      }
      delete fresh;  // another thread was first; `l` is now its launcher
    }
    return *l;
  }

  void loop() {
    posix::BlockAllSignals blocked;  // signals are for the program's own threads
    std::unique_lock lock(m_);
    for (;;) {
      cv_.wait(lock, [&] { return !queue_.empty(); });
      Request* r = queue_.front();
      queue_.pop_front();
      lock.unlock();
      try {
        (*r->job)();
      } catch (...) {
        r->error = std::current_exception();
      }
      lock.lock();
      r->done = true;
      cv_.notify_all();
    }
  }

  pid_t owner_ = posix::current_pid();
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Request*> queue_;
};

}  // namespace detail

/// One task in one child process, like Python's `multiprocessing.Process`: `Process p(f, args...);
/// p.start(); p.join();`. The task is a plain function or captureless lambda, as for a `Pool`; its
/// arguments travel through `BinaryCodec` (shared objects, `Queue` and `Pipe` ends included) and
/// its return value is discarded. The child ignores SIGINT and dies with the program.
///
/// The exit code follows Python: 0 when the task returned, 1 when it threw (its error is printed
/// on the child's stderr), the code it passed to `exit`, or `-N` when signal N killed it.
/// Destroying a started Process waits for it, so no zombie is left.
class Process {
 public:
  template <class F, class... A>
  requires(!std::is_same_v<std::decay_t<F>, ProcessOptions>) explicit Process(F f, A&&... args)
      : Process(ProcessOptions{}, f, std::forward<A>(args)...) {}

  template <class F, class... A>
  Process(ProcessOptions opts, F f, A&&... args) : s_(std::make_unique<State>()) {
    detail::check_task<F>();
    using W = detail::wire_args_t<F, A...>;
    s_->opts = opts;
    auto& b = s_->frame;
    std::size_t at = detail::begin_frame(b, detail::FrameKind::task, 1);
    detail::put_task_ref(b, detail::process_task_ref<BinaryCodec, F, W>(f));
    std::size_t item = b.size();
    detail::put_u64(b, 0);
    {
      detail::AttachScope scope(s_->attachments);
      Writer w(b);
      detail::ArgEncoder<BinaryCodec, W>::encode(w, std::forward<A>(args)...);
    }
    detail::finish_item(b, item);
    detail::finish_frame(b, at, 1);
    if (b.size() - at - sizeof(detail::FrameHeader) > detail::max_frame)
      throw CodecError("Process arguments exceed the maximum frame size");
  }

  Process(Process&&) noexcept = default;
  Process& operator=(Process&& o) noexcept {
    if (this != &o) {
      finish();
      s_ = std::move(o.s_);
    }
    return *this;
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  /// Waits for a started process (see `join`).
  ~Process() { finish(); }

  /// Starts the child. A Process starts once; `std::logic_error` the second time.
  void start() {
    State& s = state();
    if (s.started) throw std::logic_error(detail::prefixed("a Process can be started only once"));
    namespace posix = detail::posix;
    detail::local::check_can_start(s.opts.start, "Process::start");
    for (const auto& seg : s.attachments)
      if (seg->fd() < 0)
        throw Error(
            "a shared object received from another process cannot be passed on to a Process");

    posix::UniqueFd task, task_child, control, control_child;
    posix::PipeFds result;
    posix::check(posix::make_stream_pair(task, task_child), "socketpair");
    posix::check(posix::make_pipe(result, false), "pipe2");
    posix::check(posix::make_seqpacket_pair(control, control_child), "socketpair");

    // As Python does: what this program printed so far must not be printed again by the child
    // when it flushes its copy of the buffers.
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    // A started worker maps a status slot; a Process child has one, which nobody reads.
    posix::UniqueFd slots;
    if (s.opts.start != StartMethod::fork)
      posix::check(posix::make_memfd(sizeof(detail::WorkerSlot), slots), "memfd_create");
    detail::local::LaunchRequest req;
    req.fds = {task_child.get(), result.write_end.get(), control_child.get(), slots.get()};
    s.launcher = detail::local::make_launcher(s.opts.start);
    detail::local::Launched launched;
    auto launch = [&] { launched = s.launcher->launch(req); };
    // The fork server's workers are not children of this process; the others are, and must be
    // started from the launcher thread.
    if (s.opts.start == StartMethod::forkserver) {
      launch();
    } else {
      detail::LaunchThread::run(launch);
    }
    const pid_t pid = launched.pid;
    posix::UniqueFd pidfd = std::move(launched.pidfd);
    s.started = true;
    s.pid = pid;
    s.pidfd = std::move(pidfd);
    // Kept open until the child is reaped: the worker it runs writes a greeting there first.
    s.result = std::move(result.read_end);
    task_child.reset();
    result.write_end.reset();
    control_child.reset();

    // The task, then the shared memory and pipe ends it names. A child that died early makes
    // these fail; its exit status tells why, so the errors are not reported here.
    (void)posix::send_all(task.get(), s.frame.data(), s.frame.size());
    for (const auto& seg : s.attachments) {
      detail::ControlMessage msg{detail::ControlMessage::segment, seg->id(), seg->size()};
      (void)posix::send_message(control.get(), &msg, sizeof msg, seg->fd());
    }
    // The kernel holds the descriptors in flight: this process can let go of its references.
    s.attachments.clear();
    s.frame = detail::Buffer();
  }

  /// Waits until the child has exited.
  void join() {
    State& s = state();
    if (!s.started)
      throw std::logic_error(detail::prefixed("join of a Process that was not started"));
    while (!poll_exit(-1)) {
    }
  }

  /// Waits at most `d` for the child to exit; true if it has.
  template <class Rep, class Period>
  bool join_for(std::chrono::duration<Rep, Period> d) {
    State& s = state();
    if (!s.started)
      throw std::logic_error(detail::prefixed("join of a Process that was not started"));
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(d);
    for (;;) {
      auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      int ms = left.count() <= 0          ? 0
               : left.count() > INT32_MAX ? INT32_MAX
                                          : static_cast<int>(left.count());
      if (poll_exit(ms)) return true;
      if (ms == 0) return false;
    }
  }

  /// True between `start` and the child's exit.
  bool is_alive() {
    State& s = state();
    return s.started && !poll_exit(0);
  }

  /// The child's pid; 0 before `start`.
  pid_t pid() const noexcept { return s_ ? s_->pid : 0; }

  /// Empty while the child runs (or before `start`); then its exit code, or `-N` if signal N
  /// killed it.
  std::optional<int> exitcode() {
    State& s = state();
    if (!s.started || !poll_exit(0)) return std::nullopt;
    return s.exitcode;
  }

  /// Sends SIGTERM to the child.
  void terminate() { send_signal(detail::posix::sig_term); }
  /// Sends SIGKILL to the child.
  void kill() { send_signal(detail::posix::sig_kill); }

 private:
  struct State {
    ProcessOptions opts;
    detail::Buffer frame;
    std::vector<std::shared_ptr<detail::Segment>> attachments;
    bool started = false;
    bool exited = false;
    int exitcode = 0;
    pid_t pid = 0;
    detail::posix::UniqueFd pidfd;
    detail::posix::UniqueFd result;
    std::unique_ptr<detail::local::Launcher> launcher;  // how it was started, and is reaped
  };

  State& state() const {
    if (!s_) throw std::logic_error(detail::prefixed("use of a moved-from Process"));
    return *s_;
  }

  void send_signal(int sig) {
    State& s = state();
    if (!s.started || poll_exit(0)) return;
    (void)detail::posix::pidfd_signal(s.pidfd.get(), sig);
  }

  void finish() noexcept {
    if (!s_ || !s_->started) return;
    try {
      while (!poll_exit(-1)) {
      }
    } catch (...) {
    }
  }

  // Collects the exit status if the child has ended, waiting up to `timeout_ms` (< 0: forever).
  bool poll_exit(int timeout_ms) {
    namespace posix = detail::posix;
    State& s = *s_;
    if (s.exited) return true;
    if (!posix::wait_readable(s.pidfd.get(), timeout_ms)) return false;
    posix::ExitStatus st = s.launcher->reap(s.pid, detail::config::process_report_ms);
    if (!st.exited) {
      // The fork server reaps it and reports the status just after; without a report the
      // server is gone, and so is the program.
      if (s.opts.start != StartMethod::forkserver) return false;
      st.exited = true;
      st.signal = posix::sig_kill;
    }
    s.exited = true;
    s.exitcode = st.signal != 0 ? -st.signal : st.code;
    s.pidfd.reset();
    s.result.reset();
    s.launcher.reset();
    return true;
  }

  std::unique_ptr<State> s_;
};

}  // namespace procpool
