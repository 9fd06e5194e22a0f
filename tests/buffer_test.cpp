// Frame buffers: large ones are kept for reuse (their pages stay mapped), within a byte bound,
// handed out only to requests they fit, never to two owners at once, and given back once a
// process has been idle for a second. AddressSanitizer builds turn the cache off (a reused block
// would hide a use after free), so the cases that need it are skipped there.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <set>
#include <support/test_support.hpp>
#include <thread>
#include <vector>

#include <procpool/detail/buffer.hpp>
#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool::detail::Buffer;
using procpool::detail::BufferCache;
using procpool::detail::config::buffer_cache_bytes;
using procpool::detail::config::cached_buffer_min;
using procpool_test::wait_until;
using procpool_test::workers;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

std::byte* block(std::size_t n) {
  return static_cast<std::byte*>(std::malloc(n));
}

std::size_t payload_size(const std::vector<std::uint8_t>& v) {
  return v.size();
}

std::size_t cached_in_worker() {
  return BufferCache::process().bytes();
}

}  // namespace

TEST_CASE("buffer cache: hands a kept block only to a request it fits", "[buffer][buffer-cache]") {
  BufferCache cache;
  std::size_t cap = 0;
  CHECK(cache.take(kMiB, cap) == nullptr);

  std::byte* p = block(kMiB);
  REQUIRE(cache.keep(p, kMiB));
  CHECK(cache.bytes() == kMiB);
  CHECK(cache.take(kMiB + 1, cap) == nullptr);      // too small for it
  CHECK(cache.take(kMiB / 2 - 1, cap) == nullptr);  // more than twice what is asked
  CHECK(cache.take(kMiB / 2, cap) == p);
  CHECK(cap == kMiB);
  CHECK(cache.bytes() == 0);
  CHECK(cache.take(kMiB / 2, cap) == nullptr);  // taken once, not twice
  std::free(p);

  std::byte* small = block(cached_buffer_min / 2);
  CHECK_FALSE(cache.keep(small, cached_buffer_min / 2));  // malloc's own heap serves these well
  std::free(small);
}

TEST_CASE("buffer cache: stays within its bound, dropping smaller blocks for a larger one",
          "[buffer][buffer-cache]") {
  BufferCache cache;
  const std::size_t unit = buffer_cache_bytes / 8;
  for (int i = 0; i < 8; ++i) REQUIRE(cache.keep(block(unit), unit));
  CHECK(cache.bytes() == buffer_cache_bytes);

  std::byte* same = block(unit);
  CHECK_FALSE(cache.keep(same, unit));  // full, and nothing smaller to drop
  std::free(same);

  std::byte* large = block(3 * unit);
  REQUIRE(cache.keep(large, 3 * unit));  // three smaller ones make room
  CHECK(cache.bytes() <= buffer_cache_bytes);
  CHECK(cache.bytes() == 8 * unit);

  std::byte* too_large = block(buffer_cache_bytes + 1);
  CHECK_FALSE(cache.keep(too_large, buffer_cache_bytes + 1));
  std::free(too_large);

  std::size_t cap = 0;
  CHECK(cache.take(3 * unit, cap) == large);
  std::free(large);
  cache.clear();
  CHECK(cache.bytes() == 0);
  CHECK(cache.take(unit, cap) == nullptr);
}

TEST_CASE("buffer cache: threads keeping and taking at once never share a block",
          "[buffer][buffer-cache]") {
  BufferCache cache;
  constexpr int kThreads = 4;
  constexpr int kRounds = 600;
  std::vector<std::vector<std::byte*>> held(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::byte*> mine;
      for (int i = 0; i < kRounds; ++i) {
        std::size_t cap = 0;
        std::byte* p = cache.take(cached_buffer_min, cap);
        if (p == nullptr) {
          p = block(cached_buffer_min);
          cap = cached_buffer_min;
        }
        // Owned by this thread alone until it is kept again: write it whole.
        p[0] = static_cast<std::byte>(t);
        p[cap - 1] = static_cast<std::byte>(t);
        if (p[0] != static_cast<std::byte>(t)) mine.push_back(nullptr);
        if (i % 3 == 0) {
          mine.push_back(p);  // held to the end
        } else if (!cache.keep(p, cap)) {
          std::free(p);
        }
      }
      held[static_cast<std::size_t>(t)] = std::move(mine);
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::byte*> seen;
  std::size_t count = 0;
  for (auto& v : held) {
    for (std::byte* p : v) {
      REQUIRE(p != nullptr);
      seen.insert(p);
      ++count;
    }
  }
  CHECK(seen.size() == count);  // no block was held by two threads
  std::size_t cap = 0;
  while (std::byte* p = cache.take(cached_buffer_min, cap)) CHECK(seen.count(p) == 0);
  for (std::byte* p : seen) std::free(p);
}

TEST_CASE("Buffer: a large buffer's block is reused by the next one", "[buffer][buffer-cache]") {
  BufferCache::process().clear();
  const std::byte* first = nullptr;
  {
    Buffer b;
    b.append("head", 4);
    b.resize(kMiB);
    first = b.data();
  }
  CHECK(BufferCache::process().bytes() >= kMiB);
  Buffer again;
  again.append("head", 4);  // small: from malloc
  again.resize(kMiB);       // large: the kept block, with what was written so far
  CHECK(again.data() == first);
  CHECK(std::string(reinterpret_cast<const char*>(again.data()), 4) == "head");
  BufferCache::process().clear();
}

TEST_CASE("a pool and its workers give kept buffers back after an idle second",
          "[buffer][pool][buffer-cache]") {
  procpool::Pool<> pool(workers(1));
  const std::vector<std::uint8_t> big(4 * kMiB, 1);
  REQUIRE(pool.apply(payload_size, big) == big.size());
  // The pool's side: the argument's frame was kept, then given back by the pool's thread.
  CHECK(wait_until([] { return BufferCache::process().bytes() == 0; }, 10s));
  // The worker's side: asked after idle pauses, it has nothing kept.
  CHECK(wait_until(
      [&] {
        std::this_thread::sleep_for(1500ms);
        return pool.apply(cached_in_worker) == 0;
      },
      20s));
  pool.close();
  pool.join();
}

namespace {

// Hands out blocks of a fixed size and counts those still held.
class CountingSource final : public procpool::detail::BlockSource {
 public:
  explicit CountingSource(std::size_t size) : size_(size) {}
  std::byte* get(std::size_t n, std::size_t& cap, std::shared_ptr<void>& owner) override {
    ++asked;
    if (n > size_) return nullptr;
    auto mem = std::shared_ptr<std::byte[]>(new std::byte[size_], [this](std::byte* p) {
      --held;
      delete[] p;
    });
    ++held;
    cap = size_;
    std::byte* p = mem.get();
    owner = std::move(mem);
    return p;
  }
  int asked = 0;
  int held = 0;

 private:
  std::size_t size_;
};

}  // namespace

TEST_CASE("Buffer: large blocks come from its source while it has them", "[buffer]") {
  using procpool::detail::config::shared_frame_min;
  CountingSource src(4 * shared_frame_min);
  std::vector<std::byte> pattern(3 * shared_frame_min);
  for (std::size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<std::byte>(i * 13);
  {
    Buffer b;
    b.use_source(&src);
    b.append(pattern.data(), 1000);  // small: malloc's
    CHECK(src.asked == 0);
    CHECK_FALSE(b.owner());
    b.append(pattern.data() + 1000, pattern.size() - 1000);  // large: the source's, moved there
    CHECK(src.held == 1);
    REQUIRE(b.owner());
    REQUIRE(b.size() == pattern.size());
    CHECK(std::equal(pattern.begin(), pattern.end(), b.data()));
    // Moved, the block and the source go along.
    Buffer c = std::move(b);
    CHECK(c.source() == &src);
    CHECK(c.owner());
    CHECK(src.held == 1);
    // Past what the source gives: into malloc's memory, contents kept, the block given back.
    c.append(pattern.data(), pattern.size());
    CHECK(src.held == 0);
    CHECK_FALSE(c.owner());
    REQUIRE(c.size() == 2 * pattern.size());
    CHECK(std::equal(pattern.begin(), pattern.end(), c.data() + pattern.size()));
    // reset() lets go of the memory and keeps the source.
    c.reset();
    CHECK(c.size() == 0);
    CHECK(c.source() == &src);
    c.resize(2 * shared_frame_min);
    CHECK(src.held == 1);
  }
  CHECK(src.held == 0);  // a destroyed buffer gives its block back
}
