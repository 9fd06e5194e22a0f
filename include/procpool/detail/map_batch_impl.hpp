#pragma once
// Definitions of what map_batch.hpp declares: inline in a header-only build, compiled once by
// src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <algorithm>
#include <cstring>
#include <string>

#include <procpool/detail/engine.hpp>
#include <procpool/detail/map_batch.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/errors.hpp>

namespace procpool::detail {

PROCPOOL_DECL void StagedInput::end_element() {
  ends_.push_back(bytes.size());
  segment_ends_.push_back(segments.size());
}

PROCPOOL_DECL std::uint32_t StagedInput::encode(Job& j, std::size_t, std::size_t max,
                                                std::size_t max_bytes) {
  const std::size_t n = ends_.size(), first = next_;
  const std::size_t start = first == 0 ? 0 : ends_[first - 1];
  std::size_t i = first;
  while (i < n && i - first < max && (i == first || ends_[i] - start <= max_bytes)) ++i;
  if (i == first) return 0;
  j.frame.append(bytes.data() + start, ends_[i - 1] - start);
  if (!segments.empty()) {
    const std::size_t s0 = first == 0 ? 0 : segment_ends_[first - 1];
    j.attachments.assign(segments.begin() + static_cast<std::ptrdiff_t>(s0),
                         segments.begin() + static_cast<std::ptrdiff_t>(segment_ends_[i - 1]));
  }
  next_ = i;
  return static_cast<std::uint32_t>(i - first);
}

PROCPOOL_SEPARATE_BEGIN

PROCPOOL_DECL std::size_t begin_task_frame(Buffer& b, std::uint64_t id, const TaskRef& task) {
  b.use_source(task_frame_source());
  std::size_t at = begin_frame(b, FrameKind::task, id);
  put_task_ref(b, task);
  return at;
}

PROCPOOL_DECL void end_task_frame(Buffer& b, std::size_t at, std::uint32_t count, bool timed) {
  finish_frame(b, at, count, timed ? frame_timed : std::uint8_t{0});
  const std::size_t bytes = b.size() - at - sizeof(FrameHeader);
  if (bytes > max_frame)
    throw CodecError("task arguments of " + std::to_string(bytes) +
                     " bytes exceed the maximum frame size of " + std::to_string(max_frame) +
                     " bytes");
}

PROCPOOL_DECL std::shared_ptr<Completion> submit_chunks(
    const std::shared_ptr<Supervisor>& engine, const MapCall& call, MapInput& in,
    std::shared_ptr<Completion> (*make)(std::size_t jobs)) {
  // Chunks are cut by count, and by size so that no frame grows huge.
  constexpr std::size_t chunk_bytes = 4 << 20;
  const std::size_t n = in.size();
  std::size_t chunksize = call.chunksize;
  if (chunksize == 0) {
    // Python's rule: few enough chunks to amortize, enough to balance.
    const std::size_t parts = 4 * pool_size(*engine);
    chunksize = std::max<std::size_t>((n + parts - 1) / parts, 1);
  }
  chunksize = std::min<std::size_t>(chunksize, UINT32_MAX);
  const bool timed = call.timeout_ns > 0;

  // Every element is encoded before anything is queued: the input's own exceptions reach the
  // caller first.
  std::vector<Job> jobs;
  jobs.reserve((n + chunksize - 1) / chunksize);
  std::size_t items = 0;
  while (!in.at_end()) {
    Job& j = jobs.emplace_back();
    j.id = pool_next_id(*engine);
    const std::size_t at = begin_task_frame(j.frame, j.id, call.task);
    j.count = in.encode(j, at, chunksize, chunk_bytes);
    if (j.count == 0) {
      jobs.pop_back();
      break;
    }
    end_task_frame(j.frame, at, j.count, timed);
    items += j.count;
  }

  std::shared_ptr<Completion> c = make(jobs.size());
  c->pool = pool_handle(engine);
  c->items = static_cast<std::uint32_t>(std::min<std::size_t>(items, UINT32_MAX));
  for (std::size_t k = 0; k < jobs.size(); ++k) {
    Job& j = jobs[k];
    j.completion = c;
    j.index = static_cast<std::uint32_t>(k);
    j.timeout_ns = call.timeout_ns;
    j.task = call.name;
  }
  pool_submit(*engine, jobs, items);
  return c;
}

PROCPOOL_DECL std::size_t count_items(const Completion& c) {
  std::size_t items = 0;
  for (const JobOutcome& o : c.outcomes()) items += o.count;
  return items;
}

PROCPOOL_DECL bool gather_items(const Completion& c, const ItemSink& sink,
                                std::optional<ErrorInfo>& error) {
  std::size_t i = 0;
  for (const JobOutcome& o : c.outcomes()) {
    if (o.error) {
      error = *o.error;
      return false;
    }
    // A packed run of plain values of the output's size is copied in one piece.
    std::uint64_t run_size = 0;
    std::span<const std::byte> values;
    bool bad = false;
    if (sink.raw_size != 0 && packed_results(o.payload(), o.count, run_size, values, bad) && !bad &&
        run_size == sink.raw_size) {
      std::memcpy(sink.raw + i * sink.raw_size, values.data(), values.size());
      i += o.count;
      continue;
    }
    bool failed = false;
    const bool whole = for_each_item(o.payload(), o.count, [&](const ItemView& it) {
      if (failed) return;
      if (it.status != ItemStatus::ok) {
        error = ErrorInfo::from_item(it);
        failed = true;
        return;
      }
      // A plain value's bytes are the value; the common sizes are copied without a call.
      const std::size_t size = it.bytes.size();
      if (size == sink.raw_size && size == 4) {
        std::memcpy(sink.raw + i * 4, it.bytes.data(), 4);
      } else if (size == sink.raw_size && size == 8) {
        std::memcpy(sink.raw + i * 8, it.bytes.data(), 8);
      } else if (size == sink.raw_size && size != 0) {
        std::memcpy(sink.raw + i * size, it.bytes.data(), size);
      } else {
        sink.decode(sink.out, i, it.bytes);  // the codec decodes it, or says what is wrong
      }
      ++i;
    });
    if (failed) return false;
    if (!whole) {  // checked when the frame arrived; never a silently short or padded vector
      ErrorInfo e;
      e.kind = ErrorInfo::Kind::codec;
      e.message = "a map chunk's result frame does not hold the items it counts";
      error = std::move(e);
      return false;
    }
  }
  return true;
}

[[noreturn]] PROCPOOL_DECL void fail_trailing_result(const std::string& type) {
  throw CodecError("result of type " + type + " has trailing bytes");
}

PROCPOOL_SEPARATE_END

}  // namespace procpool::detail
