#pragma once
// Helpers for the List and Dict tests: a check of a container heap's free lists (so a test finds
// a broken free list at once rather than as a torn item much later), dying at a chosen step of an
// operation, a type that cannot always be encoded, and memory-file counts. Test code only, so
// POSIX headers are fine here.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
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

/// Kills a process doing operation `op` on `c` at its 1st, 2nd, ... step, until the operation has
/// run to its end twice, and checks after each death that `c` is as before or after the operation,
/// that its heap is sound and that `check(c)` holds. `child(c, op, step)` runs in the process
/// (through `die_at_step`); `copy(snapshot)` makes a container to run the operation on for the
/// expected outcome; `blocks(heap)` lists the blocks the container uses.
template <class C, class Child, class Copy, class Op, class Blocks, class Check>
void die_at_every_step(C& c, int op, Child child, Copy copy, Op do_op, Blocks blocks, Check check) {
  using namespace std::chrono_literals;
  const procpool::ProcessOptions fork{procpool::StartMethod::fork};
  int completed = 0;
  for (long step = 1; completed < 2 && step < 200; ++step) {
    const auto before = c.snapshot();
    C model = copy(before);
    do_op(model, op);
    const auto after = model.snapshot();
    procpool::Process p(fork, child, c, op, step);
    p.start();
    REQUIRE(p.join_for(30s));
    INFO("op " << op << " step " << step);
    const auto now = c.snapshot();  // also proves the lock is free again
    auto& heap = procpool::detail::ContainerAccess::engine(c).heap();
    REQUIRE(heap_problem(heap, blocks(heap)) == "");
    check(c);
    if (p.exitcode() == 0) {
      REQUIRE(now == after);
      ++completed;  // then once more from the new state
      step = 0;
    } else {
      REQUIRE(p.exitcode() == -SIGKILL);
      REQUIRE((now == before || now == after));
    }
  }
  CHECK(completed == 2);
}

/// Runs `churn(c, seed)` (mixed operations until killed) in a steady process and in 8 victims
/// SIGKILLed after a random 5-45 ms each, then checks that nobody saw a torn item (the churn exits
/// 2 then) or deadlocked, and that the heap is sound.
template <class C, class Churn, class Blocks>
void kill_while_churning(C& c, Churn churn, Blocks blocks) {
  using namespace std::chrono_literals;
  procpool::Process steady(churn, c, std::uint64_t{1});
  steady.start();
  std::mt19937 rng(9);
  for (int round = 0; round < 8; ++round) {
    procpool::Process victim(churn, c, std::uint64_t{100 + static_cast<unsigned>(round)});
    victim.start();
    sleep_ms(5 + static_cast<int>(rng() % 40));
    victim.kill();
    REQUIRE(victim.join_for(30s));
    CHECK(victim.exitcode() == -SIGKILL);
  }
  steady.kill();
  REQUIRE(steady.join_for(30s));
  CHECK(steady.exitcode() == -SIGKILL);  // 2 would mean it saw a torn item
  auto& heap = procpool::detail::ContainerAccess::engine(c).heap();
  CHECK(heap_problem(heap, blocks(heap)) == "");
  CHECK(c.snapshot().size() == c.size());
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
