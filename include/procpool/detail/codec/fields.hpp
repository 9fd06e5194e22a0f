#pragma once
// The declared field types of an aggregate, the least bytes a value can encode to (what a
// decoded length is checked against), and which types encode as one memcpy. Part of
// <procpool/codec.hpp>.

#include <procpool/detail/codec/with_fields.hpp>

namespace procpool::detail::bin {

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

}  // namespace procpool::detail::bin
