#pragma once
// Process: starting, joining and signalling the child, and the child's exit. Inline in a
// header-only build, compiled once by src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>

#include <procpool/detail/config.hpp>
#include <procpool/detail/local/launcher.hpp>
#include <procpool/detail/local/worker_slot.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/launch.hpp>
#include <procpool/detail/posix/process.hpp>
#include <procpool/detail/posix/shm.hpp>
#include <procpool/detail/posix/socket.hpp>
#include <procpool/process.hpp>

namespace procpool {

namespace detail {

PROCPOOL_SEPARATE_BEGIN

PROCPOOL_DECL void process_exit(int code) noexcept {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  posix::child::die(code);
}

PROCPOOL_DECL void process_report_current() noexcept {
  std::fflush(stdout);
  try {
    const auto [type, message] = thrown_type_and_message();
    std::fprintf(stderr, "procpool::Process %d: task raised %s: %s\n",
                 static_cast<int>(posix::current_pid()), type.c_str(), message.c_str());
  } catch (...) {
    std::fprintf(stderr,
                 "procpool::Process %d: task raised an exception (and no memory to name it)\n",
                 static_cast<int>(posix::current_pid()));
  }
  std::fflush(stderr);
}

PROCPOOL_SEPARATE_END

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

struct Process::State {
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

PROCPOOL_DECL void Process::StateDeleter::operator()(State* s) const noexcept {
  delete s;
}

PROCPOOL_DECL Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    finish();
    s_ = std::move(o.s_);
  }
  return *this;
}

PROCPOOL_DECL Process::~Process() {
  finish();
}

PROCPOOL_DECL void Process::prepare(ProcessOptions opts, detail::Buffer frame,
                                    std::vector<std::shared_ptr<detail::Segment>> attachments) {
  s_.reset(new State);
  s_->opts = opts;
  s_->frame = std::move(frame);
  s_->attachments = std::move(attachments);
}

PROCPOOL_DECL void Process::start() {
  State& s = state();
  if (s.started) throw std::logic_error(detail::prefixed("a Process can be started only once"));
  namespace posix = detail::posix;
  detail::local::check_can_start(s.opts.start, "Process::start");
  for (const auto& seg : s.attachments)
    if (seg->fd() < 0)
      throw Error("a shared object received from another process cannot be passed on to a Process");

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
    posix::check(posix::make_memfd(detail::SlotFile::bytes(1), slots), "memfd_create");
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

PROCPOOL_DECL void Process::check_started() const {
  if (!state().started)
    throw std::logic_error(detail::prefixed("join of a Process that was not started"));
}

PROCPOOL_DECL void Process::join() {
  check_started();
  while (!poll_exit(-1)) {
  }
}

PROCPOOL_DECL bool Process::is_alive() {
  State& s = state();
  return s.started && !poll_exit(0);
}

PROCPOOL_DECL pid_t Process::pid() const noexcept {
  return s_ ? s_->pid : 0;
}

PROCPOOL_DECL std::optional<int> Process::exitcode() {
  State& s = state();
  if (!s.started || !poll_exit(0)) return std::nullopt;
  return s.exitcode;
}

PROCPOOL_DECL void Process::terminate() {
  send_signal(detail::posix::sig_term);
}

PROCPOOL_DECL void Process::kill() {
  send_signal(detail::posix::sig_kill);
}

PROCPOOL_DECL Process::State& Process::state() const {
  if (!s_) throw std::logic_error(detail::prefixed("use of a moved-from Process"));
  return *s_;
}

PROCPOOL_DECL void Process::send_signal(int sig) {
  State& s = state();
  if (!s.started || poll_exit(0)) return;
  (void)detail::posix::pidfd_signal(s.pidfd.get(), sig);
}

PROCPOOL_DECL void Process::finish() noexcept {
  if (!s_ || !s_->started) return;
  try {
    while (!poll_exit(-1)) {
    }
  } catch (...) {
  }
}

PROCPOOL_DECL bool Process::poll_exit(int timeout_ms) {
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

}  // namespace procpool
