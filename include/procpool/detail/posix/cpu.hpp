#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sched.h>
#include <string>
#include <string_view>
#include <time.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace procpool::detail::posix {

/// CPU time the calling thread has used, in nanoseconds (a system call, unlike the wall clock).
inline std::int64_t thread_cpu_ns() noexcept {
  timespec ts{};
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

/// The CPU the calling thread runs on, or -1.
inline int current_cpu() noexcept {
  return ::sched_getcpu();
}

/// How often the calling thread was switched out while it could have run on: the scheduler gave
/// its core to another thread of this machine (-1 if unknown). A pause of a virtual machine's
/// core by its host does not count.
inline long involuntary_switches() noexcept {
  rusage ru{};
  if (::getrusage(RUSAGE_THREAD, &ru) != 0) return -1;
  return ru.ru_nivcsw;
}

/// CPUs in this process's affinity mask.
inline unsigned affinity_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? static_cast<unsigned>(n) : 1u;
}

/// The contents of a small file such as those under /proc and /sys ("" if it cannot be read).
/// Plain read(2): the stream classes would cost every program that includes procpool.
inline std::string read_small_file(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      if (out.size() < (std::size_t{1} << 20)) continue;
    } else if (n < 0 && errno == EINTR) {
      continue;
    }
    break;
  }
  ::close(fd);
  return out;
}

/// Calls `fn(line)` for each line of `text`.
template <class F>
void for_each_line(std::string_view text, F&& fn) {
  while (!text.empty()) {
    const auto end = text.find('\n');
    fn(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
}

/// This process's cgroup v2 path, as /proc/self/cgroup gives it ("" when unknown).
inline std::string cgroup_path() {
  std::string path;
  for_each_line(read_small_file("/proc/self/cgroup"), [&](std::string_view line) {
    if (line.substr(0, 3) == "0::") path = std::string(line.substr(3));
  });
  return path;
}

/// This process's cgroup v2 directory under /sys/fs/cgroup ("" when unknown).
inline std::string cgroup_dir() {
  std::string path = cgroup_path();
  return path.empty() ? path : "/sys/fs/cgroup" + path;
}

/// How many processes the kernel's OOM killer has killed in this process's cgroup; -1 unknown.
inline long long cgroup_oom_kills() {
  std::string dir = cgroup_dir();
  if (dir.empty()) return -1;
  const std::string text = read_small_file(dir + "/memory.events");
  long long kills = -1;
  for_each_line(text, [&](std::string_view line) {
    if (line.substr(0, 9) == "oom_kill ") kills = std::strtoll(line.data() + 9, nullptr, 10);
  });
  return kills;
}

/// The cgroup v2 CPU quota of this process, rounded up to whole CPUs; 0 when there is none.
inline unsigned cgroup_cpu_quota() {
  std::string path = cgroup_path();
  unsigned best = 0;
  // A parent group's quota limits its children too: take the smallest on the way up.
  for (;;) {
    // "max 100000" (no quota) or "<quota> <period>", in microseconds.
    const std::string text = read_small_file("/sys/fs/cgroup" + path + "/cpu.max");
    char* end = nullptr;
    const long long q = std::strtoll(text.c_str(), &end, 10);
    if (end != text.c_str()) {
      const long long period = std::strtoll(end, nullptr, 10);
      if (q > 0 && period > 0) {
        auto cpus = static_cast<unsigned>((q + period - 1) / period);
        if (cpus == 0) cpus = 1;
        if (best == 0 || cpus < best) best = cpus;
      }
    }
    if (path.empty() || path == "/") break;
    auto cut = path.find_last_of('/');
    path = cut == 0 || cut == std::string::npos ? std::string("/") : path.substr(0, cut);
  }
  return best;
}

}  // namespace procpool::detail::posix
