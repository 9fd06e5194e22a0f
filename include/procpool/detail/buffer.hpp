#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <utility>

#include <procpool/detail/config.hpp>
#include <procpool/detail/separate.hpp>

namespace procpool::detail {

/// Large buffers this process freed, kept for the next large frame: their pages are mapped
/// already, and copying into fresh pages (a fault and a clearing each) is several times slower
/// than into reused ones. Holds at most config::buffer_cache_bytes. Slots are claimed by
/// compare-and-swap, not under a lock, so a child forked while another thread held a slot
/// merely never sees that slot again: nothing in it can wait for a thread the fork left behind.
class BufferCache {
 public:
  static BufferCache& process() noexcept {
    static constinit BufferCache cache;
    return cache;
  }

  /// A block of at least `n` bytes and at most twice that, or nullptr; `cap` is its size.
  std::byte* take(std::size_t n, std::size_t& cap) noexcept {
    if (bytes_.load(std::memory_order_relaxed) == 0) return nullptr;
    for (Slot& s : slots_) {
      std::size_t c = s.cap.load(std::memory_order_relaxed);
      if (c < n || c / 2 > n) continue;
      std::uint32_t st = full;
      if (!s.state.compare_exchange_strong(st, busy, std::memory_order_acquire)) continue;
      c = s.cap.load(std::memory_order_relaxed);
      if (c < n || c / 2 > n) {  // replaced in between by one that does not fit
        s.state.store(full, std::memory_order_release);
        continue;
      }
      std::byte* p = s.p;
      s.cap.store(0, std::memory_order_relaxed);
      s.state.store(empty, std::memory_order_release);
      bytes_.fetch_sub(c, std::memory_order_relaxed);
      cap = c;
      return p;
    }
    return nullptr;
  }

  /// Keeps `p` (of `cap` bytes, from malloc) if it is large and there is room; false: the caller
  /// frees it.
  PROCPOOL_DECL bool keep(std::byte* p, std::size_t cap) noexcept;

  /// Frees every block kept (a process idle for a while gives its memory back).
  PROCPOOL_DECL void clear() noexcept;

  std::size_t bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }

 private:
  // Frees kept blocks smaller than `cap` until it would fit (a large block saves the most
  // faults); false if none was freed.
  PROCPOOL_DECL bool evict_smaller(std::size_t cap) noexcept;

  enum : std::uint32_t { empty, busy, full };
  struct Slot {
    std::atomic<std::uint32_t> state{empty};
    std::atomic<std::size_t> cap{0};  // read before claiming, to skip blocks that do not fit
    std::byte* p = nullptr;
  };
  Slot slots_[config::buffer_cache_slots];
  std::atomic<std::size_t> bytes_{0};
};

/// Where a Buffer may take its large blocks from instead of malloc: a memory file another
/// process maps, so that a large frame is encoded where its reader finds it, not copied there.
class BlockSource {
 public:
  /// A block of at least `n` bytes, or nullptr (malloc then); `cap` gets its size and `owner`
  /// holds it for as long as the buffer uses it.
  virtual std::byte* get(std::size_t n, std::size_t& cap, std::shared_ptr<void>& owner) = 0;

 protected:
  ~BlockSource() = default;
};

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
        cap_(std::exchange(o.cap_, 0)),
        owner_(std::move(o.owner_)),
        source_(std::exchange(o.source_, nullptr)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      cap_ = std::exchange(o.cap_, 0);
      owner_ = std::move(o.owner_);
      source_ = std::exchange(o.source_, nullptr);
    }
    return *this;
  }
  ~Buffer() { release(); }

  /// Blocks of config::shared_frame_min bytes and more come from `s` while it has them.
  void use_source(BlockSource* s) noexcept { source_ = s; }
  BlockSource* source() const noexcept { return source_; }
  /// What holds the block, if it came from a BlockSource (else null).
  const std::shared_ptr<void>& owner() const noexcept { return owner_; }
  /// Lets go of the block (the source stays).
  void reset() noexcept {
    release();
    data_ = nullptr;
    size_ = cap_ = 0;
  }

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return cap_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<const std::byte> span() const noexcept { return {data_, size_}; }

  void clear() noexcept { size_ = 0; }

  PROCPOOL_DECL void reserve(std::size_t n);

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
  // Moves the contents into the block `p` of `cap` bytes (held by `owner`, or malloc's).
  PROCPOOL_DECL void adopt(std::byte* p, std::size_t cap, std::shared_ptr<void> owner) noexcept;

  void release() noexcept {
    if (owner_) {
      owner_.reset();
    } else if (data_ != nullptr && !BufferCache::process().keep(data_, cap_)) {
      std::free(data_);
    }
  }

  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t cap_ = 0;
  std::shared_ptr<void> owner_;  // holds data_ if it came from source_
  BlockSource* source_ = nullptr;
};

}  // namespace procpool::detail

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/buffer_impl.hpp>
#endif
