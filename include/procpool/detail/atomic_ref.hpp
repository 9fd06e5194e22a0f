#pragma once
// Atomic access to a plain integer that lives in shared memory, written by another process:
// std::atomic_ref where the standard library has it, else the compiler's __atomic built-ins
// (libc++ 14 has no atomic_ref). Only the operations procpool uses.

#include <atomic>
#include <type_traits>

namespace procpool::detail {

#if defined(__cpp_lib_atomic_ref)
template <class T>
using AtomicRef = std::atomic_ref<T>;
#else
template <class T>
class AtomicRef {
  static_assert(std::is_integral_v<T> && sizeof(T) <= 8, "AtomicRef is for plain integers");

 public:
  explicit AtomicRef(T& v) noexcept : p_(&v) {}

  T load(std::memory_order o = std::memory_order_seq_cst) const noexcept {
    return __atomic_load_n(p_, order(o));
  }
  void store(T v, std::memory_order o = std::memory_order_seq_cst) const noexcept {
    __atomic_store_n(p_, v, order(o));
  }
  T fetch_add(T v, std::memory_order o = std::memory_order_seq_cst) const noexcept {
    return __atomic_fetch_add(p_, v, order(o));
  }
  bool compare_exchange_weak(T& expected, T desired,
                             std::memory_order o = std::memory_order_seq_cst) const noexcept {
    return __atomic_compare_exchange_n(p_, &expected, desired, true, order(o), failure(o));
  }
  bool compare_exchange_strong(T& expected, T desired,
                               std::memory_order o = std::memory_order_seq_cst) const noexcept {
    return __atomic_compare_exchange_n(p_, &expected, desired, false, order(o), failure(o));
  }

 private:
  static constexpr int order(std::memory_order o) noexcept {
    switch (o) {
      case std::memory_order_relaxed:
        return __ATOMIC_RELAXED;
      case std::memory_order_consume:
        return __ATOMIC_CONSUME;
      case std::memory_order_acquire:
        return __ATOMIC_ACQUIRE;
      case std::memory_order_release:
        return __ATOMIC_RELEASE;
      case std::memory_order_acq_rel:
        return __ATOMIC_ACQ_REL;
      default:
        return __ATOMIC_SEQ_CST;
    }
  }
  // What a compare-exchange given one order uses when it fails (as std::atomic does).
  static constexpr int failure(std::memory_order o) noexcept {
    if (o == std::memory_order_acq_rel) return __ATOMIC_ACQUIRE;
    if (o == std::memory_order_release) return __ATOMIC_RELAXED;
    return order(o);
  }

  T* p_;
};
#endif

}  // namespace procpool::detail
