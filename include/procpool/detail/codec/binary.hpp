#pragma once
// BinaryCodec's encoding and decoding of every supported type, and the static_assert that
// names an unsupported one. Part of <procpool/codec.hpp>.

#include <compare>
#include <iterator>
#include <utility>

#include <procpool/detail/codec/fields.hpp>
#include <procpool/detail/posix/memory.hpp>
#include <procpool/detail/recycled_vectors.hpp>

namespace procpool::detail::bin {

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

// Reads elements of type E from unaligned bytes, for filling a vector without zeroing it first.
template <class E>
struct UnalignedIterator {
  using iterator_category = std::random_access_iterator_tag;
  using value_type = E;
  using difference_type = std::ptrdiff_t;
  using pointer = const E*;
  using reference = E;
  static constexpr difference_type step = static_cast<difference_type>(sizeof(E));

  const std::byte* p;

  E operator*() const noexcept {
    E e;
    std::memcpy(&e, p, sizeof e);
    return e;
  }
  E operator[](difference_type d) const noexcept { return *(*this + d); }
  UnalignedIterator& operator++() noexcept { return *this += 1; }
  UnalignedIterator operator++(int) noexcept { return std::exchange(*this, *this + 1); }
  UnalignedIterator& operator--() noexcept { return *this += -1; }
  UnalignedIterator operator--(int) noexcept { return std::exchange(*this, *this - 1); }
  UnalignedIterator& operator+=(difference_type d) noexcept {
    p += d * step;
    return *this;
  }
  UnalignedIterator& operator-=(difference_type d) noexcept { return *this += -d; }
  UnalignedIterator operator+(difference_type d) const noexcept { return {p + d * step}; }
  UnalignedIterator operator-(difference_type d) const noexcept { return {p - d * step}; }
  difference_type operator-(const UnalignedIterator& o) const noexcept { return (p - o.p) / step; }
  auto operator<=>(const UnalignedIterator&) const = default;
};

// Large vectors of plain values: filled straight from the input (resize would zero them first,
// a second pass), into a vector a worker kept (see RecycledVectors) or else into memory asked for
// in huge pages before it is first written. Filling fresh 4 KiB pages is what a large result
// costs most otherwise.
template <class V>
void fill_bulk(V& c, const std::byte* src, std::size_t n) {
  using E = typename V::value_type;
  if (n * sizeof(E) < config::bulk_vector_min) {
    c.resize(n);
    if (n > 0) std::memcpy(c.data(), src, n * sizeof(E));
    return;
  }
  bool reused = false;
  if constexpr (std::is_same_v<V, std::vector<E>>) reused = RecycledVectors::process().take(n, c);
  if (!reused) {
    c.reserve(n);
    posix::prefer_huge_pages(c.data(), n * sizeof(E));
  }
  if constexpr (std::is_same_v<E, char> || std::is_same_v<E, unsigned char> ||
                std::is_same_v<E, signed char> || std::is_same_v<E, std::byte> ||
                std::is_same_v<E, char8_t>) {
    const E* p = reinterpret_cast<const E*>(src);  // bytes may be read as these anywhere
    c.assign(p, p + n);
  } else {
    c.assign(UnalignedIterator<E>{src}, UnalignedIterator<E>{src + n * sizeof(E)});
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
    fill_bulk(c, r.read_bytes(n * sizeof(E)).data(), n);
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

}  // namespace procpool::detail::bin
