#pragma once
// Definitions of SharedHeap's operations: inline in a header-only build, compiled once by
// src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <procpool/detail/atomic_ref.hpp>
#include <procpool/detail/shared_heap.hpp>

namespace procpool::detail {

PROCPOOL_DECL SharedHeap::SharedHeap(std::uint32_t kind, std::uint32_t tag)
    : header_(make_shared_object(kind, tag, 0, HeapLayout::data)),
      state_(new (at<HeapState>(header_, HeapLayout::state)) HeapState{}),
      mutex_(header_, HeapLayout::mutex, true) {
  posix::UniqueFd fd;
  posix::check(posix::make_heap_file(fd), "memfd_create");
  file_ = Segment::create_descriptor(std::move(fd));
  state_->top = heap_first;
  map(0);
}

PROCPOOL_DECL SharedHeap::SharedHeap(std::shared_ptr<Segment> header, std::shared_ptr<Segment> file)
    : header_(std::move(header)),
      file_(std::move(file)),
      state_(at<HeapState>(header_, HeapLayout::state)),
      mutex_(header_, HeapLayout::mutex, false) {
  map(AtomicRef<std::uint64_t>(state_->committed).load());
}

PROCPOOL_DECL SharedHeap::~SharedHeap() = default;

PROCPOOL_DECL void SharedHeap::lock() {
  bool got = false;
  // Operations are short: a brief spin usually gets the lock without a futex sleep.
  for (int i = 0; i < 128 && !got; ++i) {
    got = mutex_.try_lock();
    if (!got) cpu_relax();
  }
  if (!got) mutex_.lock();
  // No operation of this process is under way now: drop bookkeeping a child forked in the middle
  // of one (by another thread of its parent) would otherwise inherit.
  logged_count_ = 0;
  release_.clear();
  release_all_ = false;
  try {
    if (state_->committed > map_.size()) map_more(state_->committed);
    if (mutex_.owner_died() || state_->undo_count != 0) rollback();
  } catch (...) {
    mutex_.unlock();
    throw;
  }
}

PROCPOOL_DECL void SharedHeap::set(std::uint64_t where, std::uint64_t value) {
  std::uint64_t* p = word(where);
  if (!logged(where)) {
    const std::uint64_t n = state_->undo_count;
    if (n == heap_journal_capacity)
      throw Error("procpool: a shared container operation changes too much at once");
    state_->undo[n] = HeapUndo{where, *p};
    std::atomic_signal_fence(std::memory_order_seq_cst);  // the record before the count
    state_->undo_count = n + 1;
    std::atomic_signal_fence(std::memory_order_seq_cst);  // the count before the change
    heap_step();
  }
  *p = value;
  heap_step();
}

PROCPOOL_DECL void SharedHeap::commit() noexcept {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  state_->undo_count = 0;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  heap_step();
  logged_count_ = 0;
  if (release_all_) {
    release_all_ = false;
    const std::uint64_t end = state_->committed;
    state_->committed = 0;
    (void)posix::release_range(file_->fd(), 0, static_cast<std::size_t>(end));
  }
  for (auto [off, n] : release_)
    (void)posix::release_range(file_->fd(), static_cast<std::size_t>(off),
                               static_cast<std::size_t>(n));
  release_.clear();
}

PROCPOOL_DECL void SharedHeap::rollback() noexcept {
  for (std::uint64_t i = state_->undo_count; i-- > 0;) {
    const HeapUndo u = state_->undo[i];
    *word(u.where) = u.old;
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  state_->undo_count = 0;
  logged_count_ = 0;
  release_.clear();
  release_all_ = false;
}

PROCPOOL_DECL std::uint64_t SharedHeap::alloc(std::size_t len) {
  if (len > (std::size_t{1} << 46)) throw std::bad_alloc();
  const std::size_t c = size_class(len + 8 < 16 ? 16 : len + 8);
  const std::uint64_t size = class_size(c);
  std::uint64_t off = state_->free_head[c];
  // Taking a free block costs two undo records: an operation that takes many (a long extend)
  // goes on with fresh space once the journal runs low.
  if (off != 0 && state_->undo_count + 64 > heap_journal_capacity) off = 0;
  if (off != 0) {
    if (size >= heap_release_min) {
      // Its memory may have been given back: take it again, and if this operation freed it,
      // keep the commit from giving it back.
      posix::check(posix::commit_range(file_->fd(), static_cast<std::size_t>(off),
                                       static_cast<std::size_t>(size)),
                   "fallocate (shared container memory)");
      std::erase_if(release_,
                    [&](const auto& r) { return r.first >= off && r.first < off + size; });
    }
    const std::uint64_t next = *word(in_heap | (off + 8));
    set(state_where(&state_->free_head[c]), next);
    // The caller's bytes overwrite the link: logged, so that an undo relinks the block.
    set_heap(off + 8, 0);
  } else {
    off = state_->top;
    if (off + size > state_->committed) grow(off + size);
    set(state_where(&state_->top), off + size);
  }
  *word(in_heap | off) = (std::uint64_t{len} << 8) | c;
  return off;
}

PROCPOOL_DECL void SharedHeap::free(std::uint64_t off) {
  const std::size_t c = static_cast<std::size_t>(*word(in_heap | off) & 0xff);
  const std::uint64_t size = class_size(c);
  set_heap(off + 8, state_->free_head[c]);
  set(state_where(&state_->free_head[c]), off);
  if (size >= heap_release_min) {
    const std::uint64_t from = (off + 16 + 4095) / 4096 * 4096;
    const std::uint64_t to = (off + size) / 4096 * 4096;
    if (to > from) release_.emplace_back(from, to - from);
  }
}

PROCPOOL_DECL void SharedHeap::clear() {
  try {
    for (std::size_t r = 0; r < heap_roots; ++r)
      if (state_->root[r] != 0) set_root(r, 0);
    for (std::size_t c = 0; c < heap_classes; ++c)
      if (state_->free_head[c] != 0) set(state_where(&state_->free_head[c]), 0);
    set(state_where(&state_->top), heap_first);
  } catch (...) {
    rollback();
    throw;
  }
  release_all_ = true;
  commit();
}

PROCPOOL_DECL void SharedHeap::skip(std::size_t n) {
  const std::uint64_t end = state_->committed + n;  // never shorter: blocks live below
  posix::check(posix::extend_file(file_->fd(), static_cast<std::size_t>(end)), "ftruncate");
  map_more(end);
  state_->committed = end;
  set(state_where(&state_->top), end);
}

PROCPOOL_DECL std::size_t SharedHeap::size_class(std::uint64_t total) noexcept {
  if (total <= 128) return static_cast<std::size_t>((total + 7) / 8);  // 2..16
  int p = 63 - __builtin_clzll(total - 1);                             // total in (2^p, 2^(p+1)]
  const std::uint64_t step = std::uint64_t{1} << (p - 2);
  const std::uint64_t k = (total - (std::uint64_t{1} << p) + step - 1) / step;  // 1..4
  return static_cast<std::size_t>(16 + (p - 7) * 4 + static_cast<int>(k));
}

PROCPOOL_DECL std::uint64_t SharedHeap::class_size(std::size_t c) noexcept {
  if (c <= 16) return std::uint64_t{c} * 8;
  const std::size_t p = (c - 17) / 4 + 7;
  const std::uint64_t k = (c - 17) % 4 + 1;
  return (std::uint64_t{1} << p) + k * (std::uint64_t{1} << (p - 2));
}

PROCPOOL_DECL bool SharedHeap::logged(std::uint64_t where) {
  const std::uint64_t n = state_->undo_count;
  if (n < 16) {
    for (std::uint64_t i = 0; i < n; ++i)
      if (state_->undo[i].where == where) return true;
    return false;
  }
  if (logged_count_ == 0) {
    logged_.assign(std::size_t{1} << logged_bits, logged_none);
    for (std::uint64_t i = 0; i < n; ++i) (void)log_word(state_->undo[i].where);
  }
  return !log_word(where);
}

PROCPOOL_DECL bool SharedHeap::log_word(std::uint64_t where) {
  const std::size_t mask = (std::size_t{1} << logged_bits) - 1;
  // Offsets are multiples of 8: a multiplicative hash spreads them over the slots.
  for (auto i = static_cast<std::size_t>((where * 0x9E3779B97F4A7C15u) >> (64 - logged_bits));;
       i = (i + 1) & mask) {
    if (logged_[i] == where) return false;
    if (logged_[i] == logged_none) {
      logged_[i] = where;
      ++logged_count_;
      return true;
    }
  }
}

PROCPOOL_DECL void SharedHeap::grow(std::uint64_t end) {
  const std::uint64_t have = state_->committed;
  std::uint64_t step = have < 64 * 1024         ? 64 * 1024
                       : have > 2 * 1024 * 1024 ? 2 * 1024 * 1024
                                                : have;
  std::uint64_t want = end > have + step ? end : have + step;
  want = (want + 65535) / 65536 * 65536;
  posix::check(posix::commit_range(file_->fd(), static_cast<std::size_t>(have),
                                   static_cast<std::size_t>(want - have)),
               "fallocate (shared container memory)");
  heap_step();
  map_more(want);
  state_->committed = want;
}

PROCPOOL_DECL void SharedHeap::map(std::uint64_t need) {
  std::size_t reserve = heap_reserve_bytes().load();
  if (reserve < (1 << 20)) reserve = 1 << 20;
  while (reserve < need) reserve *= 2;
  if (!map_.map(file_->fd(), reserve)) return;
  posix::check(map_.map(file_->fd(), round_up(need)), "mmap (shared container reservation)");
}

PROCPOOL_DECL void SharedHeap::map_more(std::uint64_t need) {
  if (need <= map_.size()) return;
  std::size_t reserve = map_.size();
  while (reserve < need) reserve *= 2;
  if (!map_.grow(reserve)) return;
  posix::check(map_.grow(round_up(need)), "mremap (shared container reservation)");
}

PROCPOOL_DECL std::size_t SharedHeap::round_up(std::uint64_t n) noexcept {
  constexpr std::uint64_t step = 2 << 20;
  const auto rounded = (n + step - 1) / step * step;
  return static_cast<std::size_t>(rounded > step ? rounded : step);
}
}  // namespace procpool::detail
