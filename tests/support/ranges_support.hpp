#pragma once
// Ranges for the tests that every supported compiler can build. clang before 16 cannot
// instantiate any of libstdc++'s views (its checks of view_interface's constrained members fail
// while the view is still incomplete), so with that pair these helpers return plain ranges of the
// same kind instead: same elements, same category, sized or not, read lazily. Everywhere else
// they return the std::views the tests were written with. libc++ 14 has no views at all: the
// same fallbacks serve there.

#include <cstddef>
#include <iterator>
#include <ranges>
#include <type_traits>
#include <utility>
#include <version>

#ifndef PROCPOOL_TEST_STD_VIEWS  // -DPROCPOOL_TEST_STD_VIEWS=0 tries the fallbacks anywhere
#if defined(__clang__) && __clang_major__ < 16 && defined(__GLIBCXX__)
#define PROCPOOL_TEST_STD_VIEWS 0
#elif !defined(__cpp_lib_ranges)  // libc++ 14 ships no views unless asked for experimental ones
#define PROCPOOL_TEST_STD_VIEWS 0
#else
#define PROCPOOL_TEST_STD_VIEWS 1
#endif
#endif

namespace procpool_test {

#if !PROCPOOL_TEST_STD_VIEWS

/// [first, last) counting up: random access and sized, like std::views::iota(first, last).
template <class T>
class CountingView : public std::ranges::view_base {
 public:
  class iterator {
   public:
    using iterator_concept = std::random_access_iterator_tag;
    using iterator_category = std::input_iterator_tag;  // operator* returns a value
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(T v) : v_(v) {}
    T operator*() const { return v_; }
    T operator[](difference_type n) const { return static_cast<T>(v_ + n); }
    iterator& operator++() { return *this += 1; }
    iterator operator++(int) { return std::exchange(*this, iterator(static_cast<T>(v_ + 1))); }
    iterator& operator--() { return *this -= 1; }
    iterator operator--(int) { return std::exchange(*this, iterator(static_cast<T>(v_ - 1))); }
    iterator& operator+=(difference_type n) {
      v_ = static_cast<T>(v_ + n);
      return *this;
    }
    iterator& operator-=(difference_type n) { return *this += -n; }
    friend iterator operator+(iterator i, difference_type n) { return i += n; }
    friend iterator operator+(difference_type n, iterator i) { return i += n; }
    friend iterator operator-(iterator i, difference_type n) { return i -= n; }
    friend difference_type operator-(iterator a, iterator b) {
      return static_cast<difference_type>(a.v_) - static_cast<difference_type>(b.v_);
    }
    friend bool operator==(iterator a, iterator b) = default;
    friend auto operator<=>(iterator a, iterator b) = default;

   private:
    T v_{};
  };

  CountingView() = default;
  CountingView(T first, T last) : first_(first), last_(last) {}
  iterator begin() const { return iterator(first_); }
  iterator end() const { return iterator(last_); }
  std::size_t size() const { return static_cast<std::size_t>(last_ - first_); }

 private:
  T first_{}, last_{};
};

/// fn applied to each element of base when it is read; sized when base is, forward at most.
/// Its iterators point back at it, as libstdc++'s do.
template <class Base, class Fn>
class TransformedRange {
 public:
  class iterator {
   public:
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::input_iterator_tag;
    using value_type =
        std::remove_cvref_t<std::invoke_result_t<Fn&, std::ranges::range_reference_t<const Base>>>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(const TransformedRange* r, std::ranges::iterator_t<const Base> it) : r_(r), it_(it) {}
    decltype(auto) operator*() const { return r_->fn_(*it_); }
    iterator& operator++() {
      ++it_;
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++it_;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) { return a.it_ == b.it_; }

   private:
    const TransformedRange* r_ = nullptr;
    std::ranges::iterator_t<const Base> it_{};
  };

  TransformedRange(Base base, Fn fn) : base_(std::move(base)), fn_(std::move(fn)) {}
  iterator begin() const { return iterator(this, std::ranges::begin(base_)); }
  iterator end() const { return iterator(this, std::ranges::end(base_)); }
  std::size_t size() const requires std::ranges::sized_range<const Base> {
    return std::ranges::size(base_);
  }

 private:
  Base base_;
  mutable Fn fn_;
};

/// The elements of base that satisfy pred, found as they are read: forward and not sized.
template <class Base, class Pred>
class FilteredRange {
 public:
  class iterator {
   public:
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::ranges::range_value_t<Base>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(const FilteredRange* r, std::ranges::iterator_t<const Base> it) : r_(r), it_(it) {
      skip();
    }
    std::ranges::range_reference_t<const Base> operator*() const { return *it_; }
    iterator& operator++() {
      ++it_;
      skip();
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++*this;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) { return a.it_ == b.it_; }

   private:
    void skip() {
      while (it_ != std::ranges::end(r_->base_) && !r_->pred_(*it_)) ++it_;
    }
    const FilteredRange* r_ = nullptr;
    std::ranges::iterator_t<const Base> it_{};
  };

  FilteredRange(Base base, Pred pred) : base_(std::move(base)), pred_(std::move(pred)) {}
  iterator begin() const { return iterator(this, std::ranges::begin(base_)); }
  iterator end() const { return iterator(this, std::ranges::end(base_)); }

 private:
  Base base_;
  Pred pred_;
};

/// [first, last) of any iterator pair, like std::ranges::subrange.
template <class I, class S>
class IteratorRange : public std::ranges::view_base {
 public:
  IteratorRange() = default;
  IteratorRange(I first, S last) : first_(std::move(first)), last_(std::move(last)) {}
  I begin() const { return first_; }
  S end() const { return last_; }

 private:
  I first_{};
  S last_{};
};

#endif

/// std::views::iota(first, last).
template <class T>
auto iota(T first, T last) {
#if PROCPOOL_TEST_STD_VIEWS
  return std::views::iota(first, last);
#else
  return CountingView<T>(first, last);
#endif
}

/// base | std::views::transform(fn).
template <class Base, class Fn>
auto transform(Base base, Fn fn) {
#if PROCPOOL_TEST_STD_VIEWS
  return std::move(base) | std::views::transform(std::move(fn));
#else
  return TransformedRange<Base, Fn>(std::move(base), std::move(fn));
#endif
}

/// base | std::views::filter(pred).
template <class Base, class Pred>
auto filter(Base base, Pred pred) {
#if PROCPOOL_TEST_STD_VIEWS
  return std::move(base) | std::views::filter(std::move(pred));
#else
  return FilteredRange<Base, Pred>(std::move(base), std::move(pred));
#endif
}

/// std::ranges::subrange(first, last).
template <class I, class S>
auto subrange(I first, S last) {
#if PROCPOOL_TEST_STD_VIEWS
  return std::ranges::subrange(std::move(first), std::move(last));
#else
  return IteratorRange<I, S>(std::move(first), std::move(last));
#endif
}

/// std::views::istream<T>(is): a single-pass range of what is read from is.
template <class T, class Stream>
auto istream_view(Stream& is) {
#if PROCPOOL_TEST_STD_VIEWS
  return std::views::istream<T>(is);
#else
  return IteratorRange<std::istream_iterator<T>, std::istream_iterator<T>>(
      std::istream_iterator<T>(is), std::istream_iterator<T>());
#endif
}

}  // namespace procpool_test
