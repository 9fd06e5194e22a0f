// The wire between the pool and its workers: a worker's output is untrusted. A codec<T>
// specialization running in the worker (T is a task's result type) corrupts the result frame it is
// being written into, or writes raw bytes to the result pipe, as a compromised or broken worker
// would. Each such task must fail on its own (WorkerCrashed saying "malformed"), the worker must be
// replaced, other tasks must be unaffected, and the pool must never allocate what a header merely
// claims.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <support/fault_support.hpp>
#include <support/ranges_support.hpp>
#include <support/test_support.hpp>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <procpool/detail/map_batch.hpp>
#include <procpool/detail/wire.hpp>
#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool::WorkerCrashed;
using procpool_test::kSanitized;
using procpool_test::Stopwatch;
using procpool_test::thrown_as;
using procpool_test::wait_until;

using procpool_test::contains;
using procpool_test::square;
using procpool_test::workers;

namespace {

// How a result's encoder misbehaves.
enum Mode : int {
  kHonest = 0,
  // Edits of the result frame header or item prefix in the worker's buffer.
  kBadMagic = 1,
  kKindGarbage = 2,
  kKindTask = 3,
  kKindStop = 4,
  kKindHello = 5,
  kKindInitError = 6,
  kWrongId = 7,
  kBadStatus = 8,
  kErrorReportHugeLength = 9,  // status "remote error", its type name claiming 2^62 bytes
  kCodecErrorHugeLength = 10,  // status "codec error", its message claiming 2^62 bytes
  kPackedTag = 11,             // the item's status says a packed run follows
  // Raw bytes written straight to the result pipe, ahead of the real frame.
  kPipeSize2to62 = 20,
  kPipeSizeMax64 = 21,
  kPipeSizeAboveMax = 22,
  kPipeSizeMaxThenExit = 23,
  kPipeTruncatedFrameThenExit = 24,
  kPipeTruncatedHeaderThenExit = 25,
  kPipeRandomBytes = 26,
  // The encoder itself fails.
  kEncoderExits = 30,
  kEncoderThrows = 31,
  // Bit flips: kFlipBase + k flips bit k of the header's magic (k < 32) or id (32 <= k < 96).
  kFlipBase = 1000,
};

struct Evil {
  int mode = kHonest;
  pid_t pool = 0;  // the pool's process, for the modes that write to its pipe
};

using procpool::detail::FrameHeader;
using procpool::detail::FrameKind;

constexpr std::size_t kItemPrefix = 9;  // status u8 + length u64, written before the value

// The result frame header that precedes the item being encoded (a task of one item is alone in
// its frame, so its header sits right before the item's prefix).
std::size_t header_offset(procpool::detail::Buffer& b) {
  if (b.size() < sizeof(FrameHeader) + kItemPrefix)
    throw std::logic_error("test setup: no frame header before the item");
  std::size_t at = b.size() - kItemPrefix - sizeof(FrameHeader);
  FrameHeader h;
  std::memcpy(&h, b.data() + at, sizeof h);
  if (h.magic != procpool::detail::frame_magic ||
      h.kind != static_cast<std::uint8_t>(FrameKind::result))
    throw std::logic_error("test setup: the frame header is not where the test expects it");
  return at;
}

FrameHeader fake_header(std::uint64_t size) {
  FrameHeader h{};
  h.magic = procpool::detail::frame_magic;
  h.kind = static_cast<std::uint8_t>(FrameKind::result);
  h.count = 1;
  h.id = 1;
  h.size = size;
  return h;
}

void to_pipe(pid_t pool, const void* data, std::size_t n) {
  int fd = procpool_test::find_result_fd(pool);
  if (fd < 0) throw std::logic_error("test setup: the worker's result pipe was not found");
  if (!procpool_test::write_fully(fd, data, n))
    throw std::logic_error("test setup: writing to the result pipe failed");
}

// Runs in the worker, inside codec<Evil>::encode. Returns true if the encoder should still write
// the value itself.
bool misbehave(procpool::Writer& w, const Evil& v) {
  const int mode = v.mode;
  procpool::detail::Buffer& b = w.buffer();
  auto edit_header = [&](auto&& fn) {
    std::size_t at = header_offset(b);
    FrameHeader h;
    std::memcpy(&h, b.data() + at, sizeof h);
    fn(h);
    std::memcpy(b.data() + at, &h, sizeof h);
  };
  auto set_kind = [&](FrameKind k) {
    edit_header([&](FrameHeader& h) { h.kind = static_cast<std::uint8_t>(k); });
  };
  if (mode >= kFlipBase) {
    int bit = mode - kFlipBase;
    std::size_t at = header_offset(b);
    std::size_t byte = bit < 32
                           ? static_cast<std::size_t>(bit / 8)
                           : offsetof(FrameHeader, id) + static_cast<std::size_t>(bit - 32) / 8;
    b.data()[at + byte] ^= static_cast<std::byte>(1u << (bit % 8));
    return true;
  }
  switch (mode) {
    case kHonest:
      return true;
    case kBadMagic:
      edit_header([](FrameHeader& h) { h.magic = 0xdeadbeef; });
      return true;
    case kKindGarbage:
      edit_header([](FrameHeader& h) { h.kind = 0x77; });
      return true;
    case kKindTask:
      set_kind(FrameKind::task);
      return true;
    case kKindStop:
      set_kind(static_cast<FrameKind>(2));  // reserved: no peer sends it
      return true;
    case kKindHello:
      set_kind(FrameKind::hello);
      return true;
    case kKindInitError:
      set_kind(FrameKind::init_error);
      return true;
    case kWrongId:
      edit_header([](FrameHeader& h) { h.id += 1; });
      return true;
    case kBadStatus:
      (void)header_offset(b);
      b.data()[b.size() - kItemPrefix] = std::byte{0x7f};
      return true;
    case kPackedTag:
      (void)header_offset(b);
      b.data()[b.size() - kItemPrefix] =
          static_cast<std::byte>(procpool::detail::ItemStatus::packed);
      return true;
    case kErrorReportHugeLength:
    case kCodecErrorHugeLength: {
      (void)header_offset(b);
      b.data()[b.size() - kItemPrefix] =
          std::byte{static_cast<unsigned char>(mode == kErrorReportHugeLength ? 1 : 2)};
      w.write(std::uint64_t{1} << 62);
      w.write(std::uint64_t{0x4141414141414141});
      w.write(std::uint64_t{0x4141414141414141});
      return false;
    }
    case kPipeSize2to62:
    case kPipeSizeMax64:
    case kPipeSizeAboveMax: {
      std::uint64_t size = mode == kPipeSize2to62   ? std::uint64_t{1} << 62
                           : mode == kPipeSizeMax64 ? ~std::uint64_t{0}
                                                    : procpool::detail::max_frame + 1;
      FrameHeader h = fake_header(size);
      to_pipe(v.pool, &h, sizeof h);
      return true;
    }
    case kPipeSizeMaxThenExit: {
      FrameHeader h = fake_header(procpool::detail::max_frame);
      to_pipe(v.pool, &h, sizeof h);
      ::_exit(0);
    }
    case kPipeTruncatedFrameThenExit: {
      FrameHeader h = fake_header(1000);
      std::vector<unsigned char> part(sizeof h + 100, 0x5a);
      std::memcpy(part.data(), &h, sizeof h);
      to_pipe(v.pool, part.data(), part.size());
      ::_exit(0);
    }
    case kPipeTruncatedHeaderThenExit: {
      FrameHeader h = fake_header(16);
      to_pipe(v.pool, &h, 10);
      ::_exit(0);
    }
    case kPipeRandomBytes: {
      std::vector<unsigned char> junk(4096);
      std::uint32_t x = 12345;
      for (auto& c : junk) {
        x = x * 1664525u + 1013904223u;
        c = static_cast<unsigned char>(x >> 24);
      }
      to_pipe(v.pool, junk.data(), junk.size());
      return true;
    }
    case kEncoderExits:
      ::_exit(7);
    case kEncoderThrows:
      throw std::runtime_error("encoder refuses");
    default:
      throw std::logic_error("test setup: unknown mode");
  }
}

// A value that encodes to nothing at all.
struct Nothing {};

// A value whose decoder (in the parent) always fails.
struct Undecodable {
  int v = 0;
};

// A value whose encoding claims a 2^62-byte string.
struct LiarString {
  std::string s;
};

}  // namespace

template <>
struct procpool::codec<Evil> {
  static void encode(procpool::Writer& w, const Evil& v) {
    if (misbehave(w, v)) w.write(v.mode);
  }
  static Evil decode(procpool::Reader& r) { return Evil{r.read<int>(), 0}; }
};

template <>
struct procpool::codec<Nothing> {
  static void encode(procpool::Writer&, const Nothing&) {}
  static Nothing decode(procpool::Reader&) { return {}; }
};

template <>
struct procpool::codec<Undecodable> {
  static void encode(procpool::Writer& w, const Undecodable& v) { w.write(v.v); }
  static Undecodable decode(procpool::Reader&) {
    throw std::runtime_error("Undecodable cannot be decoded");
  }
};

template <>
struct procpool::codec<LiarString> {
  static void encode(procpool::Writer& w, const LiarString& v) {
    w.write(std::uint64_t{1} << 62);  // where std::string's length goes
    w.write_bytes(std::as_bytes(std::span(v.s.data(), v.s.size())));
  }
  static LiarString decode(procpool::Reader& r) { return LiarString{r.read<std::string>()}; }
};

namespace {

Evil make_evil(int mode, int pool) {
  return Evil{mode, static_cast<pid_t>(pool)};
}

Evil make_honest(int) {
  return Evil{kHonest, 0};
}

// The argument that tells make_evil where the pool runs.
int self() {
  return static_cast<int>(::getpid());
}

Nothing make_nothing(int) {
  return {};
}
Undecodable make_undecodable(int v) {
  return Undecodable{v};
}
LiarString make_liar(int) {
  return LiarString{"12345678"};
}

std::string echo_string(std::string s) {
  return s;
}
std::vector<int> echo_ints(std::vector<int> v) {
  return v;
}
std::vector<std::string> echo_strings(std::vector<std::string> v) {
  return v;
}
std::size_t length_of(std::string s) {
  return s.size();
}
void do_nothing(int) {
}

std::string big_pattern(std::size_t n) {
  return procpool_test::pattern<std::string>(n);
}

// Terminates the pool when the test leaves, so a task that hangs (a failure) cannot also make the
// pool's destructor wait forever.
struct TerminateOnExit {
  procpool::Pool<>& pool;
  ~TerminateOnExit() { pool.terminate(); }
};

// Submits a misbehaving task among honest ones; it must fail alone with a WorkerCrashed (or,
// where `codec_ok`, a CodecError) that says "malformed", and its worker must be replaced.
void expect_malformed(procpool::Pool<>& pool, int mode, bool codec_ok = false) {
  INFO("mode " << mode);
  auto before = pool.pids();
  const auto restarts = pool.stats().restarts;
  std::vector<procpool::AsyncResult<int>> honest;
  for (int i = 0; i < 10; ++i) honest.push_back(pool.apply_async(square, i));
  auto r = pool.apply_async(make_evil, mode, self());
  for (int i = 10; i < 20; ++i) honest.push_back(pool.apply_async(square, i));
  REQUIRE(r.wait_for(10s));  // not a hang
  bool crashed = false;
  try {
    r.get();
    FAIL("the corrupted result was accepted");
  } catch (const WorkerCrashed& e) {
    INFO("what(): " << e.what());
    CHECK_THAT(e.what(), Catch::Contains("malformed"));
    CHECK(contains(before, e.pid()));
    crashed = true;
  } catch (const procpool::CodecError& e) {
    INFO("what(): " << e.what());
    CHECK(codec_ok);
    CHECK_THAT(e.what(), Catch::Contains("malformed"));
  }
  for (int i = 0; i < 20; ++i) {
    auto& h = honest[static_cast<std::size_t>(i)];
    REQUIRE(h.wait_for(10s));
    CHECK(h.get() == i * i);
  }
  if (crashed) {
    CHECK(wait_until([&] {
      return pool.stats().restarts == restarts + 1 && pool.pids().size() == pool.size();
    }));
  }
}

}  // namespace

TEST_CASE("an honest custom codec round-trips through the pool", "[wire]") {
  procpool::Pool pool(workers(2));
  CHECK(pool.apply(make_evil, 0, self()).mode == 0);
  auto out = pool.map(make_honest, std::vector<int>(50, 0));
  CHECK(out.size() == 50);
}

TEST_CASE("a result frame with a bad magic, kind, id or item status fails that task alone",
          "[wire]") {
  procpool::Pool pool(workers(2));
  TerminateOnExit stop{pool};
  for (int mode : {kBadMagic, kKindGarbage, kKindTask, kKindStop, kWrongId, kBadStatus})
    expect_malformed(pool, mode);
  CHECK(pool.apply(square, 5) == 25);
}

TEST_CASE("a chunk's first result claiming a packed run that does not add up is malformed",
          "[wire]") {
  // Alone in its frame, a value tagged "packed" is a run of one (its length is its size); a
  // chunk's second item then lies past the run.
  procpool::Pool pool(workers(2));
  TerminateOnExit stop{pool};
  const auto restarts = pool.stats().restarts;
  std::vector<std::pair<int, int>> args{{kPackedTag, self()}, {kHonest, self()}};
  auto r = pool.starmap_async(make_evil, args, 2);
  REQUIRE(r.wait_for(10s));
  auto e = thrown_as<WorkerCrashed>([&] { (void)r.get(); });
  REQUIRE(e);
  CHECK_THAT(e->what(), Catch::Contains("malformed"));
  CHECK(pool.apply(make_evil, kPackedTag, self()).mode == kPackedTag);
  CHECK(pool.map(square, procpool_test::iota_vec(100)) == procpool_test::squares(100));
  CHECK(wait_until([&] { return pool.stats().restarts == restarts + 1; }));
}

TEST_CASE("a result frame whose kind says init_error is malformed, not a pool event", "[wire]") {
  // One flipped bit turns "result" (5) into "init_error" (4).
  procpool::Pool pool(workers(2));
  TerminateOnExit stop{pool};
  expect_malformed(pool, kKindInitError);
  CHECK(pool.apply(square, 5) == 25);
}

TEST_CASE("a result frame whose kind says hello is malformed, not a lost result", "[wire]") {
  procpool::Pool pool(workers(2));
  TerminateOnExit stop{pool};
  expect_malformed(pool, kKindHello);
  CHECK(pool.apply(square, 5) == 25);
}

TEST_CASE("every flipped bit of a result frame's magic or id is detected", "[wire]") {
  procpool::Pool pool(workers(2));
  TerminateOnExit stop{pool};
  const int bits = kSanitized ? 24 : 96;
  const auto deadline = procpool_test::Clock::now() + 20s;
  auto left = [&] { return deadline - procpool_test::Clock::now(); };
  std::vector<procpool::AsyncResult<Evil>> rs;
  for (int k = 0; k < bits; ++k)
    rs.push_back(pool.apply_async(make_evil, kFlipBase + (kSanitized ? k * 4 : k), self()));
  auto honest = pool.map_async(square, procpool_test::iota(0, 200), 1);
  for (int k = 0; k < bits; ++k) {
    INFO("bit " << (kSanitized ? k * 4 : k));
    auto& r = rs[static_cast<std::size_t>(k)];
    REQUIRE(r.wait_for(left()));
    auto e = thrown_as<WorkerCrashed>([&] { r.get(); });
    REQUIRE(e);
    CHECK_THAT(e->what(), Catch::Contains("malformed"));
  }
  REQUIRE(honest.wait_for(left()));
  auto values = honest.get();
  for (int i = 0; i < 200; ++i) CHECK(values[static_cast<std::size_t>(i)] == i * i);
  CHECK(pool.stats().restarts == static_cast<std::uint64_t>(bits));
  CHECK(pool.apply(square, 5) == 25);
}

TEST_CASE("an error report claiming a 2^62-byte string is rejected without allocating", "[wire]") {
  procpool::Pool pool(workers(2));
  TerminateOnExit stop{pool};
  expect_malformed(pool, kErrorReportHugeLength, true);
  expect_malformed(pool, kCodecErrorHugeLength, true);
  CHECK(pool.apply(square, 5) == 25);
}

TEST_CASE("a frame header claiming more than the maximum frame is rejected", "[wire]") {
  // Written straight to the pipe; one worker so nothing of another task is in between.
  procpool::Pool pool(workers(1));
  TerminateOnExit stop{pool};
  for (int mode : {kPipeSize2to62, kPipeSizeMax64, kPipeSizeAboveMax, kPipeRandomBytes}) {
    INFO("mode " << mode);
    const pid_t pid = pool.pids().at(0);
    const auto restarts = pool.stats().restarts;
    auto r = pool.apply_async(make_evil, mode, self());
    REQUIRE(r.wait_for(10s));
    auto e = thrown_as<WorkerCrashed>([&] { r.get(); });
    REQUIRE(e);
    CHECK_THAT(e->what(), Catch::Contains("malformed"));
    CHECK(e->pid() == pid);
    CHECK(wait_until([&] { return pool.stats().restarts == restarts + 1; }));
    CHECK(pool.apply(square, 7) == 49);
  }
}

TEST_CASE("a truncated frame followed by the worker's exit is a WorkerCrashed", "[wire]") {
  procpool::Pool pool(workers(1));
  TerminateOnExit stop{pool};
  for (int mode : {kPipeTruncatedFrameThenExit, kPipeTruncatedHeaderThenExit, kPipeSizeMaxThenExit,
                   kEncoderExits}) {
    INFO("mode " << mode);
    const pid_t pid = pool.pids().at(0);
    Stopwatch sw;
    auto r = pool.apply_async(make_evil, mode, self());
    REQUIRE(r.wait_for(10s));
    auto e = thrown_as<WorkerCrashed>([&] { r.get(); });
    REQUIRE(e);
    INFO("what(): " << e->what());
    CHECK(sw.elapsed() < 5s);
    CHECK(e->pid() == pid);
    CHECK(e->signal() == 0);
    CHECK(e->exit_code() == (mode == kEncoderExits ? 7 : 0));
    CHECK(pool.apply(square, 7) == 49);
  }
}

// Not run under sanitizers (asan-skip): RLIMIT_AS and their shadow memory do not mix.
TEST_CASE("a header announcing a maximum-size frame does not break a memory-limited pool",
          "[wire][asan-skip]") {
  // In a child process with an address-space limit of what it uses now plus 1 GiB, well below the
  // 4 GiB such a header announces. Bytes that never arrive must not be allocated: the task fails
  // (its worker is gone), the process survives and the pool carries on.
  const std::size_t limit = procpool_test::vm_size_bytes() + (std::size_t{1} << 30);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    rlimit lim{limit, limit};
    if (::setrlimit(RLIMIT_AS, &lim) != 0) ::_exit(10);
    int rc = 11;
    try {
      procpool::Options o = workers(1);
      o.start = procpool::StartMethod::fork;  // the fork server belongs to the parent
      procpool::Pool pool(o);
      auto r = pool.apply_async(make_evil, static_cast<int>(kPipeSizeMaxThenExit), self());
      try {
        r.get();
        rc = 12;
      } catch (const WorkerCrashed&) {
        rc = pool.apply(square, 3) == 9 ? 0 : 13;
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      rc = 14;
    }
    ::_exit(rc);
  }
  int status = 0;
  bool ended = wait_until([&] { return ::waitpid(child, &status, WNOHANG) == child; }, 30s);
  if (!ended) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
  }
  REQUIRE(ended);
  INFO("signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << ", exit code "
                 << (WIFEXITED(status) ? WEXITSTATUS(status) : -1));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a result encoder that throws in the worker is a CodecError naming the type", "[wire]") {
  procpool::Pool pool(workers(2));
  auto e = thrown_as<procpool::CodecError>([&] { pool.apply(make_evil, kEncoderThrows, self()); });
  REQUIRE(e);
  CHECK_THAT(e->what(), Catch::Contains("Evil"));
  CHECK_THAT(e->what(), Catch::Contains("encoder refuses"));
  CHECK(pool.stats().restarts == 0);
  CHECK(pool.apply(square, 5) == 25);
}

TEST_CASE("a result the parent cannot decode is a CodecError from get(), the pool carries on",
          "[wire]") {
  procpool::Pool pool(workers(2));
  SECTION("apply_async") {
    auto r = pool.apply_async(make_undecodable, 1);
    auto e = thrown_as<procpool::CodecError>([&] { r.get(); });
    REQUIRE(e);
    CHECK_THAT(e->what(), Catch::Contains("Undecodable"));
    CHECK_FALSE(r.successful());
  }
  SECTION("map_async") {
    auto r = pool.map_async(make_undecodable, procpool_test::iota(0, 10));
    CHECK_THROWS_AS(r.get(), procpool::CodecError);
  }
  SECTION("imap: an error at each position, iteration continues") {
    auto results = pool.imap(make_undecodable, procpool_test::iota(0, 5));
    int errors = 0;
    for (int i = 0; i < 6; ++i) {
      std::optional<Undecodable> v;
      if (thrown_as<procpool::CodecError>([&] { v = results.next(10s); })) {
        ++errors;
        continue;
      }
      CHECK_FALSE(v);
      break;
    }
    CHECK(errors == 5);
  }
  CHECK(pool.apply(square, 5) == 25);
  CHECK(pool.stats().restarts == 0);
}

TEST_CASE("a result whose encoding claims a 2^62-byte string is a CodecError", "[wire]") {
  procpool::Pool pool(workers(2));
  auto e = thrown_as<procpool::CodecError>([&] { pool.apply(make_liar, 0); });
  REQUIRE(e);
  CHECK_THAT(e->what(), Catch::Contains("LiarString"));
  CHECK(pool.apply(square, 5) == 25);
}

TEST_CASE("zero-length values are legal and kept distinct", "[wire]") {
  procpool::Pool pool(workers(2));
  CHECK(pool.apply(echo_string, std::string()) == "");
  CHECK(pool.apply(echo_string, std::string("a")) == "a");
  CHECK(pool.apply(length_of, std::string()) == 0);
  CHECK(pool.apply(echo_ints, std::vector<int>{}).empty());
  CHECK(pool.apply(echo_ints, std::vector<int>{0}) == std::vector<int>{0});
  CHECK(pool.apply(echo_strings, std::vector<std::string>{}).empty());
  CHECK(pool.apply(echo_strings, std::vector<std::string>{""}) == std::vector<std::string>{""});
  CHECK(pool.apply(echo_strings, std::vector<std::string>{"", ""}) ==
        std::vector<std::string>{"", ""});
  pool.apply(do_nothing, 0);
  (void)pool.apply(make_nothing, 0);

  // Results are never merged or split, whatever the chunking.
  const std::vector<std::string> in = {"a", "b", "cd", "", "", "e", "", "fgh", ""};
  for (std::size_t chunk : std::initializer_list<std::size_t>{0, 1, 2, 4, 100}) {
    INFO("chunksize " << chunk);
    CHECK(pool.map(echo_string, in, chunk) == in);
  }
  std::vector<std::string> ordered;
  for (const auto& s : pool.imap(echo_string, in)) ordered.push_back(s);
  CHECK(ordered == in);
  std::vector<std::string> unordered;
  for (const auto& s : pool.imap_unordered(echo_string, in, 2)) unordered.push_back(s);
  std::sort(unordered.begin(), unordered.end());
  auto sorted = in;
  std::sort(sorted.begin(), sorted.end());
  CHECK(unordered == sorted);
  auto nothings = pool.map(make_nothing, procpool_test::iota(0, 1000), 7);
  CHECK(nothings.size() == 1000);
}

TEST_CASE("a 64 MiB result is delivered intact", "[wire]") {
  procpool::Pool pool(workers(2));
  const std::size_t n = std::size_t{64} << 20;
  const std::string want = big_pattern(n);
  auto a = pool.apply_async(big_pattern, n);
  auto b = pool.apply_async(big_pattern, n);
  CHECK((a.get() == want));
  CHECK((b.get() == want));
  CHECK(pool.apply(square, 5) == 25);
  CHECK(pool.stats().restarts == 0);
}

namespace {

// One result item as a worker writes it: status, length, bytes.
void put_int_item(procpool::detail::Buffer& b, int v) {
  const auto status = static_cast<std::uint8_t>(procpool::detail::ItemStatus::ok);
  const std::uint64_t len = sizeof v;
  b.append(&status, 1);
  b.append(&len, sizeof len);
  b.append(&v, sizeof v);
}

}  // namespace

TEST_CASE("a map chunk whose items do not add up to its count fails the map, never pads it",
          "[wire]") {
  using namespace procpool::detail;
  for (std::uint32_t count : {2u, 3u}) {
    Completion c(1);
    JobOutcome o;
    put_int_item(o.frame, 7);
    put_int_item(o.frame, 8);
    o.count = count;
    c.settle(0, std::move(o), count, [] {});
    std::vector<int> out(count);
    ItemSink sink;
    sink.raw_size = sizeof(int);
    sink.raw = reinterpret_cast<std::byte*>(out.data());
    sink.decode = [](void*, std::size_t, std::span<const std::byte>) {
      throw std::logic_error("no item here needs the codec");
    };
    std::optional<ErrorInfo> error;
    if (count == 2) {
      CHECK(gather_items(c, sink, error));
      CHECK_FALSE(error);
      CHECK(out == std::vector<int>{7, 8});
    } else {
      CHECK_FALSE(gather_items(c, sink, error));
      REQUIRE(error);
      CHECK(error->kind == ErrorInfo::Kind::codec);
      CHECK_THAT(error->message, Catch::Contains("does not hold the items it counts"));
    }
  }
}
