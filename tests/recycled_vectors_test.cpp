// A worker keeps the large vectors of plain values it is done with (a task's result once sent,
// an argument taken by reference) and decodes the next large argument of the same type into
// one. A kept vector must never show through: every argument decodes to exactly what was sent,
// whatever size or contents the vector had before.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <support/test_support.hpp>
#include <vector>

#include <procpool/detail/recycled_vectors.hpp>
#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool::detail::RecycledVectors;
using procpool_test::workers;

namespace {

constexpr std::size_t big = std::size_t{8} << 20;  // above config::bulk_vector_min

// Each element plus one, in a new vector: the argument is left to the worker to keep.
std::vector<std::uint32_t> plus_one(const std::vector<std::uint32_t>& v) {
  std::vector<std::uint32_t> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = v[i] + 1;
  return r;
}

std::vector<std::uint8_t> echo(std::vector<std::uint8_t> v) {
  return v;
}

// What the worker keeps now, in bytes.
std::size_t kept_bytes(int) {
  return RecycledVectors::process().bytes();
}

std::vector<std::uint8_t> bytes_of(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(seed + i * 7);
  return v;
}

}  // namespace

// Builds without the buffer cache (AddressSanitizer's) keep nothing: [buffer-cache].
TEST_CASE("a kept vector is taken only for its own type and a size it suits",
          "[recycle][buffer-cache]") {
  RecycledVectors kept;
  std::vector<std::uint32_t> v(big / 4, 5);
  kept.keep(v);
  CHECK(v.size() == big / 4);  // not enabled: left as it was
  CHECK(kept.bytes() == 0);

  kept.enable();
  std::vector<std::uint32_t> small(1000, 5);
  kept.keep(small);
  CHECK(small.size() == 1000);  // small vectors are malloc's to reuse
  kept.keep(v);
  CHECK(v.capacity() == 0);
  CHECK(kept.bytes() == big);

  std::vector<float> other;
  CHECK_FALSE(kept.take(big / 4, other));  // another element type
  std::vector<std::uint32_t> got;
  CHECK_FALSE(kept.take(big / 4 + 1, got));  // too small
  CHECK_FALSE(kept.take(big / 16, got));     // more than twice what is asked for
  REQUIRE(kept.take(big / 4 - 3, got));
  CHECK(got.empty());  // handed over cleared: the decoder writes every element
  CHECK(got.capacity() >= big / 4);
  CHECK(kept.bytes() == 0);
  CHECK_FALSE(kept.take(big / 4 - 3, got));

  std::vector<std::uint32_t> a(big / 4), b(big / 4), c(big / 4);
  kept.keep(a);
  kept.keep(b);
  kept.keep(c);  // two slots: the third stays with its owner
  CHECK(c.size() == big / 4);
  CHECK(kept.bytes() == 2 * big);
  kept.clear();
  CHECK(kept.bytes() == 0);
  CHECK_FALSE(kept.take(big / 4, got));
}

TEST_CASE("arguments decoded into kept vectors are exactly what was sent", "[pool][recycle]") {
  procpool::Pool pool(workers(1));
  // Sizes that fit the vectors kept before (smaller and larger than the last), and contents
  // that change every time: a stale element or a wrong length would show.
  const std::size_t sizes[] = {big / 4, big / 4 - 1, big / 4 - 1000, big / 4 + 17, big / 3};
  std::uint32_t seed = 1;
  for (int round = 0; round < 3; ++round) {
    for (std::size_t n : sizes) {
      std::vector<std::uint32_t> in(n);
      std::iota(in.begin(), in.end(), seed);
      auto out = pool.apply(plus_one, in);
      REQUIRE(out.size() == n);
      for (std::size_t i = 0; i < n; ++i) REQUIRE(out[i] == in[i] + 1);
      seed += 1000;
    }
  }
  for (std::uint8_t s = 0; s < 6; ++s) {
    const auto in = bytes_of(big - s * 4099u, s);
    auto out = pool.apply(echo, in);
    REQUIRE(out == in);
  }
}

TEST_CASE("a worker keeps a large result it sent until it idles", "[pool][recycle][buffer-cache]") {
  const auto in = bytes_of(big, 3);
  procpool::Pool pool(workers(1));
  // Both at once: the worker goes from one to the other without idling (an idle second would
  // give the kept memory back).
  auto r = pool.apply_async(echo, in);
  auto kept = pool.apply_async(kept_bytes, 0);
  REQUIRE(r.get(10s) == in);
  CHECK(kept.get(10s) >= big);
  // Given back once the worker has idled a second (asked after pauses longer than that).
  CHECK(procpool_test::wait_until([&] { return pool.apply(kept_bytes, 0) == 0; }, 20s, 1500ms));
}

// Sanitizers reserve more address space than a memory limit allows: [asan-skip].
TEST_CASE("a worker under a memory limit keeps no vectors", "[pool][recycle][asan-skip]") {
  const auto in = bytes_of(big, 3);
  procpool::Options o = workers(1);
  o.memory_limit = std::size_t{2} << 30;
  procpool::Pool pool(o);
  auto r = pool.apply_async(echo, in);
  auto kept = pool.apply_async(kept_bytes, 0);
  REQUIRE(r.get(10s) == in);
  CHECK(kept.get(10s) == 0);
}
