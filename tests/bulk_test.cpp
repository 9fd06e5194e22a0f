// Large task frames (256 KiB and more) reach workers through shared memory instead of the task
// pipe: the bytes arrive intact, many at once and again and again (the memory files are reused),
// in new workers too, after a worker died holding one, when taken back from a busy worker, and
// nothing is left open once the pool is gone.
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <support/test_support.hpp>
#include <vector>

#include <signal.h>

#include <procpool/procpool.hpp>

using procpool_test::count_open_fds;
using procpool_test::recycled_workers;
using procpool_test::workers;

namespace {

using Bytes = std::vector<std::uint8_t>;

// `n` bytes that differ from one `seed` to the next.
Bytes pattern(std::size_t n, std::uint32_t seed) {
  Bytes b(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& v : b) {
    x = x * 1664525u + 1013904223u;
    v = static_cast<std::uint8_t>(x >> 24);
  }
  return b;
}

std::uint64_t checksum(const Bytes& b) {
  std::uint64_t h = 1469598103934665603ull;
  for (auto v : b) h = (h ^ v) * 1099511628211ull;
  return h ^ b.size();
}

std::uint64_t checksum_task(Bytes b) {
  return checksum(b);
}

std::uint64_t checksum_or_die(Bytes b, bool die) {
  if (die) ::raise(SIGKILL);
  return checksum(b);
}

std::uint64_t sleep_then_checksum(Bytes b, int ms) {
  procpool_test::sleep_for_ms(ms);
  return checksum(b);
}

}  // namespace

TEST_CASE("large arguments arrive intact, many at once and again", "[bulk]") {
  procpool::Pool pool(workers(2));
  for (int round = 0; round < 3; ++round) {
    std::vector<Bytes> inputs;
    std::vector<procpool::AsyncResult<std::uint64_t>> results;
    for (std::uint32_t i = 0; i < 24; ++i) {
      // Below the threshold (through the pipe), just above it, and well above it.
      const std::size_t n = (i % 3 == 0) ? 200u << 10 : (i % 3 == 1 ? 256u << 10 : 3u << 20);
      inputs.push_back(pattern(n + i, i + 100u * static_cast<std::uint32_t>(round)));
      results.push_back(pool.apply_async(checksum_task, inputs.back()));
    }
    for (std::size_t i = 0; i < inputs.size(); ++i) CHECK(results[i].get() == checksum(inputs[i]));
    // The large ones went through memory files, kept for the next round (unless the build keeps
    // nothing, as under AddressSanitizer).
    if (procpool::detail::config::buffer_cache_bytes > 0)
      CHECK(procpool::detail::local::SharedFrames::process().bytes() >= (3u << 20));
  }
  // A map whose chunks are large frames.
  std::vector<Bytes> many;
  for (std::uint32_t i = 0; i < 40; ++i) many.push_back(pattern(100u << 10, i));
  auto sums = pool.map(checksum_task, many, 5);
  REQUIRE(sums.size() == many.size());
  for (std::size_t i = 0; i < many.size(); ++i) CHECK(sums[i] == checksum(many[i]));
}

TEST_CASE("a worker killed holding a large argument fails that task alone", "[bulk]") {
  procpool::Pool pool(workers(2));
  std::vector<Bytes> inputs;
  std::vector<procpool::AsyncResult<std::uint64_t>> results;
  for (std::uint32_t i = 0; i < 12; ++i) {
    inputs.push_back(pattern(1u << 20, i));
    results.push_back(pool.apply_async(checksum_or_die, inputs.back(), i == 4 || i == 9));
  }
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (i == 4 || i == 9) {
      CHECK_THROWS_AS(results[i].get(), procpool::WorkerCrashed);
    } else {
      CHECK(results[i].get() == checksum(inputs[i]));
    }
  }
  // The replacements get large arguments as well.
  const Bytes after = pattern(2u << 20, 77);
  CHECK(pool.apply(checksum_task, after) == checksum(after));
}

TEST_CASE("workers replaced after every task get large arguments too", "[bulk]") {
  procpool::Pool pool(recycled_workers(2, 1));
  for (std::uint32_t i = 0; i < 8; ++i) {
    const Bytes b = pattern(600u << 10, i);
    CHECK(pool.apply(checksum_task, b) == checksum(b));
  }
}

TEST_CASE("large tasks queued behind a long one are taken back and run elsewhere", "[bulk]") {
  procpool::Pool pool(workers(2));
  // Quick tasks first, so each worker gets a deep window; then a long one holds up its window.
  pool.map(procpool_test::square, procpool_test::iota_vec(2000), 1);
  const Bytes big = pattern(512u << 10, 5);
  auto long_one = pool.apply_async(sleep_then_checksum, big, 3000);
  std::vector<procpool::AsyncResult<std::uint64_t>> short_ones;
  for (int i = 0; i < 8; ++i) short_ones.push_back(pool.apply_async(sleep_then_checksum, big, 20));
  for (auto& r : short_ones) CHECK(r.get() == checksum(big));
  CHECK_FALSE(long_one.ready());
  CHECK(long_one.get() == checksum(big));
  CHECK(pool.stats().failed == 0);
}

TEST_CASE("large arguments leave no descriptor behind", "[bulk]") {
  const Bytes b = pattern(1u << 20, 3);
  {  // the first pool of the process may open descriptors that stay (the fork server's)
    procpool::Pool warm(workers(1));
    CHECK(warm.apply(checksum_task, b) == checksum(b));
  }
  const auto before = count_open_fds();
  {
    procpool::Pool pool(workers(2));
    for (int i = 0; i < 6; ++i) CHECK(pool.apply(checksum_task, b) == checksum(b));
  }
  CHECK(count_open_fds() == before);
  CHECK(procpool::detail::local::SharedFrames::process().bytes() == 0);
}
