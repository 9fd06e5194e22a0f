#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <utility>

namespace procpool::detail {

/// A growable byte buffer that does not zero what it grows into: encoders write every byte they
/// reserve, and a large frame should be copied once, not cleared first.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        cap_(std::exchange(o.cap_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      cap_ = std::exchange(o.cap_, 0);
    }
    return *this;
  }
  ~Buffer() { std::free(data_); }

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return cap_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<const std::byte> span() const noexcept { return {data_, size_}; }

  void clear() noexcept { size_ = 0; }

  void reserve(std::size_t n) {
    if (n <= cap_) return;
    // Doubling keeps appends amortized; a larger request is taken exactly, not rounded up.
    std::size_t cap = cap_ < 128 ? 256 : cap_ * 2;
    if (cap < n) cap = n;
    auto* p = static_cast<std::byte*>(std::realloc(data_, cap));
    if (p == nullptr) throw std::bad_alloc();
    data_ = p;
    cap_ = cap;
  }

  /// Extends the buffer by `n` uninitialized bytes and returns where they start.
  std::byte* grow(std::size_t n) {
    if (n > cap_ - size_) reserve(size_ + n);
    std::byte* p = data_ + size_;
    size_ += n;
    return p;
  }

  void append(const void* src, std::size_t n) {
    if (n == 0) return;
    // No object is larger; saying so also spares optimizers a false "overflow" warning.
    if (n > static_cast<std::size_t>(PTRDIFF_MAX)) throw std::bad_alloc();
    std::memcpy(grow(n), src, n);
  }

  /// Sets the size; bytes past the old size are uninitialized.
  void resize(std::size_t n) {
    reserve(n);
    size_ = n;
  }

  /// Drops the first `n` bytes.
  void consume(std::size_t n) noexcept {
    if (n >= size_) {
      size_ = 0;
      return;
    }
    std::memmove(data_, data_ + n, size_ - n);
    size_ -= n;
  }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t cap_ = 0;
};

}  // namespace procpool::detail
