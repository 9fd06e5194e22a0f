// Packed chunks: a map whose task takes one plain value (a number, a padding-free struct) sends
// each chunk's arguments back to back without a length per item, and a worker answers a chunk
// whose results are all plain values and all succeeded with one packed run of them. The format's
// checks, the switch back to item-by-item results when a task fails inside a run, and maps over
// every kind of range, chunk size and time limit.
#include <array>
#include <bit>
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <support/fault_support.hpp>
#include <support/ranges_support.hpp>
#include <support/test_support.hpp>
#include <vector>

#include <procpool/detail/completion.hpp>
#include <procpool/detail/invoke.hpp>
#include <procpool/detail/map_batch.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::iota_vec;
using procpool_test::scaled;
using procpool_test::spread;
using procpool_test::square;
using procpool_test::squares;
using procpool_test::Vec3;
using procpool_test::workers;

namespace {

namespace d = procpool::detail;

// A packed run of result values as a worker writes it.
d::Buffer packed_run(std::uint64_t size, const void* values, std::size_t bytes) {
  d::Buffer b;
  const auto tag = static_cast<std::uint8_t>(d::ItemStatus::packed);
  b.append(&tag, 1);
  b.append(&size, sizeof size);
  b.append(values, bytes);
  return b;
}

void put_item(d::Buffer& b, d::ItemStatus st, const void* bytes, std::uint64_t n) {
  const auto s = static_cast<std::uint8_t>(st);
  b.append(&s, 1);
  b.append(&n, sizeof n);
  b.append(bytes, static_cast<std::size_t>(n));
}

std::vector<int> read_ints(std::span<const std::byte> payload, std::uint32_t count, bool& ok) {
  std::vector<int> out;
  ok = d::for_each_item(payload, count, [&](const d::ItemView& it) {
    int v = -1;
    if (it.status == d::ItemStatus::ok && it.bytes.size() == sizeof v)
      std::memcpy(&v, it.bytes.data(), sizeof v);
    out.push_back(v);
  });
  return out;
}

std::string text_of(int n) {
  return std::to_string(n);
}
int throw_at_k(int x) {
  if (x % 1000 == 999) throw std::runtime_error("no " + std::to_string(x));
  return x + 1;
}
void nothing_back(int) {
}
int abort_at_77(int x) {
  if (x == 77) std::abort();
  return x;
}
int sleep_at_5(int x) {
  if (x == 5) procpool_test::sleep_ms(2000);
  return x;
}
int sleep_100(int x) {
  procpool_test::sleep_ms(100);
  return x;
}
int throw_odd_or_big(int x) {
  if (x % 2 != 0 || x > 1000) throw std::runtime_error("no " + std::to_string(x));
  return -x;
}

// A sized, contiguous range whose end cannot be subtracted from its iterators.
struct NullEnd {
  friend bool operator==(const int* p, NullEnd) { return *p == 0; }
};
struct ZeroEnded {
  int* first;
  std::size_t n;
  int* begin() const { return first; }
  NullEnd end() const { return {}; }
  std::size_t size() const { return n; }
};
static_assert(std::ranges::contiguous_range<ZeroEnded> && std::ranges::sized_range<ZeroEnded>);

}  // namespace

TEST_CASE("a packed run of results reads as its items and one that does not add up is malformed",
          "[packed]") {
  const int v[3] = {7, 8, 9};
  bool ok = false;
  auto run = packed_run(sizeof(int), v, sizeof v);
  CHECK(read_ints(run.span(), 3, ok) == std::vector<int>{7, 8, 9});
  CHECK(ok);
  std::uint64_t good = 0, bad = 0;
  CHECK(d::count_outcomes(run.span(), 3, good, bad));
  CHECK(good == 3);
  CHECK(bad == 0);

  // The count says more or fewer items than the run holds, or a size that does not divide it.
  for (std::uint32_t count : {2u, 4u}) {
    INFO("count " << count);
    read_ints(run.span(), count, ok);
    CHECK_FALSE(ok);
    CHECK_FALSE(d::count_outcomes(run.span(), count, good, bad));
  }
  auto odd = packed_run(5, v, sizeof v);
  read_ints(odd.span(), 2, ok);
  CHECK_FALSE(ok);
  // A size of zero holds only nothing (results of void tasks), never bytes.
  auto zero = packed_run(0, v, sizeof v);
  CHECK_FALSE(d::count_outcomes(zero.span(), 3, good, bad));
  auto empty = packed_run(0, v, 0);
  good = 0;
  CHECK(d::count_outcomes(empty.span(), 3, good, bad));
  CHECK(good == 3);
  // A run whose size field is cut short, and a size so large that count × size would overflow.
  auto cut = packed_run(sizeof(int), v, 0);
  cut.resize(5);
  CHECK_FALSE(d::count_outcomes(cut.span(), 1, good, bad));
  auto huge = packed_run(std::uint64_t{1} << 62, v, 0);  // 4 × 2^62 wraps to 0 in 64 bits
  CHECK_FALSE(d::count_outcomes(huge.span(), 4, good, bad));

  // The packed tag is no item status: after a first ordinary item it is malformed.
  d::Buffer mixed;
  put_item(mixed, d::ItemStatus::ok, &v[0], sizeof(int));
  put_item(mixed, d::ItemStatus::packed, &v[1], sizeof(int));
  read_ints(mixed.span(), 2, ok);
  CHECK_FALSE(ok);
}

TEST_CASE("a packed run turned back into items is what a worker writes item by item", "[packed]") {
  const int v[3] = {-1, 0, 0x01020304};
  d::Buffer out;
  out.append("xy", 2);  // what the frame held before the run
  const std::size_t at = out.size();
  d::Buffer run = packed_run(sizeof(int), v, sizeof v);
  out.reserve(at + 3 * (9 + sizeof(int)));
  out.append(run.data(), run.size());
  d::unpack_results(out, at, 3, sizeof(int));

  d::Buffer expect;
  expect.append("xy", 2);
  for (int x : v) put_item(expect, d::ItemStatus::ok, &x, sizeof x);
  REQUIRE(out.size() == expect.size());
  CHECK(std::memcmp(out.data(), expect.data(), out.size()) == 0);

  d::Buffer none;
  none.append(run.data(), 9);
  d::unpack_results(none, 0, 0, sizeof(int));
  CHECK(none.empty());
}

TEST_CASE("a map's packed chunk is copied whole and one of another size goes to the codec",
          "[packed]") {
  const int v[2] = {41, 42};
  for (std::uint64_t size : {std::uint64_t{sizeof(int)}, std::uint64_t{2}}) {
    INFO("size " << size);
    d::Completion c(1);
    d::JobOutcome o;
    o.frame = packed_run(size, v, size * 2);
    o.count = 2;
    c.settle(0, std::move(o), 2, [] {});
    std::vector<int> out(2);
    int decoded = 0;
    d::ItemSink sink;
    sink.raw_size = sizeof(int);
    sink.raw = reinterpret_cast<std::byte*>(out.data());
    sink.out = &decoded;
    sink.decode = [](void* n, std::size_t, std::span<const std::byte>) { ++*static_cast<int*>(n); };
    std::optional<d::ErrorInfo> error;
    CHECK(d::gather_items(c, sink, error));
    if (size == sizeof(int)) {
      CHECK(out == std::vector<int>{41, 42});
      CHECK(decoded == 0);
    } else {
      CHECK(decoded == 2);  // where a real codec reports the wrong size
    }
  }
}

TEST_CASE("maps over plain values come back whole and in order for every range and chunk size",
          "[packed]") {
  procpool::Pool pool(workers(2));
  const auto in = iota_vec(5000);
  const auto want = squares(5000);
  for (std::size_t chunk : {0u, 1u, 2u, 7u, 999u, 5000u, 9000u}) {
    INFO("chunksize " << chunk);
    CHECK(pool.map(square, in, chunk) == want);
  }
  std::list<int> list(in.begin(), in.end());
  CHECK(pool.map(square, list) == want);
  std::deque<int> deque(in.begin(), in.end());
  CHECK(pool.map(square, deque, 3) == want);
  CHECK(pool.map(square, procpool_test::iota(0, 5000)) == want);
  int zero_ended[] = {5, 6, 7, 0};
  CHECK(pool.map(square, ZeroEnded{zero_ended, 3}) == std::vector<int>{25, 36, 49});
  const std::array<int, 3> arr{1, 2, 3};
  CHECK(pool.map(square, arr) == std::vector<int>{1, 4, 9});
  CHECK(pool.map(square, std::span<const int>(in).subspan(4990)) ==
        std::vector<int>(want.begin() + 4990, want.end()));

  std::vector<Vec3> vs;
  for (int i = 0; i < 3000; ++i) vs.push_back({i * 1.0, -i * 0.5, 0.25});
  auto d2 = pool.map(scaled, vs);
  REQUIRE(d2.size() == vs.size());
  CHECK(d2[2999].x == 5998.0);
  CHECK(d2[2999].y == -2999.0);
  CHECK(d2[1].z == 0.5);
  // Plain arguments with results of another size, and results that are not plain.
  auto arrays = pool.map(spread, in);
  CHECK(arrays[4999] == std::array<int, 4>{4999, 5000, 5001, 5002});
  auto texts = pool.map(text_of, in, 100);
  CHECK(texts[4321] == "4321");
  CHECK(pool.map(nothing_back, in).size() == in.size());
}

TEST_CASE("a task that throws inside a packed chunk fails the map alone and the rest are counted",
          "[packed]") {
  procpool::Pool pool(workers(2));
  const auto before = pool.stats();
  // 999 is the first item of a chunk of 999, the middle of one of 2,000, the last of one of 1,000.
  for (std::size_t chunk : {999u, 2000u, 1000u}) {
    INFO("chunksize " << chunk);
    auto e = procpool_test::thrown_as<procpool::RemoteError>(
        [&] { (void)pool.map(throw_at_k, iota_vec(4000), chunk); });
    REQUIRE(e);
    CHECK_THAT(e->what(), Catch::Contains("no 999"));  // the first failure in input order
  }
  const auto after = pool.stats();
  CHECK(after.failed - before.failed == 3 * 4);
  CHECK(after.completed - before.completed == 3 * (4000 - 4));
  auto ok = pool.map(throw_at_k, iota_vec(999));
  REQUIRE(ok.size() == 999);
  CHECK(ok[998] == 999);
  CHECK(pool.stats().restarts == 0);
}

TEST_CASE("a trampoline's packed run keeps every result before and after a task that throws",
          "[packed]") {
  using Inv = d::Invoker<procpool::BinaryCodec, int (*)(int), std::tuple<int>>;
  const auto fn = std::bit_cast<std::uintptr_t>(&throw_odd_or_big);
  // Which argument throws: none, the first, one in the middle, the last, two.
  const std::vector<std::vector<int>> runs{
      {0, 2, 4, 6}, {1, 2, 4, 6}, {0, 2, 3, 6}, {0, 2, 4, 5}, {0, 1, 4, 2000}};
  for (const auto& args : runs) {
    INFO("arguments " << args[0] << ' ' << args[1] << ' ' << args[2] << ' ' << args[3]);
    d::Buffer out;
    out.append("ab", 2);
    Inv::run(fn, std::as_bytes(std::span(args)), out, 4);
    const auto payload = out.span().subspan(2);
    std::vector<std::string> got;
    const bool whole = d::for_each_item(payload, 4, [&](const d::ItemView& it) {
      if (it.status != d::ItemStatus::ok) {
        got.push_back(d::ErrorInfo::from_item(it).message);
        return;
      }
      int v = 1;
      REQUIRE(it.bytes.size() == sizeof v);
      std::memcpy(&v, it.bytes.data(), sizeof v);
      got.push_back(std::to_string(v));
    });
    CHECK(whole);
    std::vector<std::string> want;
    for (int x : args)
      want.push_back(x % 2 != 0 || x > 1000 ? "no " + std::to_string(x) : std::to_string(-x));
    CHECK(got == want);
    std::uint64_t size = 0;
    std::span<const std::byte> values;
    bool bad = false;
    // Packed only when every task returned.
    CHECK(d::packed_results(payload, 4, size, values, bad) == (args == runs[0]));
  }
}

TEST_CASE("imap of plain values, and a map after a failed one", "[packed]") {
  procpool::Pool pool(workers(2));
  std::vector<int> got;
  for (int r : pool.imap(square, iota_vec(300), 50)) got.push_back(r);
  CHECK(got == squares(300));
  CHECK_THROWS_AS(pool.map(throw_at_k, iota_vec(2000)), procpool::RemoteError);
  CHECK(pool.map(square, iota_vec(2000)) == squares(2000));
}

TEST_CASE("a worker that crashes inside a packed chunk fails that map and the pool carries on",
          "[packed][faults]") {
  procpool::Pool pool(workers(2));
  CHECK_THROWS_AS(pool.map(abort_at_77, iota_vec(1000), 100), procpool::WorkerCrashed);
  CHECK(pool.map(abort_at_77, iota_vec(77)) == iota_vec(77));
  CHECK(pool.map(square, iota_vec(1000)) == squares(1000));
}

TEST_CASE("a timed map over plain values times each task inside a packed chunk", "[packed]") {
  procpool::Pool pool(procpool_test::timed_workers(2, 300ms));
  // Five tasks of 100 ms in a chunk: 500 ms for the chunk, within the limit for each task.
  CHECK(pool.map(sleep_100, iota_vec(10), 5) == iota_vec(10));
  CHECK(pool.stats().failed == 0);
  auto e = procpool_test::thrown_as<procpool::TaskTimeout>(
      [&] { (void)pool.map(sleep_at_5, iota_vec(100), 50); });
  CHECK(e);
  CHECK(pool.map(sleep_at_5, iota_vec(5), 5) == iota_vec(5));
  CHECK(pool.map(square, iota_vec(1000), 100) == squares(1000));
}
