#pragma once
// Checks the free lists of a shared container's heap against the blocks the container uses, so a
// test finds a broken free list at once rather than as a torn item much later.
#include <cstdint>
#include <set>
#include <string>

#include <procpool/detail/shared_heap.hpp>
#include <procpool/list.hpp>

namespace procpool_test {

/// Empty if every block on a free list lies inside the heap, carries its list's class, appears
/// once and is not in `live`; otherwise what is wrong.
inline std::string heap_problem(procpool::detail::SharedHeap& h,
                                const std::set<std::uint64_t>& live) {
  procpool::detail::HeapLock lock(h);
  const auto& st = h.state();
  std::set<std::uint64_t> seen;
  for (std::size_t c = 0; c < procpool::detail::heap_classes; ++c) {
    for (std::uint64_t off = st.free_head[c]; off != 0; off = h.words(off)[0]) {
      if (off < procpool::detail::heap_first || off >= st.top)
        return "free block " + std::to_string(off) + " lies outside the heap";
      const auto header = *reinterpret_cast<const std::uint64_t*>(h.payload(off) - 8);
      if ((header & 0xff) != c) return "free block " + std::to_string(off) + " has another class";
      if (!seen.insert(off).second) return "free block " + std::to_string(off) + " listed twice";
      if (live.count(off)) return "block " + std::to_string(off) + " is both free and in use";
    }
  }
  return {};
}

/// The blocks a List uses.
inline std::set<std::uint64_t> list_blocks(procpool::detail::SharedHeap& h) {
  procpool::detail::HeapLock lock(h);
  std::set<std::uint64_t> out;
  const std::uint64_t n = h.root(0), dir = h.root(1), chunks = h.root(3);
  if (dir) out.insert(dir);
  for (std::uint64_t c = 0; c < chunks; ++c) out.insert(h.words(dir)[c]);
  const std::uint64_t k = procpool::detail::ByteList::chunk;
  for (std::uint64_t i = 0; i < n; ++i) out.insert(h.words(h.words(dir)[i / k])[i % k]);
  return out;
}

/// The blocks a Dict uses.
inline std::set<std::uint64_t> dict_blocks(procpool::detail::SharedHeap& h) {
  procpool::detail::HeapLock lock(h);
  std::set<std::uint64_t> out;
  const std::uint64_t index = h.root(1), entries = h.root(3), used = h.root(5);
  if (index) out.insert(index);
  if (entries) out.insert(entries);
  for (std::uint64_t i = 0; i < used; ++i)
    if (const std::uint64_t kv = h.words(entries)[i * 2 + 1]) out.insert(kv);
  return out;
}

}  // namespace procpool_test
