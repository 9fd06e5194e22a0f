#pragma once

#include <procpool/detail/cxx20.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <typeinfo>
#include <utility>

#include <procpool/codec.hpp>
#include <procpool/detail/buffer.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/socket.hpp>
#include <procpool/detail/posix/sync.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/errors.hpp>
#include <procpool/queue.hpp>

namespace procpool {

namespace detail {

/// What precedes each message on a pipe.
struct PipeHeader {
  std::uint32_t magic;
  std::uint32_t tag;  // the element type, so mismatched ends fail loudly
  std::uint64_t size;
};
inline constexpr std::uint32_t pipe_magic = 0x70705049;  // "ppPI"

/// One end of a pipe in this process: its socket, held as a descriptor segment so that it
/// travels to workers the way shared memory does, and the bytes of a message not yet complete.
struct PipeEnd {
  explicit PipeEnd(std::shared_ptr<Segment> s) : seg(std::move(s)) {}
  int fd() const noexcept { return seg->fd(); }

  std::shared_ptr<Segment> seg;
  std::mutex send_m;
  std::mutex recv_m;
  Buffer in;
  Buffer out;
};

}  // namespace detail

template <class T, class Codec = BinaryCodec>
class Pipe;

/// A duplex connection between two `Pipe` ends (a connected socket pair): `auto [a, b] =
/// make_pipe<T>(); a.send(v); b.recv();` and the other way round.
template <class T, class Codec = BinaryCodec>
std::pair<Pipe<T, Codec>, Pipe<T, Codec>> make_pipe();

/// One end of a duplex connection made by `make_pipe`: what one end sends, the other receives,
/// whole and in order. An end passed to a task or a `Process` refers to the same connection;
/// copies of an end share it. As with Python's pipes, two processes must not use the same end at
/// the same time.
template <class T, class Codec>
class Pipe {
 public:
  /// Sends `v`, waiting while the connection is full. `QueueClosed` if the other end is gone.
  void send(const T& v) {
    std::lock_guard l(end_->send_m);
    check_open();
    auto& b = end_->out;
    b.clear();
    detail::PipeHeader h{detail::pipe_magic, tag(), 0};
    b.append(&h, sizeof h);
    Writer w(b);
    detail::encode_value<Codec, T>(w, v);
    h.size = b.size() - sizeof h;
    if (h.size > detail::max_frame)
      throw CodecError("a pipe message of " + std::to_string(h.size) +
                       " bytes exceeds the maximum frame size");
    std::memcpy(b.data(), &h, sizeof h);
    auto ec = detail::posix::send_all(end_->fd(), b.data(), b.size());
    if (b.capacity() > (std::size_t{16} << 20)) b = detail::Buffer();
    if (!ec) return;
    if (ec == std::errc::broken_pipe || ec == std::errc::connection_reset)
      throw QueueClosed("send on a pipe whose other end is gone");
    detail::posix::throw_system_error(ec, "send");
  }

  /// Receives the next message, waiting for it. `QueueClosed` once the other end is gone and
  /// every message it sent has been received.
  T recv() { return *recv_until(-1); }

  /// Like `recv`, but empty if nothing arrived within `d`.
  template <class Rep, class Period>
  std::optional<T> recv_for(std::chrono::duration<Rep, Period> d) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return recv_until(detail::posix::monotonic_ns() + (ns > 0 ? ns : 0));
  }

  /// Lets go of this end in this process (and in every copy of this handle here), as Python's
  /// `Connection.close`: once no process holds it any more, the other end's `recv` throws
  /// `QueueClosed`. An end passed to a `Process` or task is that process's own; close the
  /// parent's copy after passing it. Using a closed handle throws `std::logic_error`.
  void close() {
    std::scoped_lock l(end_->send_m, end_->recv_m);
    end_->seg.reset();
  }

 private:
  friend struct codec<Pipe<T, Codec>>;
  friend std::pair<Pipe, Pipe> make_pipe<T, Codec>();

  explicit Pipe(std::shared_ptr<detail::Segment> seg)
      : end_(std::make_shared<detail::PipeEnd>(std::move(seg))) {}

  static std::uint32_t tag() { return detail::type_tag(typeid(T).name(), typeid(Codec).name()); }

  void check_open() const {
    if (!end_->seg) throw std::logic_error(detail::prefixed("use of a closed Pipe end"));
  }

  std::optional<T> recv_until(std::int64_t deadline_ns) {
    std::lock_guard l(end_->recv_m);
    check_open();
    auto& in = end_->in;
    for (;;) {
      detail::PipeHeader h{};
      if (in.size() >= sizeof h) {
        std::memcpy(&h, in.data(), sizeof h);
        if (h.magic != detail::pipe_magic || h.size > detail::max_frame)
          throw CodecError("a pipe received bytes that are not a procpool message");
        if (h.tag != tag())
          throw CodecError("a pipe end of " + detail::type_name<T>() +
                           " received a message of another type");
        if (in.size() - sizeof h >= h.size) {
          detail::Buffer msg;
          msg.append(in.data() + sizeof h, static_cast<std::size_t>(h.size));
          in.consume(sizeof h + static_cast<std::size_t>(h.size));
          Reader r(msg.span());
          T v = detail::decode_value<Codec, T>(r);
          if (!r.at_end()) r.fail("trailing bytes after a pipe message");
          return v;
        }
      }
      // Room for the rest of this message, in steps: a length is never trusted up front.
      std::size_t want = 64 * 1024;
      if (in.size() >= sizeof h) {
        std::uint64_t rest = sizeof h + h.size - in.size();
        if (rest > want) want = rest < (std::size_t{1} << 20) ? rest : (std::size_t{1} << 20);
      }
      if (in.capacity() - in.size() < want) in.reserve(in.size() + want);
      std::error_code ec;
      auto n = detail::posix::recv_nowait(end_->fd(), in.data() + in.size(),
                                          in.capacity() - in.size(), ec);
      if (n > 0) {
        in.resize(in.size() + static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0 || ec == std::errc::connection_reset) {
        throw QueueClosed(in.empty()
                              ? "recv on a pipe whose other end is gone"
                              : "the other end of the pipe closed in the middle of a message");
      }
      if (ec != std::errc::resource_unavailable_try_again)
        detail::posix::throw_system_error(ec, "recv");
      int ms = -1;
      if (deadline_ns >= 0) {
        std::int64_t left = deadline_ns - detail::posix::monotonic_ns();
        if (left <= 0) return std::nullopt;
        ms = static_cast<int>((left + 999'999) / 1'000'000);
      }
      (void)detail::posix::wait_readable(end_->fd(), ms);
    }
  }

  std::shared_ptr<detail::PipeEnd> end_;
};

template <class T, class Codec>
std::pair<Pipe<T, Codec>, Pipe<T, Codec>> make_pipe() {
  detail::posix::UniqueFd a, b;
  detail::posix::check(detail::posix::make_stream_pair(a, b), "socketpair");
  return {Pipe<T, Codec>(detail::Segment::create_descriptor(std::move(a))),
          Pipe<T, Codec>(detail::Segment::create_descriptor(std::move(b)))};
}

template <class T, class C>
struct codec<Pipe<T, C>> {
  static void encode(Writer& w, const Pipe<T, C>& p) {
    p.check_open();
    detail::write_segment(w, p.end_->seg);
    w.write(Pipe<T, C>::tag());
  }
  static Pipe<T, C> decode(Reader& r) {
    auto seg = detail::read_segment(r);
    if (!seg->is_descriptor()) r.fail("the handle names shared memory, not a pipe end");
    if (r.read<std::uint32_t>() != Pipe<T, C>::tag())
      r.fail("the pipe end carries another element type");
    return Pipe<T, C>(std::move(seg));
  }
};

}  // namespace procpool
