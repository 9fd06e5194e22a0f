#pragma once
// Definitions of ByteDict's operations (the untyped engine of procpool::Dict): inline in a
// header-only build, compiled once by src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <procpool/dict.hpp>

namespace procpool::detail {

PROCPOOL_DECL auto ByteDict::find(std::span<const std::byte> key) const -> Found {
  Found f;
  f.hash = hash_bytes(key.data(), key.size());
  const std::uint64_t slots = h_->root(slots_root);
  if (slots == 0) return f;
  const std::uint64_t* index = h_->words(h_->root(index_root));
  const std::uint64_t* entries = h_->words(h_->root(entries_root));
  const std::uint64_t mask = slots - 1;
  bool have_free = false;
  for (std::uint64_t pos = f.hash & mask;; pos = (pos + 1) & mask) {
    const std::uint64_t s = index[pos];
    if (s == 0) {
      if (!have_free) f.slot = pos;
      return f;
    }
    if (s == dummy) {
      if (!have_free) f.slot = pos;
      have_free = true;
      continue;
    }
    const std::uint64_t* e = entries + (s - 1) * 2;
    if (e[0] == f.hash && same_key(e[1], key)) {
      f.slot = pos;
      f.entry = s;
      return f;
    }
  }
}

PROCPOOL_DECL void ByteDict::value_of(const Found& f, Buffer& out) const {
  const std::uint64_t kv = entry_kv(f.entry);
  const std::size_t klen = key_length(kv);
  const std::size_t vlen = h_->length(kv) - 8 - klen;
  out.resize(vlen);
  std::memcpy(out.data(), h_->payload(kv) + 8 + klen, vlen);
}

PROCPOOL_DECL void ByteDict::put(Found f, std::span<const std::byte> key,
                                 std::span<const std::byte> value) {
  HeapTxn t(*h_);
  if (f.entry != 0) {
    const std::uint64_t kv = make_kv(key, value);
    const std::uint64_t where = h_->root(entries_root) + 8 + ((f.entry - 1) * 2 + 1) * 8;
    const std::uint64_t old = entry_kv(f.entry);
    h_->set_heap(where, kv);
    h_->free(old);
    t.commit();
    return;
  }
  if (h_->root(used_root) == h_->root(cap_root)) {
    rebuild(h_->root(count_root) + 1);
    f = find(key);
  }
  const std::uint64_t kv = make_kv(key, value);
  const std::uint64_t used = h_->root(used_root);
  std::uint64_t* e = h_->words(h_->root(entries_root)) + used * 2;
  e[0] = f.hash;  // past `used`: not reachable before the commit
  e[1] = kv;
  h_->set_heap(h_->root(index_root) + 8 + f.slot * 8, used + 1);
  h_->set_root(used_root, used + 1);
  h_->set_root(count_root, h_->root(count_root) + 1);
  t.commit();
}

PROCPOOL_DECL void ByteDict::remove(const Found& f) {
  HeapTxn t(*h_);
  const std::uint64_t kv = entry_kv(f.entry);
  h_->set_heap(h_->root(index_root) + 8 + f.slot * 8, dummy);
  h_->set_heap(h_->root(entries_root) + 8 + ((f.entry - 1) * 2 + 1) * 8, 0);
  h_->free(kv);
  h_->set_root(count_root, h_->root(count_root) - 1);
  t.commit();
}

PROCPOOL_DECL void ByteDict::copy_all(Buffer& out) const {
  out.clear();
  const std::uint64_t used = h_->root(used_root);
  for (std::uint64_t i = 0; i < used; ++i) {
    const std::uint64_t kv = entry_kv(i + 1);
    if (kv == 0) continue;
    const std::uint64_t klen = key_length(kv);
    const std::uint64_t vlen = h_->length(kv) - 8 - klen;
    out.append(&klen, 8);
    out.append(h_->payload(kv) + 8, static_cast<std::size_t>(klen));
    out.append(&vlen, 8);
    out.append(h_->payload(kv) + 8 + klen, static_cast<std::size_t>(vlen));
  }
}

PROCPOOL_DECL std::uint64_t ByteDict::make_kv(std::span<const std::byte> key,
                                              std::span<const std::byte> value) {
  const std::uint64_t kv = h_->alloc(8 + key.size() + value.size());
  const std::uint64_t klen = key.size();
  std::byte* p = h_->payload(kv);
  std::memcpy(p, &klen, 8);
  std::memcpy(p + 8, key.data(), key.size());
  std::memcpy(p + 8 + key.size(), value.data(), value.size());
  return kv;
}

PROCPOOL_DECL void ByteDict::rebuild(std::uint64_t need) {
  std::uint64_t cap = 8;
  while (cap < need * 2) cap *= 2;
  const std::uint64_t slots = cap * 2;  // load stays under 1/2
  const std::uint64_t entries = h_->alloc(static_cast<std::size_t>(cap * 16));
  const std::uint64_t index = h_->alloc(static_cast<std::size_t>(slots * 8));
  std::memset(h_->payload(index), 0, static_cast<std::size_t>(slots * 8));
  const std::uint64_t old_entries = h_->root(entries_root);
  const std::uint64_t old_index = h_->root(index_root);
  const std::uint64_t used = h_->root(used_root);
  std::uint64_t* to = h_->words(entries);
  std::uint64_t* idx = h_->words(index);
  std::uint64_t n = 0;
  for (std::uint64_t i = 0; i < used; ++i) {
    const std::uint64_t* e = h_->words(old_entries) + i * 2;
    if (e[1] == 0) continue;
    to[n * 2] = e[0];
    to[n * 2 + 1] = e[1];
    std::uint64_t pos = e[0] & (slots - 1);
    while (idx[pos] != 0) pos = (pos + 1) & (slots - 1);
    idx[pos] = ++n;
  }
  h_->set_root(entries_root, entries);
  h_->set_root(index_root, index);
  h_->set_root(slots_root, slots);
  h_->set_root(cap_root, cap);
  h_->set_root(used_root, n);
  if (old_entries) h_->free(old_entries);
  if (old_index) h_->free(old_index);
}
}  // namespace procpool::detail
