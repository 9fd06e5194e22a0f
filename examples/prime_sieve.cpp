// Counts the primes below N with a segmented sieve spread over a procpool::Pool, then checks the
// count against the known values of pi(10^k) and reports the speedup over one process.
//
//   prime_sieve [--limit N] [--processes P] [--segment BYTES] [--serial] [--help]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <procpool/procpool.hpp>

namespace {

using u64 = std::uint64_t;

// Odd primes up to `n`, by a plain sieve (n is at most sqrt of the limit).
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

// Primes in [lo, hi), counting only odd numbers (2 is added once by the caller). This is the
// task: it runs in a worker, which keeps its base primes between tasks.
u64 count_segment(u64 lo, u64 hi) {
  static std::vector<std::uint32_t> base;
  static u64 base_limit = 0;
  auto root = static_cast<u64>(std::sqrt(static_cast<double>(hi))) + 1;
  if (root > base_limit) {
    base = small_primes(std::max<u64>(root, 2 * base_limit));
    base_limit = std::max<u64>(root, 2 * base_limit);
  }
  if (lo < 3) lo = 3;
  if (lo % 2 == 0) ++lo;
  if (lo >= hi) return 0;
  // Index i stands for the odd number lo + 2i.
  const u64 n = (hi - lo + 1) / 2;
  std::vector<unsigned char> composite(n, 0);
  for (std::uint32_t p : base) {
    u64 pp = u64{p} * p;
    if (pp >= hi) break;
    u64 start = pp >= lo ? pp : ((lo + p - 1) / p) * p;
    if (start % 2 == 0) start += p;
    for (u64 j = (start - lo) / 2; j < n; j += p) composite[j] = 1;
  }
  return static_cast<u64>(std::count(composite.begin(), composite.end(), 0));
}

u64 known_pi(u64 n) {
  static const u64 table[][2] = {{10, 4},
                                 {100, 25},
                                 {1000, 168},
                                 {10000, 1229},
                                 {100000, 9592},
                                 {1000000, 78498},
                                 {10000000, 664579},
                                 {100000000, 5761455},
                                 {1000000000, 50847534},
                                 {10000000000, 455052511}};
  for (auto& row : table)
    if (row[0] == n) return row[1];
  return 0;
}

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: prime_sieve [--limit N] [--processes P] [--segment BYTES] [--serial]\n"
               "  --limit N        count primes below N (default 1000000000)\n"
               "  --processes P    worker processes (default: the CPUs this process may use)\n"
               "  --segment BYTES  sieve segment size in bytes (default 1048576)\n"
               "  --serial         also time one process alone and print the speedup\n");
  std::exit(code);
}

u64 parse_number(const char* flag, const char* text) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
    std::fprintf(stderr, "prime_sieve: %s needs a positive whole number, not '%s'\n", flag, text);
    std::exit(2);
  }
  return v;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  u64 limit = 1'000'000'000;
  u64 segment = 1 << 20;
  unsigned processes = 0;
  bool serial = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "prime_sieve: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      usage(0);
    } else if (a == "--limit") {
      limit = parse_number("--limit", value());
    } else if (a == "--processes") {
      processes = static_cast<unsigned>(parse_number("--processes", value()));
      if (processes == 0) {
        std::fprintf(stderr, "prime_sieve: --processes must be at least 1\n");
        return 2;
      }
    } else if (a == "--segment") {
      segment = parse_number("--segment", value());
      if (segment < 1024) {
        std::fprintf(stderr, "prime_sieve: --segment must be at least 1024 bytes\n");
        return 2;
      }
    } else if (a == "--serial") {
      serial = true;
    } else {
      std::fprintf(stderr, "prime_sieve: unknown option '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }

  // Each segment covers 2 * segment numbers (odd numbers only are stored).
  const u64 span = 2 * segment;
  std::vector<std::pair<u64, u64>> segments;
  for (u64 lo = 0; lo < limit; lo += span) segments.emplace_back(lo, std::min(limit, lo + span));

  auto t0 = std::chrono::steady_clock::now();
  u64 count = limit > 2 ? 1 : 0;  // the prime 2
  std::size_t workers = 0;
  {
    procpool::Pool pool(procpool::Options{.processes = processes});
    workers = pool.size();
    for (u64 c : pool.imap_unordered(
             [](std::pair<u64, u64> s) { return count_segment(s.first, s.second); }, segments))
      count += c;
  }
  double parallel_s = seconds_since(t0);
  std::printf("primes below %llu: %llu\n", static_cast<unsigned long long>(limit),
              static_cast<unsigned long long>(count));
  std::printf("time: %.3f s with %zu worker processes (%zu segments)\n", parallel_s, workers,
              segments.size());

  if (serial) {
    auto t1 = std::chrono::steady_clock::now();
    u64 serial_count = limit > 2 ? 1 : 0;
    for (auto [lo, hi] : segments) serial_count += count_segment(lo, hi);
    double serial_s = seconds_since(t1);
    std::printf("one process: %.3f s; speedup %.2fx\n", serial_s, serial_s / parallel_s);
    if (serial_count != count) {
      std::fprintf(stderr, "prime_sieve: the serial count %llu differs\n",
                   static_cast<unsigned long long>(serial_count));
      return 1;
    }
  }

  if (u64 expected = known_pi(limit); expected != 0) {
    if (expected != count) {
      std::printf("WRONG: pi(%llu) is %llu\n", static_cast<unsigned long long>(limit),
                  static_cast<unsigned long long>(expected));
      return 1;
    }
    std::printf("verified: matches the known value of pi(%llu)\n",
                static_cast<unsigned long long>(limit));
  }
  return 0;
}
