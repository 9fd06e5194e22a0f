#pragma once

#include <cstddef>
#include <cstdint>

#include <sys/mman.h>
#include <unistd.h>

namespace procpool::detail::posix {

/// Asks for huge pages in [p, p + n) of memory not touched yet (a large allocation about to be
/// filled): its first writes then fault 2 MiB at a time instead of 4 KiB, which makes filling
/// fresh memory several times faster. A hint only: where transparent huge pages are off, or the
/// range is not mapped in a way that allows them, nothing changes.
inline void prefer_huge_pages(void* p, std::size_t n) noexcept {
#ifdef MADV_HUGEPAGE
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  if (page == 0 || page == static_cast<std::uintptr_t>(-1)) return;
  std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
  std::uintptr_t b = a + n;
  a = (a + page - 1) / page * page;
  b = b / page * page;
  if (b > a) (void)::madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
#else
  (void)p;
  (void)n;
#endif
}

}  // namespace procpool::detail::posix
