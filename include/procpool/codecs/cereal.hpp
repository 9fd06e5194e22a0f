#pragma once

#include <procpool/detail/cxx20.hpp>

/// @file
/// `CerealCodec`: a codec for any type cereal can serialize (a `serialize` member or free
/// function, plus the `<cereal/types/...>` headers for the standard types used). Opt-in: not
/// included by `procpool.hpp`.
///
/// Each value is written as a length-prefixed blob from a binary archive that writes straight
/// into the frame buffer. Reading uses an archive that checks every read against the blob and
/// every container length cereal reads against the bytes left, before cereal allocates.

#include <cereal/cereal.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include <procpool/codec.hpp>

namespace procpool::detail::cereal_io {

/// Cereal output archive appending native binary data to a `Buffer`.
class CerealOut : public cereal::OutputArchive<CerealOut, cereal::AllowEmptyClassElision> {
 public:
  explicit CerealOut(Buffer& out)
      : cereal::OutputArchive<CerealOut, cereal::AllowEmptyClassElision>(this), out_(out) {}

  void save_binary(const void* data, std::size_t n) { out_.append(data, n); }

 private:
  Buffer& out_;
};

/// Cereal input archive over one blob; running past its end throws `cereal::Exception`.
class CerealIn : public cereal::InputArchive<CerealIn, cereal::AllowEmptyClassElision> {
 public:
  explicit CerealIn(std::span<const std::byte> in)
      : cereal::InputArchive<CerealIn, cereal::AllowEmptyClassElision>(this), in_(in) {}

  void load_binary(void* data, std::size_t n) {
    if (n > remaining()) {
      throw cereal::Exception("truncated input: " + std::to_string(n) + " bytes needed, " +
                              std::to_string(remaining()) + " left");
    }
    if (n > 0) std::memcpy(data, in_.data() + pos_, n);
    pos_ += n;
  }

  // cereal resizes a container to the length it reads before reading any element, so a corrupt
  // length would be an arbitrary allocation: refuse lengths the rest of the blob cannot hold
  // (with the same allowance as BinaryCodec for elements that serialize to nothing).
  void check_length(std::uint64_t n) const {
    if (n > static_cast<std::uint64_t>(remaining()) + max_empty_elements) {
      throw cereal::Exception("length " + std::to_string(n) + " is more than the " +
                              std::to_string(remaining()) + " remaining bytes can hold");
    }
  }

  std::size_t remaining() const noexcept { return in_.size() - pos_; }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
};

// The functions cereal looks up (by ADL on the archive) for the primitives.

template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const T& t) {
  ar.save_binary(std::addressof(t), sizeof(T));
}

template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, T& t) {
  if constexpr (std::is_same_v<T, bool>) {
    // Only 0 and 1 are bools; copying any other byte into one is undefined behaviour.
    std::uint8_t b = 0;
    ar.load_binary(&b, 1);
    if (b > 1) throw cereal::Exception("invalid bool value " + std::to_string(b));
    t = b == 1;
  } else {
    ar.load_binary(std::addressof(t), sizeof(T));
  }
}

// Names mean nothing in a binary archive.
template <class Archive, class T>
CEREAL_ARCHIVE_RESTRICT(CerealIn, CerealOut)
CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const cereal::SizeTag<T>& t) {
  ar(t.size);
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, cereal::SizeTag<T>& t) {
  ar(t.size);
  ar.check_length(t.size);
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(CerealOut& ar, const cereal::BinaryData<T>& bd) {
  ar.save_binary(bd.data, static_cast<std::size_t>(bd.size));
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(CerealIn& ar, cereal::BinaryData<T>& bd) {
  ar.load_binary(bd.data, static_cast<std::size_t>(bd.size));
}

}  // namespace procpool::detail::cereal_io

CEREAL_REGISTER_ARCHIVE(procpool::detail::cereal_io::CerealOut)
CEREAL_REGISTER_ARCHIVE(procpool::detail::cereal_io::CerealIn)
CEREAL_SETUP_ARCHIVE_TRAITS(procpool::detail::cereal_io::CerealIn,
                            procpool::detail::cereal_io::CerealOut)

namespace procpool {

/// Encodes values with cereal: `Pool<CerealCodec>`. `T` needs cereal serialization functions
/// and, to be decoded, a default constructor. Any failure is a `CodecError` naming `T`.
struct CerealCodec {
  template <class T>
  static void encode(Writer& w, const T& v) {
    detail::Buffer& buf = w.buffer();
    const std::size_t at = buf.size();
    buf.grow(sizeof(std::uint64_t));  // the blob's length, known once cereal is done
    try {
      detail::cereal_io::CerealOut ar(buf);
      ar(v);
    } catch (...) {
      buf.resize(at);
      throw CodecError("cannot encode " + detail::type_name<T>() +
                       " with cereal: " + detail::describe_current_exception());
    }
    const auto len = static_cast<std::uint64_t>(buf.size() - at - sizeof(std::uint64_t));
    std::memcpy(buf.data() + at, &len, sizeof len);
  }

  template <class T>
  static T decode(Reader& r) {
    static_assert(std::is_default_constructible_v<T>,
                  "procpool::CerealCodec loads into a default-constructed value: give the type a "
                  "default constructor, or use BinaryCodec with a procpool::codec<T> "
                  "specialization");
    detail::DecodeScope scope(r, &detail::type_name<T>);
    const std::span<const std::byte> blob = r.read_bytes(r.read_length(1));
    T v{};
    try {
      detail::cereal_io::CerealIn ar(blob);
      ar(v);
      if (ar.remaining() != 0) {
        throw cereal::Exception(std::to_string(ar.remaining()) + " bytes left over in the blob");
      }
    } catch (...) {
      r.fail("cereal: " + detail::describe_current_exception());
    }
    return v;
  }
};

static_assert(Codec<CerealCodec>);

}  // namespace procpool
