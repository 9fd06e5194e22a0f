#pragma once

#include <procpool/detail/cxx20.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <procpool/codec.hpp>
#include <procpool/detail/separate.hpp>
#include <procpool/detail/shared_heap.hpp>
#include <procpool/queue.hpp>

namespace procpool {

namespace detail {

/// The untyped engine of `List<T>`: encoded items in a `SharedHeap`, found through an index of
/// fixed-size chunks (so growing never copies the items or the index, only the small directory
/// of chunks).
///
/// Roots: 0 = item count, 1 = directory block, 2 = directory capacity, 3 = chunks allocated.
/// Index slots at or past the count are unused, so they are written without logging; the count
/// is the last word each operation changes.
class ByteList {
 public:
  static constexpr std::uint64_t chunk = 4095;  // slots per chunk: a 32 KiB block
  enum : std::size_t { count_root, dir_root, dir_cap_root, chunks_root };

  explicit ByteList(std::uint32_t tag) : h_(std::make_shared<SharedHeap>(kind_list, tag)) {}
  explicit ByteList(std::shared_ptr<SharedHeap> h) : h_(std::move(h)) {}

  SharedHeap& heap() noexcept { return *h_; }
  const SharedHeap& heap() const noexcept { return *h_; }

  /// Appends the items of `items`, each `n`-byte item preceded by its 8-byte length.
  PROCPOOL_DECL void append(std::span<const std::byte> items);

  /// Appends one item.
  PROCPOOL_DECL void push(std::span<const std::byte> item);

  /// Copies item `i` into `out`; false if there is none.
  PROCPOOL_DECL bool get(std::uint64_t i, Buffer& out, std::uint64_t& size);

  /// Replaces item `i`; false if there is none.
  PROCPOOL_DECL bool set(std::uint64_t i, std::span<const std::byte> item, std::uint64_t& size);

  /// Takes the last item out into `out`; false if empty.
  PROCPOOL_DECL bool pop(Buffer& out);

  std::uint64_t size() {
    HeapLock l(*h_);
    return h_->root(count_root);
  }

  void clear() {
    HeapLock l(*h_);
    h_->clear();
  }

  /// Every item, each preceded by its 8-byte length.
  PROCPOOL_DECL void copy_all(Buffer& out);

 private:
  std::uint64_t chunk_of(std::uint64_t i) const noexcept {
    return h_->words(h_->root(dir_root))[i / chunk];
  }
  std::uint64_t item_at(std::uint64_t i) const noexcept {
    return h_->words(chunk_of(i))[i % chunk];
  }

  PROCPOOL_DECL void copy_out(std::uint64_t off, Buffer& out) const;

  // The chunk that holds slot `n` (the first past the end), allocated if needed.
  PROCPOOL_DECL std::uint64_t slot_chunk(std::uint64_t n);

  std::shared_ptr<SharedHeap> h_;
};

}  // namespace detail

/// A list shared by processes, like the proxy `multiprocessing.Manager().list()` returns, but
/// with no server process: the items live in shared memory (encoded with `Codec`), and every
/// operation is done by the calling process itself under the list's robust lock. Passed to a task
/// or a `Process` (any start method), it refers to the same list; so do copies.
///
/// Every operation is atomic, also when the process doing it is killed in the middle: the others
/// see the list before or after it, never torn, and none waits forever (see
/// `detail::SharedHeap`). The list grows as needed, memory permitting; running out is a
/// `SystemError` for that call and leaves the list as it was.
template <class T, class Codec = BinaryCodec>
class List {
 public:
  using value_type = T;

  List() : impl_(std::make_shared<detail::ByteList>(tag())) {}
  /// A list holding the items of `items` (any input range).
  template <std::ranges::input_range R>
  requires(!std::same_as<std::remove_cvref_t<R>, List>) explicit List(R&& items) : List() {
    extend(std::forward<R>(items));
  }
  List(std::initializer_list<T> items) : List() { extend(items); }

  /// Appends `v`.
  void push_back(const T& v) { impl_->push(encode(v)); }

  /// Appends every item of `items`, all or none.
  template <std::ranges::input_range R>
  void extend(R&& items) {
    auto& b = detail::heap_scratch(0);
    b.clear();
    for (const auto& v : items) {
      const std::size_t at = b.size();
      b.grow(8);
      Writer w(b);
      detail::encode_value<Codec, T>(w, v);
      const std::uint64_t len = b.size() - at - 8;
      std::memcpy(b.data() + at, &len, 8);
    }
    impl_->append(b.span());
    detail::trim_scratch(b);
  }

  /// Item `i`; `std::out_of_range` if there is none.
  T at(std::size_t i) const {
    auto& b = detail::heap_scratch(1);
    std::uint64_t n = 0;
    if (!impl_->get(i, b, n)) throw out_of_range("at", i, n);
    return decode(b);
  }

  /// Replaces item `i`; `std::out_of_range` if there is none.
  void set(std::size_t i, const T& v) {
    std::uint64_t n = 0;
    if (!impl_->set(i, encode(v), n)) throw out_of_range("set", i, n);
  }

  /// Removes and returns the last item; empty if the list is.
  std::optional<T> pop_back() {
    auto& b = detail::heap_scratch(1);
    if (!impl_->pop(b)) return std::nullopt;
    return decode(b);
  }

  std::size_t size() const { return static_cast<std::size_t>(impl_->size()); }
  bool empty() const { return size() == 0; }
  /// Removes every item and gives the memory back.
  void clear() { impl_->clear(); }

  /// A copy of every item, taken at one instant.
  std::vector<T> snapshot() const {
    auto& b = detail::heap_scratch(1);
    impl_->copy_all(b);
    std::vector<T> out;
    Reader r(b.span());
    while (!r.at_end()) {
      const auto len = r.read<std::uint64_t>();
      Reader item(r.read_bytes(static_cast<std::size_t>(len)));
      out.push_back(detail::decode_value<Codec, T>(item));
      if (!item.at_end()) item.fail("trailing bytes after a List item");
    }
    detail::trim_scratch(b);
    return out;
  }

 private:
  friend struct codec<List<T, Codec>>;
  friend struct detail::ContainerAccess;
  explicit List(std::shared_ptr<detail::ByteList> l) : impl_(std::move(l)) {}

  static std::uint32_t tag() { return detail::type_tag(typeid(T).name(), typeid(Codec).name()); }

  static std::out_of_range out_of_range(const char* what, std::size_t i, std::uint64_t n) {
    return std::out_of_range("procpool::List::" + std::string(what) + ": index " +
                             std::to_string(i) + " is out of range for a List of " +
                             std::to_string(n) + " items");
  }

  static std::span<const std::byte> encode(const T& v) {
    return detail::encode_item<Codec>(detail::heap_scratch(0), v);
  }
  static T decode(detail::Buffer& b) { return detail::decode_item<Codec, T>(b, "List item"); }

  std::shared_ptr<detail::ByteList> impl_;
};

template <class T, class C>
struct codec<List<T, C>> {
  static void encode(Writer& w, const List<T, C>& l) {
    detail::write_heap(w, l.impl_->heap(), List<T, C>::tag());
  }
  static List<T, C> decode(Reader& r) {
    auto h = detail::read_heap(r, detail::kind_list, List<T, C>::tag());
    return List<T, C>(std::make_shared<detail::ByteList>(std::move(h)));
  }
};

}  // namespace procpool

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/list_impl.hpp>
#endif
