#pragma once
// The codec's byte streams: Writer, Reader, the codec<T> customization point they name, and the
// decode scope that names the type being decoded in errors. Part of <procpool/codec.hpp>.

#include <procpool/detail/cxx20.hpp>

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/demangle.hpp>
#include <procpool/detail/separate.hpp>
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

using type_name_fn = std::string (*)();
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
  [[noreturn]] PROCPOOL_DECL void fail(std::string_view reason) const;

 private:
  friend class detail::DecodeScope;

  [[noreturn]] PROCPOOL_DECL void fail_truncated(std::size_t wanted) const;
  [[noreturn]] PROCPOOL_DECL void fail_length(std::uint64_t n, std::size_t left) const;

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

PROCPOOL_SEPARATE_BEGIN
/// "what(): message" of the exception in flight, for wrapping it into a `CodecError`.
PROCPOOL_DECL std::string describe_current_exception();
PROCPOOL_SEPARATE_END

}  // namespace detail

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
  if (!ok) fail_length(n, left);
  return static_cast<std::size_t>(n);
}

}  // namespace procpool

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/codec/io_impl.hpp>
#endif
