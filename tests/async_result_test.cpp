// AsyncResult: get, get(timeout), wait, wait_for, ready, successful, cancel and then; errors thrown
// by tasks, and codec failures on either side.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <support/test_support.hpp>
#include <thread>
#include <vector>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Stopwatch;
using procpool_test::TempDir;
using procpool_test::wait_until;

using procpool_test::mark_then_sleep;
using procpool_test::my_pid;
using procpool_test::sleep_then;
using procpool_test::square;
using procpool_test::workers;

namespace {

void mark(std::string path) {
  procpool_test::touch_file(path);
}
void nothing() {
}
int throw_runtime(std::string msg) {
  throw std::runtime_error(msg);
}
int throw_int() {
  throw 42;
}
int throw_huge(int delay_ms) {
  procpool_test::sleep_ms(delay_ms);
  throw std::runtime_error(std::string(1 << 20, 'm') + "END");
}
int parse_int(std::string s) {
  return std::stoi(s);
}

// An argument type whose codec refuses to encode: the failure happens in the parent.
struct Unencodable {
  int v;
};
int take_unencodable(Unencodable u) {
  return u.v;
}

// A result type whose codec refuses to encode: the failure happens in the worker.
struct BadResult {
  int v;
};
BadResult make_bad(int v) {
  return {v};
}

}  // namespace

template <>
struct procpool::codec<Unencodable> {
  static void encode(procpool::Writer&, const Unencodable&) {
    throw std::runtime_error("refusing to encode");
  }
  static Unencodable decode(procpool::Reader& r) { return {r.read<int>()}; }
};

template <>
struct procpool::codec<BadResult> {
  static void encode(procpool::Writer&, const BadResult&) {
    throw std::runtime_error("refusing to encode a result");
  }
  static BadResult decode(procpool::Reader& r) { return {r.read<int>()}; }
};

TEST_CASE("get, wait, wait_for and ready", "[async]") {
  procpool::Pool pool(workers(2));
  auto r = pool.apply_async(sleep_then, 200, 5);
  CHECK_FALSE(r.wait_for(10ms));  // the task sleeps for 200 ms
  CHECK(r.wait_for(10s));
  CHECK(r.ready());
  CHECK(r.get() == 5);
  CHECK(r.get() == 5);  // get() can be repeated

  auto w = pool.apply_async(sleep_then, 50, 6);
  w.wait();
  CHECK(w.ready());
  CHECK(w.get() == 6);

  // Copies share one state.
  auto c = pool.apply_async(square, 12);
  auto copy = c;
  CHECK(copy.get() == 144);
  CHECK(c.ready());
  CHECK(c.get() == 144);

  procpool::AsyncResult<int> none;
  CHECK_FALSE(none.valid());
  CHECK_THROWS_AS(none.get(), std::logic_error);
}

TEST_CASE("get(timeout) throws TimeoutError and leaves the task running", "[async]") {
  procpool::Pool pool(workers(1));
  auto r = pool.apply_async(sleep_then, 700, 7);
  Stopwatch sw;
  CHECK_THROWS_AS(r.get(100ms), procpool::TimeoutError);
  CHECK(sw.elapsed() >= 100ms);
  CHECK(sw.elapsed() < 5s);

  // A zero timeout on a pending task throws at once.
  Stopwatch sw0;
  CHECK_THROWS_AS(r.get(0ms), procpool::TimeoutError);
  CHECK(sw0.elapsed() < 1s);

  // The task was not disturbed: it completes with its value.
  CHECK(r.get(10s) == 7);
  CHECK(sw.elapsed() >= 600ms);
  CHECK(r.get(0ms) == 7);

  // A failed task gives its error, not a timeout.
  auto f = pool.apply_async(throw_runtime, std::string("late"));
  f.wait();
  CHECK_THROWS_AS(f.get(0ms), procpool::RemoteError);
}

TEST_CASE("get() on an AsyncResult going away hands the value over, copies keep theirs",
          "[async]") {
  procpool::Pool pool(workers(1));
  const std::vector<int> want = procpool_test::squares(1000);
  auto of = [&] { return pool.map_async(square, procpool_test::iota_vec(1000)); };
  // The usual one-liner: a temporary, nothing else shares its state.
  CHECK(of().get() == want);
  CHECK(of().get(10s) == want);
  // An lvalue keeps its value for every get.
  auto kept = of();
  CHECK(kept.get() == want);
  CHECK(kept.get() == want);
  // Moved from while a copy shares the state: the copy still has the value.
  auto a = of();
  auto b = a;
  CHECK(std::move(a).get() == want);
  CHECK(b.get() == want);
  CHECK(std::move(b).get(10s) == want);
  // Errors are rethrown the same way.
  CHECK_THROWS_AS(pool.apply_async(throw_runtime, std::string("no")).get(), procpool::RemoteError);
}

TEST_CASE("successful() throws before the result is ready", "[async]") {
  procpool::Pool pool(workers(2));
  auto slow = pool.apply_async(sleep_then, 300, 1);
  CHECK_THROWS_AS(slow.successful(), std::logic_error);
  slow.wait();
  CHECK(slow.successful());

  auto bad = pool.apply_async(throw_runtime, std::string("x"));
  bad.wait();
  CHECK_FALSE(bad.successful());
}

TEST_CASE("cancel drops a queued task: get throws Cancelled and it never runs", "[async]") {
  TempDir dir;
  procpool::Pool pool(workers(1));
  auto busy = pool.apply_async(mark_then_sleep, dir.file("busy"), 300);
  auto queued = pool.apply_async(mark, dir.file("queued"));
  CHECK(queued.cancel());
  CHECK(queued.ready());
  CHECK_THROWS_AS(queued.get(), procpool::Cancelled);
  CHECK_FALSE(queued.successful());
  // Everything submitted after the cancelled task has run once this returns.
  CHECK(busy.get() == 300);
  pool.apply(mark, dir.file("after"));
  CHECK(procpool_test::file_exists(dir.file("after")));
  CHECK_FALSE(procpool_test::file_exists(dir.file("queued")));
  CHECK(pool.stats().restarts == 0);  // nothing was killed for a queued task
}

TEST_CASE("cancel drops a queued task even when the worker already has work lined up", "[async]") {
  TempDir dir;
  procpool::Pool pool(workers(1));
  // Many short tasks first: the pool then lines up several tasks per worker.
  CHECK(pool.map(square, std::vector<int>(200, 3), 1).size() == 200);
  for (int i = 0; i < 50; ++i) CHECK(pool.apply(square, i) == i * i);

  auto busy = pool.apply_async(mark_then_sleep, dir.file("busy"), 300);
  REQUIRE(wait_until([&] { return procpool_test::file_exists(dir.file("busy")); }));
  // Enough of them that some reach the worker before they are cancelled.
  std::vector<procpool::AsyncResult<void>> queued;
  for (int i = 0; i < 50; ++i)
    queued.push_back(pool.apply_async(mark, dir.file(std::to_string(i))));
  for (auto& q : queued) CHECK(q.cancel());
  for (auto& q : queued) CHECK_THROWS_AS(q.get(), procpool::Cancelled);
  CHECK(busy.get() == 300);
  pool.apply(mark, dir.file("after"));
  CHECK(procpool_test::file_exists(dir.file("after")));
  CHECK(dir.count() == 2);  // "busy" and "after": no cancelled task ran
}

TEST_CASE("cancel of a running task kills and replaces its worker", "[async]") {
  TempDir dir;
  procpool::Pool pool(workers(1));
  const pid_t before = pool.pids().at(0);
  auto r = pool.apply_async(mark_then_sleep, dir.file("running"), 20'000);
  REQUIRE(wait_until([&] { return procpool_test::file_exists(dir.file("running")); }));
  Stopwatch sw;
  CHECK(r.cancel());
  CHECK_THROWS_AS(r.get(), procpool::Cancelled);
  CHECK(sw.elapsed() < 5s);
  CHECK(wait_until([&] { return pool.stats().restarts == 1 && pool.pids().size() == 1; }));
  CHECK_FALSE(procpool_test::pid_alive(before));
  pid_t now = pool.apply(my_pid);
  CHECK(now != before);
  CHECK(pool.apply(square, 4) == 16);
}

TEST_CASE("cancel of a finished task returns false and keeps its value", "[async]") {
  procpool::Pool pool(workers(1));
  auto r = pool.apply_async(square, 9);
  CHECK(r.get() == 81);
  CHECK_FALSE(r.cancel());
  CHECK(r.get() == 81);
  CHECK(r.successful());

  auto f = pool.apply_async(throw_runtime, std::string("done"));
  f.wait();
  CHECK_FALSE(f.cancel());
  CHECK_THROWS_AS(f.get(), procpool::RemoteError);
}

TEST_CASE("then: the value callback runs exactly once with the value", "[async]") {
  std::atomic<int> calls{0}, errors{0}, seen{0};
  std::atomic<bool> on_caller_thread{false};
  const auto caller = std::this_thread::get_id();
  {
    procpool::Pool pool(workers(2));
    auto r = pool.apply_async(sleep_then, 100, 11);
    r.then(
        [&](int v) {
          seen = v;
          if (std::this_thread::get_id() == caller) on_caller_thread = true;
          ++calls;
        },
        [&](std::exception_ptr) { ++errors; });
    // Nobody waits in get() meanwhile, so the pool's thread collects the result (a thread
    // waiting in get() may collect it itself, and then runs the callback).
    CHECK(wait_until([&] { return calls == 1; }));
    CHECK(r.get() == 11);
  }  // the pool's thread is joined here, so every callback has run
  CHECK(calls == 1);
  CHECK(errors == 0);
  CHECK(seen == 11);
  CHECK_FALSE(on_caller_thread);  // it ran on the thread that collects results
}

TEST_CASE("then: the error callback receives the task's error", "[async]") {
  procpool::Pool pool(workers(2));
  std::mutex m;
  std::vector<std::string> messages;
  std::atomic<int> values{0}, errors{0}, remote{0};

  // Catch's assertions are not thread-safe: callbacks only record what they saw.
  auto r = pool.apply_async(parse_int, std::string("a"));
  r.then([&](int) { ++values; },
         [&](const procpool::Error& e) {
           std::lock_guard lock(m);
           if (dynamic_cast<const procpool::RemoteError*>(&e) != nullptr) ++remote;
           messages.emplace_back(e.what());
           ++errors;
         });
  auto r2 = pool.apply_async(throw_runtime, std::string("via exception_ptr"));
  r2.then([&](int) { ++values; },
          [&](std::exception_ptr p) {
            try {
              std::rethrow_exception(p);
            } catch (const procpool::RemoteError& e) {
              std::lock_guard lock(m);
              messages.emplace_back(e.what());
              ++errors;
            }
          });
  CHECK(wait_until([&] { return errors == 2; }));
  CHECK(values == 0);
  CHECK(remote == 1);

  // The error callback gets the same error that get() throws.
  std::string from_get;
  try {
    (void)r.get();
  } catch (const procpool::RemoteError& e) {
    from_get = e.what();
    CHECK(e.type_name() == "std::invalid_argument");
  }
  std::lock_guard lock(m);
  REQUIRE(messages.size() == 2);
  CHECK(std::find(messages.begin(), messages.end(), from_get) != messages.end());
  CHECK(std::count_if(messages.begin(), messages.end(), [](const std::string& s) {
          return s.find("via exception_ptr") != std::string::npos;
        }) == 1);
}

TEST_CASE("then on map_async: one call with the whole vector, or one error", "[async]") {
  procpool::Pool pool(workers(2));
  std::atomic<int> values{0}, errors{0};
  std::vector<int> got;
  auto ok = pool.map_async(parse_int, std::vector<std::string>{"1", "22", "333"});
  ok.then(
      [&](const std::vector<int>& v) {
        got = v;
        ++values;
      },
      [&](std::exception_ptr) { ++errors; });
  auto bad = pool.map_async(parse_int, std::vector<std::string>{"1", "a", "b"}, 1);
  bad.then([&](const std::vector<int>&) { ++values; }, [&](std::exception_ptr) { ++errors; });
  CHECK(wait_until([&] { return values == 1 && errors == 1; }));
  ok.wait();
  CHECK(got == std::vector<int>{1, 22, 333});
  CHECK_THROWS_AS(bad.get(), procpool::RemoteError);
  CHECK(values == 1);
  CHECK(errors == 1);
}

TEST_CASE("then on a finished result runs at once in the caller", "[async]") {
  procpool::Pool pool(workers(1));
  auto r = pool.apply_async(square, 7);
  CHECK(r.get() == 49);
  int value = 0;
  std::thread::id where;
  r.then([&](int v) {
    value = v;
    where = std::this_thread::get_id();
  });
  CHECK(value == 49);  // already ran: then() returned after calling it
  CHECK(where == std::this_thread::get_id());

  auto f = pool.apply_async(throw_int);
  f.wait();
  bool error_seen = false;
  f.then([](int) {}, [&](const procpool::Error&) { error_seen = true; });
  CHECK(error_seen);

  // Chained registrations on one result all run.
  int a = 0, b = 0;
  r.then([&](int v) { a = v; }).then([&](int v) { b = v + 1; });
  CHECK(a == 49);
  CHECK(b == 50);
}

TEST_CASE("a throwing callback does not break the pool", "[async]") {
  procpool::Pool pool(workers(2));
  std::atomic<int> others{0};
  std::vector<procpool::AsyncResult<int>> rs;
  for (int i = 0; i < 10; ++i) {
    auto r = pool.apply_async(sleep_then, 20, i);
    r.then([](int) { throw std::runtime_error("callback failed (expected by the test)"); });
    r.then([&](int) { ++others; });
    rs.push_back(r);
  }
  for (int i = 0; i < 10; ++i) CHECK(rs[static_cast<std::size_t>(i)].get() == i);
  CHECK(wait_until([&] { return others == 10; }));
  // Thrown from the caller's own thread too (result already complete).
  CHECK_NOTHROW(rs[0].then([](int) { throw 5; }));
  CHECK(pool.map(square, std::vector<int>{1, 2, 3}) == std::vector<int>{1, 4, 9});
  CHECK(pool.pids().size() == 2);
}

TEST_CASE("an AsyncResult outlives its pool", "[async]") {
  procpool::AsyncResult<int> ok, failed, slow;
  procpool::AsyncResult<std::vector<int>> mapped;
  {
    procpool::Pool pool(workers(2));
    ok = pool.apply_async(square, 8);
    failed = pool.apply_async(throw_runtime, std::string("after the pool"));
    slow = pool.apply_async(sleep_then, 100, 3);
    mapped = pool.map_async(square, std::vector<int>{1, 2, 3});
  }  // the destructor waits for submitted work
  CHECK(ok.ready());
  CHECK(ok.get() == 64);
  CHECK_THROWS_WITH(failed.get(), Catch::Contains("after the pool"));
  CHECK(slow.get() == 3);
  CHECK(mapped.get() == std::vector<int>{1, 4, 9});
  CHECK_FALSE(ok.cancel());
  int via_then = 0;
  ok.then([&](int v) { via_then = v; });
  CHECK(via_then == 64);
}

TEST_CASE("void tasks give AsyncResult<void>", "[async]") {
  TempDir dir;
  procpool::Pool pool(workers(2));
  procpool::AsyncResult<void> r = pool.apply_async(mark, dir.file("v"));
  r.get();
  CHECK(r.successful());
  CHECK(procpool_test::file_exists(dir.file("v")));
  int called = 0;
  r.then([&] { ++called; });
  CHECK(called == 1);
  auto n = pool.apply_async(nothing);
  CHECK(n.wait_for(10s));
  CHECK_NOTHROW(n.get());
  CHECK_NOTHROW(n.get(1s));
}

TEST_CASE("a task's exception becomes a RemoteError with its type and message", "[async]") {
  procpool::Pool pool(workers(2));
  SECTION("std::runtime_error") {
    try {
      (void)pool.apply(throw_runtime, std::string("123"));
      FAIL("no exception");
    } catch (const procpool::RemoteError& e) {
      CHECK(e.type_name() == "std::runtime_error");
      CHECK(std::string(e.what()).find("123") != std::string::npos);
      CHECK(std::string(e.what()).rfind("procpool: ", 0) == 0);
    }
  }
  SECTION("throw 42") {
    auto r = pool.apply_async(throw_int);
    try {
      (void)r.get();
      FAIL("no exception");
    } catch (const procpool::RemoteError& e) {
      CHECK(e.type_name() == "int");
    }
    // No worker was lost.
    CHECK(pool.pids().size() == 2);
    CHECK(pool.stats().restarts == 0);
    CHECK(pool.apply(square, 2) == 4);
  }
  SECTION("RemoteError is an Error is a std::runtime_error") {
    CHECK_THROWS_AS(pool.apply(throw_runtime, std::string("a")), procpool::Error);
    CHECK_THROWS_AS(pool.apply(throw_runtime, std::string("b")), std::runtime_error);
  }
}

TEST_CASE("two tasks throwing 1 MiB messages do not deadlock", "[async]") {
  procpool::Pool pool(workers(2));
  auto a = pool.apply_async(throw_huge, 0);
  auto b = pool.apply_async(throw_huge, 200);
  CHECK_THROWS_AS(pool.map(throw_huge, std::vector<int>{0, 100}, 1), procpool::RemoteError);
  pool.close();
  Stopwatch sw;
  pool.join();
  CHECK(sw.elapsed() < 20s);
  CHECK(a.ready());
  CHECK(b.ready());
  for (auto* r : {&a, &b}) {
    try {
      (void)r->get();
      FAIL("no exception");
    } catch (const procpool::RemoteError& e) {
      std::string what = e.what();
      CHECK(what.size() > (1u << 20));
      CHECK(what.find("END") != std::string::npos);  // the whole message arrived
    }
  }
}

TEST_CASE("each get() throws its own exception object", "[async]") {
  procpool::Pool pool(workers(1));
  auto r = pool.apply_async(throw_runtime, std::string("d4"));
  r.wait();
  std::exception_ptr first, second;
  try {
    (void)r.get();
  } catch (...) {
    first = std::current_exception();
  }
  try {
    (void)r.get();
  } catch (...) {
    second = std::current_exception();
  }
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first != second);
  auto what = [](const std::exception_ptr& p) -> std::string {
    try {
      std::rethrow_exception(p);
    } catch (const std::exception& e) {
      return e.what();
    }
  };
  CHECK(what(first) == what(second));
}

TEST_CASE("an argument that cannot be encoded fails at submission", "[async]") {
  procpool::Pool pool(workers(1));
  SECTION("apply_async and apply") {
    try {
      (void)pool.apply_async(take_unencodable, Unencodable{1});
      FAIL("no exception");
    } catch (const procpool::CodecError& e) {
      CHECK(std::string(e.what()).find("Unencodable") != std::string::npos);
      CHECK(std::string(e.what()).find("refusing to encode") != std::string::npos);
    }
    CHECK_THROWS_AS(pool.apply(take_unencodable, Unencodable{2}), procpool::CodecError);
    CHECK(pool.apply(square, 3) == 9);
  }
  SECTION("map over ten unencodable arguments") {
    std::vector<Unencodable> bad(10, Unencodable{4});
    CHECK_THROWS_AS(pool.map(take_unencodable, bad), procpool::CodecError);
    CHECK_THROWS_AS(pool.map_async(take_unencodable, bad, 1), procpool::CodecError);
    CHECK(pool.map(square, std::vector<int>{1, 2}) == std::vector<int>{1, 4});
  }
  SECTION("100 bad submissions interleaved with 100 good ones") {
    std::vector<procpool::AsyncResult<int>> good;
    int rejected = 0;
    for (int i = 0; i < 100; ++i) {
      try {
        (void)pool.apply_async(take_unencodable, Unencodable{i});
      } catch (const procpool::CodecError&) {
        ++rejected;
      }
      good.push_back(pool.apply_async(square, i));
    }
    CHECK(rejected == 100);
    for (int i = 0; i < 100; ++i) CHECK(good[static_cast<std::size_t>(i)].get() == i * i);
  }
  CHECK(pool.stats().failed == 0);  // rejected submissions never became tasks
}

TEST_CASE("a result that cannot be encoded in the worker is a CodecError from get()", "[async]") {
  procpool::Pool pool(workers(2));
  const auto pids = pool.pids();
  std::atomic<int> error_callbacks{0};
  for (int i = 0; i < 20; ++i) {
    auto r = pool.apply_async(make_bad, i);
    r.then([](const BadResult&) {}, [&](const procpool::Error&) { ++error_callbacks; });
    try {
      (void)r.get();
      FAIL("no exception");
    } catch (const procpool::CodecError& e) {
      CHECK(std::string(e.what()).find("BadResult") != std::string::npos);
      CHECK(std::string(e.what()).find("refusing to encode a result") != std::string::npos);
    }
  }
  CHECK(wait_until([&] { return error_callbacks == 20; }));
  CHECK(pool.pids() == pids);  // still the same workers
  CHECK(pool.stats().restarts == 0);
  CHECK(pool.stats().failed == 20);
  CHECK(pool.apply(square, 5) == 25);
}
