// Large task and result frames (256 KiB and more) travel between the pool and its workers
// through shared memory instead of the pipes: the bytes arrive intact, many at once and again and
// again (the memory files are reused), in new workers too, after a worker died holding one, when
// taken back from a busy worker, under a memory limit (the pipes then), and nothing is left open
// or mapped once the pool is idle or gone.
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <support/test_support.hpp>
#include <vector>

#include <signal.h>

#include <procpool/detail/local/shared_frame.hpp>  // SharedFrames: what the engine keeps mapped
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

Bytes make_pattern(std::uint64_t n, std::uint32_t seed) {
  return pattern(static_cast<std::size_t>(n), seed);
}

Bytes echo(Bytes b) {
  return b;
}

Bytes pattern_or_die(std::uint64_t n, std::uint32_t seed, bool die) {
  if (die) ::raise(SIGKILL);
  return pattern(static_cast<std::size_t>(n), seed);
}

std::vector<double> ramp(std::uint64_t n) {
  std::vector<double> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i) * 0.5;
  return v;
}

// How many memory files this process has mapped.
std::size_t memfd_mappings() {
  std::ifstream maps("/proc/self/maps");
  std::size_t n = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find("/memfd:procpool") != std::string::npos) ++n;
  return n;
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

TEST_CASE("large results come back intact, many at once and again", "[bulk]") {
  procpool::Pool pool(workers(2));
  for (std::uint32_t round = 0; round < 3; ++round) {
    // Below the threshold (through the pipe), just above it, and well above it; all held at
    // once, so the workers run out of result files and fall back on the pipe too.
    std::vector<procpool::AsyncResult<Bytes>> results;
    std::vector<std::uint64_t> sizes;
    for (std::uint32_t i = 0; i < 24; ++i) {
      sizes.push_back((i % 3 == 0) ? (200u << 10) + i : (i % 3 == 1 ? (256u << 10) + i : 3u << 20));
      results.push_back(pool.apply_async(make_pattern, sizes.back(), i + 100 * round));
    }
    for (std::uint32_t i = 0; i < results.size(); ++i)
      CHECK(checksum(results[i].get()) ==
            checksum(pattern(static_cast<std::size_t>(sizes[i]), i + 100 * round)));
  }
  // Round trips that reuse the same files, one after another.
  for (std::uint32_t i = 0; i < 6; ++i) {
    const Bytes b = pattern((5u << 20) + i, i);
    CHECK(pool.apply(echo, b) == b);
  }
  // A map whose results are large, and a lazy imap.
  auto all = pool.starmap(make_pattern, std::vector<std::tuple<std::uint64_t, std::uint32_t>>{
                                            {600u << 10, 1}, {700u << 10, 2}, {1u << 20, 3}});
  REQUIRE(all.size() == 3);
  CHECK(all[0] == pattern(600u << 10, 1));
  CHECK(all[2] == pattern(1u << 20, 3));
  std::vector<Bytes> inputs;
  for (std::uint32_t i = 0; i < 12; ++i) inputs.push_back(pattern(300u << 10, i));
  std::size_t seen = 0;
  for (auto& r : pool.imap(echo, inputs, 1)) {
    CHECK(r == inputs[seen]);
    ++seen;
  }
  CHECK(seen == inputs.size());
  // Large vectors of numbers decode from the shared bytes wherever they lie.
  const auto v = pool.apply(ramp, std::uint64_t{3} << 20);
  REQUIRE(v.size() == (std::size_t{3} << 20));
  CHECK(v[0] == 0.0);
  CHECK(v[12345] == 12345 * 0.5);
  CHECK(v.back() == static_cast<double>(v.size() - 1) * 0.5);
}

TEST_CASE("results a worker returned through memory files outlive its death", "[bulk]") {
  procpool::Pool pool(workers(1));
  CHECK(pool.apply(procpool_test::square, 3) == 9);
  const std::size_t small = memfd_mappings();
  auto first = pool.apply_async(make_pattern, std::uint64_t{2} << 20, 1u);
  auto second = pool.apply_async(make_pattern, std::uint64_t{1} << 20, 2u);
  first.wait();
  second.wait();
  // Their arguments are small: the files mapped now are the worker's, holding the results.
  CHECK(memfd_mappings() == small + 2);
  auto crash = pool.apply_async(pattern_or_die, std::uint64_t{1} << 20, 3u, true);
  CHECK_THROWS_AS(crash.get(), procpool::WorkerCrashed);
  // Decoded only now, after the worker that wrote them is gone.
  CHECK(first.get() == pattern(2u << 20, 1));
  CHECK(second.get() == pattern(1u << 20, 2));
  CHECK(pool.apply(pattern_or_die, std::uint64_t{1} << 20, 4u, false) == pattern(1u << 20, 4));
}

TEST_CASE("large results under a memory limit take the pipe", "[bulk][asan-skip]") {
  procpool::Options o = workers(1);
  o.memory_limit = std::size_t{1} << 30;
  procpool::Pool pool(o);
  for (std::uint32_t i = 0; i < 3; ++i) {
    const Bytes b = pattern((3u << 20) + i, i);
    CHECK(pool.apply(echo, b) == b);
  }
}

TEST_CASE("an idle pool unmaps the memory files of large frames", "[bulk]") {
  const std::size_t before = memfd_mappings();
  const Bytes b = pattern(2u << 20, 9);
  {
    procpool::Pool pool(workers(2));
    CHECK(pool.apply(procpool_test::square, 3) == 9);
    const std::size_t small = memfd_mappings();  // the pool's own (its workers' status slots)
    for (int i = 0; i < 4; ++i) CHECK(pool.apply(echo, b) == b);
    CHECK(memfd_mappings() > small);  // kept for the next large frame
    // An idle second later they are let go (the workers' too: they send them again).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (memfd_mappings() > small && std::chrono::steady_clock::now() < deadline)
      procpool_test::sleep_ms(50);
    CHECK(memfd_mappings() == small);
    for (int i = 0; i < 2; ++i) CHECK(pool.apply(echo, b) == b);
  }
  CHECK(memfd_mappings() == before);
}

TEST_CASE("a large argument gets a memory file while many smaller ones are kept", "[bulk]") {
  procpool::Pool pool(workers(2));
  // As many files as the pool keeps at most, all in use at once, then all free.
  std::vector<Bytes> many;
  for (std::uint32_t i = 0; i < procpool::detail::config::shared_frames_max + 6; ++i)
    many.push_back(pattern(300u << 10, i));
  auto sums = pool.map(checksum_task, many, 1);
  REQUIRE(sums.size() == many.size());
  CHECK(sums.back() == checksum(many.back()));
  // A free small file makes room for the large one, which does not take the pipe.
  const Bytes big = pattern(32u << 20, 1);
  CHECK(pool.apply(checksum_task, big) == checksum(big));
  CHECK(procpool::detail::local::SharedFrames::process().bytes() >= big.size());
}
