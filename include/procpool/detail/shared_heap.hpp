#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <procpool/codec.hpp>
#include <procpool/detail/cpu_relax.hpp>
#include <procpool/detail/posix/heap.hpp>
#include <procpool/detail/segment.hpp>
#include <procpool/detail/separate.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/errors.hpp>
#include <procpool/sync.hpp>

#ifndef PROCPOOL_CONTAINER_RESERVE
/// Address space (not memory) each process reserves at first for one shared container's heap;
/// a heap that outgrows it is mapped again, twice as large.
#define PROCPOOL_CONTAINER_RESERVE (std::size_t{4} << 30)
#endif

namespace procpool::detail {

inline constexpr std::uint32_t kind_list = 0x70704c49;  // "ppLI"
inline constexpr std::uint32_t kind_dict = 0x70704449;  // "ppDI"

/// The reservation a process makes for a container heap it maps (tests make it small, to
/// exercise mapping again as the heap grows).
inline std::atomic<std::size_t>& heap_reserve_bytes() {
  static std::atomic<std::size_t> n{PROCPOOL_CONTAINER_RESERVE};
  return n;
}

/// Tests only: called at every point of a heap operation where a process might die (a test
/// kills itself at the n-th call to check that every such death is repaired).
inline void (*&heap_step_hook())() {
  static void (*f)() = nullptr;
  return f;
}
inline void heap_step() {
  if (auto f = heap_step_hook()) f();
}

inline constexpr std::size_t heap_classes = 192;
inline constexpr std::size_t heap_journal_capacity = 512;
inline constexpr std::size_t heap_roots = 8;
// Freed blocks at least this large give their memory back to the system.
inline constexpr std::size_t heap_release_min = 64 * 1024;
inline constexpr std::uint64_t heap_first = 64;  // offset 0 means "no block"

/// One undo record: where a word lives (an offset in `HeapState`, or `in_heap | offset` in the
/// heap file) and what it held before the operation changed it.
struct HeapUndo {
  std::uint64_t where;
  std::uint64_t old;
};

/// A container's header, in its fixed segment next to the robust mutex.
struct HeapState {
  std::uint64_t top;        // end of the heap's allocated part (blocks below it, free or not)
  std::uint64_t committed;  // heap bytes backed by memory; only grows, except on clear
  std::uint64_t root[heap_roots];  // the container's own words
  std::uint64_t free_head[heap_classes];
  std::uint64_t undo_count;  // the commit point: 0 = no operation in flight
  HeapUndo undo[heap_journal_capacity];
};
using HeapLayout = Layout<HeapState>;

/// A 64-bit hash of bytes (used on encoded keys).
inline std::uint64_t hash_bytes(const std::byte* p, std::size_t n) noexcept {
  std::uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xc2b2ae3d27d4eb4full);
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  std::uint64_t w = 0;
  std::memcpy(&w, p, n);
  h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 29;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 32);
}

/// A growable heap of variable-size blocks shared by processes, on which `List` and `Dict` are
/// built. Two pieces of shared memory: a fixed segment (header, robust mutex, undo journal) and a
/// memory file for the blocks, which grows in place (fallocate) under a large address-space
/// reservation that each process maps once (and maps again, larger, in the rare case the heap
/// outgrows it). Offsets, not addresses, link blocks, so every process sees the same heap.
///
/// Blocks: an 8-byte header (payload length << 8 | size class), then the payload. Sizes are
/// rounded to a class (8-byte steps up to 128, then 4 per doubling); freed blocks go on their
/// class's free list, and large ones give their memory back (hole punching) until reused.
///
/// Atomicity (under SIGKILL too): every operation runs under the robust mutex as one
/// transaction. Before it changes a word that existed before the operation (a root, a free-list
/// head, an index slot), `set` appends the word's old value to the undo journal in the header
/// and only then bumps `undo_count`; bytes written into blocks the operation allocated are not
/// logged, as nothing reaches them until the operation commits. The commit is one store:
/// `undo_count = 0`. A process that dies in the middle leaves `undo_count > 0`; the next owner of
/// the lock (told by `owner_died`) writes the old values back, newest first, and so sees the
/// state before the operation. An exception inside an operation (out of memory, a codec error)
/// rolls back the same way. Work that cannot be undone (giving memory back) runs after the
/// commit, so dying there only keeps memory longer. Growing the heap file is never undone; the
/// space is reused.
class SharedHeap {
 public:
  static constexpr std::uint64_t in_heap = std::uint64_t{1} << 63;

  /// A new, empty heap for a container of `kind` with element tag `tag`.
  PROCPOOL_DECL SharedHeap(std::uint32_t kind, std::uint32_t tag);

  /// A heap received as a handle (already checked by the caller).
  PROCPOOL_DECL SharedHeap(std::shared_ptr<Segment> header, std::shared_ptr<Segment> file);

  PROCPOOL_DECL ~SharedHeap();
  SharedHeap(const SharedHeap&) = delete;
  SharedHeap& operator=(const SharedHeap&) = delete;

  const std::shared_ptr<Segment>& header() const noexcept { return header_; }
  const std::shared_ptr<Segment>& file() const noexcept { return file_; }

  // ---- locking -------------------------------------------------------------------------------

  /// Takes the lock; repairs what a holder that died left behind; maps what others added.
  PROCPOOL_DECL void lock();
  void unlock() { mutex_.unlock(); }

  // ---- transactions (lock held) --------------------------------------------------------------

  /// Changes a logged word: `where` as in `HeapUndo`.
  PROCPOOL_DECL void set(std::uint64_t where, std::uint64_t value);
  void set_root(std::size_t i, std::uint64_t v) { set(state_where(&state_->root[i]), v); }
  void set_heap(std::uint64_t off, std::uint64_t v) { set(in_heap | off, v); }

  /// Makes the operation's changes permanent (one store), then does the work that cannot be
  /// undone.
  PROCPOOL_DECL void commit() noexcept;

  /// Puts back every logged word, newest first (repeating this after a death is harmless).
  PROCPOOL_DECL void rollback() noexcept;

  // ---- blocks (lock held, inside a transaction) ----------------------------------------------

  /// A block with room for `len` payload bytes; returns its offset.
  PROCPOOL_DECL std::uint64_t alloc(std::size_t len);

  /// Returns a block to its free list (logged: the operation may still be undone).
  PROCPOOL_DECL void free(std::uint64_t off);

  /// Empties the container (as one operation, under the lock): its roots go to 0 and every
  /// block is forgotten; the memory goes back to the system after the commit.
  PROCPOOL_DECL void clear();

  std::size_t length(std::uint64_t off) const noexcept {
    return static_cast<std::size_t>(*word(in_heap | off) >> 8);
  }
  std::byte* payload(std::uint64_t off) const noexcept { return map_.get() + off + 8; }
  std::uint64_t* words(std::uint64_t off) const noexcept {
    return reinterpret_cast<std::uint64_t*>(payload(off));
  }
  std::uint64_t root(std::size_t i) const noexcept { return state_->root[i]; }

  // ---- for tests -----------------------------------------------------------------------------

  HeapState& state() noexcept { return *state_; }
  Mutex& mutex() noexcept { return mutex_; }
  std::size_t mapped() const noexcept { return map_.size(); }
  /// Moves the heap's end `n` bytes further without giving them memory: what a heap looks like
  /// after large blocks there were freed (lock held, inside a transaction).
  PROCPOOL_DECL void skip(std::size_t n);

 private:
  PROCPOOL_DECL static std::size_t size_class(std::uint64_t total) noexcept;
  PROCPOOL_DECL static std::uint64_t class_size(std::size_t c) noexcept;

  std::uint64_t state_where(const std::uint64_t* field) const noexcept {
    return static_cast<std::uint64_t>(reinterpret_cast<const char*>(field) -
                                      reinterpret_cast<const char*>(state_));
  }
  std::uint64_t* word(std::uint64_t where) const noexcept {
    if (where & in_heap) return reinterpret_cast<std::uint64_t*>(map_.get() + (where & ~in_heap));
    return reinterpret_cast<std::uint64_t*>(reinterpret_cast<char*>(state_) + where);
  }

  // Only the first change of a word in an operation needs its old value.
  PROCPOOL_DECL bool logged(std::uint64_t where);
  // Adds `where` to `logged_`; false if it was there.
  PROCPOOL_DECL bool log_word(std::uint64_t where);
  static constexpr std::uint64_t logged_none = ~std::uint64_t{0};  // never a `where`
  static constexpr unsigned logged_bits = 10;                      // 1024 slots
  // Never more than about half full: the journal ends the operation first.
  static_assert(2 * heap_journal_capacity <= (std::size_t{1} << logged_bits));

  // Gives the heap memory up to at least `end`, in steps that stay small (so no single
  // operation pays for a large growth) but double while the heap is small.
  PROCPOOL_DECL void grow(std::uint64_t end);

  // Under a limit on address space (RLIMIT_AS, a pool's `memory_limit`) the usual reservation
  // may not fit: then just what the heap needs now, mapped again as it grows.
  PROCPOOL_DECL void map(std::uint64_t need);

  PROCPOOL_DECL void map_more(std::uint64_t need);

  PROCPOOL_DECL static std::size_t round_up(std::uint64_t n) noexcept;

  std::shared_ptr<Segment> header_;
  std::shared_ptr<Segment> file_;
  HeapState* state_;
  Mutex mutex_;
  posix::ReservedMapping map_;
  // Per operation, in this process (the lock serializes their use).
  // The words this operation logged, once there are many (see `logged`): open addressing,
  // `logged_none` marks a free slot; `logged_count_` 0 means not filled yet.
  std::vector<std::uint64_t> logged_;
  std::size_t logged_count_ = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> release_;
  bool release_all_ = false;
};

/// The engine under a `List` or `Dict` (for tests that check its heap or die holding its lock).
struct ContainerAccess {
  template <class C>
  static auto& engine(C& c) noexcept {
    return *c.impl_;
  }
};

/// Holds a heap's lock for a scope.
class HeapLock {
 public:
  explicit HeapLock(SharedHeap& h) : h_(h) { h_.lock(); }
  ~HeapLock() { h_.unlock(); }
  HeapLock(const HeapLock&) = delete;
  HeapLock& operator=(const HeapLock&) = delete;

 private:
  SharedHeap& h_;
};

/// One operation on a heap whose lock is held: undone unless committed.
class HeapTxn {
 public:
  explicit HeapTxn(SharedHeap& h) noexcept : h_(h) {}
  ~HeapTxn() {
    if (!done_) h_.rollback();
  }
  void commit() noexcept {
    h_.commit();
    done_ = true;
  }
  HeapTxn(const HeapTxn&) = delete;
  HeapTxn& operator=(const HeapTxn&) = delete;

 private:
  SharedHeap& h_;
  bool done_ = false;
};

/// Scratch buffers for encoding and for bytes copied out of a heap, per thread.
inline Buffer& heap_scratch(int which) {
  thread_local Buffer b[3];
  return b[which];
}

/// Writes a container handle: both segments and the element tag.
inline void write_heap(Writer& w, const SharedHeap& h, std::uint32_t tag) {
  write_segment(w, h.header());
  write_segment(w, h.file());
  w.write(tag);
}

/// Reads a container handle written by `write_heap` and maps the heap.
inline std::shared_ptr<SharedHeap> read_heap(Reader& r, std::uint32_t kind, std::uint32_t tag) {
  auto header = read_segment(r);
  check_shared_object(r, *header, kind, tag, HeapLayout::data);
  auto file = read_segment(r);
  if (!file->is_descriptor()) r.fail("a shared container handle names no heap file");
  if (r.read<std::uint32_t>() != tag) r.fail("the shared container holds another element type");
  return std::make_shared<SharedHeap>(std::move(header), std::move(file));
}

}  // namespace procpool::detail

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/shared_heap_impl.hpp>
#endif
