#pragma once
// Helpers for the List and Dict tests: a check of a container heap's free lists (so a test finds
// a broken free list at once rather than as a torn item much later), dying at a chosen step of an
// operation, a type that cannot always be encoded, and memory-file counts. Test code only, so
// POSIX headers are fine here.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <support/test_support.hpp>
#include <utility>

#include <signal.h>
#include <unistd.h>

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

/// Makes this process die (SIGKILL) at the `n`-th step of its next container operations (see
/// `detail::heap_step_hook`).
inline std::atomic<long> steps_left{0};
inline void die_at_step(long n) {
  steps_left = n;
  procpool::detail::heap_step_hook() = +[] {
    if (--steps_left == 0) ::kill(::getpid(), SIGKILL);
  };
}

/// Mappings and descriptors of procpool memory files in process `pid`.
inline std::pair<std::size_t, std::size_t> memfds(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  std::pair<std::size_t, std::size_t> n{0, 0};
  while (std::getline(maps, line))
    if (line.find("/memfd:procpool") != std::string::npos) ++n.first;
  for (const auto& t : fd_targets(pid)) n.second += t.rfind("/memfd:", 0) == 0;
  return n;
}

/// Entries of /dev/shm that procpool could have made.
inline std::size_t procpool_shm_entries() {
  std::size_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/dev/shm");
       it != std::filesystem::directory_iterator(); ++it)
    n += it->path().filename().string().find("procpool") != std::string::npos;
  return n;
}

/// A type whose encoding fails for negative values.
struct Picky {
  int x = 0;
};

}  // namespace procpool_test

template <>
struct procpool::codec<procpool_test::Picky> {
  static void encode(procpool::Writer& w, const procpool_test::Picky& p) {
    if (p.x < 0) throw std::invalid_argument("negative Picky");
    w.write(p.x);
  }
  static procpool_test::Picky decode(procpool::Reader& r) {
    return procpool_test::Picky{r.read<int>()};
  }
};
