#pragma once
// How BinaryCodec sees a type: its kind (sequence, map, aggregate...) and, for an aggregate,
// how many fields it has. Part of <procpool/codec.hpp>.

#include <procpool/detail/codec/io.hpp>

namespace procpool::detail::bin {

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

// Containers are told by their shape, not their names: the standard library's (and any that
// follow its conventions) qualify without this header naming, and so including, each of them.
// A container is allocator-aware and knows its size; strings, which have traits_type, are told
// apart first.
template <class T>
concept container_shape = requires(const T& c) {
  typename T::value_type;
  typename T::allocator_type;
  typename T::const_iterator;
  c.begin();
  c.end();
  { c.size() } -> std::convertible_to<std::size_t>;
};
template <class T>
concept has_traits_type = requires {
  typename T::traits_type;
};
template <class T>
concept has_key_type = requires {
  typename T::key_type;
};
template <class T>
concept has_mapped_type = requires {
  typename T::mapped_type;
};
template <class T>
concept has_key_compare = requires {
  typename T::key_compare;
};
template <class T>
concept appends = requires(T& c, typename T::value_type&& v) {
  c.push_back(std::move(v));
};
template <class T>
concept inserts_mapped_with_hint = requires(T& c, typename T::key_type&& k,
                                            typename T::mapped_type&& m) {
  c.emplace_hint(c.end(), std::move(k), std::move(m));
};
template <class T>
concept inserts_with_hint = requires(T& c, typename T::value_type&& v) {
  c.emplace_hint(c.end(), std::move(v));
};
// A unique-key container's insert says whether it inserted; a multi-key one's always does.
template <class T>
concept insert_may_refuse = requires(T& c, const typename T::value_type& v) {
  c.insert(v).second;
};

template <class T>
inline constexpr bool is_container = container_shape<T> && !has_traits_type<T>;
// vector, deque, list
template <class T>
inline constexpr bool is_sequence = is_container<T> && !has_key_type<T> && appends<T>;
// map, multimap and their unordered forms
template <class T>
inline constexpr bool is_map =
    is_container<T>&& has_key_type<T>&& has_mapped_type<T>&& inserts_mapped_with_hint<T>;
// set, multiset and their unordered forms
template <class T>
inline constexpr bool is_set =
    is_container<T>&& has_key_type<T> && !has_mapped_type<T> && inserts_with_hint<T>;
template <class T>
inline constexpr bool is_ordered = (is_map<T> || is_set<T>)&&has_key_compare<T>;
template <class T>
inline constexpr bool is_multi = (is_map<T> || is_set<T>)&&!insert_may_refuse<T>;

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

}  // namespace procpool::detail::bin
