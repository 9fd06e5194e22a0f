// prime_sieve: counts (and optionally sums or lists) the primes below N with a segmented sieve of
// Eratosthenes spread over a procpool::Pool, checks the result against the known values for
// powers of ten, and compares with one process doing the same work.
//
//   prime_sieve [--limit N] [--processes P] [--segment BYTES] [--chunk K]
//               [--start fork|spawn|forkserver] [--sum] [--list] [--serial | --no-serial] [--help]
//
// Built as prime_sieve_mpi (with MPI), it also takes --mpi: the segments go to every rank of the
// MPI job (`mpiexec -n 3 ./prime_sieve_mpi --mpi`), P processes per rank.
//
// What it shows:
//   - imap_unordered over a lazily generated range of segments (10^9 numbers never sit in a
//     vector; a bounded number of segments is in flight), and imap when the order matters
//     (--list prints the primes in order);
//   - state travels as task arguments: each task gets its segment as a plain struct and returns
//     a plain struct; nothing is captured;
//   - a progress bar on a terminal, plain progress lines otherwise.
//
// Exit status: 0 when the result is right (or no known value exists), 1 when it is wrong or the
// pool failed, 2 for a bad command line or a pool that cannot start with the given options.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#ifndef PRIME_SIEVE_MPI
#define PRIME_SIEVE_MPI 0  // prime_sieve_mpi defines it as 1
#endif

#include "progress.hpp"
#include <procpool/procpool.hpp>
#if PRIME_SIEVE_MPI
#include <procpool/mpi.hpp>
#endif
namespace {

using u64 = std::uint64_t;
__extension__ typedef unsigned __int128 u128;  // sums of primes outgrow 64 bits past 10^10

// ---- The work: one segment of the sieve ------------------------------------------------------

// What a task receives: count the primes in [lo, hi), and optionally sum or list them.
struct Segment {
  u64 lo = 0;
  u64 hi = 0;
  bool sum = false;
  bool list = false;
};

// What a task returns. The sum is split in two 64-bit halves (the codec has no 128-bit type).
struct SegmentResult {
  u64 count = 0;
  u64 sum_lo = 0;
  u64 sum_hi = 0;
  std::vector<u64> primes;  // only with Segment::list
};

// Odd primes up to `n`, by a plain sieve (n is at most the square root of the limit).
std::vector<std::uint32_t> small_primes(u64 n) {
  std::vector<bool> composite(n + 1);
  std::vector<std::uint32_t> out;
  for (u64 i = 3; i <= n; i += 2) {
    if (composite[i]) continue;
    out.push_back(static_cast<std::uint32_t>(i));
    for (u64 j = i * i; j <= n; j += 2 * i) composite[j] = true;
  }
  return out;
}

// The task. Only odd numbers are sieved (2 is counted once by the caller). A worker keeps its
// base primes and its sieve buffer in statics between tasks: per process state, made by each
// worker once. Reusing the buffer keeps it in the core's cache and spares the page faults and
// zeroing of fresh memory, which would otherwise cost as much as the sieving itself.
// Never inlined, and aligned to a cache line: the one-process comparison must run the very
// machine code the workers run, and the inner loop's speed must not depend on where the linker
// happens to put it (an unaligned or inlined copy measured 25% slower on the same machine).
[[gnu::noinline, gnu::aligned(64)]] SegmentResult sieve_segment(Segment s) {
  static std::vector<std::uint32_t> base;
  static u64 base_limit = 0;
  static std::vector<unsigned char> composite;
  SegmentResult r;
  u64 lo = std::max<u64>(s.lo, 3);
  if (lo % 2 == 0) ++lo;
  if (lo >= s.hi) return r;
  const u64 root = static_cast<u64>(std::sqrt(static_cast<double>(s.hi))) + 1;
  if (root > base_limit) {
    base_limit = std::max<u64>(root, 2 * base_limit);
    base = small_primes(base_limit);
  }
  // Index i stands for the odd number lo + 2i.
  const u64 n = (s.hi - lo + 1) / 2;
  composite.assign(n, 0);
  for (std::uint32_t p : base) {
    const u64 pp = u64{p} * p;
    if (pp >= s.hi) break;
    u64 start = pp >= lo ? pp : ((lo + p - 1) / p) * p;
    if (start % 2 == 0) start += p;
    for (u64 j = (start - lo) / 2; j < n; j += p) composite[j] = 1;
  }
  if (!s.sum && !s.list) {
    r.count = static_cast<u64>(
        std::count(composite.begin(), composite.begin() + static_cast<std::ptrdiff_t>(n), 0));
    return r;
  }
  u128 sum = 0;
  for (u64 i = 0; i < n; ++i) {
    if (composite[i]) continue;
    const u64 p = lo + 2 * i;
    ++r.count;
    sum += p;
    if (s.list) r.primes.push_back(p);
  }
  r.sum_lo = static_cast<u64>(sum);
  r.sum_hi = static_cast<u64>(sum >> 64);
  return r;
}

// ---- Known values ---------------------------------------------------------------------------

struct Known {
  u64 n;
  u64 pi;           // primes below n
  const char* sum;  // their sum, in decimal
};
constexpr Known kKnown[] = {
    {10, 4, "17"},
    {100, 25, "1060"},
    {1000, 168, "76127"},
    {10000, 1229, "5736396"},
    {100000, 9592, "454396537"},
    {1000000, 78498, "37550402023"},
    {10000000, 664579, "3203324994356"},
    {100000000, 5761455, "279209790387276"},
    {1000000000, 50847534, "24739512092254535"},
    {10000000000, 455052511, "2220822432581729238"},
    {100000000000, 4118054813, nullptr},
    {1000000000000, 37607912018, nullptr},
};

const Known* known_for(u64 n) {
  for (const Known& k : kKnown)
    if (k.n == n) return &k;
  return nullptr;
}

std::string to_decimal(u128 v) {
  std::string s;
  do {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  } while (v != 0);
  return s;
}

// "1000000000" reads better as "10^9".
std::string pretty(u64 n) {
  int k = 0;
  u64 m = n;
  while (m >= 10 && m % 10 == 0) {
    m /= 10;
    ++k;
  }
  if (m == 1 && k >= 4) return "10^" + std::to_string(k);
  return std::to_string(n);
}

// ---- Progress -------------------------------------------------------------------------------

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

using procpool_examples::Progress;

// ---- Command line ---------------------------------------------------------------------------

constexpr u64 kMaxLimit = 1'000'000'000'000'000;  // 10^15: far beyond patience, below overflow

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: prime_sieve [options]\n"
               "Counts the primes below N with a segmented sieve spread over a pool of worker\n"
               "processes, checks the count against the known value of pi(N) for powers of ten,\n"
               "and compares with one process.\n"
               "\n"
               "  --limit N          count the primes below N, written 1000000, 1e6 or 10^6\n"
               "                     (default 10^9, at most 10^15)\n"
               "  --processes P      worker processes (default: the CPUs this process may use)\n"
               "  --segment BYTES    sieve segment size; each byte stands for one odd number\n"
               "                     (default 262144)\n"
               "  --chunk K          segments per task (default: up to 16, fewer when there are\n"
               "                     not enough segments to give each worker 32 tasks)\n"
               "  --start METHOD     how workers start: fork (default), spawn or forkserver\n"
               "  --sum              also add the primes up (checked for powers of ten too)\n"
               "  --list             print every prime, in order, on standard output (the report\n"
               "                     then goes to standard error); implies --no-serial\n"
               "  --serial           also time one process alone and print the speedup (default)\n"
               "  --no-serial        skip the one-process comparison\n"
               "  --help             this text\n"
               "\n"
               "Exit status: 0 when the result is verified (or no known value exists), 1 when\n"
               "it is wrong or the pool failed, 2 for a bad command line or a pool that cannot\n"
               "start with these options.\n");
}

[[noreturn]] void bad_usage(const std::string& msg) {
  std::fprintf(stderr, "prime_sieve: %s (try --help)\n", msg.c_str());
  std::exit(2);
}

u64 parse_number(const std::string& flag, const char* text) {
  // Accepts plain digits and the forms 1e9 / 10^9, which are handy for powers of ten.
  std::string_view s(text);
  auto digits = [&](std::string_view d) -> u64 {
    if (d.empty() || d.size() > 19 ||
        !std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; }))
      bad_usage(flag + " needs a whole number such as 1000000 or 1e6, not '" + text + "'");
    return std::strtoull(std::string(d).c_str(), nullptr, 10);
  };
  std::size_t e = s.find_first_of("eE^");
  if (e == std::string_view::npos) return digits(s);
  u64 mantissa = digits(s.substr(0, e));
  std::string_view rest = s.substr(e + 1);
  if (s[e] == '^') {
    if (mantissa != 10)
      bad_usage(flag + ": only powers of ten are understood after '^', not '" + text + "'");
    mantissa = 1;
  }
  u64 exponent = digits(rest);
  if (exponent > 18) bad_usage(flag + " is too large: '" + text + "'");
  for (u64 i = 0; i < exponent; ++i) {
    if (mantissa > UINT64_MAX / 10) bad_usage(flag + " is too large: '" + text + "'");
    mantissa *= 10;
  }
  return mantissa;
}

procpool::StartMethod parse_start(const char* text) {
  std::string_view s(text);
  if (s == "fork") return procpool::StartMethod::fork;
  if (s == "spawn") return procpool::StartMethod::spawn;
  if (s == "forkserver") return procpool::StartMethod::forkserver;
  bad_usage(std::string("--start must be fork, spawn or forkserver, not '") + text + "'");
}

struct Config {
  u64 limit = 1'000'000'000;
  u64 segment = 256 << 10;  // with the base primes, fits a core's L2 cache
  u64 chunk = 0;            // segments per task; 0: see chunk_for
  procpool::Options pool;
  bool sum = false;
  bool list = false;
  bool serial = true;
  bool mpi = false;  // prime_sieve_mpi --mpi: an mpi::Pool over every rank
};

Config parse_args(int argc, char** argv) {
  Config c;
  bool serial_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) bad_usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage(stdout);
      std::exit(0);
    } else if (a == "--limit") {
      c.limit = parse_number(a, value());
      if (c.limit > kMaxLimit) bad_usage("--limit must be at most 10^15");
    } else if (a == "--processes") {
      const u64 p = parse_number(a, value());
      if (p == 0 || p > 4096) bad_usage("--processes must be between 1 and 4096");
      c.pool.processes = static_cast<unsigned>(p);
    } else if (a == "--segment") {
      c.segment = parse_number(a, value());
      if (c.segment < 1024 || c.segment > (u64{1} << 30))
        bad_usage("--segment must be between 1024 and 1073741824 bytes");
    } else if (a == "--chunk") {
      c.chunk = parse_number(a, value());
      if (c.chunk == 0 || c.chunk > 1'000'000) bad_usage("--chunk must be between 1 and 1000000");
    } else if (a == "--start") {
      c.pool.start = parse_start(value());
    } else if (a == "--sum") {
      c.sum = true;
    } else if (a == "--list") {
      c.list = true;
    } else if (a == "--serial") {
      c.serial = true;
      serial_given = true;
    } else if (a == "--no-serial") {
      c.serial = false;
#if PRIME_SIEVE_MPI
    } else if (a == "--mpi") {
      c.mpi = true;
#endif
    } else {
      bad_usage("unknown option '" + a + "'");
    }
  }
  if (c.list) {
    if (serial_given) bad_usage("--list and --serial do not go together");
    c.serial = false;
  }
  return c;
}

// Segment k of [0, limit).
struct SegmentAt {
  u64 span = 0, limit = 0;
  bool sum = false, list = false;
  Segment operator()(u64 k) const {
    const u64 lo = k * span;
    return Segment{lo, std::min(limit, lo + span), sum, list};
  }
};

// clang before 16 cannot build libstdc++'s views, and libc++ 14 has none: there the same lazy
// range is written out.
#if (defined(__clang__) && __clang_major__ < 16 && defined(__GLIBCXX__)) || \
    !defined(__cpp_lib_ranges)
#define PRIME_SIEVE_STD_VIEWS 0
#else
#define PRIME_SIEVE_STD_VIEWS 1
#endif

#if !PRIME_SIEVE_STD_VIEWS
class SegmentRange {
 public:
  class iterator {
   public:
    using value_type = Segment;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(SegmentAt at, u64 k) : at_(at), k_(k) {}
    Segment operator*() const { return at_(k_); }
    iterator& operator++() {
      ++k_;
      return *this;
    }
    iterator operator++(int) {
      iterator old = *this;
      ++k_;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) { return a.k_ == b.k_; }

   private:
    SegmentAt at_;
    u64 k_ = 0;
  };
  SegmentRange(u64 count, SegmentAt at) : count_(count), at_(at) {}
  iterator begin() const { return {at_, 0}; }
  iterator end() const { return {at_, count_}; }
  std::size_t size() const { return static_cast<std::size_t>(count_); }

 private:
  u64 count_;
  SegmentAt at_;
};
#endif

// The segments of [0, limit), generated on demand: imap reads them lazily, so even a huge limit
// never materializes a vector of segments.
auto segments_of(const Config& c) {
  const u64 span = 2 * c.segment;  // odd numbers only are stored
  const u64 count = (c.limit + span - 1) / span;
  const SegmentAt at{span, c.limit, c.sum, c.list};
#if !PRIME_SIEVE_STD_VIEWS
  return SegmentRange(count, at);
#else
  return std::views::iota(u64{0}, count) | std::views::transform(at);
#endif
}

struct Total {
  u64 count = 0;
  u128 sum = 0;
};

Total start_total(u64 limit) {
  Total t;
  if (limit > 2) t = {1, 2};  // the prime 2; segments only sieve odd numbers
  return t;
}

void add(Total& t, const SegmentResult& r) {
  t.count += r.count;
  t.sum += (u128{r.sum_hi} << 64) | r.sum_lo;
}

}  // namespace

// Segments per task. A segment takes a fraction of a millisecond, and each result wakes this
// program's threads; with every core busy sieving, those wake-ups take the workers' time
// slices (one segment per task loses about a tenth of the speedup on two cores). Sixteen
// segments per task make that negligible, while every worker still gets at least 32 tasks, so
// the last ones finish close together.
u64 chunk_for(const Config& c, u64 segments, std::size_t workers) {
  if (c.chunk != 0) return c.chunk;
  return std::clamp<u64>(segments / (32 * std::max<u64>(workers, 1)), 1, 16);
}

// Sieves every segment in `pool` (made by `make`); the worker count, or 0 if it cannot start.
template <class P, class Make>
std::size_t sieve_in_pool(const Config& cfg, Make make, std::FILE* report, Total& total) {
  const auto segments = segments_of(cfg);
  const u64 nseg = static_cast<u64>(std::ranges::size(segments));
  std::optional<P> pool;
  try {
    make(pool);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prime_sieve: cannot start the pool: %s\n", e.what());
    return 0;
  }
  const std::size_t workers = pool->size();
  const std::size_t chunk = static_cast<std::size_t>(chunk_for(cfg, nseg, workers));
  Progress progress(report, "segments", nseg);
  u64 done = 0;
  if (cfg.list) {
    // Listing needs the primes in order: imap keeps input order (segments still run in
    // parallel; results wait for their turn).
    if (cfg.limit > 2) std::fputs("2\n", stdout);
    for (const SegmentResult& r : pool->imap(sieve_segment, segments, chunk)) {
      add(total, r);
      for (u64 p : r.primes) std::printf("%llu\n", static_cast<unsigned long long>(p));
      progress.update(++done);
    }
  } else {
    for (const SegmentResult& r : pool->imap_unordered(sieve_segment, segments, chunk)) {
      add(total, r);
      progress.update(++done);
    }
  }
  pool.reset();  // close + join: the workers' exit is part of the parallel time
  progress.finish();
  return workers;
}

int main(int argc, char** argv) {
#if PRIME_SIEVE_MPI
  procpool::mpi::init(argc, argv);  // every rank but 0 serves tasks from here until 0 ends
#else
  procpool::init(argc, argv);  // first thing: a spawn or forkserver worker starts its work here
#endif
  const Config cfg = parse_args(argc, argv);
  std::FILE* report = cfg.list ? stderr : stdout;  // with --list, stdout carries the primes
  const auto segments = segments_of(cfg);
  const u64 nseg = static_cast<u64>(std::ranges::size(segments));

  try {
    // ---- In the pool ----
    const auto t0 = Clock::now();
    Total total = start_total(cfg.limit);
    std::size_t workers = 0;
#if PRIME_SIEVE_MPI
    if (cfg.mpi) {
      procpool::mpi::Options o;
      o.processes_per_rank = cfg.pool.processes;  // 0: each machine's CPU count
      o.start = cfg.pool.start;
      workers = sieve_in_pool<procpool::mpi::Pool<>>(
          cfg, [&](auto& p) { p.emplace(o); }, report, total);
      if (workers > 0) std::fprintf(report, "over %d MPI ranks\n", procpool::mpi::world_size());
    } else
#endif
    {
      workers = sieve_in_pool<procpool::Pool<>>(
          cfg, [&](auto& p) { p.emplace(cfg.pool); }, report, total);
    }
    if (workers == 0) return 2;
    const double parallel_s = seconds_since(t0);
    if (cfg.list) std::fflush(stdout);

    std::fprintf(report, "primes below %s: %llu\n", pretty(cfg.limit).c_str(),
                 static_cast<unsigned long long>(total.count));
    if (cfg.sum) std::fprintf(report, "their sum: %s\n", to_decimal(total.sum).c_str());
    const char* plural = workers == 1 ? "" : "es";
    std::fprintf(report,
                 "time: %.3f s with %zu worker process%s (%llu segments of %llu numbers, %llu per "
                 "task)\n",
                 parallel_s, workers, plural, static_cast<unsigned long long>(nseg),
                 static_cast<unsigned long long>(2 * cfg.segment),
                 static_cast<unsigned long long>(chunk_for(cfg, nseg, workers)));

    bool ok = true;
    // ---- One process, for comparison ----
    if (cfg.serial) {
      const auto t1 = Clock::now();
      Total alone = start_total(cfg.limit);
      Progress serial_progress(report, "segments (one process)", nseg);
      u64 serial_done = 0;
      for (const Segment& s : segments) {
        add(alone, sieve_segment(s));
        serial_progress.update(++serial_done);
      }
      const double serial_s = seconds_since(t1);
      serial_progress.finish();
      std::fprintf(report, "one process: %.3f s; speedup %.2fx with %zu process%s\n", serial_s,
                   serial_s / parallel_s, workers, plural);
      if (alone.count != total.count || alone.sum != total.sum) {
        std::fprintf(report, "WRONG: one process found %llu primes\n",
                     static_cast<unsigned long long>(alone.count));
        ok = false;
      }
    }

    // ---- Known values ----
    if (const Known* k = known_for(cfg.limit)) {
      const std::string name = "pi(" + pretty(cfg.limit) + ")";
      if (k->pi != total.count) {
        std::fprintf(report, "WRONG: %s is %llu\n", name.c_str(),
                     static_cast<unsigned long long>(k->pi));
        ok = false;
      } else {
        std::fprintf(report, "verified: matches the known value of %s\n", name.c_str());
      }
      if (cfg.sum && k->sum) {
        if (to_decimal(total.sum) != k->sum) {
          std::fprintf(report, "WRONG: the sum of the primes below %s is %s\n",
                       pretty(cfg.limit).c_str(), k->sum);
          ok = false;
        } else {
          std::fprintf(report, "verified: matches the known sum of the primes below %s\n",
                       pretty(cfg.limit).c_str());
        }
      }
    } else {
      std::fprintf(report,
                   "not verified: known values exist for powers of ten from 10 to 10^12 only\n");
    }
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "prime_sieve: %s\n", e.what());
    return 1;
  }
}
