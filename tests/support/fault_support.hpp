#pragma once
// Helpers for the fault, timeout and wire tests: exception capture, pid files, worker
// replacement, and (for tasks running in a worker) finding the worker's result pipe so a test can
// write raw bytes to the pool as a broken or hostile worker would.

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <support/test_support.hpp>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace procpool_test {

/// Runs `f`; returns the exception of type `E` it threw, or nothing if it returned. Any other
/// exception propagates (and fails the test with its message).
template <class E, class F>
std::optional<E> thrown_as(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const E& e) {
    return e;
  }
  return std::nullopt;
}

/// Writes `pid` to `path` atomically (write a temporary, then rename), so a poller never reads a
/// half-written file.
inline void write_pid_file(const std::string& path, pid_t pid) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << pid << '\n';
  }
  std::rename(tmp.c_str(), path.c_str());
}

/// The pid in a file written by `write_pid_file`, once it exists (polled up to `timeout`).
inline std::optional<pid_t> read_pid_file(const std::string& path,
                                          std::chrono::milliseconds timeout = 5s) {
  if (!wait_until([&] { return file_exists(path); }, timeout)) return std::nullopt;
  std::ifstream f(path);
  long v = 0;
  if (!(f >> v) || v <= 0) return std::nullopt;
  return static_cast<pid_t>(v);
}

/// A task that records its pid in `marker` (see `read_pid_file`) when it starts, then sleeps `ms`.
inline int started_then_sleep(std::string marker, int ms) {
  write_pid_file(marker, ::getpid());
  sleep_ms(ms);
  return ms;
}

/// After worker `dead` died: true once its pid is gone from pids(), the pool is back to full size
/// and has counted `restarts` replacements (polled).
template <class P>
bool replaced(P& pool, pid_t dead, std::uint64_t restarts) {
  return wait_until([&] {
    auto now = pool.pids();
    return !contains(now, dead) && now.size() == pool.size() && pool.stats().restarts >= restarts;
  });
}

/// The inode of a "pipe:[123]" link target, or 0.
inline ino_t pipe_inode(const std::string& target) {
  if (target.rfind("pipe:[", 0) != 0) return 0;
  return static_cast<ino_t>(std::strtoull(target.c_str() + 6, nullptr, 10));
}

/// The open flags of `fd` in `pid`, from /proc/<pid>/fdinfo; -1 if unknown.
inline long proc_fd_flags(pid_t pid, long fd) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd));
  std::string key;
  while (f >> key) {
    if (key == "flags:") {
      std::string octal;
      f >> octal;
      return std::strtol(octal.c_str(), nullptr, 8);
    }
  }
  return -1;
}

/// In a worker: the descriptor it sends result frames on, found as the write end of a pipe whose
/// read end the pool's process `parent` holds open for reading (with a fork server, the pool is
/// not the worker's parent, so it is named). -1 if not found.
inline int find_result_fd(pid_t parent) {
  std::set<ino_t> parent_reads;
  const std::string dir = "/proc/" + std::to_string(parent) + "/fd";
  for (long fd : numeric_entries(dir.c_str())) {
    ino_t ino = pipe_inode(fd_target(parent, static_cast<int>(fd)));
    long flags = proc_fd_flags(parent, fd);
    if (ino != 0 && flags >= 0 && (flags & O_ACCMODE) == O_RDONLY) parent_reads.insert(ino);
  }
  for (int fd : open_fds()) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) continue;
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || (flags & O_ACCMODE) != O_WRONLY) continue;
    if (parent_reads.count(st.st_ino) != 0) return fd;
  }
  return -1;
}

/// Writes all of `data` to `fd` (blocking); false on error.
inline bool write_fully(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t r = ::write(fd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        sleep_ms(1);
        continue;
      }
      return false;
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

/// VmSize of this process in bytes, or 0.
inline std::size_t vm_size_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmSize:", 0) == 0) {
      std::istringstream is(line.substr(7));
      std::size_t kb = 0;
      is >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

/// The command name of `pid` (at most 15 characters), or empty.
inline std::string proc_comm(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(f, name);
  return name;
}

/// Running processes below this one: children, their children, and so on.
inline std::vector<pid_t> live_descendants() {
  std::vector<std::pair<pid_t, pid_t>> procs;  // pid, ppid
  for (long v : numeric_entries("/proc")) {
    auto pid = static_cast<pid_t>(v);
    if (auto st = proc_stat(pid); st && st->state != 'Z' && st->state != 'X')
      procs.emplace_back(pid, st->ppid);
  }
  std::vector<pid_t> out, frontier{::getpid()};
  while (!frontier.empty()) {
    pid_t parent = frontier.back();
    frontier.pop_back();
    for (auto [pid, ppid] : procs) {
      if (ppid != parent) continue;
      frontier.push_back(pid);
      out.push_back(pid);
    }
  }
  return out;
}

/// Processes below this one that were not in `baseline` (taken at the start of a test, so the
/// fork server `procpool::init` starts for the whole program is not counted), nor a fork server
/// started since: the pools' workers and whatever their tasks started.
inline std::vector<pid_t> new_descendants(const std::vector<pid_t>& baseline) {
  std::vector<pid_t> out;
  for (pid_t pid : live_descendants()) {
    if (std::find(baseline.begin(), baseline.end(), pid) != baseline.end()) continue;
    std::string name = proc_comm(pid);
    if (name.rfind("procpool-server", 0) == 0 || name.rfind("procpool-forks", 0) == 0) continue;
    out.push_back(pid);
  }
  return out;
}

/// "pid (name)" of every process `new_descendants` finds, for failure messages.
inline std::string describe_new_descendants(const std::vector<pid_t>& baseline) {
  std::string out;
  for (pid_t pid : new_descendants(baseline))
    out += std::to_string(pid) + " (" + proc_comm(pid) + ") ";
  return out.empty() ? "none" : out;
}

/// True once every process below this one that is not in `baseline` has ended (polled).
inline bool no_new_processes(const std::vector<pid_t>& baseline,
                             std::chrono::milliseconds timeout = 5s) {
  return wait_until([&] { return new_descendants(baseline).empty(); }, timeout);
}
}  // namespace procpool_test
