#pragma once

#include <procpool/detail/cxx20.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <procpool/codec.hpp>
#include <procpool/detail/buffer.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/invoke.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/separate.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/errors.hpp>
#include <procpool/init.hpp>
#include <procpool/options.hpp>

namespace procpool {

namespace detail {

// ---- The child's side ---------------------------------------------------------------------------

PROCPOOL_SEPARATE_BEGIN
/// Ends a Process child: what the task printed is flushed, then the process exits without running
/// the parent's exit handlers (a forked child shares their state).
[[noreturn]] PROCPOOL_DECL void process_exit(int code) noexcept;
/// Prints the exception in flight on stderr, as a Process child whose task threw.
PROCPOOL_DECL void process_report_current() noexcept;
PROCPOOL_SEPARATE_END

/// The trampoline of a `Process` task. A Process child is an ordinary worker that is sent one
/// task; this trampoline runs it and ends the process instead of returning a result: exit code 0,
/// or 1 with the error on stderr if the task threw (as Python's Process does).
template <class Codec, class F, class Tuple>
struct ProcessInvoker;
template <class Codec, class F, class... W>
struct ProcessInvoker<Codec, F, std::tuple<W...>> {
  static void run(std::uintptr_t fn, std::span<const std::byte> args, Buffer&,
                  std::uint32_t) noexcept {
    int code = 0;
    try {
      Reader r(args);
      // Braced initialization decodes the arguments left to right.
      std::tuple<W...> t{decode_value<Codec, W>(r)...};
      if (!r.at_end()) throw CodecError("task arguments have trailing bytes");
      F f = Invoker<Codec, F, std::tuple<W...>>::make(fn);
      std::apply([&](W&... a) { (void)f(std::move(a)...); }, t);
    } catch (...) {
      process_report_current();
      code = 1;
    }
    process_exit(code);
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
  Process(ProcessOptions opts, F f, A&&... args) {
    detail::check_task<F>();
    using W = detail::wire_args_t<F, A...>;
    detail::Buffer b;
    std::vector<std::shared_ptr<detail::Segment>> attachments;
    std::size_t at = detail::begin_frame(b, detail::FrameKind::task, 1);
    detail::put_task_ref(b, detail::process_task_ref<BinaryCodec, F, W>(f));
    std::size_t item = b.size();
    detail::put_u64(b, 0);
    {
      detail::AttachScope scope(attachments);
      Writer w(b);
      detail::ArgEncoder<BinaryCodec, W>::encode(w, std::forward<A>(args)...);
    }
    detail::finish_item(b, item);
    detail::finish_frame(b, at, 1);
    if (b.size() - at - sizeof(detail::FrameHeader) > detail::max_frame)
      throw CodecError("Process arguments exceed the maximum frame size");
    prepare(opts, std::move(b), std::move(attachments));
  }

  Process(Process&&) noexcept = default;
  PROCPOOL_DECL Process& operator=(Process&& o) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  /// Waits for a started process (see `join`).
  PROCPOOL_DECL ~Process();

  /// Starts the child. A Process starts once; `std::logic_error` the second time.
  PROCPOOL_DECL void start();

  /// Waits until the child has exited.
  PROCPOOL_DECL void join();

  /// Waits at most `d` for the child to exit; true if it has.
  template <class Rep, class Period>
  bool join_for(std::chrono::duration<Rep, Period> d) {
    check_started();
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
  PROCPOOL_DECL bool is_alive();

  /// The child's pid; 0 before `start`.
  PROCPOOL_DECL pid_t pid() const noexcept;

  /// Empty while the child runs (or before `start`); then its exit code, or `-N` if signal N
  /// killed it.
  PROCPOOL_DECL std::optional<int> exitcode();

  /// Sends SIGTERM to the child.
  PROCPOOL_DECL void terminate();
  /// Sends SIGKILL to the child.
  PROCPOOL_DECL void kill();

 private:
  struct State;  // process_impl.hpp
  struct StateDeleter {
    PROCPOOL_DECL void operator()(State* s) const noexcept;
  };

  PROCPOOL_DECL void prepare(ProcessOptions opts, detail::Buffer frame,
                             std::vector<std::shared_ptr<detail::Segment>> attachments);
  PROCPOOL_DECL State& state() const;
  /// Throws std::logic_error unless started (join before start).
  PROCPOOL_DECL void check_started() const;
  PROCPOOL_DECL void send_signal(int sig);
  PROCPOOL_DECL void finish() noexcept;
  // Collects the exit status if the child has ended, waiting up to `timeout_ms` (< 0: forever).
  PROCPOOL_DECL bool poll_exit(int timeout_ms);

  std::unique_ptr<State, StateDeleter> s_;
};

}  // namespace procpool

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/process_impl.hpp>
#endif
