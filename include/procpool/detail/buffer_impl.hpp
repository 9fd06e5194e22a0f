#pragma once
// The buffers' slow paths (growing, the cache of large blocks): inline in a header-only build,
// compiled once by src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <procpool/detail/buffer.hpp>

namespace procpool::detail {

PROCPOOL_DECL bool BufferCache::keep(std::byte* p, std::size_t cap) noexcept {
  if (cap < config::cached_buffer_min || cap > config::buffer_cache_bytes) return false;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (bytes_.fetch_add(cap, std::memory_order_relaxed) + cap <= config::buffer_cache_bytes) {
      for (Slot& s : slots_) {
        std::uint32_t st = empty;
        if (!s.state.compare_exchange_strong(st, busy, std::memory_order_acquire)) continue;
        s.p = p;
        s.cap.store(cap, std::memory_order_relaxed);
        s.state.store(full, std::memory_order_release);
        return true;
      }
    }
    bytes_.fetch_sub(cap, std::memory_order_relaxed);
    if (attempt == 0 && !evict_smaller(cap)) return false;
  }
  return false;
}

PROCPOOL_DECL void BufferCache::clear() noexcept {
  for (Slot& s : slots_) {
    std::uint32_t st = full;
    if (!s.state.compare_exchange_strong(st, busy, std::memory_order_acquire)) continue;
    std::free(s.p);
    bytes_.fetch_sub(s.cap.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
    s.state.store(empty, std::memory_order_release);
  }
}

PROCPOOL_DECL bool BufferCache::evict_smaller(std::size_t cap) noexcept {
  bool freed = false;
  for (Slot& s : slots_) {
    if (freed && bytes_.load(std::memory_order_relaxed) + cap <= config::buffer_cache_bytes) break;
    if (s.cap.load(std::memory_order_relaxed) >= cap) continue;
    std::uint32_t st = full;
    if (!s.state.compare_exchange_strong(st, busy, std::memory_order_acquire)) continue;
    std::free(s.p);
    bytes_.fetch_sub(s.cap.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
    s.state.store(empty, std::memory_order_release);
    freed = true;
  }
  return freed;
}

PROCPOOL_DECL void Buffer::reserve(std::size_t n) {
  if (n <= cap_) return;
  // Doubling keeps appends amortized; a larger request is taken exactly, not rounded up.
  std::size_t cap = cap_ < 128 ? 256 : cap_ * 2;
  if (cap < n) cap = n;
  if (source_ && cap >= config::shared_frame_min) {
    std::size_t got = 0;
    std::shared_ptr<void> owner;
    if (std::byte* p = source_->get(cap, got, owner)) {
      adopt(p, got, std::move(owner));
      return;
    }
  }
  if (cap >= config::cached_buffer_min) {
    std::size_t got = 0;
    if (std::byte* p = BufferCache::process().take(cap, got)) {
      adopt(p, got, nullptr);
      return;
    }
  }
  if (owner_) {  // out of a source's block, into malloc's
    auto* p = static_cast<std::byte*>(std::malloc(cap));
    if (p == nullptr) throw std::bad_alloc();
    adopt(p, cap, nullptr);
    return;
  }
  auto* p = static_cast<std::byte*>(std::realloc(data_, cap));
  if (p == nullptr) throw std::bad_alloc();
  data_ = p;
  cap_ = cap;
}

PROCPOOL_DECL void Buffer::adopt(std::byte* p, std::size_t cap,
                                 std::shared_ptr<void> owner) noexcept {
  if (size_ > 0) std::memcpy(p, data_, size_);
  release();
  data_ = p;
  cap_ = cap;
  owner_ = std::move(owner);
}

}  // namespace procpool::detail
