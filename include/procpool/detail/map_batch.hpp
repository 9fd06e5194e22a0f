#pragma once
// A map's work that does not depend on its types: cutting the input into chunk jobs, queueing
// them, and gathering the results in input order. The typed side (PoolFront::submit_map,
// materialize_map) supplies only what needs the types: encoding a run of elements, making the
// completion, decoding one result. Inline header-only; compiled once with
// PROCPOOL_SEPARATE_COMPILATION, so a file that calls map does not generate this code again.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/detail/completion.hpp>
#include <procpool/detail/invoke.hpp>
#include <procpool/detail/separate.hpp>
#include <procpool/detail/worker_record.hpp>

namespace procpool::detail {

class Supervisor;

/// A map's input as the chunk cutter reads it: one virtual call per chunk, not per element.
class MapInput {
 public:
  /// How many elements, known before the first chunk is cut (it sizes the chunks).
  virtual std::size_t size() const = 0;
  virtual bool at_end() const = 0;
  /// Appends up to `max` elements to `j.frame` (the shared memory they name to `j.attachments`),
  /// and no more once the frame has grown past `max_bytes` since `from`. Returns how many; at
  /// least one unless at_end().
  virtual std::uint32_t encode(Job& j, std::size_t from, std::size_t max,
                               std::size_t max_bytes) = 0;

 protected:
  MapInput() = default;
  MapInput(const MapInput&) = default;
  MapInput& operator=(const MapInput&) = default;
  ~MapInput() = default;
};

/// The input of a map over a range of unknown length, encoded element by element first (the
/// count sizes the chunks): the elements' bytes one after another.
class StagedInput final : public MapInput {
 public:
  Buffer bytes;
  std::vector<std::shared_ptr<Segment>> segments;  // shared memory the elements name

  /// Marks the end of an element just appended to `bytes`.
  PROCPOOL_DECL void end_element();

  std::size_t size() const override { return ends_.size(); }
  bool at_end() const override { return next_ == ends_.size(); }
  PROCPOOL_DECL std::uint32_t encode(Job& j, std::size_t from, std::size_t max,
                                     std::size_t max_bytes) override;

 private:
  std::vector<std::size_t> ends_;          // per element, its end in `bytes`
  std::vector<std::size_t> segment_ends_;  // per element, its end in `segments`
  std::size_t next_ = 0;
};

/// What every chunk of one map call shares.
struct MapCall {
  TaskRef task;
  TaskName name;
  std::int64_t timeout_ns = 0;  // per task, also inside a chunk
  std::size_t chunksize = 0;    // 0: Python's rule, ceil(n / (4 * workers))
};

/// Where gather_items puts a map's results, item `i` of the map at a time.
struct ItemSink {
  std::size_t raw_size = 0;  // nonzero: an item of exactly this many bytes is copied to raw[i]
  std::byte* raw = nullptr;
  void (*decode)(void* out, std::size_t i, std::span<const std::byte> bytes) = nullptr;
  void* out = nullptr;
};

PROCPOOL_SEPARATE_BEGIN

/// Writes a task frame's header and task reference; returns where the frame starts. A large
/// frame is encoded where the workers read it.
PROCPOOL_DECL std::size_t begin_task_frame(Buffer& b, std::uint64_t id, const TaskRef& task);
/// Completes the frame begun at `at`; throws CodecError if it exceeds the maximum frame size.
/// `timed`: the job has a time limit, so the worker notes when each of its tasks starts.
PROCPOOL_DECL void end_task_frame(Buffer& b, std::size_t at, std::uint32_t count, bool timed);

/// Cuts `in` into jobs, makes their completion with `make(jobs)` and queues them (also none: a
/// closed pool refuses even an empty map). Nothing is queued if encoding an element throws.
PROCPOOL_DECL std::shared_ptr<Completion> submit_chunks(
    const std::shared_ptr<Supervisor>& engine, const MapCall& call, MapInput& in,
    std::shared_ptr<Completion> (*make)(std::size_t jobs));

/// How many items `c`'s outcomes hold.
PROCPOOL_DECL std::size_t count_items(const Completion& c);

/// Puts every item of `c`'s outcomes into `sink`, in input order. At the first failed job or
/// item (in input order), sets `error` and returns false.
PROCPOOL_DECL bool gather_items(const Completion& c, const ItemSink& sink,
                                std::optional<ErrorInfo>& error);

/// Throws the CodecError for a result of type `type` with bytes left after its value.
[[noreturn]] PROCPOOL_DECL void fail_trailing_result(const std::string& type);

PROCPOOL_SEPARATE_END

}  // namespace procpool::detail

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/map_batch_impl.hpp>
#endif
