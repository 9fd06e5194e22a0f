#pragma once

namespace procpool::detail {

/// A pause for a polling loop: lets the core's other hardware thread run, saves power.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace procpool::detail
