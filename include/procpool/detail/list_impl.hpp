#pragma once
// Definitions of ByteList's operations (the untyped engine of procpool::List): inline in a
// header-only build, compiled once by src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <procpool/list.hpp>

namespace procpool::detail {

PROCPOOL_DECL void ByteList::append(std::span<const std::byte> items) {
  HeapLock l(*h_);
  HeapTxn t(*h_);
  std::uint64_t n = h_->root(count_root);
  for (std::size_t pos = 0; pos < items.size(); ++n) {
    std::uint64_t len;
    std::memcpy(&len, items.data() + pos, 8);
    pos += 8;
    const std::uint64_t item = h_->alloc(static_cast<std::size_t>(len));
    std::memcpy(h_->payload(item), items.data() + pos, static_cast<std::size_t>(len));
    pos += static_cast<std::size_t>(len);
    const std::uint64_t c = slot_chunk(n);
    h_->words(c)[n % chunk] = item;
  }
  h_->set_root(count_root, n);
  t.commit();
}

PROCPOOL_DECL void ByteList::push(std::span<const std::byte> item) {
  HeapLock l(*h_);
  HeapTxn t(*h_);
  const std::uint64_t n = h_->root(count_root);
  const std::uint64_t off = h_->alloc(item.size());
  std::memcpy(h_->payload(off), item.data(), item.size());
  const std::uint64_t c = slot_chunk(n);
  h_->words(c)[n % chunk] = off;
  h_->set_root(count_root, n + 1);
  t.commit();
}

PROCPOOL_DECL bool ByteList::get(std::uint64_t i, Buffer& out, std::uint64_t& size) {
  HeapLock l(*h_);
  size = h_->root(count_root);
  if (i >= size) return false;
  copy_out(item_at(i), out);
  return true;
}

PROCPOOL_DECL bool ByteList::set(std::uint64_t i, std::span<const std::byte> item,
                                 std::uint64_t& size) {
  HeapLock l(*h_);
  size = h_->root(count_root);
  if (i >= size) return false;
  HeapTxn t(*h_);
  const std::uint64_t off = h_->alloc(item.size());
  std::memcpy(h_->payload(off), item.data(), item.size());
  const std::uint64_t c = chunk_of(i);
  const std::uint64_t old = h_->words(c)[i % chunk];
  h_->set_heap(c + 8 + (i % chunk) * 8, off);
  h_->free(old);
  t.commit();
  return true;
}

PROCPOOL_DECL bool ByteList::pop(Buffer& out) {
  HeapLock l(*h_);
  const std::uint64_t n = h_->root(count_root);
  if (n == 0) return false;
  HeapTxn t(*h_);
  const std::uint64_t off = item_at(n - 1);
  copy_out(off, out);
  h_->free(off);
  h_->set_root(count_root, n - 1);
  t.commit();
  return true;
}

PROCPOOL_DECL void ByteList::copy_all(Buffer& out) {
  HeapLock l(*h_);
  const std::uint64_t n = h_->root(count_root);
  out.clear();
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t off = item_at(i);
    const std::uint64_t len = h_->length(off);
    out.append(&len, 8);
    out.append(h_->payload(off), static_cast<std::size_t>(len));
  }
}

PROCPOOL_DECL void ByteList::copy_out(std::uint64_t off, Buffer& out) const {
  const std::size_t len = h_->length(off);
  out.resize(len);
  std::memcpy(out.data(), h_->payload(off), len);
}

PROCPOOL_DECL std::uint64_t ByteList::slot_chunk(std::uint64_t n) {
  const std::uint64_t c = n / chunk;
  const std::uint64_t have = h_->root(chunks_root);
  if (c < have) return h_->words(h_->root(dir_root))[c];
  std::uint64_t cap = h_->root(dir_cap_root);
  if (c == cap) {
    // The directory is full: a twice larger copy replaces it.
    const std::uint64_t new_cap = cap == 0 ? 16 : cap * 2;
    const std::uint64_t dir = h_->alloc(static_cast<std::size_t>(new_cap * 8));
    const std::uint64_t old = h_->root(dir_root);
    if (cap) std::memcpy(h_->payload(dir), h_->payload(old), static_cast<std::size_t>(cap * 8));
    h_->set_root(dir_root, dir);
    h_->set_root(dir_cap_root, new_cap);
    if (old) h_->free(old);
  }
  const std::uint64_t block = h_->alloc(static_cast<std::size_t>(chunk * 8));
  h_->words(h_->root(dir_root))[c] = block;
  h_->set_root(chunks_root, c + 1);
  return block;
}
}  // namespace procpool::detail
