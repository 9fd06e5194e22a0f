#pragma once
// The frame reader: turns a byte stream from a worker into complete frames, incrementally, and
// validates each header before trusting it. Owns the stream's buffer. Used by a worker link
// (local/link.hpp) for its result pipe; any transport that receives a byte stream can use it.
//
// The buffer grows as bytes arrive, not as a header claims: a lying header costs nothing, and a
// worker's memory cannot be used to exhaust the pool's. A frame's whole size is reserved at once
// only up to a limit (growing step by step would copy a large frame again and again).

#include <cstddef>
#include <cstring>
#include <span>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/config.hpp>
#include <procpool/detail/transport.hpp>
#include <procpool/detail/wire.hpp>

namespace procpool::detail {

class FrameReader {
 public:
  FrameReader() { in_.reserve(config::read_buffer_bytes); }

  /// Where the next read may put its bytes (at least some room is made).
  std::span<std::byte> space() {
    if (want_ > in_.capacity() && want_ <= config::read_reserve_max) in_.reserve(want_);
    if (in_.capacity() - in_.size() < config::read_min_free)
      in_.reserve(in_.size() + config::read_buffer_bytes);
    return {in_.data() + in_.size(), in_.capacity() - in_.size()};
  }
  /// `n` bytes were read into space().
  void commit(std::size_t n) { in_.resize(in_.size() + n); }

  enum class Peek { frame, partial, bad };
  /// Looks at the frame at the read position. `frame`: complete, its header in `h`; `partial`:
  /// more bytes are needed; `bad`: the header is invalid (wrong magic, or over the size limit).
  Peek peek(FrameHeader& h) {
    want_ = 0;
    if (in_.size() - pos_ < sizeof(FrameHeader)) return Peek::partial;
    std::memcpy(&h, in_.data() + pos_, sizeof h);
    if (h.magic != frame_magic || h.size > max_frame) return Peek::bad;
    if (in_.size() - pos_ - sizeof h >= h.size) return Peek::frame;
    want_ = sizeof h + static_cast<std::size_t>(h.size);
    return Peek::partial;
  }

  /// The complete frame peek() found, to pass on; then call next().
  IncomingFrame frame(const FrameHeader& h) {
    const std::size_t len = sizeof h + static_cast<std::size_t>(h.size);
    IncomingFrame f{h, {in_.data() + pos_, len}, nullptr, {}};
    // A large frame alone in the buffer is handed over instead of copied.
    if (pos_ == 0 && len == in_.size() && len >= config::hand_over_bytes) f.whole = &in_;
    return f;
  }

  /// Moves past the frame peek() found.
  void next(const FrameHeader& h) {
    if (in_.capacity() == 0) {  // the buffer was handed over with its frame
      in_.reserve(config::read_buffer_bytes);
      pos_ = 0;
      return;
    }
    pos_ += sizeof h + static_cast<std::size_t>(h.size);
  }

  /// Drops the frames read so far (call when no frame view is held any more).
  void compact() {
    in_.consume(pos_);
    pos_ = 0;
  }

  /// Forgets everything: after a malformed frame nothing more from the stream is trusted.
  void reset() {
    in_.clear();
    pos_ = 0;
    want_ = 0;
  }

 private:
  Buffer in_;
  std::size_t pos_ = 0;   // start of the first frame not yet passed on
  std::size_t want_ = 0;  // size of the partly read frame, once its header is in
};

}  // namespace procpool::detail
