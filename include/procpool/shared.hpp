#pragma once

#include <procpool/detail/cxx20.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include <procpool/codec.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/sync.hpp>

namespace procpool {

namespace detail {
using DataLayout = Layout<NoState>;  // header, (no state), mutex, data
}  // namespace detail

/// One `T` in shared memory, with its own `Mutex`. Passed to a task, it refers to the same
/// memory: writes in any process are seen by all. Copies refer to the same value.
template <class T>
class Value {
  static_assert(std::is_trivially_copyable_v<T>,
                "procpool::Value<T> needs a trivially copyable T (it lives in shared memory)");

 public:
  explicit Value(const T& init = T{})
      : seg_(detail::make_shared_object(detail::kind_value, sizeof(T), 1, bytes())),
        lock_(seg_, detail::DataLayout::mutex, true),
        ptr_(detail::at<T>(seg_, detail::DataLayout::data)) {
    std::memcpy(static_cast<void*>(ptr_), &init, sizeof(T));
  }

  /// The shared value itself; hold `get_lock()` while several processes update it.
  T& value() const noexcept { return *ptr_; }
  /// Reads the value under its lock.
  T load() const {
    std::scoped_lock l(lock_);
    return *ptr_;
  }
  /// Writes the value under its lock.
  void store(const T& v) {
    std::scoped_lock l(lock_);
    *ptr_ = v;
  }
  Mutex& get_lock() const noexcept { return lock_; }

 private:
  static constexpr std::size_t bytes() { return detail::DataLayout::data + sizeof(T); }
  friend struct codec<Value<T>>;
  explicit Value(std::shared_ptr<detail::Segment> seg)
      : seg_(std::move(seg)),
        lock_(seg_, detail::DataLayout::mutex, false),
        ptr_(detail::at<T>(seg_, detail::DataLayout::data)) {}

  std::shared_ptr<detail::Segment> seg_;
  mutable Mutex lock_;
  T* ptr_;
};

/// `n` values of `T` in shared memory, with one `Mutex`. Passing an Array to a task copies
/// nothing: only a handle travels, and the worker maps the same memory.
template <class T>
class Array {
  static_assert(std::is_trivially_copyable_v<T>,
                "procpool::Array<T> needs a trivially copyable T (it lives in shared memory)");

 public:
  using value_type = T;
  using iterator = T*;
  using const_iterator = const T*;

  /// `n` zero-filled elements.
  explicit Array(std::size_t n) : Array(n, true) {}
  explicit Array(const std::vector<T>& v) : Array(v.begin(), v.end()) {}
  template <std::forward_iterator It>
  Array(It first, It last) : Array(static_cast<std::size_t>(std::distance(first, last)), true) {
    for (T* p = ptr_; first != last; ++first) *p++ = *first;
  }
  /// From a single-pass range: its length is known only after reading it.
  template <std::input_iterator It>
  requires(!std::forward_iterator<It>) Array(It first, It last)
      : Array(std::vector<T>(first, last)) {}

  T& operator[](std::size_t i) const noexcept { return ptr_[i]; }
  T& at(std::size_t i) const {
    if (i >= n_) throw std::out_of_range("procpool::Array::at: index out of range");
    return ptr_[i];
  }
  std::size_t size() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }
  T* data() const noexcept { return ptr_; }
  std::span<T> span() const noexcept { return {ptr_, n_}; }
  T* begin() const noexcept { return ptr_; }
  T* end() const noexcept { return ptr_ + n_; }
  Mutex& get_lock() const noexcept { return lock_; }

 private:
  static std::size_t bytes(std::size_t n) {
    if (n > (SIZE_MAX - detail::DataLayout::data) / sizeof(T))
      throw std::length_error("procpool::Array: too many elements");
    return detail::DataLayout::data + n * sizeof(T);
  }
  Array(std::size_t n, bool)
      : seg_(detail::make_shared_object(detail::kind_array, sizeof(T), n, bytes(n))),
        lock_(seg_, detail::DataLayout::mutex, true),
        ptr_(detail::at<T>(seg_, detail::DataLayout::data)),
        n_(n) {}
  friend struct codec<Array<T>>;
  Array(std::shared_ptr<detail::Segment> seg, std::size_t n)
      : seg_(std::move(seg)),
        lock_(seg_, detail::DataLayout::mutex, false),
        ptr_(detail::at<T>(seg_, detail::DataLayout::data)),
        n_(n) {}

  std::shared_ptr<detail::Segment> seg_;
  mutable Mutex lock_;
  T* ptr_;
  std::size_t n_;
};

template <class T>
struct codec<Value<T>> {
  static void encode(Writer& w, const Value<T>& v) { detail::write_segment(w, v.seg_); }
  static Value<T> decode(Reader& r) {
    auto seg = detail::read_segment(r);
    detail::check_shared_object(r, *seg, detail::kind_value, sizeof(T),
                                detail::DataLayout::data + sizeof(T));
    return Value<T>(std::move(seg));
  }
};

template <class T>
struct codec<Array<T>> {
  static void encode(Writer& w, const Array<T>& a) { detail::write_segment(w, a.seg_); }
  static Array<T> decode(Reader& r) {
    auto seg = detail::read_segment(r);
    detail::check_shared_object(r, *seg, detail::kind_array, sizeof(T), detail::DataLayout::data);
    auto n = static_cast<const detail::SegmentHeader*>(seg->data())->count;
    if (n > (seg->size() - detail::DataLayout::data) / sizeof(T))
      r.fail("shared array is larger than its segment");
    return Array<T>(std::move(seg), static_cast<std::size_t>(n));
  }
};

}  // namespace procpool
