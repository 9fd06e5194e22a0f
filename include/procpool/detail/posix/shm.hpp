#pragma once

#include <cstddef>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <procpool/detail/posix/error.hpp>
#include <procpool/detail/posix/fd.hpp>

namespace procpool::detail::posix {

/// A shared mapping of a memory file (see `make_memfd`): it has no name anywhere (nothing in
/// /dev/shm to leak), and a child maps it through the descriptor it is given.
class SharedMapping {
 public:
  SharedMapping() = default;
  SharedMapping(SharedMapping&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  SharedMapping& operator=(SharedMapping&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~SharedMapping() { reset(); }

  /// Maps `n` bytes of the shared-memory file `fd` (see `make_memfd`).
  std::error_code map_fd(int fd, std::size_t n) noexcept {
    void* p = ::mmap(nullptr, n == 0 ? 1 : n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return last_error();
    reset();
    p_ = p;
    n_ = n == 0 ? 1 : n;
    return {};
  }

  void reset() noexcept {
    if (p_) ::munmap(p_, n_);
    p_ = nullptr;
    n_ = 0;
  }
  void* get() const noexcept { return p_; }
  std::size_t size() const noexcept { return n_; }

 private:
  void* p_ = nullptr;
  std::size_t n_ = 0;
};

/// A zero-filled shared-memory file of `n` bytes with no name in any file system: nothing can
/// be left behind in /dev/shm, whatever happens to the processes that use it.
inline std::error_code make_memfd(std::size_t n, UniqueFd& out) noexcept {
  UniqueFd owned;
  if (auto ec = create_registered(
          [](int* fds) { return fds[0] = ::memfd_create("procpool", MFD_CLOEXEC); }, owned))
    return ec;
  if (::ftruncate(owned.get(), static_cast<off_t>(n == 0 ? 1 : n)) != 0) return last_error();
  out = std::move(owned);
  return {};
}

/// The size of the file behind `fd`.
inline std::error_code file_size(int fd, std::size_t& out) noexcept {
  off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) return last_error();
  out = static_cast<std::size_t>(end);
  return {};
}

}  // namespace procpool::detail::posix
