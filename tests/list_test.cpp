// List<T>: a growable list in shared memory used by several processes: every operation, tasks and
// Processes sharing one list, many writers at once, processes killed at every step of every
// operation (no torn state, no deadlock), growth far past the first reservation while another
// process reads, running out of address space, and leaks. Runs under every start method (see
// tests/CMakeLists.txt).
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <support/container_support.hpp>
#include <support/ranges_support.hpp>
#include <support/test_support.hpp>
#include <utility>
#include <vector>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Picky;

namespace {

/// An item whose every byte follows from its id, so a torn or mixed-up item is detected.
struct Rec {
  std::uint64_t id = 0;
  std::string text;
};

Rec make_rec(std::uint64_t id) {
  Rec r;
  r.id = id;
  r.text.resize(static_cast<std::size_t>((id * 37) % 200 + (id % 97 == 0 ? 70'000 : 0)));
  for (std::size_t k = 0; k < r.text.size(); ++k)
    r.text[k] = static_cast<char>('a' + (id + k) % 26);
  return r;
}

bool intact(const Rec& r) {
  return r.text == make_rec(r.id).text;
}

std::string text_of(int i) {
  return "item-" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 7), '*');
}

// ---- tasks run in child processes -------------------------------------------------------------

void push_recs(procpool::List<Rec> l, std::uint64_t first, std::uint64_t count) {
  for (std::uint64_t i = first; i < first + count; ++i) l.push_back(make_rec(i));
}

// Mixed operations on a list of Recs, forever (until killed); exits 2 on a torn item.
void churn(procpool::List<Rec> l, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::uint64_t i = 0;; ++i) {
    const std::uint64_t id = seed * 1'000'000'000 + i;
    switch (rng() % 6) {
      case 0:
      case 1:
        l.push_back(make_rec(id));
        break;
      case 2:
        l.extend(std::vector<Rec>{make_rec(id), make_rec(id + 500'000'000)});
        break;
      case 3:
        if (auto r = l.pop_back(); r && !intact(*r)) ::_exit(2);
        break;
      case 4: {
        const std::size_t n = l.size();
        if (n > 0) {
          try {
            l.set(static_cast<std::size_t>(rng() % n), make_rec(id));
          } catch (const std::out_of_range&) {  // another process popped meanwhile
          }
        }
        break;
      }
      default: {
        const std::size_t n = l.size();
        if (n > 0) {
          try {
            if (!intact(l.at(static_cast<std::size_t>(rng() % n)))) ::_exit(2);
          } catch (const std::out_of_range&) {
          }
        }
        if (n > 3000) l.clear();
      }
    }
  }
}

void do_op(procpool::List<std::string>& l, int op) {
  switch (op) {
    case 0:
      l.push_back("new");
      break;
    case 1:
      l.extend(std::vector<std::string>{"x", std::string(100'000, 'y'), "z"});
      break;
    case 2:
      l.set(l.size() / 2, "replaced");
      break;
    case 3:
      (void)l.pop_back();
      break;
    case 4:
      l.clear();
      break;
    default:
      l.push_back(std::string(200'000, 'b'));
  }
}

// Does operation `op`, dying at its `step`-th step if it has that many (exit 0 if not).
int op_dying_at(procpool::List<std::string> l, int op, long step) {
  procpool_test::die_at_step(step);
  do_op(l, op);
  procpool::detail::heap_step_hook() = nullptr;
  return 0;
}

// Reads the last item until `stop` is set; exits 2 if it is ever wrong or the size shrinks.
void read_while_growing(procpool::List<std::string> l, procpool::Value<int> stop,
                        procpool::Value<long> reads) {
  std::size_t last = 0;
  while (stop.load() == 0) {
    const std::size_t n = l.size();
    if (n < last) ::_exit(2);
    last = n;
    if (n > 0 && l.at(n - 1) != text_of(static_cast<int>(n - 1))) ::_exit(2);
    if (n > 0 && l.at(0) != text_of(0)) ::_exit(2);
    reads.store(reads.load() + 1);
  }
}

std::uint64_t vm_size_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7));
  return 0;
}

// Pushes an item that needs more address space than RLIMIT_AS leaves: exit 0 if that failed
// cleanly and the list is intact.
int push_past_address_limit(procpool::List<std::string> l) {
  const std::string big(std::size_t{100} << 20, 'q');
  procpool::List<std::string> warm;
  warm.push_back(big);  // this thread's encoding buffer is large enough from now on
  auto& heap = procpool::detail::ContainerAccess::engine(l).heap();
  {
    procpool::detail::HeapLock lock(heap);
    procpool::detail::HeapTxn t(heap);
    heap.skip(heap.mapped() - heap.state().committed - (1 << 20));  // near the reservation's end
    t.commit();
  }
  rlimit lim{};
  lim.rlim_cur = lim.rlim_max = (vm_size_kb() + 64 * 1024) * 1024;
  if (::setrlimit(RLIMIT_AS, &lim) != 0) return 3;
  try {
    l.push_back(big);
    return 4;
  } catch (const procpool::SystemError&) {
  }
  if (l.size() != 2 || l.at(0) != "a" || l.at(1) != "b") return 5;
  return 0;
}

}  // namespace

TEST_CASE("List: every operation in one process", "[list]") {
  procpool::List<std::string> l;
  CHECK(l.empty());
  CHECK(l.size() == 0);
  CHECK_FALSE(l.pop_back().has_value());
  l.push_back("a");
  l.push_back("");
  l.push_back(std::string(100'000, 'x'));
  CHECK(l.size() == 3);
  CHECK(l.at(0) == "a");
  CHECK(l.at(1).empty());
  CHECK(l.at(2) == std::string(100'000, 'x'));
  l.set(1, "b");
  CHECK(l.at(1) == "b");
  l.extend(std::vector<std::string>{"c", "d"});
  CHECK(l.snapshot() == std::vector<std::string>{"a", "b", std::string(100'000, 'x'), "c", "d"});
  CHECK(l.pop_back() == std::optional<std::string>("d"));
  CHECK(l.size() == 4);
  l.clear();
  CHECK(l.empty());
  CHECK(l.snapshot().empty());
  l.push_back("after clear");
  CHECK(l.snapshot() == std::vector<std::string>{"after clear"});

  // Many items: the index grows by chunks and its directory by doubling.
  procpool::List<int> ints;
  std::vector<int> want(100'000);
  std::iota(want.begin(), want.end(), 0);
  for (int v : want) ints.push_back(v);
  CHECK(ints.size() == want.size());
  CHECK(ints.snapshot() == want);
  CHECK(ints.at(65'535) == 65'535);
  for (int i = 0; i < 50'000; ++i) REQUIRE(ints.pop_back() == std::optional<int>(99'999 - i));
  ints.set(49'999, -1);
  CHECK(ints.at(49'999) == -1);
  CHECK(ints.size() == 50'000);
  // One extend that reuses many freed blocks.
  ints.extend(std::vector<int>(want.begin() + 50'000, want.end()));
  CHECK(ints.size() == 100'000);
  CHECK(ints.at(99'999) == 99'999);
}

TEST_CASE("List: initial contents from a vector, an initializer list and a single-pass range",
          "[list]") {
  procpool::List<int> a(std::vector<int>{1, 2, 3, 4});
  CHECK(a.snapshot() == std::vector<int>{1, 2, 3, 4});
  procpool::List<std::string> b{"x", "y"};
  CHECK(b.snapshot() == std::vector<std::string>{"x", "y"});
  std::istringstream in("5 6 7");
  procpool::List<int> c{procpool_test::istream_view<int>(in)};
  CHECK(c.snapshot() == std::vector<int>{5, 6, 7});
  procpool::List<Rec> d(std::vector<Rec>{make_rec(97), make_rec(3)});
  CHECK(d.at(0).id == 97);
  CHECK(intact(d.at(0)));
}

TEST_CASE("List: out of range is std::out_of_range naming the index, a codec error changes nothing",
          "[list]") {
  procpool::List<int> l{10, 20};
  CHECK_THROWS_AS(l.at(2), std::out_of_range);
  CHECK_THROWS_WITH(l.at(5), Catch::Contains("index 5") && Catch::Contains("2 items"));
  CHECK_THROWS_AS(l.set(2, 1), std::out_of_range);
  CHECK(l.snapshot() == std::vector<int>{10, 20});

  procpool::List<Picky> p;
  p.push_back(Picky{1});
  CHECK_THROWS_AS(p.push_back(Picky{-1}), procpool::CodecError);
  CHECK_THROWS_AS(p.set(0, Picky{-1}), procpool::CodecError);
  // All or nothing: a bad item in the middle of extend adds none of them.
  CHECK_THROWS_AS(p.extend(std::vector<Picky>{{2}, {-2}, {3}}), procpool::CodecError);
  REQUIRE(p.size() == 1);
  CHECK(p.at(0).x == 1);
}

TEST_CASE("List: passed to pool tasks and Processes, copies refer to the same list", "[list]") {
  procpool::List<int> l{1, 2, 3, 4};
  procpool::List<int> copy = l;
  copy.push_back(5);
  CHECK(l.size() == 5);
  {
    procpool::Pool pool(procpool_test::workers(2));
    std::vector<std::pair<procpool::List<int>, int>> args;
    for (int i = 0; i < 50; ++i) args.emplace_back(l, 100 + i);
    auto sizes = pool.starmap(
        +[](procpool::List<int> shared, int x) {
          shared.push_back(x);
          return shared.at(0);
        },
        args);
    for (int s : sizes) CHECK(s == 1);
  }
  procpool::Process p(
      +[](procpool::List<int> shared) { shared.set(0, -1); }, l);
  p.start();
  p.join();
  CHECK(p.exitcode() == 0);
  auto all = l.snapshot();
  REQUIRE(all.size() == 55);
  CHECK(all[0] == -1);
  std::sort(all.begin() + 5, all.end());
  for (int i = 0; i < 50; ++i) CHECK(all[static_cast<std::size_t>(5 + i)] == 100 + i);
}

TEST_CASE("List: four processes appending at once lose nothing and tear nothing", "[list]") {
  constexpr std::uint64_t per = 3000;
  procpool::List<Rec> l;
  std::vector<procpool::Process> ps;
  for (std::uint64_t k = 0; k < 4; ++k) ps.emplace_back(&push_recs, l, k * per, per);
  for (auto& p : ps) p.start();
  for (auto& p : ps) {
    REQUIRE(p.join_for(60s));
    CHECK(p.exitcode() == 0);
  }
  auto all = l.snapshot();
  REQUIRE(all.size() == 4 * per);
  std::set<std::uint64_t> ids;
  for (auto& r : all) {
    REQUIRE(intact(r));
    ids.insert(r.id);
  }
  CHECK(ids.size() == 4 * per);
  CHECK(*ids.rbegin() == 4 * per - 1);
}

TEST_CASE("List: a process dying at any step of any operation leaves it before or after",
          "[list]") {
  for (int op = 0; op < 6; ++op) {
    procpool::List<std::string> l;
    // Start at the end of a full chunk, so pushes allocate a chunk (and the directory).
    std::vector<std::string> start(4095, "s");
    start[7] = std::string(70'000, 'L');
    l.extend(start);
    procpool_test::die_at_every_step(
        l, op, &op_dying_at,
        [](const std::vector<std::string>& items) { return procpool::List<std::string>(items); },
        do_op, procpool_test::list_blocks, [](auto&) {});
    // Still fully usable.
    l.push_back("last");
    CHECK(l.at(l.size() - 1) == "last");
  }
}

TEST_CASE(
    "Shared heap: an operation changing hundreds of words, most of them again and again, "
    "logs each once and is undone whole",
    "[list]") {
  procpool::List<std::uint64_t> l;
  auto& h = procpool::detail::ContainerAccess::engine(l).heap();
  constexpr std::uint64_t n =
      300;  // past the 16 words searched one by one, below the journal's 512
  std::uint64_t block = 0;
  {
    procpool::detail::HeapLock lock(h);
    procpool::detail::HeapTxn txn(h);
    block = h.alloc(n * 8);  // a fresh block: its words are written without logging
    for (std::uint64_t i = 0; i < n; ++i) h.words(block)[i] = i;
    txn.commit();
  }
  const std::uint64_t payload = block + 8;  // a block's words start after its length word
  {
    procpool::detail::HeapLock lock(h);
    procpool::detail::HeapTxn txn(h);  // never committed: undone when it ends
    for (std::uint64_t round = 0; round < 5; ++round)
      for (std::uint64_t i = 0; i < n; ++i) h.set_heap(payload + i * 8, 1000 * (round + 1) + i);
    CHECK(h.state().undo_count == n);  // five changes of each word, logged once each
    for (std::uint64_t i = 0; i < n; ++i) REQUIRE(h.words(block)[i] == 5000 + i);
  }
  procpool::detail::HeapLock lock(h);
  CHECK(h.state().undo_count == 0);
  for (std::uint64_t i = 0; i < n; ++i) REQUIRE(h.words(block)[i] == i);
  // The next operation starts with an empty log: its first change of a word is logged again.
  procpool::detail::HeapTxn txn(h);
  for (std::uint64_t i = 0; i < 40; ++i) h.set_heap(payload + i * 8, 7);
  CHECK(h.state().undo_count == 40);
  txn.commit();
  CHECK(h.words(block)[39] == 7);
  CHECK(h.words(block)[40] == 40);
}

TEST_CASE("List: processes SIGKILLed in the middle of operations: no torn item, no deadlock",
          "[list]") {
  procpool::List<Rec> l;
  procpool_test::kill_while_churning(l, &churn, procpool_test::list_blocks);
  auto all = l.snapshot();
  l.push_back(make_rec(7));
  CHECK(l.at(l.size() - 1).id == 7);
}

TEST_CASE("List: grows past several GB of address space while another process reads", "[list]") {
  // This process maps the heap in small reservations, so it maps again several times; the
  // reader maps with the default. Holes stand for the space of large items since freed, so the
  // address space grows without memory behind it.
  auto& reserve = procpool::detail::heap_reserve_bytes();
  const std::size_t saved = reserve.exchange(std::size_t{64} << 20);
  procpool::List<std::string> l;
  procpool::Value<int> stop(0);
  procpool::Value<long> reads(0);
  l.push_back(text_of(0));
  procpool::Process reader(&read_while_growing, l, stop, reads);
  reader.start();
  auto& heap = procpool::detail::ContainerAccess::engine(l).heap();
  int i = 1;
  while (heap.state().committed < (std::uint64_t{6} << 30)) {
    {
      procpool::detail::HeapLock lock(heap);
      procpool::detail::HeapTxn t(heap);
      heap.skip(std::size_t{256} << 20);
      t.commit();
    }
    for (int k = 0; k < 200; ++k, ++i) l.push_back(text_of(i));
  }
  CHECK(procpool_test::wait_until([&] { return reads.load() > 100; }, 30s));
  stop.store(1);
  REQUIRE(reader.join_for(30s));
  CHECK(reader.exitcode() == 0);
  reserve.store(saved);
  CHECK(heap.mapped() >= (std::size_t{6} << 30));
  REQUIRE(l.size() == static_cast<std::size_t>(i));
  for (int k = 0; k < i; k += 97) REQUIRE(l.at(static_cast<std::size_t>(k)) == text_of(k));
  // Address space, not memory: the heap file holds only a few MiB.
  struct stat st {};
  REQUIRE(::fstat(heap.file()->fd(), &st) == 0);
  CHECK(static_cast<std::uint64_t>(st.st_size) >= (std::uint64_t{6} << 30));
  CHECK(static_cast<std::uint64_t>(st.st_blocks) * 512 < (std::uint64_t{128} << 20));
}

// Not run under sanitizers (asan-skip): they need address space of their own.
TEST_CASE("List: running out of address space is an error for that call, the list stays intact",
          "[list][asan-skip]") {
  procpool::List<std::string> l{"a", "b"};
  procpool::Process p(&push_past_address_limit, l);
  p.start();
  REQUIRE(p.join_for(60s));
  CHECK(p.exitcode() == 0);
  CHECK(l.snapshot() == std::vector<std::string>{"a", "b"});
  l.push_back("c");
  CHECK(l.size() == 3);
}

TEST_CASE("List: leaves no descriptor, mapping or /dev/shm entry behind", "[list]") {
  const auto fds = procpool_test::count_open_fds();
  const auto maps = procpool_test::memfds(::getpid());
  for (int i = 0; i < 2000; ++i) {
    procpool::List<int> l{i};
    l.push_back(i);
    procpool::List<int> copy = l;
    CHECK(copy.size() == 2);
  }
  CHECK(procpool_test::count_open_fds() == fds);
  CHECK(procpool_test::memfds(::getpid()) == maps);
  {
    procpool::Pool pool(procpool_test::workers(1));
    REQUIRE(pool.apply(
                +[](int x) { return x; }, 1) == 1);
    const pid_t w = pool.pids().at(0);
    const auto base = procpool_test::memfds(w);
    for (int i = 0; i < 300; ++i) {
      procpool::List<int> l{i};
      REQUIRE(pool.apply(
                  +[](procpool::List<int> s) { return s.at(0); }, l) == i);
    }
    // The worker lets go of every list the parent destroyed: mappings and descriptors.
    procpool_test::wait_until([&] { return procpool_test::memfds(w).first <= base.first + 2; },
                              10s);
    const auto after = procpool_test::memfds(w);
    INFO("worker memfd mappings " << base.first << " -> " << after.first << ", descriptors "
                                  << base.second << " -> " << after.second);
    CHECK(after.first <= base.first + 2);
    CHECK(after.second <= base.second + 2);
  }
  CHECK(procpool_test::count_open_fds() == fds);
  CHECK(procpool_test::live_children().empty());
  CHECK(procpool_test::procpool_shm_entries() == 0);
}

// Not run under sanitizers (asan-skip): they need address space of their own.
TEST_CASE("List: usable in workers whose address space is limited below the usual reservation",
          "[list][asan-skip]") {
  auto o = procpool_test::workers(1);
  o.memory_limit = std::size_t{1} << 30;
  procpool::Pool pool(o);
  procpool::List<std::string> l{"a"};
  const auto n = pool.apply(
      +[](procpool::List<std::string> s) {
        for (int i = 0; i < 1000; ++i) s.push_back(std::string(10'000, 'w'));
        return s.size();
      },
      l);
  CHECK(n == 1001);
  CHECK(l.at(1000) == std::string(10'000, 'w'));
}
