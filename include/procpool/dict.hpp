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
#include <procpool/detail/separate.hpp>
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

  PROCPOOL_DECL Found find(std::span<const std::byte> key) const;

  /// Copies the value of the entry `f` found into `out` (lock held).
  PROCPOOL_DECL void value_of(const Found& f, Buffer& out) const;

  /// Sets the value of `key` to `value`, where `find` found it (lock held).
  PROCPOOL_DECL void put(Found f, std::span<const std::byte> key, std::span<const std::byte> value);

  /// Removes the entry `find` found (lock held).
  PROCPOOL_DECL void remove(const Found& f);

  void clear() {
    HeapLock l(*h_);
    h_->clear();
  }

  std::uint64_t size() {
    HeapLock l(*h_);
    return h_->root(count_root);
  }

  /// Every entry in insertion order: key length, key, value length, value (lock held).
  PROCPOOL_DECL void copy_all(Buffer& out) const;

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

  PROCPOOL_DECL std::uint64_t make_kv(std::span<const std::byte> key,
                                      std::span<const std::byte> value);

  // New entries (live ones only, in order) and index for at least `need` entries, swapped in by
  // logged root changes; the old blocks are freed.
  PROCPOOL_DECL void rebuild(std::uint64_t need);

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

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/dict_impl.hpp>
#endif
