#pragma once

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <new>
#include <system_error>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <procpool/detail/posix/error.hpp>
#include <procpool/detail/posix/fd.hpp>

namespace procpool::detail::posix {

/// What the child of `fork_child` needs: the function it runs and the limits it applies.
struct ChildSpec {
  int (*body)(void* ctx) = nullptr;  // the worker loop; its return value is the exit code
  void* ctx = nullptr;
  std::size_t memory_limit = 0;  // RLIMIT_AS in bytes; 0: none
  const char* name = "procpool-worker";
  void (*in_child)() = nullptr;    // runs in the child before `body`, e.g. to reset process state
  int keep[4] = {-1, -1, -1, -1};  // the child's own channels: registered, but not closed there
};

/// Blocks every signal in the calling thread and restores the old mask on destruction. The
/// pool's own thread runs with all signals blocked, so user handlers run on the user's threads and
/// a child forked from it starts with nothing pending until it has reset its handlers.
class BlockAllSignals {
 public:
  BlockAllSignals() noexcept {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old_);
  }
  ~BlockAllSignals() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  BlockAllSignals(const BlockAllSignals&) = delete;
  BlockAllSignals& operator=(const BlockAllSignals&) = delete;

 private:
  sigset_t old_;
};

namespace child {

// Everything below runs in a freshly forked child of a possibly multi-threaded parent: it uses
// only async-signal-safe calls until `body` starts, and it never returns into the parent's code.

[[noreturn]] inline void die(int code) noexcept {
  ::_exit(code);
}

inline bool kept(const ChildSpec& spec, int fd) noexcept {
  for (int k : spec.keep)
    if (k == fd) return true;
  return false;
}

inline void setup(const ChildSpec& spec, pid_t parent, const int* close_fds,
                  std::size_t nclose) noexcept {
  // Die with the parent. PDEATHSIG is tied to the forking thread, which is the pool's own thread
  // and outlives every worker it starts. The getppid() check closes the race where the parent
  // died before prctl ran.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) die(120);
  if (::getppid() != parent) die(121);
  // Own process group: a hard timeout kills the task's children too.
  (void)::setpgid(0, 0);
  (void)::prctl(PR_SET_NAME, spec.name);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa {};
    sa.sa_handler = sig == SIGINT ? SIG_IGN : SIG_DFL;  // Ctrl-C is the parent's to handle
    (void)::sigaction(sig, &sa, nullptr);
  }
  for (std::size_t i = 0; i < nclose; ++i)
    if (!kept(spec, close_fds[i])) ::close(close_fds[i]);
  if (spec.memory_limit > 0) {
    rlimit lim{spec.memory_limit, spec.memory_limit};
    (void)::setrlimit(RLIMIT_AS, &lim);
  }
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);
}

}  // namespace child

/// A pidfd (close-on-exec, registered) for `pid`: signals and waits through it cannot reach
/// another process that reused the pid.
inline std::error_code open_pidfd(pid_t pid, UniqueFd& out) noexcept {
  return create_registered(
      [pid](int* fds) {
        fds[0] = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        if (fds[0] >= 0) (void)::fcntl(fds[0], F_SETFD, FD_CLOEXEC);
        return fds[0];
      },
      out);
}

/// Opens a pidfd (close-on-exec) for a child just forked; if that fails, the child is killed
/// and reaped so nothing is left behind.
inline std::error_code adopt_child(pid_t pid, pid_t& pid_out, UniqueFd& pidfd_out) noexcept {
  if (auto ec = open_pidfd(pid, pidfd_out)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return ec;
  }
  pid_out = pid;
  return {};
}

/// Forks a worker that runs `spec.body` and exits with its result. The child closes every
/// descriptor the library registered in the parent but `spec.keep`. Returns the child's pid and a
/// pidfd for it.
inline std::error_code fork_child(const ChildSpec& spec, pid_t& pid_out, UniqueFd& pidfd_out) {
  BlockAllSignals blocked;
  const pid_t parent = ::getpid();
  auto& reg = FdRegistry::get();
  pid_t pid;
  {
    // Held across fork so no other thread adds a descriptor the child would then keep.
    std::lock_guard lock(reg.mutex);
    pid = ::fork();
    if (pid == 0) {
      child::setup(spec, parent, reg.fds.data(), reg.fds.size());
      reg.reset_in_child();
      if (spec.in_child) spec.in_child();
      child::die(spec.body(spec.ctx));
    }
  }
  if (pid < 0) return last_error();
  return adopt_child(pid, pid_out, pidfd_out);
}

/// How a process ended.
struct ExitStatus {
  bool exited = false;  // false: still running (or unknown)
  int signal = 0;       // terminating signal, or 0
  int code = -1;        // exit code when it exited normally, else -1
};

/// Reaps `pid` if it has ended (or waits for it when `block`).
inline ExitStatus reap(pid_t pid, bool block) noexcept {
  int st = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &st, block ? 0 : WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno == EINTR) continue;
    return {};
  }
  ExitStatus s;
  s.exited = true;
  if (WIFSIGNALED(st)) s.signal = WTERMSIG(st);
  if (WIFEXITED(st)) s.code = WEXITSTATUS(st);
  return s;
}

/// Sends `sig` to the worker's process group, and to the worker itself in case it left it.
inline void kill_group(pid_t pid, int sig) noexcept {
  (void)::kill(-pid, sig);
  (void)::kill(pid, sig);
}

/// True if this process's address space is limited (RLIMIT_AS: a pool's `memory_limit`).
inline bool address_space_limited() noexcept {
  rlimit lim{};
  return ::getrlimit(RLIMIT_AS, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY;
}

inline pid_t current_pid() noexcept {
  return ::getpid();
}

/// Names the calling process as `ps` shows it (at most 15 characters).
inline void set_process_name(const char* name) noexcept {
  (void)::prctl(PR_SET_NAME, name);
}

inline const char* signal_name(int sig) noexcept {
  const char* d = sigabbrev_np(sig);
  return d ? d : "unknown signal";
}

}  // namespace procpool::detail::posix
