#pragma once
// Helpers for the test suite: process, thread and descriptor inspection through /proc, deadline
// polling and temporary directories. Test code only, so POSIX headers are fine here.

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <numeric>
#include <optional>
#include <ranges>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <procpool/procpool.hpp>

namespace procpool_test {

/// Sanitizer builds run slower and report leaks at exit: some tests do less there.
#if defined(PROCPOOL_SANITIZED) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// Numeric entries of a /proc directory (fds, tasks or pids), without the descriptor used to
/// read the directory itself.
inline std::vector<long> numeric_entries(const char* path) {
  std::vector<long> out;
  DIR* d = ::opendir(path);
  if (d == nullptr) return out;
  const int own = ::dirfd(d);
  while (const dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long v = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;  // ".", ".." and non-numeric names
    if (v == own && std::string(path) == "/proc/self/fd") continue;
    out.push_back(v);
  }
  ::closedir(d);
  return out;
}

/// The descriptors open in this process.
inline std::vector<int> open_fds() {
  std::vector<int> fds;
  for (long v : numeric_entries("/proc/self/fd")) fds.push_back(static_cast<int>(v));
  return fds;
}

inline std::size_t count_open_fds() {
  return open_fds().size();
}

/// Threads of this process.
inline std::size_t count_threads() {
  return numeric_entries("/proc/self/task").size();
}

/// What /proc/<pid>/fd/<fd> points to ("pipe:[123]", "/dev/null", …), or empty.
inline std::string fd_target(pid_t pid, int fd) {
  std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
  char buf[512];
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  if (n < 0) return {};
  return std::string(buf, static_cast<std::size_t>(n));
}

/// Targets of every descriptor of `pid`.
inline std::vector<std::string> fd_targets(pid_t pid) {
  std::vector<std::string> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  for (long fd : numeric_entries(dir.c_str())) {
    std::string t = fd_target(pid, static_cast<int>(fd));
    if (!t.empty()) out.push_back(std::move(t));
  }
  return out;
}

struct ProcStat {
  char state = '?';
  pid_t ppid = 0;
};

/// State and parent of `pid` from /proc/<pid>/stat; empty if it does not exist.
inline std::optional<ProcStat> proc_stat(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!f || !std::getline(f, line)) return std::nullopt;
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  ProcStat s;
  long ppid = 0;
  if (!(rest >> s.state >> ppid)) return std::nullopt;
  s.ppid = static_cast<pid_t>(ppid);
  return s;
}

/// True if `pid` exists and is not a zombie (a zombie has already died).
inline bool pid_alive(pid_t pid) {
  auto s = proc_stat(pid);
  return s && s->state != 'Z' && s->state != 'X';
}

/// Children of `parent`, found by scanning /proc; zombies only if asked.
inline std::vector<pid_t> children_of(pid_t parent, bool include_zombies = false) {
  std::vector<pid_t> out;
  for (long v : numeric_entries("/proc")) {
    auto pid = static_cast<pid_t>(v);
    auto s = proc_stat(pid);
    if (!s || s->ppid != parent) continue;
    if (!include_zombies && (s->state == 'Z' || s->state == 'X')) continue;
    // procpool::init's fork server lives as long as the program; the workers it starts for
    // forkserver pools are its children, and count as ours.
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    if (std::getline(comm, name) && name == "procpool-server") {
      for (pid_t w : children_of(pid, include_zombies)) out.push_back(w);
      continue;
    }
    out.push_back(pid);
  }
  return out;
}

/// Our children that are still running.
inline std::vector<pid_t> live_children() {
  return children_of(::getpid());
}

/// True if no child of ours has ended without being reaped. Uses WNOWAIT so that nothing is
/// reaped; still, call it only when no pool is alive.
inline bool no_zombies() {
  siginfo_t info{};
  if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return errno == ECHILD;
  return info.si_pid == 0;
}

/// Options for a pool of `n` workers (the start method: PROCPOOL_TEST_START, see main.cpp).
inline procpool::Options workers(unsigned n) {
  procpool::Options o;
  o.processes = n;
  return o;
}

/// `workers(n)`, each replaced after `maxtasks` tasks.
inline procpool::Options recycled_workers(unsigned n, std::size_t maxtasks) {
  procpool::Options o = workers(n);
  o.maxtasksperchild = maxtasks;
  return o;
}

/// `workers(n)` with a hard time limit on every task.
inline procpool::Options timed_workers(unsigned n, std::chrono::milliseconds timeout) {
  procpool::Options o = workers(n);
  o.task_timeout = timeout;
  return o;
}

/// The suite's everyday task.
inline int square(int x) {
  return x * x;
}

/// 0, 1, …, n-1.
inline std::vector<int> iota_vec(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

/// square of 0, 1, …, n-1.
inline std::vector<int> squares(int n) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i) v.push_back(square(i));
  return v;
}

/// A padding-free struct: it travels as its bytes.
struct Vec3 {
  double x, y, z;
};
inline Vec3 scaled(Vec3 v) {
  return {2 * v.x, 2 * v.y, 2 * v.z};
}
inline std::array<int, 4> spread(int x) {
  return {x, x + 1, x + 2, x + 3};
}

template <class T>
bool contains(const std::vector<T>& v, const T& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

/// Deterministic bytes that do not repeat, so a shifted or truncated copy cannot compare equal.
template <class C>
C pattern(std::size_t n) {
  C out(n, 0);
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  for (std::size_t i = 0; i < n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(out.data() + i, &x, std::min<std::size_t>(8, n - i));
  }
  return out;
}

/// What ThrowingInput throws: the caller must get it back unchanged.
struct InputFailure : std::runtime_error {
  explicit InputFailure(int at) : std::runtime_error("input broke"), index(at) {}
  int index;
};

/// A single-pass input range of 0..n-1 whose element `throw_at` throws when read.
class ThrowingInput : public std::ranges::view_base {
 public:
  ThrowingInput() = default;
  ThrowingInput(int n, int throw_at) : n_(n), throw_at_(throw_at) {}

  class iterator {
   public:
    using value_type = int;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(int i, int n, int throw_at) : i_(i), n_(n), throw_at_(throw_at) {}
    int operator*() const {
      if (i_ == throw_at_) throw InputFailure(i_);
      return i_;
    }
    iterator& operator++() {
      ++i_;
      return *this;
    }
    void operator++(int) { ++i_; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.i_ >= it.n_; }

   private:
    int i_ = 0, n_ = 0, throw_at_ = -1;
  };

  iterator begin() const { return {0, n_, throw_at_}; }
  std::default_sentinel_t end() const { return {}; }

 private:
  int n_ = 0, throw_at_ = -1;
};

/// Polls `pred` until it holds or `timeout` passes; returns its last value.
template <class Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds timeout = 5s,
                std::chrono::milliseconds step = 2ms) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(step);
  }
}

/// Milliseconds since construction.
class Stopwatch {
 public:
  Stopwatch() : start_(Clock::now()) {}
  std::chrono::milliseconds elapsed() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_);
  }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  Clock::time_point start_;
};

/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string base = std::filesystem::temp_directory_path() / "procpool-test-XXXXXX";
    std::vector<char> buf(base.begin(), base.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr)
      throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  /// Number of entries in the directory.
  std::size_t count() const {
    std::size_t n = 0;
    for (auto it = std::filesystem::directory_iterator(path_);
         it != std::filesystem::directory_iterator(); ++it)
      ++n;
    return n;
  }

 private:
  std::string path_;
};

inline bool file_exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

/// Creates (or truncates) `path`; for tasks that leave evidence that they ran.
inline void touch_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0) ::close(fd);
}

/// Sleeps in the calling process (for tasks that must take a while).
inline void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

// Tasks several suites share.

/// The worker's pid.
inline pid_t my_pid() {
  return ::getpid();
}

/// Sleeps `ms` and returns it.
inline int sleep_for_ms(int ms) {
  sleep_ms(ms);
  return ms;
}

/// Sleeps `ms`, then returns `value`.
inline int sleep_then(int ms, int value) {
  sleep_ms(ms);
  return value;
}

/// Leaves a file when it starts, so the test knows it ran (or is running), then sleeps `ms`.
inline int mark_then_sleep(std::string path, int ms) {
  touch_file(path);
  sleep_ms(ms);
  return ms;
}

}  // namespace procpool_test
