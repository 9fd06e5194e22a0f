#pragma once

#include <cstdint>
#include <fstream>
#include <sched.h>
#include <sstream>
#include <string>
#include <time.h>

namespace procpool::detail::posix {

/// CPU time the calling thread has used, in nanoseconds (a system call, unlike the wall clock).
inline std::int64_t thread_cpu_ns() noexcept {
  timespec ts{};
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

/// CPUs in this process's affinity mask.
inline unsigned affinity_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? static_cast<unsigned>(n) : 1u;
}

/// This process's cgroup v2 directory under /sys/fs/cgroup ("" when unknown).
inline std::string cgroup_dir() {
  std::ifstream self("/proc/self/cgroup");
  std::string line;
  while (std::getline(self, line))
    if (line.rfind("0::", 0) == 0) return "/sys/fs/cgroup" + line.substr(3);
  return {};
}

/// How many processes the kernel's OOM killer has killed in this process's cgroup; -1 unknown.
inline long long cgroup_oom_kills() {
  std::string dir = cgroup_dir();
  if (dir.empty()) return -1;
  std::ifstream f(dir + "/memory.events");
  std::string key;
  long long v = 0;
  while (f >> key >> v)
    if (key == "oom_kill") return v;
  return -1;
}

/// The cgroup v2 CPU quota of this process, rounded up to whole CPUs; 0 when there is none.
inline unsigned cgroup_cpu_quota() {
  std::ifstream self("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(self, line))
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  unsigned best = 0;
  // A parent group's quota limits its children too: take the smallest on the way up.
  for (;;) {
    std::ifstream f("/sys/fs/cgroup" + path + "/cpu.max");
    std::string quota;
    long long period = 0;
    if (f >> quota >> period && quota != "max" && period > 0) {
      long long q = std::stoll(quota);
      auto cpus = static_cast<unsigned>((q + period - 1) / period);
      if (cpus == 0) cpus = 1;
      if (best == 0 || cpus < best) best = cpus;
    }
    if (path.empty() || path == "/") break;
    auto cut = path.find_last_of('/');
    path = cut == 0 || cut == std::string::npos ? std::string("/") : path.substr(0, cut);
  }
  return best;
}

}  // namespace procpool::detail::posix
