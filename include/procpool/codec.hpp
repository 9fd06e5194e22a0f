#pragma once

#include <procpool/detail/cxx20.hpp>

/// @file
/// Encoding of task arguments and results: `Writer`, `Reader`, the `codec<T>` customization point,
/// the default `BinaryCodec` and the `Codec` concept.
///
/// `BinaryCodec` handles arithmetic types, enums with a fixed underlying type (all scoped enums),
/// `std::string` (any character type), `vector`, `array`, `deque`, `list`, `pair`, `tuple`,
/// `optional`, `variant`, `monostate`, `map`, `multimap`, `set`, `multiset` and their unordered
/// forms, `chrono::duration`, any nesting of these, and aggregates (structs with public fields and
/// no user code) of up to 32 fields, each of a type with an encoding (move-only and immovable
/// field types included; decoding builds each field in place). A field without one (a pointer,
/// a `std::unique_ptr`...) fails to compile with a `static_assert` naming it, as does an aggregate
/// whose fields cannot be counted or that has a base class. Aggregates with a C-array field
/// cannot be taken apart by a structured binding and fail to compile; use `std::array`, or a
/// `codec<T>`.
///
/// The format is for one machine talking to itself (parent and workers): native byte order and
/// sizes, lengths as `std::uint64_t`, aggregates field by field without padding. Values of
/// padding-free types (a `vector<double>`, a `vector` of `{double x, y, z;}`) are copied with one
/// memcpy. Decoding treats its input as hostile: every read is bounds-checked and every length
/// is checked against the bytes that remain before anything is allocated, so corrupt input ends
/// in `CodecError`, never in a crash or a huge allocation. Input the encoder cannot have written
/// is rejected too (ordered containers out of order, duplicate keys), so what decodes re-encodes
/// to the same bytes, unordered containers aside.

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <iterator>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/demangle.hpp>
#include <procpool/errors.hpp>

/// Most elements a container may declare when its elements may encode to zero bytes (empty
/// structs, `std::monostate`, user codecs) beyond the bytes left in the input: such lengths cannot
/// be checked against the input, so they get a fixed ceiling instead.
#ifndef PROCPOOL_CODEC_MAX_EMPTY_ELEMENTS
#define PROCPOOL_CODEC_MAX_EMPTY_ELEMENTS 65536
#endif

namespace procpool {

class Writer;
class Reader;

/// Customization point: specialize it to make a type encodable by `BinaryCodec`.
/// ```
/// template <> struct procpool::codec<MyType> {
///   static void encode(procpool::Writer& w, const MyType& v);
///   static MyType decode(procpool::Reader& r);
/// };
/// ```
/// A specialization takes priority over every built-in encoding. The primary template is left
/// undefined: its completeness is how a specialization is detected.
template <class T, class Enable = void>
struct codec;

namespace detail {

using type_name_fn = const std::string& (*)();
class DecodeScope;

}  // namespace detail

/// Appends encoded values to a `detail::Buffer`, after whatever the buffer already holds.
class Writer {
 public:
  explicit Writer(detail::Buffer& out) noexcept : out_(&out), start_(out.size()) {}

  /// Encodes `v` with `BinaryCodec`.
  template <class T>
  void write(const T& v);

  /// Appends raw bytes, with no length prefix.
  void write_bytes(std::span<const std::byte> bytes) { out_->append(bytes.data(), bytes.size()); }

  /// Writes a count as `BinaryCodec` writes container lengths; `Reader::read_length` reads it.
  inline void write_length(std::size_t n);

  /// Bytes written through this writer.
  std::size_t size() const noexcept { return out_->size() - start_; }

  /// Drops what this writer wrote, keeping the buffer's capacity and anything written before it.
  void clear() { out_->resize(start_); }

  detail::Buffer& buffer() noexcept { return *out_; }

 private:
  detail::Buffer* out_;
  std::size_t start_;
};

/// Reads encoded values from a byte span. Every read is bounds-checked: running out of input, or
/// finding bytes that no value encodes to, throws `CodecError` naming the type being decoded.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) noexcept : data_(in.data()), size_(in.size()) {}

  /// Decodes a `T` with `BinaryCodec`.
  template <class T>
  T read();

  /// Returns the next `n` bytes and moves past them; `CodecError` if fewer remain.
  std::span<const std::byte> read_bytes(std::size_t n) {
    if (n > size_ - pos_) fail_truncated(n);
    std::span<const std::byte> out(data_ + pos_, n);
    pos_ += n;
    return out;
  }

  /// Reads a count written by `Writer::write_length` and checks that `n` elements of at least
  /// `min_bytes_each` bytes can still follow (0: elements may be empty; the count is then capped).
  inline std::size_t read_length(std::size_t min_bytes_each);

  std::size_t remaining() const noexcept { return size_ - pos_; }
  bool at_end() const noexcept { return pos_ == size_; }
  /// Bytes consumed so far.
  std::size_t position() const noexcept { return pos_; }

  /// Throws `CodecError` "cannot decode <type>: <reason>", naming the value being decoded.
  [[noreturn]] inline void fail(std::string_view reason) const;

 private:
  friend class detail::DecodeScope;

  [[noreturn]] inline void fail_truncated(std::size_t wanted) const;

  const std::byte* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
  // The outermost and innermost types being decoded, for error messages. Function pointers
  // keep the happy path free of string work.
  detail::type_name_fn outer_ = nullptr;
  detail::type_name_fn inner_ = nullptr;
};

namespace detail {

/// Names `T` as the type being decoded while it lives (and as the outermost, if none is set).
class DecodeScope {
 public:
  DecodeScope(Reader& r, type_name_fn name) noexcept : r_(r), outer_(r.outer_), inner_(r.inner_) {
    if (r.outer_ == nullptr) r.outer_ = name;
    r.inner_ = name;
  }
  DecodeScope(const DecodeScope&) = delete;
  DecodeScope& operator=(const DecodeScope&) = delete;
  ~DecodeScope() {
    r_.outer_ = outer_;
    r_.inner_ = inner_;
  }

 private:
  Reader& r_;
  type_name_fn outer_;
  type_name_fn inner_;
};

inline constexpr std::size_t max_empty_elements = PROCPOOL_CODEC_MAX_EMPTY_ELEMENTS;

/// "what(): message" of the exception in flight, for wrapping it into a `CodecError`.
inline std::string describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}

}  // namespace detail

inline void Reader::fail(std::string_view reason) const {
  std::string msg = "cannot decode ";
  msg += outer_ != nullptr ? outer_() : std::string("input");
  msg += ": ";
  msg += reason;
  if (inner_ != nullptr && inner_ != outer_) {
    msg += " (in ";
    msg += inner_();
    msg += ')';
  }
  throw CodecError(msg);
}

inline void Reader::fail_truncated(std::size_t wanted) const {
  fail("truncated input: " + std::to_string(wanted) + " bytes needed, " +
       std::to_string(size_ - pos_) + " left");
}

inline void Writer::write_length(std::size_t n) {
  const auto v = static_cast<std::uint64_t>(n);
  out_->append(&v, sizeof v);
}

inline std::size_t Reader::read_length(std::size_t min_bytes_each) {
  std::uint64_t n = 0;
  std::memcpy(&n, read_bytes(sizeof n).data(), sizeof n);
  const std::size_t left = remaining();
  const bool ok = min_bytes_each > 0
                      ? n <= left / min_bytes_each
                      : n <= static_cast<std::uint64_t>(left) + detail::max_empty_elements;
  if (!ok) {
    fail("length " + std::to_string(n) + " is more than the " + std::to_string(left) +
         " remaining bytes can hold");
  }
  return static_cast<std::size_t>(n);
}

namespace detail::bin {

template <class T>
inline constexpr bool always_false = false;

// ---- type classification ---------------------------------------------------------------------

template <template <class...> class Tmpl, class T>
inline constexpr bool is_instance = false;
template <template <class...> class Tmpl, class... A>
inline constexpr bool is_instance<Tmpl, Tmpl<A...>> = true;

template <class T>
inline constexpr bool is_std_array = false;
template <class T, std::size_t N>
inline constexpr bool is_std_array<std::array<T, N>> = true;

template <class T>
inline constexpr bool is_sequence =
    is_instance<std::vector, T> || is_instance<std::deque, T> || is_instance<std::list, T>;
template <class T>
inline constexpr bool is_map =
    is_instance<std::map, T> || is_instance<std::multimap, T> ||
    is_instance<std::unordered_map, T> || is_instance<std::unordered_multimap, T>;
template <class T>
inline constexpr bool is_set =
    is_instance<std::set, T> || is_instance<std::multiset, T> ||
    is_instance<std::unordered_set, T> || is_instance<std::unordered_multiset, T>;
template <class T>
inline constexpr bool is_ordered = is_instance<std::map, T> || is_instance<std::multimap, T> ||
                                   is_instance<std::set, T> || is_instance<std::multiset, T>;
template <class T>
inline constexpr bool is_multi =
    is_instance<std::multimap, T> || is_instance<std::unordered_multimap, T> ||
    is_instance<std::multiset, T> || is_instance<std::unordered_multiset, T>;

template <class T>
concept user_codec = requires {
  sizeof(codec<T>);
};

template <class T>
concept user_codec_valid = requires(Writer& w, Reader& r, const T& v) {
  codec<T>::encode(w, v);
  { codec<T>::decode(r) } -> std::same_as<T>;
};

// Every value of an enum with a fixed underlying type is valid; one without a fixed type has a
// range set by its enumerators, which C++ cannot inspect, so decoding one could create an
// out-of-range value (undefined behaviour).
template <class T>
concept fixed_enum = std::is_enum_v<T> && requires {
  T{std::underlying_type_t<T>{}};
};

// Scalars whose object bytes are their encoding. bool is not one: only 0 and 1 are valid, so it
// is checked byte by byte.
template <class T>
inline constexpr bool is_bulk_scalar =
    (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) || fixed_enum<T>;

template <class T>
inline constexpr bool is_plain_aggregate =
    std::is_aggregate_v<T> && !std::is_array_v<T> && !std::is_union_v<T>;

// ---- aggregate fields ------------------------------------------------------------------------

inline constexpr std::size_t max_fields = 32;

template <class... Fs>
struct field_list {};

// Converts to any field type; only named in unevaluated probes. The value conversion (picked
// for the probe's rvalues) builds a field in place, so move-only and immovable fields count too;
// the lvalue one serves reference fields, which are counted and then rejected. Both lose to a
// field type's own converting constructor (std::optional, std::variant...), whose parameter is
// less cv-qualified, which avoids ambiguities that would make the probe miscount.
template <std::size_t>
struct any_field {
  template <class U>
  operator U() const&& {
    std::terminate();  // never called; defined because clang wants a body for local types
  }
  template <class U>
  operator U&() const& {
    std::terminate();
  }
};

template <class T, std::size_t... I>
consteval bool brace_init_with(std::index_sequence<I...>) {
  return requires {
    T{any_field<I>{}...};
  };
}

// T{probes..., {}}: one more element can be value-initialized after the probes.
template <class T, std::size_t... I>
consteval bool brace_init_with_one_more(std::index_sequence<I...>) {
  return requires {
    T{any_field<I>{}..., {}};
  };
}

// The most initializers T accepts is its field count. Counting down finds it even when fields
// have no default constructor (T{x} then fails for fewer initializers).
template <class T, std::size_t N = max_fields + 1>
consteval std::size_t field_count() {
  if constexpr (N == 0 || brace_init_with<T>(std::make_index_sequence<N>{})) {
    return N;
  } else {
    return field_count<T, N - 1>();
  }
}

// Converts only to T's base classes: an aggregate's bases are initialized first, so T{any_base}
// compiles when T has one, unless T's first field accepts anything at all (as std::any does).
template <class T>
struct any_base {
  template <class U>
  requires(std::is_base_of_v<U, T> && !std::is_same_v<U, T>) operator U() const&& {
    std::terminate();
  }
  template <class U>
  requires(std::is_base_of_v<U, T> && !std::is_same_v<U, T>) operator U&() const& {
    std::terminate();
  }
};

struct no_conversion {};

template <class T>
concept brace_init_from_base = requires {
  T{any_base<T>{}};
};
template <class T>
concept brace_init_from_anything = requires {
  T{no_conversion{}};
};

// Fields spread over a base and the derived struct cannot be named by one structured binding,
// and field_count<T> counts the base as a field.
template <class T>
consteval bool has_base() {
  return brace_init_from_base<T> && !brace_init_from_anything<T>;
}

// Whether field_count<T> is T's field count. A field the probe cannot initialize (say, its type
// deletes every converting constructor) stops the count early: the fields after it then either
// make every shorter initialization fail too (count 0, though T{} fails) or accept {} where the
// probe stopped. Either way the count is wrong, and the aggregate is rejected, not cut short.
template <class T>
consteval bool fields_countable() {
  constexpr std::size_t n = field_count<T>();
  if constexpr (n > max_fields) {
    return true;  // too many fields: rejected for that
  } else if constexpr (n == 0 && !requires { T{}; }) {
    return false;
  } else {
    return !brace_init_with_one_more<T>(std::make_index_sequence<n>{});
  }
}

// Calls fn(field_list<declared field types...>{}, fields...) with T's N fields bound by a
// structured binding, the one way C++20 names an aggregate's members without user code. decltype
// of a binding is the field's declared type, so reference fields show up as references.
// (Generated for N <= max_fields.)
template <std::size_t N, class T, class F>
decltype(auto) with_fields(T& v, F&& fn) {
  if constexpr (N == 0) {
    (void)v;
    return fn(field_list<>{});
  } else if constexpr (N == 1) {
    auto& [f0] = v;
    return fn(field_list<decltype(f0)>{}, f0);
  } else if constexpr (N == 2) {
    auto& [f0, f1] = v;
    return fn(field_list<decltype(f0), decltype(f1)>{}, f0, f1);
  } else if constexpr (N == 3) {
    auto& [f0, f1, f2] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2)>{}, f0, f1, f2);
  } else if constexpr (N == 4) {
    auto& [f0, f1, f2, f3] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3)>{}, f0, f1, f2, f3);
  } else if constexpr (N == 5) {
    auto& [f0, f1, f2, f3, f4] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4)>{},
              f0, f1, f2, f3, f4);
  } else if constexpr (N == 6) {
    auto& [f0, f1, f2, f3, f4, f5] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5)>{},
              f0, f1, f2, f3, f4, f5);
  } else if constexpr (N == 7) {
    auto& [f0, f1, f2, f3, f4, f5, f6] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6)>{},
              f0, f1, f2, f3, f4, f5, f6);
  } else if constexpr (N == 8) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7)>{},
              f0, f1, f2, f3, f4, f5, f6, f7);
  } else if constexpr (N == 9) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8);
  } else if constexpr (N == 10) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9);
  } else if constexpr (N == 11) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10);
  } else if constexpr (N == 12) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11);
  } else if constexpr (N == 13) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12);
  } else if constexpr (N == 14) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13);
  } else if constexpr (N == 15) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14] = v;
    return fn(
        field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                   decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                   decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14);
  } else if constexpr (N == 16) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15);
  } else if constexpr (N == 17) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16);
  } else if constexpr (N == 18) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17);
  } else if constexpr (N == 19) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18);
  } else if constexpr (N == 20) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
           f19] = v;
    return fn(
        field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                   decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                   decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                   decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19);
  } else if constexpr (N == 21) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20);
  } else if constexpr (N == 22) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21);
  } else if constexpr (N == 23) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22);
  } else if constexpr (N == 24) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23);
  } else if constexpr (N == 25) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24] = v;
    return fn(
        field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                   decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                   decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                   decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                   decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
        f20, f21, f22, f23, f24);
  } else if constexpr (N == 26) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25);
  } else if constexpr (N == 27) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25), decltype(f26)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25, f26);
  } else if constexpr (N == 28) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26, f27] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25), decltype(f26), decltype(f27)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25, f26, f27);
  } else if constexpr (N == 29) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26, f27, f28] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25), decltype(f26), decltype(f27), decltype(f28)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25, f26, f27, f28);
  } else if constexpr (N == 30) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26, f27, f28, f29] = v;
    return fn(
        field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                   decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                   decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                   decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                   decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                   decltype(f25), decltype(f26), decltype(f27), decltype(f28), decltype(f29)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
        f20, f21, f22, f23, f24, f25, f26, f27, f28, f29);
  } else if constexpr (N == 31) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25), decltype(f26), decltype(f27), decltype(f28), decltype(f29),
                         decltype(f30)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30);
  } else if constexpr (N == 32) {
    auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19,
           f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31] = v;
    return fn(field_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4),
                         decltype(f5), decltype(f6), decltype(f7), decltype(f8), decltype(f9),
                         decltype(f10), decltype(f11), decltype(f12), decltype(f13), decltype(f14),
                         decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19),
                         decltype(f20), decltype(f21), decltype(f22), decltype(f23), decltype(f24),
                         decltype(f25), decltype(f26), decltype(f27), decltype(f28), decltype(f29),
                         decltype(f30), decltype(f31)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18,
              f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31);
  }
}

struct declared_fields {
  template <class... Fs, class... Refs>
  field_list<Fs...> operator()(field_list<Fs...>, Refs&...) const {
    return {};
  }
};

template <class T>
using fields_of = decltype(with_fields<field_count<T>()>(std::declval<T&>(), declared_fields{}));

template <class... Fs>
consteval bool has_reference(field_list<Fs...>) {
  return (std::is_reference_v<Fs> || ...);
}

// Aggregates that can be taken apart: fields counted, at most max_fields of them, and none a
// reference (a decoded reference would have nothing to refer to).
template <class T>
consteval bool aggregate_shape_ok() {
  if constexpr (!is_plain_aggregate<T> || has_base<T>() || !fields_countable<T>()) {
    return false;
  } else if constexpr (field_count<T>() > max_fields) {
    return false;
  } else {
    return !has_reference(fields_of<T>{});
  }
}

// The element types of a pair or tuple.
template <class T>
struct tuple_fields {};
template <class... Ts>
struct tuple_fields<std::tuple<Ts...>> {
  using type = field_list<Ts...>;
};
template <class A, class B>
struct tuple_fields<std::pair<A, B>> {
  using type = field_list<A, B>;
};

// Pairs and tuples of values (a decoded reference would have nothing to refer to).
template <class T>
consteval bool tuple_like_ok() {
  if constexpr (is_instance<std::pair, T> || is_instance<std::tuple, T>) {
    return !has_reference(typename tuple_fields<T>::type{});
  } else {
    return false;
  }
}

template <class T>
consteval bool encodable();

template <class... Fs>
consteval bool all_encodable(field_list<Fs...>) {
  return (encodable<std::remove_cv_t<Fs>>() && ...);
}

// Aggregates encoded field by field: taken apart, and every field has an encoding.
template <class T>
consteval bool aggregate_ok() {
  if constexpr (!aggregate_shape_ok<T>()) {
    return false;
  } else {
    return all_encodable(fields_of<T>{});
  }
}

// A container's element is checked only if it cannot lead back to the type being checked (as
// in `struct Node { std::vector<Node> kids; };`); a composite element is checked when it is
// encoded itself.
template <class E>
consteval bool element_encodable() {
  if constexpr (is_plain_aggregate<E> || is_sequence<E> || is_map<E> || is_set<E> ||
                is_std_array<E> || is_instance<std::pair, E> || is_instance<std::tuple, E> ||
                is_instance<std::optional, E> || is_instance<std::variant, E>) {
    return true;
  } else {
    return encodable<E>();
  }
}

template <class... Ts>
consteval bool alternatives_encodable(std::variant<Ts...>*) {
  return (encodable<std::remove_cv_t<Ts>>() && ...);
}

// Whether BinaryCodec has an encoding for T: the same cases, in the same order, as encode().
template <class T>
consteval bool encodable() {
  if constexpr (user_codec<T> || std::is_same_v<T, bool> || is_bulk_scalar<T> ||
                is_instance<std::basic_string, T> || std::is_same_v<T, std::monostate>) {
    return true;
  } else if constexpr (is_sequence<T> || is_set<T>) {
    return element_encodable<typename T::value_type>();
  } else if constexpr (is_map<T>) {
    return element_encodable<typename T::key_type>() &&
           element_encodable<typename T::mapped_type>();
  } else if constexpr (is_std_array<T> || is_instance<std::optional, T>) {
    return encodable<std::remove_cv_t<typename T::value_type>>();
  } else if constexpr (tuple_like_ok<T>()) {
    return all_encodable(typename tuple_fields<T>::type{});
  } else if constexpr (is_instance<std::variant, T>) {
    return alternatives_encodable(static_cast<T*>(nullptr));
  } else if constexpr (is_instance<std::chrono::duration, T>) {
    return encodable<typename T::rep>();
  } else {
    return aggregate_ok<T>();
  }
}

// The first field of the aggregate T that has no encoding.
template <class... Fs>
struct first_unencodable;
template <class F, class... Fs>
struct first_unencodable<F, Fs...> {
  using type = std::conditional_t<encodable<std::remove_cv_t<F>>(),
                                  typename first_unencodable<Fs...>::type, std::remove_cv_t<F>>;
};
template <>
struct first_unencodable<> {
  using type = void;
};
template <class... Fs>
auto first_unencodable_of(field_list<Fs...>) -> typename first_unencodable<Fs...>::type*;
template <class T>
using unencodable_field_of = std::remove_pointer_t<decltype(first_unencodable_of(fields_of<T>{}))>;

// The parts a pair, tuple or aggregate is encoded as, in order.
template <class T>
constexpr auto parts_of() {
  if constexpr (tuple_like_ok<T>()) {
    return typename tuple_fields<T>::type{};
  } else {
    return fields_of<T>{};
  }
}

// Builds an array element by element; braced initializers run left to right, so elements are
// read in order. For element types that cannot be default-constructed and assigned.
template <class T, class Get, std::size_t... I>
T array_from(Get&& get, std::index_sequence<I...>) {
  return T{(static_cast<void>(I), get())...};
}

// ---- minimum encoded size: what a length is checked against ----------------------------------

template <class T>
consteval std::size_t min_size();

template <class... Ts>
consteval std::size_t min_size_sum() {
  return (std::size_t{0} + ... + min_size<std::remove_cvref_t<Ts>>());
}

template <class... Fs>
consteval std::size_t min_size_fields(field_list<Fs...>) {
  return min_size_sum<Fs...>();
}

template <class... Ts>
consteval std::size_t min_size_variant(std::variant<Ts...>*) {
  std::size_t m = static_cast<std::size_t>(-1);
  ((m = min_size<std::remove_cv_t<Ts>>() < m ? min_size<std::remove_cv_t<Ts>>() : m), ...);
  return m;
}

// A variant's index takes one byte unless it has more than 255 alternatives.
template <class V>
using variant_index_t =
    std::conditional_t<(std::variant_size_v<V> <= 255), std::uint8_t, std::uint32_t>;

template <class T>
consteval std::size_t min_size() {
  if constexpr (user_codec<T>) {
    return 0;  // unknown: a user codec may write nothing
  } else if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
    return sizeof(T);
  } else if constexpr (is_instance<std::basic_string, T> || is_sequence<T> || is_map<T> ||
                       is_set<T>) {
    return sizeof(std::uint64_t);
  } else if constexpr (is_std_array<T>) {
    return std::tuple_size_v<T> * min_size<typename T::value_type>();
  } else if constexpr (is_instance<std::pair, T> || is_instance<std::tuple, T>) {
    return min_size_fields(typename tuple_fields<T>::type{});
  } else if constexpr (is_instance<std::optional, T>) {
    return 1;
  } else if constexpr (is_instance<std::variant, T>) {
    return sizeof(variant_index_t<T>) + min_size_variant(static_cast<T*>(nullptr));
  } else if constexpr (is_instance<std::chrono::duration, T>) {
    return min_size<typename T::rep>();
  } else if constexpr (aggregate_ok<T>()) {
    return min_size_fields(fields_of<T>{});
  } else {
    return 0;  // unsupported: encode/decode reject it with a static_assert
  }
}

// ---- fixed-size encodings ---------------------------------------------------------------------

template <class T>
consteval bool is_packed();

template <class... Ts>
consteval bool all_packed(field_list<Ts...>) {
  return (is_packed<std::remove_cvref_t<Ts>>() && ...);
}

// "Packed": encodes to exactly min_size<T>() bytes that need no validation (bulk scalars and
// std::array, pair, tuple, duration and aggregates made of them). A run of packed values is
// bounds-checked once instead of field by field.
template <class T>
consteval bool is_packed() {
  if constexpr (user_codec<T>) {
    return false;
  } else if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
    return is_bulk_scalar<T>;
  } else if constexpr (is_std_array<T>) {
    return is_packed<typename T::value_type>();
  } else if constexpr (is_instance<std::chrono::duration, T>) {
    return is_packed<typename T::rep>();
  } else if constexpr (tuple_like_ok<T>() || aggregate_ok<T>()) {
    return all_packed(parts_of<T>());
  } else {
    return false;
  }
}

// Packed types whose object bytes are exactly their encoding (no padding), so any number of
// them is copied with one memcpy. Aggregates qualify only when they have no padding: Small
// {int32, double, float, int16} does not, {double x, y, z} does.
template <class T>
consteval bool is_bulk() {
  if constexpr (!is_packed<T>()) {
    return false;
  } else {
    return std::is_trivially_copyable_v<T> && std::is_trivially_default_constructible_v<T> &&
           std::is_standard_layout_v<T> && sizeof(T) == min_size<T>();
  }
}

// ---- rejection of unsupported types ------------------------------------------------------------

template <class T>
void reject();

// Types that reject<T> explains better than "no encoding".
template <class T>
consteval bool has_own_reason() {
  if constexpr (is_instance<std::pair, T> || is_instance<std::tuple, T>) {
    return !tuple_like_ok<T>();  // holds a reference
  } else {
    return is_plain_aggregate<T> || std::is_enum_v<T> || std::is_union_v<T>;
  }
}

// Fails the build on a field of Aggregate that has no encoding, naming both types in the
// instantiation context. A nested aggregate is searched for the field that makes it fail.
template <class Field, class Aggregate>
void reject_field() {
  if constexpr (aggregate_shape_ok<Field>()) {
    reject_field<unencodable_field_of<Field>, Field>();
  } else if constexpr (has_own_reason<Field>()) {
    reject<Field>();  // its own message says why
  } else if constexpr (std::is_pointer_v<Field> || std::is_member_pointer_v<Field>) {
    static_assert(always_false<Field>,
                  "procpool::BinaryCodec cannot encode a pointer field of an aggregate (the "
                  "instantiation of reject_field<Field, Aggregate> names both types): an address "
                  "means nothing in another process. Store the value itself, or add a "
                  "procpool::codec<Aggregate> specialization.");
  } else {
    static_assert(always_false<Field>,
                  "procpool::BinaryCodec cannot encode a field of an aggregate (the "
                  "instantiation of reject_field<Field, Aggregate> names both types): the field's "
                  "type has no encoding (a smart pointer, a handle, a class with private "
                  "state...). Store an encodable value instead, or add a procpool::codec<Field> "
                  "or procpool::codec<Aggregate> specialization.");
  }
}

// Instantiated only for types with no encoding: fails the build with a message saying what to do.
template <class T>
void reject() {
  if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T> || std::is_null_pointer_v<T>) {
    static_assert(always_false<T>,
                  "procpool::BinaryCodec cannot encode a pointer: an address means nothing in "
                  "another process. Send the value it points to, or add a procpool::codec<T> "
                  "specialization for the type that holds it.");
  } else if constexpr (std::is_array_v<T>) {
    static_assert(always_false<T>,
                  "procpool::BinaryCodec cannot encode a C array: use std::array, or add a "
                  "procpool::codec<T> specialization.");
  } else if constexpr (std::is_union_v<T>) {
    static_assert(always_false<T>,
                  "procpool::BinaryCodec cannot encode a union: its active member is unknown. "
                  "Add a procpool::codec<T> specialization.");
  } else if constexpr (std::is_enum_v<T>) {
    static_assert(always_false<T>,
                  "procpool::BinaryCodec cannot decode an enum without a fixed underlying type "
                  "safely (its valid range depends on its enumerators). Give it one, as in "
                  "`enum E : int {...}`, or add a procpool::codec<E> specialization.");
  } else if constexpr (is_instance<std::pair, T> || is_instance<std::tuple, T>) {
    static_assert(always_false<T>,
                  "procpool::BinaryCodec cannot decode a std::pair or std::tuple holding a "
                  "reference: there is no object to refer to. Use values, or add a "
                  "procpool::codec<T> specialization.");
  } else if constexpr (is_plain_aggregate<T> && has_base<T>()) {
    static_assert(always_false<T>,
                  "procpool::BinaryCodec cannot take apart an aggregate with a base class: make "
                  "the base a field, or add a procpool::codec<T> specialization.");
  } else if constexpr (is_plain_aggregate<T> && !fields_countable<T>()) {
    static_assert(always_false<T>,
                  "procpool::BinaryCodec cannot count the fields of this aggregate: a field's "
                  "type cannot be initialized from a converted value (a deleted or ambiguous "
                  "converting constructor, or an rvalue reference). Change that field's type, "
                  "or add a procpool::codec<T> specialization for the aggregate.");
  } else if constexpr (is_plain_aggregate<T> && field_count<T>() > max_fields) {
    static_assert(always_false<T>,
                  "procpool::BinaryCodec encodes aggregates of at most 32 fields: group fields "
                  "into nested structs, or add a procpool::codec<T> specialization.");
  } else if constexpr (is_plain_aggregate<T> && !aggregate_shape_ok<T>()) {
    static_assert(always_false<T>,
                  "procpool::BinaryCodec cannot decode an aggregate with a reference field: "
                  "there is no object to refer to. Use a value field, or add a "
                  "procpool::codec<T> specialization.");
  } else if constexpr (is_plain_aggregate<T>) {
    reject_field<unencodable_field_of<T>, T>();
  } else {
    static_assert(always_false<T>,
                  "procpool::BinaryCodec cannot encode this type: it is not arithmetic, an enum, "
                  "a supported standard type or an aggregate with public fields. Add a "
                  "specialization `template <> struct procpool::codec<T> { static void "
                  "encode(procpool::Writer&, const T&); static T decode(procpool::Reader&); };`.");
  }
}

// ---- encoding ----------------------------------------------------------------------------------

template <class T>
void encode(Writer& w, const T& v);
template <class T>
T decode(Reader& r);

template <class T>
void put(Writer& w, const T& v) {
  std::memcpy(w.buffer().grow(sizeof(T)), &v, sizeof(T));
}

template <class T>
void put_array(Writer& w, const T* p, std::size_t n) {
  w.buffer().append(p, n * sizeof(T));  // append skips n == 0, where p may be null
}

template <class T>
T get(Reader& r) {
  T v{};
  std::memcpy(&v, r.read_bytes(sizeof(T)).data(), sizeof(T));
  return v;
}

// Writes a packed value to p, which has room for min_size<T>() bytes; returns the end.
template <class T>
std::byte* put_packed(std::byte* p, const T& v) {
  if constexpr (is_bulk<T>()) {
    std::memcpy(p, &v, sizeof(T));
    return p + sizeof(T);
  } else if constexpr (is_std_array<T>) {
    for (const auto& e : v) p = put_packed(p, e);
    return p;
  } else if constexpr (tuple_like_ok<T>()) {
    std::apply([&p](const auto&... e) { ((p = put_packed(p, e)), ...); }, v);
    return p;
  } else {
    with_fields<field_count<T>()>(v,
                                  [&p](auto, const auto&... f) { ((p = put_packed(p, f)), ...); });
    return p;
  }
}

// Reads a packed value from p, which holds at least min_size<T>() bytes, and advances p.
template <class T>
T get_packed(const std::byte*& p) {
  if constexpr (is_bulk<T>()) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    p += sizeof(T);
    return v;
  } else if constexpr (is_std_array<T>) {
    using E = typename T::value_type;
    if constexpr (std::is_default_constructible_v<E> && std::is_move_assignable_v<E>) {
      T a;
      for (E& e : a) e = get_packed<E>(p);
      return a;
    } else {
      return array_from<T>([&p] { return get_packed<E>(p); },
                           std::make_index_sequence<std::tuple_size_v<T>>{});
    }
  } else {
    return [&p]<class... Fs>(field_list<Fs...>) {
      return T{get_packed<std::remove_cv_t<Fs>>(p)...};
    }(parts_of<T>());
  }
}

template <class T>
void user_encode(Writer& w, const T& v) {
  static_assert(user_codec_valid<T>,
                "a procpool::codec<T> specialization must declare `static void "
                "encode(procpool::Writer&, const T&)` and `static T decode(procpool::Reader&)`");
  try {
    codec<T>::encode(w, v);
  } catch (const CodecError&) {
    throw;
  } catch (...) {
    throw CodecError("cannot encode " + type_name<T>() + ": procpool::codec<" + type_name<T>() +
                     ">::encode threw " + describe_current_exception());
  }
}

template <class T>
T user_decode(Reader& r) {
  static_assert(user_codec_valid<T>,
                "a procpool::codec<T> specialization must declare `static void "
                "encode(procpool::Writer&, const T&)` and `static T decode(procpool::Reader&)`");
  DecodeScope scope(r, &type_name<T>);
  try {
    return codec<T>::decode(r);
  } catch (const CodecError&) {
    throw;
  } catch (...) {
    r.fail("procpool::codec<" + type_name<T>() + ">::decode threw " + describe_current_exception());
  }
}

// The element a container encodes per entry: maps write key then value.
template <class T>
struct element {
  using type = typename T::value_type;
};
template <class T>
requires is_map<T>
struct element<T> {
  using type = std::pair<typename T::key_type, typename T::mapped_type>;
};

template <class T>
void encode_range(Writer& w, const T& c) {
  using E = typename element<T>::type;
  const std::size_t n = c.size();
  w.write_length(n);
  const std::size_t before = w.size();
  if constexpr (is_instance<std::vector, T> && is_bulk<E>()) {
    put_array(w, c.data(), n);
  } else if constexpr (is_packed<E>()) {
    std::byte* p = w.buffer().grow(n * min_size<E>());
    for (const auto& e : c) p = put_packed(p, e);
  } else {
    w.buffer().reserve(w.buffer().size() + n * min_size<E>());
    for (const auto& e : c) {
      if constexpr (is_map<T>) {
        encode<typename T::key_type>(w, e.first);
        encode<typename T::mapped_type>(w, e.second);
      } else {
        encode<E>(w, e);
      }
    }
  }
  // Keep within the decoder's cap on lengths it cannot check (Reader::read_length), so that
  // whatever encodes also decodes.
  if constexpr (min_size<E>() == 0) {
    if (n > w.size() - before + max_empty_elements) {
      throw CodecError("cannot encode " + type_name<T>() + ": " + std::to_string(n) +
                       " elements that encode to (almost) nothing exceed "
                       "PROCPOOL_CODEC_MAX_EMPTY_ELEMENTS");
    }
  }
}

template <class T>
void encode(Writer& w, const T& v) {
  if constexpr (user_codec<T>) {
    user_encode(w, v);
  } else if constexpr (std::is_same_v<T, bool>) {
    put(w, static_cast<std::uint8_t>(v ? 1 : 0));
  } else if constexpr (is_bulk<T>()) {
    put(w, v);
  } else if constexpr (is_packed<T>()) {
    put_packed(w.buffer().grow(min_size<T>()), v);
  } else if constexpr (is_instance<std::basic_string, T>) {
    w.write_length(v.size());
    put_array(w, v.data(), v.size());
  } else if constexpr (is_sequence<T> || is_map<T> || is_set<T>) {
    encode_range(w, v);
  } else if constexpr (is_std_array<T>) {
    using E = typename T::value_type;
    for (const E& e : v) encode<E>(w, e);
  } else if constexpr (tuple_like_ok<T>()) {
    std::apply([&w](const auto&... e) { (encode<std::remove_cvref_t<decltype(e)>>(w, e), ...); },
               v);
  } else if constexpr (is_instance<std::optional, T>) {
    put(w, static_cast<std::uint8_t>(v.has_value() ? 1 : 0));
    if (v) encode<typename T::value_type>(w, *v);
  } else if constexpr (is_instance<std::variant, T>) {
    if (v.valueless_by_exception()) {
      throw CodecError("cannot encode " + type_name<T>() + ": the variant is valueless");
    }
    put(w, static_cast<variant_index_t<T>>(v.index()));
    std::visit([&w](const auto& alt) { encode<std::remove_cvref_t<decltype(alt)>>(w, alt); }, v);
  } else if constexpr (is_instance<std::chrono::duration, T>) {
    encode<typename T::rep>(w, v.count());
  } else if constexpr (std::is_same_v<T, std::monostate>) {
    // encodes to nothing
  } else if constexpr (aggregate_ok<T>()) {
    with_fields<field_count<T>()>(v, [&w]<class... Fs>(field_list<Fs...>, const auto&... f) {
      (encode<std::remove_cv_t<Fs>>(w, f), ...);
    });
  } else {
    reject<T>();
  }
}

// ---- decoding ----------------------------------------------------------------------------------

// Input the encoder cannot have written is rejected rather than repaired: a unique-key container
// never holds duplicates, and ordered containers are written in order. This also makes the
// encoding canonical: whatever decodes re-encodes to the same bytes.
template <class T>
void check_inserted(Reader& r, const T& c, typename T::const_iterator it, std::size_t before) {
  if (!is_multi<T> && c.size() == before) r.fail("duplicate key");
  if constexpr (is_ordered<T>) {
    if (std::next(it) != c.end()) r.fail("keys out of order");
  }
}

template <class T>
T decode_range(Reader& r) {
  using E = typename element<T>::type;
  const std::size_t n = r.read_length(min_size<E>());
  const std::size_t start = r.position();
  T c;
  if constexpr (is_instance<std::vector, T> && is_bulk<E>()) {
    // read_length checked n * sizeof(E) <= remaining(), so this resize is backed by input.
    const std::byte* src = r.read_bytes(n * sizeof(E)).data();
    c.resize(n);
    if (n > 0) std::memcpy(c.data(), src, n * sizeof(E));
  } else if constexpr (is_sequence<T> && is_packed<E>()) {
    const std::byte* src = r.read_bytes(n * min_size<E>()).data();
    if constexpr (is_instance<std::vector, T>) c.reserve(n);
    for (std::size_t i = 0; i < n; ++i) c.push_back(get_packed<E>(src));
  } else {
    // Reserve only when the memory is within a small factor of the input that must follow;
    // otherwise grow as elements actually decode.
    if constexpr (is_instance<std::vector, T> && min_size<E>() > 0 &&
                  sizeof(E) <= 8 * min_size<E>()) {
      c.reserve(n);
    }
    for (std::size_t i = 0; i < n; ++i) {
      if constexpr (is_sequence<T>) {
        c.push_back(decode<E>(r));
      } else if constexpr (is_map<T>) {
        auto key = decode<typename T::key_type>(r);
        const std::size_t before = c.size();
        check_inserted(r, c,
                       c.emplace_hint(c.end(), std::move(key), decode<typename T::mapped_type>(r)),
                       before);
      } else {
        const std::size_t before = c.size();
        check_inserted(r, c, c.emplace_hint(c.end(), decode<E>(r)), before);
      }
    }
  }
  // The encoder's rule (encode_range), so that only what it can produce decodes.
  if constexpr (min_size<E>() == 0) {
    if (n > r.position() - start + max_empty_elements) {
      r.fail("length " + std::to_string(n) +
             " of elements that encode to (almost) nothing exceeds "
             "PROCPOOL_CODEC_MAX_EMPTY_ELEMENTS");
    }
  }
  return c;
}

template <class V, std::size_t I>
V decode_alternative(Reader& r) {
  return V(std::in_place_index<I>, decode<std::remove_cv_t<std::variant_alternative_t<I, V>>>(r));
}

template <class V, std::size_t... I>
V decode_variant(Reader& r, std::size_t index, std::index_sequence<I...>) {
  static constexpr V (*table[])(Reader&) = {&decode_alternative<V, I>...};
  return table[index](r);
}

template <class T>
T decode(Reader& r) {
  if constexpr (user_codec<T>) {
    return user_decode<T>(r);
  } else if constexpr (std::is_same_v<T, bool>) {
    const auto b = get<std::uint8_t>(r);
    if (b > 1) r.fail("invalid bool value " + std::to_string(b));
    return b == 1;
  } else if constexpr (is_bulk<T>()) {
    return get<T>(r);
  } else if constexpr (is_packed<T>()) {
    DecodeScope scope(r, &type_name<T>);
    const std::byte* src = r.read_bytes(min_size<T>()).data();
    return get_packed<T>(src);
  } else {
    DecodeScope scope(r, &type_name<T>);
    if constexpr (is_instance<std::basic_string, T>) {
      using C = typename T::value_type;
      const std::size_t n = r.read_length(sizeof(C));
      const std::byte* src = r.read_bytes(n * sizeof(C)).data();
      T s;
      s.resize(n);
      if (n > 0) std::memcpy(s.data(), src, n * sizeof(C));
      return s;
    } else if constexpr (is_sequence<T> || is_map<T> || is_set<T>) {
      return decode_range<T>(r);
    } else if constexpr (is_std_array<T>) {
      using E = typename T::value_type;
      if constexpr (std::is_default_constructible_v<E> && std::is_move_assignable_v<E>) {
        T a{};
        for (E& e : a) e = decode<E>(r);
        return a;
      } else {
        return array_from<T>([&r] { return decode<E>(r); },
                             std::make_index_sequence<std::tuple_size_v<T>>{});
      }
    } else if constexpr (tuple_like_ok<T>() || aggregate_ok<T>()) {
      // One braced initialization: fields may be const or lack a default constructor, and
      // braced initializers run left to right, so fields decode in order.
      return [&r]<class... Fs>(field_list<Fs...>) {
        return T{decode<std::remove_cv_t<Fs>>(r)...};
      }(parts_of<T>());
    } else if constexpr (is_instance<std::optional, T>) {
      const auto flag = get<std::uint8_t>(r);
      if (flag == 0) return T{};
      if (flag != 1) r.fail("invalid optional flag " + std::to_string(flag));
      return T(std::in_place, decode<typename T::value_type>(r));
    } else if constexpr (is_instance<std::variant, T>) {
      const std::size_t index = get<variant_index_t<T>>(r);
      if (index >= std::variant_size_v<T>) {
        r.fail("variant index " + std::to_string(index) + " out of range (" +
               std::to_string(std::variant_size_v<T>) + " alternatives)");
      }
      return decode_variant<T>(r, index, std::make_index_sequence<std::variant_size_v<T>>{});
    } else if constexpr (is_instance<std::chrono::duration, T>) {
      return T(decode<typename T::rep>(r));
    } else if constexpr (std::is_same_v<T, std::monostate>) {
      return T{};
    } else {
      reject<T>();
      std::terminate();  // not reached: reject<T> does not compile
    }
  }
}

}  // namespace detail::bin

/// The default codec: a compact native binary encoding of the types listed at the top of this
/// file; anything else needs a `procpool::codec<T>` specialization.
struct BinaryCodec {
  template <class T>
  static void encode(Writer& w, const T& v) {
    detail::bin::encode<T>(w, v);
  }

  template <class T>
  static T decode(Reader& r) {
    static_assert(std::is_object_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                  "decode a plain value type, not a reference or cv-qualified type");
    detail::DecodeScope scope(r, &detail::type_name<T>);
    return detail::bin::decode<T>(r);
  }
};

template <class T>
void Writer::write(const T& v) {
  BinaryCodec::encode(*this, v);
}

template <class T>
T Reader::read() {
  return BinaryCodec::decode<T>(*this);
}

/// What `Pool<C>` requires of a codec: static `encode`/`decode` templates over `Writer`/`Reader`.
template <class C>
concept Codec = requires(Writer& w, Reader& r, const int& v) {
  C::encode(w, v);
  { C::template decode<int>(r) } -> std::same_as<int>;
};

/// `C` can be asked to encode and decode a `T` (a declaration check: it does not look inside).
template <class C, class T>
concept CodecFor = std::is_object_v<T> && requires(Writer& w, Reader& r, const T& v) {
  C::encode(w, v);
  { C::template decode<T>(r) } -> std::same_as<T>;
};

static_assert(Codec<BinaryCodec>);

namespace detail {

/// Encodes `v` with codec `C` for the pool. Anything other than `CodecError` that escapes the
/// codec becomes a `CodecError` naming `T`; on failure the bytes written so far are removed, so
/// the buffer is as it was.
template <class C, class T>
void encode_value(Writer& w, const T& v) {
  const std::size_t before = w.buffer().size();
  try {
    C::encode(w, v);
  } catch (const CodecError&) {
    if (w.buffer().size() > before) w.buffer().resize(before);
    throw;
  } catch (...) {
    if (w.buffer().size() > before) w.buffer().resize(before);
    throw CodecError("cannot encode " + type_name<T>() + ": " + describe_current_exception());
  }
}

/// Decodes a `T` with codec `C` for the pool; failures become a `CodecError` naming `T`.
template <class C, class T>
T decode_value(Reader& r) {
  DecodeScope scope(r, &type_name<T>);
  try {
    return C::template decode<T>(r);
  } catch (const CodecError&) {
    throw;
  } catch (...) {
    r.fail(describe_current_exception());
  }
}

}  // namespace detail

}  // namespace procpool
