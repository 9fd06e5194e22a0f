#pragma once

#include <procpool/detail/cxx20.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <procpool/async_result.hpp>
#include <procpool/codec.hpp>
#include <procpool/cpu.hpp>
#include <procpool/detail/chrono.hpp>
#include <procpool/detail/engine.hpp>
#include <procpool/detail/invoke.hpp>
#include <procpool/detail/map_batch.hpp>
#include <procpool/detail/results.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/detail/worker_record.hpp>
#include <procpool/errors.hpp>
#include <procpool/imap.hpp>
#include <procpool/init.hpp>
#include <procpool/options.hpp>
#include <procpool/shared.hpp>
#include <procpool/sync.hpp>

namespace procpool {

namespace detail {

/// The types that travel for one element of a starmap input: the element's tuple elements.
template <class F, class Tuple, class = std::make_index_sequence<std::tuple_size_v<Tuple>>>
struct star_wire;
template <class F, class Tuple, std::size_t... I>
struct star_wire<F, Tuple, std::index_sequence<I...>> {
  using type = wire_args_t<F, std::tuple_element_t<I, Tuple>...>;
};

/// Every argument type may travel (a pool on this machine).
struct AnyArgs {
  template <class W>
  static constexpr void check() noexcept {}
};

/// The front end every pool shares, whatever its workers are reached by: encoding tasks into
/// jobs, map's chunking, imap's laziness, results. The engine comes from the pool type
/// (`adopt`); `ArgCheck::check<W>()` vets the wire types of every call at compile time.
template <class Codec, class ArgCheck>
class PoolFront {
  static_assert(procpool::Codec<Codec>, "procpool: Pool's codec does not model procpool::Codec");

 public:
  using codec_type = Codec;

  PoolFront(const PoolFront&) = delete;
  PoolFront& operator=(const PoolFront&) = delete;

  /// Runs `f(args...)` in a worker and returns its result.
  template <class F, class... A>
  requires(!std::is_same_v<std::decay_t<F>, TaskOptions>) auto apply(F f, A&&... args) {
    return apply_async(f, std::forward<A>(args)...).take_once();
  }

  /// Queues `f(args...)` and returns at once.
  template <class F, class... A>
  requires(!std::is_same_v<std::decay_t<F>, TaskOptions>) auto apply_async(F f, A&&... args) {
    return submit_one(opts_.task_timeout, f, std::forward<A>(args)...);
  }

  /// Queues `f(args...)` with its own hard time limit.
  template <class F, class... A>
  auto apply_async(TaskOptions topts, F f, A&&... args) {
    auto limit = topts.timeout.count() > 0 ? topts.timeout : opts_.task_timeout;
    return submit_one(limit, f, std::forward<A>(args)...);
  }

  /// `f` applied to every element, results in input order. `chunksize` 0 picks one.
  template <class F, std::ranges::input_range Range>
  auto map(F f, Range&& input, std::size_t chunksize = 0) {
    return map_async(f, std::forward<Range>(input), chunksize).take_once();
  }

  template <class F, std::ranges::input_range Range>
  auto map_async(F f, Range&& input, std::size_t chunksize = 0) {
    return submit_map<false>(f, std::forward<Range>(input), chunksize);
  }

  /// Like `map`, with each element (a tuple or pair) unpacked into the arguments.
  template <class F, std::ranges::input_range Range>
  auto starmap(F f, Range&& input, std::size_t chunksize = 0) {
    return starmap_async(f, std::forward<Range>(input), chunksize).take_once();
  }

  template <class F, std::ranges::input_range Range>
  auto starmap_async(F f, Range&& input, std::size_t chunksize = 0) {
    return submit_map<true>(f, std::forward<Range>(input), chunksize);
  }

  /// A lazy range of `f(x)` in input order. The input is read as results are consumed, with a
  /// bounded number of chunks in flight (`imap_window()`).
  template <class F, std::ranges::input_range Range>
  auto imap(F f, Range&& input, std::size_t chunksize = 1) {
    return make_imap(true, f, std::forward<Range>(input), chunksize);
  }

  /// Like `imap`, in completion order.
  template <class F, std::ranges::input_range Range>
  auto imap_unordered(F f, Range&& input, std::size_t chunksize = 1) {
    return make_imap(false, f, std::forward<Range>(input), chunksize);
  }

  /// No more submissions; queued and running tasks still finish.
  void close() { detail::pool_close(*engine_); }
  /// Stops the workers now; unfinished tasks fail with `Cancelled`.
  void terminate() { detail::pool_terminate(*engine_); }
  /// Waits until every worker has exited. Only after `close()` or `terminate()`.
  void join() { detail::pool_join(*engine_); }

  std::size_t size() const { return detail::pool_size(*engine_); }
  Stats stats() const { return detail::pool_stats(*engine_); }
  /// How many chunks an imap keeps in flight.
  std::size_t imap_window() const { return 32 * size() + 8; }

 protected:
  PoolFront() = default;

  /// Waits for every submitted task, then for the workers to exit (`close()` + `join()`).
  ~PoolFront() {
    if (engine_) detail::pool_close_and_join(*engine_);
  }

  /// The initializer call `initializer(initargs...)` as the payload of an init frame, with the
  /// shared memory its arguments name.
  template <class F, class... A>
  static detail::Buffer init_payload(std::vector<std::shared_ptr<detail::Segment>>& segments,
                                     F initializer, A&&... initargs) {
    detail::check_task<F>();
    using W = detail::wire_args_t<F, A...>;
    ArgCheck::template check<W>();
    detail::Buffer payload;
    detail::put_task_ref(payload, detail::task_ref<Codec, F, W>(initializer));
    detail::AttachScope scope(segments);
    add_item<W>(payload, std::forward<A>(initargs)...);
    return payload;
  }

  static void check_options(const Options& opts) {
    if (opts.task_timeout.count() < 0)
      throw std::invalid_argument(detail::prefixed("Options::task_timeout is negative"));
  }

  /// Makes `engine`, already started, this pool's.
  void adopt(const Options& opts, std::shared_ptr<detail::Supervisor> engine) {
    opts_ = opts;
    engine_ = std::move(engine);
  }

  const std::shared_ptr<detail::Supervisor>& engine() const noexcept { return engine_; }

 private:
  template <class W, class... A>
  static void add_item(detail::Buffer& b, A&&... a) {
    if constexpr (sizeof...(A) == 1 && std::tuple_size_v<W> == 1) {
      using W0 = std::tuple_element_t<0, W>;
      if constexpr ((std::is_same_v<std::remove_cvref_t<A>, W0> && ...) &&
                    detail::raw_encoded<Codec, W0>()) {
        // An element of a map over plain numbers or structs: its length, then its bytes.
        const std::uint64_t n = sizeof(W0);
        b.append(&n, sizeof n);
        (b.append(&a, sizeof(W0)), ...);
        return;
      }
    }
    std::size_t at = b.size();
    detail::put_u64(b, 0);
    Writer w(b);
    detail::ArgEncoder<Codec, W>::encode(w, std::forward<A>(a)...);
    detail::finish_item(b, at);
  }

  // Like add_item, collecting the shared memory segments the arguments refer to.
  template <class W, class... A>
  static void add_item_to(detail::Job& j, A&&... a) {
    detail::AttachScope scope(j.attachments);
    add_item<W>(j.frame, std::forward<A>(a)...);
  }

  template <class F, class W>
  static std::size_t begin_task(detail::Buffer& b, std::uint64_t id, F f) {
    return detail::begin_task_frame(b, id, detail::task_ref<Codec, F, W>(f));
  }

  static std::int64_t to_ns(std::chrono::milliseconds d) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  }

  template <class F, class... A>
  auto submit_one(std::chrono::milliseconds limit, F f, A&&... args) {
    detail::check_task<F>();
    using W = detail::wire_args_t<F, A...>;
    ArgCheck::template check<W>();
    using R = std::remove_cvref_t<detail::apply_result_t<F, W>>;
    auto c = std::make_shared<detail::TypedCompletion<R>>(1, &detail::materialize_single<Codec, R>);
    detail::Job j;
    j.id = detail::pool_next_id(*engine_);
    std::size_t at = begin_task<F, W>(j.frame, j.id, f);
    add_item_to<W>(j, std::forward<A>(args)...);
    j.timeout_ns = to_ns(limit);
    j.task = detail::task_name_of(f);
    detail::end_task_frame(j.frame, at, 1, j.timeout_ns > 0);
    j.completion = c;
    c->pool = detail::pool_handle(engine_);
    c->items = 1;
    detail::pool_submit(*engine_, std::move(j));
    return AsyncResult<R>(std::move(c));
  }

  template <bool Star, class F, class E>
  static auto wire_of() {
    if constexpr (Star) {
      return std::type_identity<typename detail::star_wire<F, std::remove_cvref_t<E>>::type>{};
    } else {
      return std::type_identity<detail::wire_args_t<F, E>>{};
    }
  }

  template <bool Star, class W, class E>
  static void add_element(detail::Buffer& b, E&& e) {
    if constexpr (Star) {
      std::apply([&](auto&&... a) { add_item<W>(b, std::forward<decltype(a)>(a)...); },
                 std::forward<E>(e));
    } else {
      add_item<W>(b, std::forward<E>(e));
    }
  }

  // A sized range's elements, encoded a chunk at a time straight into the chunk's frame.
  template <bool Star, class W, class Range>
  class RangeInput final : public detail::MapInput {
   public:
    explicit RangeInput(Range& r)
        : r_(r), it_(std::ranges::begin(r)), n_(static_cast<std::size_t>(std::ranges::size(r))) {}
    std::size_t size() const override { return n_; }
    bool at_end() const override { return it_ == std::ranges::end(r_); }
    std::uint32_t encode(detail::Job& j, std::size_t from, std::size_t max,
                         std::size_t max_bytes) override {
      if constexpr (packs()) {
        return encode_packed(j, max, max_bytes);
      }
      detail::AttachScope scope(j.attachments);
      std::uint32_t k = 0;
      for (;
           k < max && it_ != std::ranges::end(r_) && (k == 0 || j.frame.size() - from <= max_bytes);
           ++it_, ++k)
        add_element<Star, W>(j.frame, *it_);
      return k;
    }

   private:
    using E = std::ranges::range_reference_t<Range>;

    // Elements that are the task's one plain parameter type travel as a packed run: no length
    // per element, and a contiguous range's chunk is one copy.
    static constexpr bool packs() {
      if constexpr (Star || std::tuple_size_v<W> != 1) {
        return false;
      } else {
        using W0 = std::tuple_element_t<0, W>;
        return std::is_same_v<std::remove_cvref_t<E>, W0> && detail::raw_encoded<Codec, W0>();
      }
    }

    std::uint32_t encode_packed(detail::Job& j, std::size_t max, std::size_t max_bytes) {
      using W0 = std::tuple_element_t<0, W>;
      constexpr std::size_t size = sizeof(W0);
      std::size_t k = std::min(max, std::max<std::size_t>(max_bytes / size, 1));
      if (at_end()) return 0;
      detail::put_u64(j.frame, detail::packed_marker);
      detail::put_u64(j.frame, size);
      if constexpr (std::ranges::contiguous_range<Range> && std::is_lvalue_reference_v<E> &&
                    std::sized_sentinel_for<std::ranges::sentinel_t<Range>,
                                            std::ranges::iterator_t<Range>>) {
        k = std::min(k, static_cast<std::size_t>(std::ranges::end(r_) - it_));
        j.frame.append(std::to_address(it_), k * size);
        it_ += static_cast<std::ranges::range_difference_t<Range>>(k);
      } else {
        std::byte* p = j.frame.grow(k * size);
        std::size_t i = 0;
        for (; i < k && it_ != std::ranges::end(r_); ++i, ++it_) {
          const W0 v = *it_;
          std::memcpy(p + i * size, &v, size);
        }
        j.frame.resize(j.frame.size() - (k - i) * size);  // the range ended first
        k = i;
      }
      return static_cast<std::uint32_t>(k);
    }

    Range& r_;
    std::ranges::iterator_t<Range> it_;
    std::size_t n_;
  };

  template <class Vec, class R>
  static std::shared_ptr<detail::Completion> make_map_completion(std::size_t jobs) {
    return std::make_shared<detail::TypedCompletion<Vec>>(jobs, &detail::materialize_map<Codec, R>);
  }

  template <bool Star, class F, class Range>
  auto submit_map(F f, Range&& input, std::size_t chunksize) {
    detail::check_task<F>();
    using E = std::ranges::range_reference_t<Range>;
    using W = typename decltype(wire_of<Star, F, E>())::type;
    ArgCheck::template check<W>();
    using R = std::remove_cvref_t<detail::apply_result_t<F, W>>;
    using Vec = std::vector<detail::stored_t<R>>;

    detail::MapCall call;
    call.task = detail::task_ref<Codec, F, W>(f);
    call.name = detail::task_name_of(f);
    call.timeout_ns = to_ns(opts_.task_timeout);
    call.chunksize = chunksize;
    std::shared_ptr<detail::Completion> c;
    if constexpr (std::ranges::sized_range<Range>) {
      RangeInput<Star, W, std::remove_reference_t<Range>> in(input);
      c = detail::submit_chunks(engine_, call, in, &make_map_completion<Vec, R>);
    } else {
      // The count sizes the chunks: every element is encoded first.
      detail::StagedInput in;
      {
        detail::AttachScope scope(in.segments);
        for (auto&& e : input) {
          add_element<Star, W>(in.bytes, std::forward<decltype(e)>(e));
          in.end_element();
        }
      }
      c = detail::submit_chunks(engine_, call, in, &make_map_completion<Vec, R>);
    }
    return AsyncResult<Vec>(std::static_pointer_cast<detail::TypedCompletion<Vec>>(std::move(c)));
  }

  template <class F, class Range>
  auto make_imap(bool ordered, F f, Range&& input, std::size_t chunksize) {
    detail::check_task<F>();
    if (chunksize == 0)
      throw std::invalid_argument(detail::prefixed("imap chunksize must be at least 1"));
    detail::pool_check_open(*engine_);
    // What std::views::all would keep: a reference to an lvalue container, a copy of a view,
    // the range itself when it is an rvalue. (Not views::all itself: clang before 16 cannot
    // instantiate libstdc++'s ref_view and owning_view.)
    using View = std::conditional_t<std::is_lvalue_reference_v<Range> &&
                                        !std::ranges::view<std::remove_cvref_t<Range>>,
                                    Range, std::remove_cvref_t<Range>>;
    using E = std::ranges::range_reference_t<View>;
    using W = detail::wire_args_t<F, E>;
    ArgCheck::template check<W>();
    using R = std::remove_cvref_t<detail::apply_result_t<F, W>>;

    struct Source {
      explicit Source(Range&& r) : view(std::forward<Range>(r)) {}
      View view;
      std::optional<std::ranges::iterator_t<View>> it;
    };
    auto src = std::make_shared<Source>(std::forward<Range>(input));
    detail::Supervisor* engine = engine_.get();  // the ImapState keeps it alive
    const std::int64_t limit = to_ns(opts_.task_timeout);
    auto produce = [src, engine, f, chunksize, limit](detail::Job& j) -> bool {
      if (!src->it) src->it = std::ranges::begin(src->view);
      auto& it = *src->it;
      if (it == std::ranges::end(src->view)) return false;
      j.id = detail::pool_next_id(*engine);
      std::size_t at = begin_task<F, W>(j.frame, j.id, f);
      std::uint32_t count = 0;
      while (count < chunksize && it != std::ranges::end(src->view)) {
        add_item_to<W>(j, *it);
        ++it;
        ++count;
      }
      detail::end_task_frame(j.frame, at, count, limit > 0);
      j.count = count;
      j.timeout_ns = limit;
      j.task = detail::task_name_of(f);
      auto c = std::make_shared<detail::Completion>(1);
      c->items = count;
      j.completion = std::move(c);
      return true;
    };
    auto state = std::make_shared<detail::ImapState<R>>(
        engine_, std::move(produce), &detail::decode_chunk<Codec, R>, ordered, imap_window());
    return ImapRange<R>(std::move(state));
  }

  Options opts_;
  std::shared_ptr<detail::Supervisor> engine_;
};

}  // namespace detail

/// A pool of worker processes. Tasks are plain functions or captureless lambdas; arguments and
/// results travel through `Codec`. All member functions are safe to call from several threads.
template <class Codec = BinaryCodec>
class Pool : public detail::PoolFront<Codec, detail::AnyArgs> {
 public:
  Pool() : Pool(Options{}) {}
  explicit Pool(Options opts) {
    auto engine = detail::start_pool(opts);
    this->adopt(opts, std::move(engine));
  }

  /// Runs `initializer(initargs...)` in every worker when it starts. If it throws, this
  /// constructor throws a `RemoteError` quoting it.
  template <class F, class... A>
  Pool(Options opts, F initializer, A&&... initargs) {
    std::vector<std::shared_ptr<detail::Segment>> segments;
    auto payload = this->init_payload(segments, initializer, std::forward<A>(initargs)...);
    start(opts, std::move(payload), std::move(segments));
  }

  std::vector<pid_t> pids() const { return detail::pool_pids(*this->engine()); }

 private:
  void start(Options opts, detail::Buffer init_task,
             std::vector<std::shared_ptr<detail::Segment>> init_segments) {
    auto engine = detail::start_pool(opts, std::move(init_task), std::move(init_segments));
    this->adopt(opts, std::move(engine));
  }
};

Pool()->Pool<BinaryCodec>;
Pool(Options)->Pool<BinaryCodec>;
template <class F, class... A>
Pool(Options, F, A&&...) -> Pool<BinaryCodec>;

}  // namespace procpool
