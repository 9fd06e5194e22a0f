#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <procpool/detail/posix/error.hpp>

namespace procpool::detail::posix {

/// Every descriptor the library holds. A fork-started worker closes all of them but its own
/// channels, so it never keeps another pool's pipe open (which would hide the end-of-file that
/// tells a worker its pool closed, or a Pipe that its peer left). Descriptors are created, closed
/// and forked under `mutex`, so none exists, even for an instant, without the registry knowing.
/// The program's own descriptors are not listed: a fork-started worker inherits them.
struct FdRegistry {
  std::mutex mutex;
  std::vector<int> fds;  // guarded by mutex

  static FdRegistry& get() {
    // Never destroyed: a pool held by a static object made before this one closes its
    // descriptors after this one's destructor would have run.
    static FdRegistry* r = new FdRegistry;
    return *r;
  }
  /// In a child forked with `mutex` held: the parent's list is not the child's, and the lock
  /// must be free for a task that makes descriptors (or a pool) of its own.
  void reset_in_child() noexcept {
    new (&mutex) std::mutex;
    fds.clear();
  }
  void remove_locked(int fd) noexcept {
    for (auto& f : fds) {
      if (f != fd) continue;
      f = fds.back();
      fds.pop_back();
      return;
    }
  }
};

/// A move-only owner of a descriptor; -1 means none. One made by the functions below is
/// registered (see FdRegistry); one made from a bare number (a worker's inherited channel) is not.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), registered_(std::exchange(o.registered_, false)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
      registered_ = std::exchange(o.registered_, false);
    }
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  void reset() noexcept {
    if (fd_ >= 0) {
      if (registered_) {
        // Closed under the lock: a fork between unlisting and closing would hand the child a
        // descriptor it does not know to close.
        auto& reg = FdRegistry::get();
        std::lock_guard lock(reg.mutex);
        reg.remove_locked(fd_);
        ::close(fd_);
      } else {
        ::close(fd_);
      }
    }
    fd_ = -1;
    registered_ = false;
  }
  /// Gives up ownership (for a child that keeps the descriptor past exec or fork).
  int release() noexcept {
    if (registered_ && fd_ >= 0) {
      auto& reg = FdRegistry::get();
      std::lock_guard lock(reg.mutex);
      reg.remove_locked(fd_);
    }
    registered_ = false;
    return std::exchange(fd_, -1);
  }
  bool registered() const noexcept { return registered_; }

  /// Owns `fd`, which the caller has just listed in the registry under its lock.
  static UniqueFd adopt_registered(int fd) noexcept {
    UniqueFd u(fd);
    u.registered_ = true;
    return u;
  }

 private:
  int fd_ = -1;
  bool registered_ = false;
};

/// Creates up to two descriptors with `make(int* fds)` (a system call's result: -1 with errno on
/// failure) and lists them in the registry in the same step, under its lock.
template <class Make>
std::error_code create_registered(Make&& make, UniqueFd& first,
                                  UniqueFd* second = nullptr) noexcept {
  first.reset();
  if (second) second->reset();
  int fds[2] = {-1, -1};
  {
    auto& reg = FdRegistry::get();
    std::lock_guard lock(reg.mutex);
    try {
      reg.fds.reserve(reg.fds.size() + 2);
    } catch (...) {
      return std::make_error_code(std::errc::not_enough_memory);
    }
    if (make(fds) < 0) return last_error();
    reg.fds.push_back(fds[0]);
    if (second) reg.fds.push_back(fds[1]);
  }
  first = UniqueFd::adopt_registered(fds[0]);
  if (second) *second = UniqueFd::adopt_registered(fds[1]);
  return {};
}

struct PipeFds {
  UniqueFd read_end;
  UniqueFd write_end;
};

/// A close-on-exec pipe; `nonblock` applies to both ends.
inline std::error_code make_pipe(PipeFds& out, bool nonblock) noexcept {
  return create_registered(
      [nonblock](int* fds) { return ::pipe2(fds, O_CLOEXEC | (nonblock ? O_NONBLOCK : 0)); },
      out.read_end, &out.write_end);
}

/// A close-on-exec pair of connected datagram-boundary sockets (for passing descriptors).
inline std::error_code make_seqpacket_pair(UniqueFd& a, UniqueFd& b) noexcept {
  return create_registered(
      [](int* fds) { return ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds); }, a, &b);
}

/// Sends a small fixed message and, when `fd` >= 0, a duplicate of that descriptor with it.
inline std::error_code send_message(int sock, const void* data, std::size_t n, int fd) noexcept {
  iovec iov{const_cast<void*>(data), n};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    if (::sendmsg(sock, &msg, MSG_NOSIGNAL) >= 0) return {};
    if (errno != EINTR) return last_error();
  }
}

/// Receives one message sent by `send_message` without waiting; `fd_out` gets the descriptor
/// (close-on-exec, registered) or -1. Returns the message size, 0 at EOF, -1 with `ec` set
/// (EAGAIN when nothing is there yet).
inline std::ptrdiff_t recv_message(int sock, void* data, std::size_t n, UniqueFd& fd_out,
                                   std::error_code& ec) noexcept {
  iovec iov{data, n};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  fd_out.reset();
  ssize_t r = -1;
  // The kernel makes the received descriptor inside recvmsg: list it before a fork can copy it.
  auto created = create_registered(
      [&](int* fds) {
        for (;;) {
          r = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
          if (r >= 0 || errno != EINTR) break;
        }
        if (r < 0) return -1;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
          if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            std::memcpy(&fds[0], CMSG_DATA(c), sizeof(int));
            return 0;
          }
        }
        errno = ENOMSG;  // a message with no descriptor: nothing to list
        return -1;
      },
      fd_out);
  if (r < 0) {
    ec = created;
    return -1;
  }
  return r;
}

inline std::error_code set_nonblocking(int fd, bool on) noexcept {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return last_error();
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, flags) != 0) return last_error();
  return {};
}

/// Grows a pipe's kernel buffer; large frames then move in fewer wake-ups. Best effort: the
/// system limit (/proc/sys/fs/pipe-max-size) may refuse, which only costs speed.
inline void grow_pipe(int fd, int bytes) noexcept {
  (void)::fcntl(fd, F_SETPIPE_SZ, bytes);
}

/// Reads what is available, up to `n` bytes. Returns the count, 0 at EOF, -1 with `ec` set
/// (EAGAIN when a non-blocking descriptor has nothing).
inline std::ptrdiff_t read_some(int fd, void* p, std::size_t n, std::error_code& ec) noexcept {
  for (;;) {
    ssize_t r = ::read(fd, p, n);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    ec = last_error();
    return -1;
  }
}

/// Writes up to `count` buffers; returns bytes written or -1 with `ec` set.
inline std::ptrdiff_t write_some(int fd, const iovec* iov, int count,
                                 std::error_code& ec) noexcept {
  for (;;) {
    ssize_t r = ::writev(fd, iov, count);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    ec = last_error();
    return -1;
  }
}

/// A piece of memory to write, without the system's iovec (which stays in here).
struct IoSlice {
  const std::byte* data;
  std::size_t size;
};

/// Writes up to `count` (at most 64) slices in one call; returns bytes written or -1 with `ec` set.
inline std::ptrdiff_t write_slices(int fd, const IoSlice* s, int count,
                                   std::error_code& ec) noexcept {
  iovec iov[64];
  if (count > 64) count = 64;
  for (int i = 0; i < count; ++i) iov[i] = {const_cast<std::byte*>(s[i].data), s[i].size};
  return write_some(fd, iov, count, ec);
}

/// Puts all of `n` bytes through `op(fd, p, n)` (write or send), retrying on EINTR and short
/// writes, and waiting for room when the descriptor is non-blocking; while it waits, `alive` (a
/// pidfd, if >= 0) turning readable ends the write with `broken_pipe`.
template <class Op>
std::error_code put_all(int fd, const void* p, std::size_t n, Op op, int alive = -1) noexcept {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t r = op(fd, c, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd pfd[2] = {{fd, POLLOUT, 0}, {alive, POLLIN, 0}};
        if (::poll(pfd, alive >= 0 ? 2 : 1, -1) > 0 && alive >= 0 && pfd[1].revents != 0)
          return std::make_error_code(std::errc::broken_pipe);
        continue;
      }
      return last_error();
    }
    c += r;
    n -= static_cast<std::size_t>(r);
  }
  return {};
}

/// Writes all of `n` bytes to a descriptor, retrying on EINTR and short writes.
inline std::error_code write_all(int fd, const void* p, std::size_t n) noexcept {
  return put_all(fd, p, n, [](int f, const char* c, std::size_t k) { return ::write(f, c, k); });
}

/// Writes all of `n` bytes to the non-blocking `fd` while the process of pidfd `alive` lives:
/// a reader that dies without closing every read end (the writer may hold one) fails the write
/// with `broken_pipe` instead of blocking it for ever.
inline std::error_code write_all_while_alive(int fd, const void* p, std::size_t n,
                                             int alive) noexcept {
  return put_all(
      fd, p, n, [](int f, const char* c, std::size_t k) { return ::write(f, c, k); }, alive);
}

/// Waits until `a` or `b` (if >= 0) is readable; returns which (a's bit 1, b's bit 2), or 0
/// after `timeout_ms` (< 0: no limit).
inline int wait_either(int a, int b, int timeout_ms = -1) noexcept {
  pollfd pfd[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  for (;;) {
    int r = ::poll(pfd, b >= 0 ? 2 : 1, timeout_ms);
    if (r > 0) return (pfd[0].revents ? 1 : 0) | (b >= 0 && pfd[1].revents ? 2 : 0);
    if (r == 0) return 0;
    if (errno != EINTR) return 1;
  }
}

/// Waits until `fd` is readable (or hung up). `timeout_ms` < 0 waits forever. Returns false on
/// timeout.
inline bool wait_readable(int fd, int timeout_ms) noexcept {
  pollfd pfd{fd, POLLIN, 0};
  for (;;) {
    int r = ::poll(&pfd, 1, timeout_ms);
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return true;  // let the read report the error
  }
}

/// If `fd` is a pipe, waits (at most `limit_ms`) until its reader has taken what was written to
/// it. A process about to be killed by its launcher calls this so that its last words, which
/// the launcher reads from that pipe, are not lost with it.
inline void wait_pipe_drained(int fd, int limit_ms) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return;
  for (int waited = 0; waited < limit_ms; ++waited) {
    int unread = 0;
    if (::ioctl(fd, FIONREAD, &unread) != 0 || unread <= 0) return;
    ::poll(nullptr, 0, 1);
  }
}

inline std::error_code make_eventfd(UniqueFd& out) noexcept {
  return create_registered(
      [](int* fds) { return fds[0] = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }, out);
}

inline void eventfd_signal(int fd) noexcept {
  std::uint64_t one = 1;
  while (::write(fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

inline void eventfd_drain(int fd) noexcept {
  std::uint64_t v;
  while (::read(fd, &v, sizeof v) < 0 && errno == EINTR) {
  }
}

/// An epoll set whose events carry a 64-bit tag.
class Epoll {
 public:
  std::error_code open() noexcept {
    return create_registered([](int* fds) { return fds[0] = ::epoll_create1(EPOLL_CLOEXEC); }, fd_);
  }
  std::error_code add(int fd, std::uint32_t events, std::uint64_t tag) noexcept {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (::epoll_ctl(fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return last_error();
    return {};
  }
  std::error_code modify(int fd, std::uint32_t events, std::uint64_t tag) noexcept {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (::epoll_ctl(fd_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) return last_error();
    return {};
  }
  void remove(int fd) noexcept { (void)::epoll_ctl(fd_.get(), EPOLL_CTL_DEL, fd, nullptr); }

  struct Event {
    std::uint64_t tag;
    std::uint32_t events;
  };
  /// Waits up to `timeout_ms` (-1: forever); returns the number of events written to `out`.
  int wait(Event* events, int max, int timeout_ms) noexcept {
    epoll_event evs[64];
    if (max > 64) max = 64;
    int n = ::epoll_wait(fd_.get(), evs, max, timeout_ms);
    if (n < 0) return 0;  // EINTR: the caller loops anyway
    for (int i = 0; i < n; ++i) events[i] = {evs[i].data.u64, evs[i].events};
    return n;
  }
  static constexpr std::uint32_t in = EPOLLIN;
  static constexpr std::uint32_t out = EPOLLOUT;
  /// Reported whatever was asked for: the peer closed its end, or the descriptor failed.
  static constexpr std::uint32_t hangup = EPOLLHUP | EPOLLERR;

 private:
  UniqueFd fd_;
};

}  // namespace procpool::detail::posix
