#pragma once

#include <procpool/detail/cxx20.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <procpool/codec.hpp>
#include <procpool/detail/shared_heap.hpp>
#include <procpool/queue.hpp>

namespace procpool {

namespace detail {

/// The untyped engine of `Dict<K, V>`, laid out as CPython's compact dict: entries (hash, block
/// with the encoded key and value) appended in insertion order, and an open-addressing index of
/// entry numbers (linear probing) over them. Erasing frees the key and value at once and leaves
/// a hole in the entries; when the entries are full, both arrays are rebuilt without the holes
/// (fresh blocks, swapped in by the commit), so deleted space is reclaimed.
///
/// Roots: 0 = live count, 1 = index block, 2 = index slots (a power of two), 3 = entries block,
/// 4 = entries capacity, 5 = entries used (holes included).
class ByteDict {
 public:
  enum : std::size_t { count_root, index_root, slots_root, entries_root, cap_root, used_root };
  static constexpr std::uint64_t dummy = ~std::uint64_t{0};  // an index slot whose entry left

  explicit ByteDict(std::uint32_t tag) : h_(std::make_shared<SharedHeap>(kind_dict, tag)) {}
  explicit ByteDict(std::shared_ptr<SharedHeap> h) : h_(std::move(h)) {}

  SharedHeap& heap() noexcept { return *h_; }

  /// Where a key is, or where it would go (lock held).
  struct Found {
    std::uint64_t hash = 0;
    std::uint64_t slot = 0;   // index slot of the key, or the one to fill
    std::uint64_t entry = 0;  // entry number + 1; 0 if absent
  };

  Found find(std::span<const std::byte> key) const {
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

  /// Copies the value of the entry `f` found into `out` (lock held).
  void value_of(const Found& f, Buffer& out) const {
    const std::uint64_t kv = entry_kv(f.entry);
    const std::size_t klen = key_length(kv);
    const std::size_t vlen = h_->length(kv) - 8 - klen;
    out.resize(vlen);
    std::memcpy(out.data(), h_->payload(kv) + 8 + klen, vlen);
  }

  /// Sets the value of `key` to `value`, where `find` found it (lock held).
  void put(Found f, std::span<const std::byte> key, std::span<const std::byte> value) {
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

  /// Removes the entry `find` found (lock held).
  void remove(const Found& f) {
    HeapTxn t(*h_);
    const std::uint64_t kv = entry_kv(f.entry);
    h_->set_heap(h_->root(index_root) + 8 + f.slot * 8, dummy);
    h_->set_heap(h_->root(entries_root) + 8 + ((f.entry - 1) * 2 + 1) * 8, 0);
    h_->free(kv);
    h_->set_root(count_root, h_->root(count_root) - 1);
    t.commit();
  }

  void clear() {
    HeapLock l(*h_);
    h_->clear();
  }

  std::uint64_t size() {
    HeapLock l(*h_);
    return h_->root(count_root);
  }

  /// Every entry in insertion order: key length, key, value length, value (lock held).
  void copy_all(Buffer& out) const {
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

 private:
  std::uint64_t entry_kv(std::uint64_t entry) const noexcept {
    return h_->words(h_->root(entries_root))[(entry - 1) * 2 + 1];
  }
  std::size_t key_length(std::uint64_t kv) const noexcept {
    return static_cast<std::size_t>(h_->words(kv)[0]);
  }
  bool same_key(std::uint64_t kv, std::span<const std::byte> key) const noexcept {
    return key_length(kv) == key.size() &&
           std::memcmp(h_->payload(kv) + 8, key.data(), key.size()) == 0;
  }

  std::uint64_t make_kv(std::span<const std::byte> key, std::span<const std::byte> value) {
    const std::uint64_t kv = h_->alloc(8 + key.size() + value.size());
    const std::uint64_t klen = key.size();
    std::byte* p = h_->payload(kv);
    std::memcpy(p, &klen, 8);
    std::memcpy(p + 8, key.data(), key.size());
    std::memcpy(p + 8 + key.size(), value.data(), value.size());
    return kv;
  }

  // New entries (live ones only, in order) and index for at least `need` entries, swapped in by
  // logged root changes; the old blocks are freed.
  void rebuild(std::uint64_t need) {
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

  std::shared_ptr<SharedHeap> h_;
};

}  // namespace detail

/// A dictionary shared by processes, like the proxy `multiprocessing.Manager().dict()` returns,
/// but with no server process: keys and values live in shared memory (encoded with `Codec`), and
/// every operation is done by the calling process itself under the dictionary's robust lock.
/// Keys are equal when their encodings are. Passed to a task or a `Process` (any start method),
/// it refers to the same dictionary; so do copies. `snapshot()` lists the entries in insertion
/// order, as Python's dict iterates.
///
/// Every operation is atomic, also when the process doing it is killed in the middle (see
/// `detail::SharedHeap`); `update` is an atomic read-modify-write. It grows as needed, memory
/// permitting; running out is a `SystemError` for that call and leaves the dictionary as it was.
template <class K, class V, class Codec = BinaryCodec>
class Dict {
 public:
  using key_type = K;
  using mapped_type = V;

  Dict() : impl_(std::make_shared<detail::ByteDict>(tag())) {}

  /// Sets the value of `k` (a new key goes last in the insertion order; an existing one keeps
  /// its place).
  void insert_or_assign(const K& k, const V& v) {
    auto key = encode_key(k);
    auto value = encode<V>(v, 2);
    detail::HeapLock l(impl_->heap());
    impl_->put(impl_->find(key), key, value);
  }

  /// The value of `k`, if it is there.
  std::optional<V> get(const K& k) const {
    auto key = encode_key(k);
    auto& b = detail::heap_scratch(2);
    {
      detail::HeapLock l(impl_->heap());
      auto f = impl_->find(key);
      if (f.entry == 0) return std::nullopt;
      impl_->value_of(f, b);
    }
    return decode_value(b);
  }

  bool contains(const K& k) const {
    auto key = encode_key(k);
    detail::HeapLock l(impl_->heap());
    return impl_->find(key).entry != 0;
  }

  /// Removes `k`; false if it was not there.
  bool erase(const K& k) {
    auto key = encode_key(k);
    detail::HeapLock l(impl_->heap());
    auto f = impl_->find(key);
    if (f.entry == 0) return false;
    impl_->remove(f);
    return true;
  }

  /// Sets `k` to `f(current)`, where `current` is its value or empty, and returns the new value:
  /// an atomic read-modify-write. `f` runs in the calling process under the dictionary's lock
  /// (keep it short, and do not use this dictionary inside it: that throws `SystemError`). If
  /// `f` throws, nothing changes and the exception reaches the caller.
  template <class F>
  V update(const K& k, F&& f) {
    // A copy: `f` may use other containers, and with them this thread's scratch buffers.
    detail::Buffer key_copy;
    const auto encoded = encode_key(k);
    key_copy.append(encoded.data(), encoded.size());
    const std::span<const std::byte> key = key_copy.span();
    detail::HeapLock l(impl_->heap());
    auto found = impl_->find(key);
    std::optional<V> current;
    if (found.entry != 0) {
      auto& b = detail::heap_scratch(2);
      impl_->value_of(found, b);
      current = decode_value(b);
    }
    V next = std::forward<F>(f)(std::move(current));
    auto value = encode<V>(next, 2);
    impl_->put(found, key, value);
    return next;
  }

  std::size_t size() const { return static_cast<std::size_t>(impl_->size()); }
  bool empty() const { return size() == 0; }
  /// Removes every entry and gives the memory back.
  void clear() { impl_->clear(); }

  /// A copy of every entry, taken at one instant, in insertion order.
  std::vector<std::pair<K, V>> snapshot() const {
    auto& b = detail::heap_scratch(2);
    {
      detail::HeapLock l(impl_->heap());
      impl_->copy_all(b);
    }
    std::vector<std::pair<K, V>> out;
    Reader r(b.span());
    while (!r.at_end()) {
      Reader key(r.read_bytes(static_cast<std::size_t>(r.read<std::uint64_t>())));
      K k = detail::decode_value<Codec, K>(key);
      if (!key.at_end()) key.fail("trailing bytes after a Dict key");
      Reader value(r.read_bytes(static_cast<std::size_t>(r.read<std::uint64_t>())));
      V v = detail::decode_value<Codec, V>(value);
      if (!value.at_end()) value.fail("trailing bytes after a Dict value");
      out.emplace_back(std::move(k), std::move(v));
    }
    if (b.capacity() > (std::size_t{16} << 20)) b = detail::Buffer();
    return out;
  }

 private:
  friend struct codec<Dict<K, V, Codec>>;
  friend struct detail::ContainerAccess;
  explicit Dict(std::shared_ptr<detail::ByteDict> d) : impl_(std::move(d)) {}

  static std::uint32_t tag() {
    return detail::type_tag(typeid(std::pair<K, V>).name(), typeid(Codec).name());
  }

  template <class T>
  static std::span<const std::byte> encode(const T& v, int which) {
    return detail::encode_item<Codec>(detail::heap_scratch(which), v);
  }
  static std::span<const std::byte> encode_key(const K& k) { return encode<K>(k, 0); }

  static V decode_value(detail::Buffer& b) {
    return detail::decode_item<Codec, V>(b, "Dict value");
  }

  std::shared_ptr<detail::ByteDict> impl_;
};

template <class K, class V, class C>
struct codec<Dict<K, V, C>> {
  static void encode(Writer& w, const Dict<K, V, C>& d) {
    detail::write_heap(w, d.impl_->heap(), Dict<K, V, C>::tag());
  }
  static Dict<K, V, C> decode(Reader& r) {
    auto h = detail::read_heap(r, detail::kind_dict, Dict<K, V, C>::tag());
    return Dict<K, V, C>(std::make_shared<detail::ByteDict>(std::move(h)));
  }
};

}  // namespace procpool
