#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <system_error>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <procpool/detail/posix/error.hpp>
#include <procpool/detail/posix/fd.hpp>

namespace procpool::detail::posix {

/// A close-on-exec pair of connected byte-stream sockets: a duplex channel whose ends can be
/// handed to other processes.
inline std::error_code make_stream_pair(UniqueFd& a, UniqueFd& b) noexcept {
  return create_registered(
      [](int* fds) { return ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }, a, &b);
}

/// Sends all of `n` bytes on a socket, waiting while it is full. A peer that is gone gives
/// EPIPE or ECONNRESET, never SIGPIPE.
inline std::error_code send_all(int fd, const void* p, std::size_t n) noexcept {
  return put_all(fd, p, n,
                 [](int f, const char* c, std::size_t k) { return ::send(f, c, k, MSG_NOSIGNAL); });
}

/// Receives what is there, up to `n` bytes, without waiting. Returns the count, 0 at EOF, -1 with
/// `ec` set (EAGAIN when nothing is there yet).
inline std::ptrdiff_t recv_nowait(int fd, void* p, std::size_t n, std::error_code& ec) noexcept {
  for (;;) {
    ssize_t r = ::recv(fd, p, n, MSG_DONTWAIT);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    ec = last_error();
    return -1;
  }
}

/// Sends `sig` to the process a pidfd names: unlike kill(pid), it cannot reach another process
/// that reused the pid.
inline std::error_code pidfd_signal(int pidfd, int sig) noexcept {
  if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0) return last_error();
  return {};
}

inline constexpr int sig_term = SIGTERM;
inline constexpr int sig_kill = SIGKILL;

}  // namespace procpool::detail::posix
