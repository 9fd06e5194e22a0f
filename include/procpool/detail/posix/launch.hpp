#pragma once

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <procpool/detail/posix/error.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/process.hpp>

extern char** environ;

namespace procpool::detail::posix {

// ---- What a new worker receives, whatever starts it --------------------------------------------

/// The descriptors of one worker: in the parent the worker's ends, in the worker its own.
struct WorkerFds {
  int task = -1;     // frames from the pool
  int result = -1;   // frames to the pool
  int control = -1;  // shared memory segments from the pool
  int slots = -1;    // the pool's status slots (a memory file)
};

/// Settings a worker needs before its loop starts.
struct WorkerParams {
  std::uint32_t slot = 0;
  std::uint64_t maxtasks = 0;
  std::uint64_t memory_limit = 0;
  std::uint32_t has_init = 0;
};

/// The marker that tells a re-executed program it is a worker (read by procpool::init).
inline constexpr const char* worker_env = "PROCPOOL_WORKER_7f3a";
/// In a spawned worker, its channels sit at these descriptor numbers.
inline constexpr int spawned_fd_base = 3;

// ---- procpool::init state ----------------------------------------------------------------------

struct InitState {
  std::atomic<bool> called{false};
  std::vector<std::string> argv;  // the program's arguments, for re-executing it
  UniqueFd forkserver;            // request socket to the fork server
  pid_t forkserver_pid = 0;
  std::mutex forkserver_mutex;  // one request at a time
  static InitState& get() {
    static InitState* s = new InitState;  // never destroyed: pools may outlive statics
    return *s;
  }
};

// ---- spawn: fork, then exec this program -------------------------------------------------------

/// Starts a fresh copy of this program as a worker: its channels become descriptors 3–6, and no
/// other descriptor survives the exec. Returns the child's pid and a pidfd.
inline std::error_code spawn_worker(const WorkerFds& fds, const WorkerParams& p, pid_t& pid_out,
                                    UniqueFd& pidfd_out) {
  auto& init = InitState::get();
  // Everything the child needs is built before fork: between fork and exec it may not allocate.
  std::vector<std::string> args = init.argv;
  if (args.empty()) args.push_back("procpool-worker");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  std::string marker = std::string(worker_env) + "=" + std::to_string(parent) + ":" +
                       std::to_string(p.slot) + ":" + std::to_string(p.maxtasks) + ":" +
                       std::to_string(p.has_init);
  std::vector<char*> envp;
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, worker_env, std::strlen(worker_env)) != 0) envp.push_back(*e);
  envp.push_back(marker.data());
  envp.push_back(nullptr);
  const int src[4] = {fds.task, fds.result, fds.control, fds.slots};

  BlockAllSignals blocked;
  pid_t pid = ::fork();
  if (pid == 0) {
    ChildSpec spec;
    spec.memory_limit = p.memory_limit;
    child::setup(spec, parent, nullptr, 0);
    // Move the channels out of the way, then into place; dup2 clears close-on-exec on them.
    int high[4];
    for (int i = 0; i < 4; ++i) {
      high[i] = ::fcntl(src[i], F_DUPFD_CLOEXEC, 100);
      if (high[i] < 0) child::die(124);
    }
    for (int i = 0; i < 4; ++i)
      if (::dup2(high[i], spawned_fd_base + i) < 0) child::die(124);
    ::syscall(SYS_close_range, spawned_fd_base + 4, ~0U, 0);
    ::execve("/proc/self/exe", argv.data(), envp.data());
    child::die(127);
  }
  if (pid < 0) return last_error();
  return adopt_child(pid, pid_out, pidfd_out);
}

/// In a spawned worker: reads the marker procpool::init looks for. False if this process is not
/// a spawned worker.
inline bool read_worker_marker(pid_t& parent, WorkerParams& p) {
  const char* v = std::getenv(worker_env);
  if (v == nullptr) return false;
  unsigned long long a = 0, b = 0, c = 0, d = 0;
  if (std::sscanf(v, "%llu:%llu:%llu:%llu", &a, &b, &c, &d) != 4) return false;
  parent = static_cast<pid_t>(a);
  p.slot = static_cast<std::uint32_t>(b);
  p.maxtasks = c;
  p.has_init = static_cast<std::uint32_t>(d);
  ::unsetenv(worker_env);  // the worker's own children are not workers
  return true;
}

/// True if this process was started as a worker (the marker is present), before init runs.
inline bool started_as_worker() {
  return std::getenv(worker_env) != nullptr;
}

// ---- forkserver: a small single-threaded process that forks workers on request -----------------

struct ForkRequest {
  WorkerParams params;
};
struct ForkReply {
  std::int64_t pid;  // > 0, or -errno
};
/// Sent on a pool's status socket when one of its workers exits.
struct ExitReport {
  std::int64_t pid;
  std::int64_t wstatus;
};

/// Sends `n` descriptors with a message.
inline std::error_code send_with_fds(int sock, const void* data, std::size_t len, const int* fds,
                                     int n) noexcept {
  iovec iov{const_cast<void*>(data), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)] = {};
  if (n > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<std::size_t>(n));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<std::size_t>(n));
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * static_cast<std::size_t>(n));
  }
  for (;;) {
    if (::sendmsg(sock, &msg, MSG_NOSIGNAL) >= 0) return {};
    if (errno != EINTR) return last_error();
  }
}

/// Receives a message with up to 8 descriptors; returns its size (0 at EOF, -1 on error).
inline std::ptrdiff_t recv_with_fds(int sock, void* data, std::size_t len, int* fds,
                                    int& n) noexcept {
  iovec iov{data, len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  n = 0;
  for (;;) {
    ssize_t r = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int k = static_cast<int>((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      std::memcpy(fds + n, CMSG_DATA(c), sizeof(int) * static_cast<std::size_t>(k));
      n += k;
    }
    return r;
  }
}

/// The fork server's loop: one request = five descriptors (task, result, control, slots,
/// status) and the worker's settings; it forks the worker, answers with its pid, and reports the
/// worker's exit status on that pool's status socket. It exits when the program does.
/// `run_worker` is the worker loop (given the worker's descriptors and settings).
[[noreturn]] inline void forkserver_main(int sock,
                                         int (*run_worker)(const WorkerFds&, const WorkerParams&)) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &chld, nullptr);
  int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  std::unordered_map<pid_t, int> status_fd;  // worker → its pool's status socket
  for (;;) {
    pollfd pfd[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(pfd, 2, -1) < 0) continue;
    if (pfd[1].revents) {
      signalfd_siginfo si;
      while (::read(sfd, &si, sizeof si) > 0) {
      }
      int st;
      pid_t pid;
      while ((pid = ::waitpid(-1, &st, WNOHANG)) > 0) {
        auto it = status_fd.find(pid);
        if (it == status_fd.end()) continue;
        ExitReport rep{pid, st};
        (void)send_with_fds(it->second, &rep, sizeof rep, nullptr, 0);
        ::close(it->second);
        status_fd.erase(it);
      }
    }
    if (!pfd[0].revents) continue;
    ForkRequest req{};
    int fds[8];
    int n = 0;
    auto r = recv_with_fds(sock, &req, sizeof req, fds, n);
    if (r <= 0) ::_exit(0);  // the program is gone
    if (r != sizeof req || n != 5) {
      for (int i = 0; i < n; ++i) ::close(fds[i]);
      ForkReply rep{-EINVAL};
      (void)send_with_fds(sock, &rep, sizeof rep, nullptr, 0);
      continue;
    }
    const pid_t server = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      ChildSpec spec;
      spec.memory_limit = req.params.memory_limit;
      const int to_close[3] = {sock, sfd, fds[4]};
      child::setup(spec, server, to_close, 3);
      for (auto& [p, fd] : status_fd) ::close(fd);
      WorkerFds w{fds[0], fds[1], fds[2], fds[3]};
      child::die(run_worker(w, req.params));
    }
    for (int i = 0; i < 4; ++i) ::close(fds[i]);
    ForkReply rep{pid > 0 ? pid : -errno};
    if (pid > 0) {
      status_fd[pid] = fds[4];
    } else {
      ::close(fds[4]);
    }
    (void)send_with_fds(sock, &rep, sizeof rep, nullptr, 0);
  }
}

/// Starts the fork server (called by procpool::init before the program makes threads).
inline std::error_code start_forkserver(int (*run_worker)(const WorkerFds&, const WorkerParams&)) {
  auto& init = InitState::get();
  UniqueFd mine, theirs;
  if (auto ec = make_seqpacket_pair(mine, theirs)) return ec;
  const pid_t parent = ::getpid();
  auto& reg = FdRegistry::get();
  pid_t pid;
  {
    // As in fork_child: the server keeps none of the library's descriptors but its socket.
    std::lock_guard lock(reg.mutex);
    pid = ::fork();
    if (pid == 0) {
      ChildSpec spec;
      spec.name = "procpool-server";  // at most 15 characters
      spec.keep[0] = theirs.get();
      child::setup(spec, parent, reg.fds.data(), reg.fds.size());
      reg.reset_in_child();
      forkserver_main(theirs.get(), run_worker);
    }
  }
  if (pid < 0) return last_error();
  init.forkserver = std::move(mine);
  init.forkserver_pid = pid;
  return {};
}

/// Asks the fork server for a worker. `status` is the pool's status socket (the server reports
/// the worker's exit there). Returns the worker's pid and a pidfd for it.
inline std::error_code forkserver_worker(const WorkerFds& fds, int status, const WorkerParams& p,
                                         pid_t& pid_out, UniqueFd& pidfd_out) {
  auto& init = InitState::get();
  std::lock_guard lock(init.forkserver_mutex);
  if (!init.forkserver) return std::make_error_code(std::errc::not_connected);
  ForkRequest req{p};
  const int send[5] = {fds.task, fds.result, fds.control, fds.slots, status};
  if (auto ec = send_with_fds(init.forkserver.get(), &req, sizeof req, send, 5)) return ec;
  ForkReply rep{};
  int none[8];
  int n = 0;
  auto r = recv_with_fds(init.forkserver.get(), &rep, sizeof rep, none, n);
  for (int i = 0; i < n; ++i) ::close(none[i]);
  if (r != sizeof rep) return std::make_error_code(std::errc::connection_reset);
  if (rep.pid <= 0) return {static_cast<int>(-rep.pid), std::generic_category()};
  if (auto ec = open_pidfd(static_cast<pid_t>(rep.pid), pidfd_out)) return ec;
  pid_out = static_cast<pid_t>(rep.pid);
  return {};
}

/// Reads exit reports from a pool's status socket until `pid`'s arrives (others are kept in
/// `seen`), waiting at most `timeout_ms`.
inline ExitStatus await_exit_report(int status_sock, pid_t pid,
                                    std::unordered_map<pid_t, int>& seen, int timeout_ms) {
  auto to_status = [](int st) {
    ExitStatus s;
    s.exited = true;
    if (WIFSIGNALED(st)) s.signal = WTERMSIG(st);
    if (WIFEXITED(st)) s.code = WEXITSTATUS(st);
    return s;
  };
  for (;;) {
    auto it = seen.find(pid);
    if (it != seen.end()) {
      int st = it->second;
      seen.erase(it);
      return to_status(st);
    }
    if (!wait_readable(status_sock, timeout_ms)) return {};
    ExitReport rep{};
    int fds[8];
    int n = 0;
    auto r = recv_with_fds(status_sock, &rep, sizeof rep, fds, n);
    for (int i = 0; i < n; ++i) ::close(fds[i]);
    if (r != sizeof rep) return {};
    seen[static_cast<pid_t>(rep.pid)] = static_cast<int>(rep.wstatus);
  }
}

/// The size of a memory file, to map a pool's status slots in a spawned worker.
inline std::size_t fd_size(int fd) {
  off_t end = ::lseek(fd, 0, SEEK_END);
  return end < 0 ? 0 : static_cast<std::size_t>(end);
}

}  // namespace procpool::detail::posix
