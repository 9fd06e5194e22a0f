#pragma once

#include <cstddef>
#include <system_error>
#include <utility>

#include <sys/mman.h>

#include <procpool/detail/posix/error.hpp>

namespace procpool::detail::posix {

/// An anonymous shared mapping: it has no name anywhere (nothing in /dev/shm to leak) and is
/// shared with every child forked after it was made.
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

  std::error_code map(std::size_t n) noexcept {
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return last_error();
    reset();
    p_ = p;
    n_ = n;
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

}  // namespace procpool::detail::posix
