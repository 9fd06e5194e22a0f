#pragma once
// A job's answer turned into what the caller gets: the value of one task, a map's vector in
// input order, or a chunk of imap items. Called by Pool when a completion is read; the answer's
// bytes were checked by the frame reader, the values are checked here by the codec.

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include <procpool/codec.hpp>
#include <procpool/detail/completion.hpp>
#include <procpool/detail/map_batch.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/errors.hpp>
#include <procpool/imap.hpp>

namespace procpool::detail {

template <class Codec, class R>
stored_t<R> decode_result(std::span<const std::byte> bytes) {
  if constexpr (std::is_void_v<R>) {
    if (!bytes.empty()) throw CodecError("a void task returned bytes");
    return {};
  } else {
    Reader r(bytes);
    R v = decode_value<Codec, R>(r);
    if (!r.at_end()) fail_trailing_result(type_name<R>());
    return v;
  }
}

template <class Codec, class R>
void materialize_single(ResultState& s) {
  auto& t = static_cast<TypedCompletion<R>&>(s);
  const JobOutcome& o = t.outcomes().at(0);
  if (o.error) {
    t.error = *o.error;
    return;
  }
  for_each_item(o.payload(), o.count, [&](const ItemView& it) {
    if (it.status == ItemStatus::ok) {
      t.value = decode_result<Codec, R>(it.bytes);
    } else {
      t.error = ErrorInfo::from_item(it);
    }
  });
}

// A map's result: every item in input order; the first failed item (in input order) wins. The
// walk over the outcomes is gather_items'; here is only what needs the type.
template <class Codec, class R>
void materialize_map(ResultState& s) {
  using T = stored_t<R>;
  using Vec = std::vector<T>;
  auto& t = static_cast<TypedCompletion<Vec>&>(s);
  Vec out;
  ItemSink sink;
  sink.out = &out;
  const std::size_t items = count_items(t);
  if constexpr (raw_encoded<Codec, T>()) {
    // Plain values: each item's bytes are copied into place.
    out.resize(items);
    sink.raw_size = sizeof(T);
    sink.raw = reinterpret_cast<std::byte*>(out.data());
    sink.decode = [](void* o, std::size_t i, std::span<const std::byte> bytes) {
      (*static_cast<Vec*>(o))[i] = decode_result<Codec, R>(bytes);
    };
  } else {
    out.reserve(items);
    sink.decode = [](void* o, std::size_t, std::span<const std::byte> bytes) {
      static_cast<Vec*>(o)->push_back(decode_result<Codec, R>(bytes));
    };
  }
  if (gather_items(t, sink, t.error)) t.value = std::move(out);
}

template <class Codec, class R>
void decode_chunk(const Completion& c, std::deque<ImapItem<R>>& out) {
  const JobOutcome& o = c.outcomes().at(0);
  const ErrorInfo* whole = c.forced_error() ? &*c.forced_error() : o.error ? &*o.error : nullptr;
  if (whole) {
    for (std::uint32_t i = 0; i < c.items; ++i) {
      ImapItem<R> it;
      it.error = *whole;
      out.push_back(std::move(it));
    }
    return;
  }
  for_each_item(o.payload(), o.count, [&](const ItemView& v) {
    ImapItem<R> it;
    if (v.status == ItemStatus::ok) {
      try {
        it.value = decode_result<Codec, R>(v.bytes);
      } catch (const CodecError& e) {
        ErrorInfo info;
        info.kind = ErrorInfo::Kind::codec;
        info.message = bare_message(e);
        it.error = std::move(info);
      }
    } else {
      it.error = ErrorInfo::from_item(v);
    }
    out.push_back(std::move(it));
  });
}

}  // namespace procpool::detail
