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

/// A growable memory file mapped through a reservation: the mapping may be much larger than the
/// file (only pages below the file's end are touched), so the file grows in place and every
/// process sees the new bytes at the same offsets without mapping again.
class ReservedMapping {
 public:
  ReservedMapping() = default;
  ReservedMapping(const ReservedMapping&) = delete;
  ReservedMapping& operator=(const ReservedMapping&) = delete;
  ~ReservedMapping() { reset(); }

  /// Maps `reserve` bytes of address space over the memory file `fd`.
  std::error_code map(int fd, std::size_t reserve) noexcept {
    void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return last_error();
    reset();
    p_ = static_cast<std::byte*>(p);
    n_ = reserve;
    return {};
  }

  /// Enlarges the reservation to `reserve` bytes; the mapping may move (the caller holds every
  /// user of the old address off).
  std::error_code grow(std::size_t reserve) noexcept {
    void* p = ::mremap(p_, n_, reserve, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) return last_error();
    p_ = static_cast<std::byte*>(p);
    n_ = reserve;
    return {};
  }

  void reset() noexcept {
    if (p_) ::munmap(p_, n_);
    p_ = nullptr;
    n_ = 0;
  }
  std::byte* get() const noexcept { return p_; }
  std::size_t size() const noexcept { return n_; }

 private:
  std::byte* p_ = nullptr;
  std::size_t n_ = 0;
};

/// An empty memory file with no name anywhere (nothing to leak in /dev/shm).
inline std::error_code make_heap_file(UniqueFd& out) noexcept {
  int fd = ::memfd_create("procpool", MFD_CLOEXEC);
  if (fd < 0) return last_error();
  out = UniqueFd(fd);
  return {};
}

/// Gives the bytes [offset, offset + n) of the memory file real memory now, growing the file if
/// needed: running out is an error here, not a SIGBUS on first touch later.
inline std::error_code commit_range(int fd, std::size_t offset, std::size_t n) noexcept {
  int r;
  do r = ::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(n));
  while (r != 0 && errno == EINTR);
  return r == 0 ? std::error_code{} : last_error();
}

/// Returns the memory behind [offset, offset + n) to the system; the bytes read as zero after.
inline std::error_code release_range(int fd, std::size_t offset, std::size_t n) noexcept {
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(n)) != 0)
    return last_error();
  return {};
}

/// Makes the file `n` bytes long without giving it memory (a hole).
inline std::error_code extend_file(int fd, std::size_t n) noexcept {
  if (::ftruncate(fd, static_cast<off_t>(n)) != 0) return last_error();
  return {};
}

}  // namespace procpool::detail::posix
