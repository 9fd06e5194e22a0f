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

#include <procpool/detail/codec/binary.hpp>

namespace procpool {

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

/// True when codec `C` encodes every `T` as exactly the object's bytes (BinaryCodec's
/// padding-free packed types): the pool then copies such values with memcpy, without a Reader
/// or Writer per value.
template <class C, class T>
consteval bool raw_encoded() {
  if constexpr (std::is_same_v<C, BinaryCodec>) {
    return bin::is_bulk<T>();
  } else {
    return false;
  }
}

/// Encodes `v` alone into `b` (cleared first) with codec `C`, for a shared container's item.
template <class C, class T>
std::span<const std::byte> encode_item(Buffer& b, const T& v) {
  b.clear();
  Writer w(b);
  encode_value<C, T>(w, v);
  return b.span();
}

/// A thread's scratch buffer lets its memory go after an item over 16 MiB.
inline void trim_scratch(Buffer& b) {
  if (b.capacity() > (std::size_t{16} << 20)) b = Buffer();
}

/// Decodes the one `T` that the scratch buffer `b` holds; trailing bytes are a `CodecError`
/// naming `what`.
template <class C, class T>
T decode_item(Buffer& b, const char* what) {
  Reader r(b.span());
  T v = decode_value<C, T>(r);
  if (!r.at_end()) r.fail(std::string("trailing bytes after a ") + what);
  trim_scratch(b);
  return v;
}

}  // namespace detail

}  // namespace procpool
