#pragma once

#include <procpool/detail/cxx20.hpp>

#include <procpool/detail/posix/cpu.hpp>

namespace procpool {

/// The CPUs this process may use: its affinity mask, further limited by a cgroup CPU quota
/// (rounded up to whole CPUs). What `Options::processes = 0` uses.
inline unsigned cpu_count() {
  unsigned n = detail::posix::affinity_cpus();
  unsigned quota = detail::posix::cgroup_cpu_quota();
  return quota != 0 && quota < n ? quota : n;
}

}  // namespace procpool
