#pragma once

#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

#include <dlfcn.h>
#include <link.h>

namespace procpool::detail::posix {

/// A code address made independent of where the image was loaded: which loaded object holds it
/// (a hash of its path; the main program's is the empty path) and the offset inside it. It stays
/// valid in a re-executed copy of the same program.
struct ImageAddress {
  std::uint64_t module = 0;
  std::uint64_t offset = 0;
};

inline std::uint64_t hash_name(const char* s) noexcept {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (; *s; ++s) h = (h ^ static_cast<unsigned char>(*s)) * 1099511628211ull;
  return h;
}

namespace module_detail {

struct Lookup {
  std::uintptr_t addr;
  std::uint64_t module;
  std::uintptr_t base;
  bool found;
};

inline bool segment_holds(const dl_phdr_info* info, std::uintptr_t addr, bool exec_only) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    if (exec_only && !(ph.p_flags & PF_X)) continue;
    std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (addr >= lo && addr < lo + ph.p_memsz) return true;
  }
  return false;
}

inline int by_address(dl_phdr_info* info, std::size_t, void* data) {
  auto* q = static_cast<Lookup*>(data);
  if (!segment_holds(info, q->addr, true)) return 0;
  q->module = hash_name(info->dlpi_name ? info->dlpi_name : "");
  q->base = info->dlpi_addr;
  q->found = true;
  return 1;
}

inline int by_module(dl_phdr_info* info, std::size_t, void* data) {
  auto* q = static_cast<Lookup*>(data);
  if (hash_name(info->dlpi_name ? info->dlpi_name : "") != q->module) return 0;
  q->base = info->dlpi_addr;
  q->found = segment_holds(info, q->base + q->addr, true);
  return 1;
}

}  // namespace module_detail

/// Finds the loaded object that holds the code at `p`. False if no loaded object holds it.
inline bool locate_code(const void* p, ImageAddress& out) noexcept {
  module_detail::Lookup q{reinterpret_cast<std::uintptr_t>(p), 0, 0, false};
  dl_iterate_phdr(module_detail::by_address, &q);
  if (!q.found) return false;
  out = {q.module, q.addr - q.base};
  return true;
}

/// Turns an ImageAddress back into a code address in this process; nullptr unless it falls in
/// executable code of a loaded object with that name.
inline void* resolve_code(const ImageAddress& a) noexcept {
  module_detail::Lookup q{static_cast<std::uintptr_t>(a.offset), a.module, 0, false};
  dl_iterate_phdr(module_detail::by_module, &q);
  if (!q.found) return nullptr;
  return reinterpret_cast<void*>(q.base + a.offset);
}

/// The (mangled) name of the function that starts at `p`, if the dynamic symbol table has it;
/// nullptr otherwise (a program linked without -rdynamic exports few of its own).
inline const char* symbol_at(const void* p) noexcept {
  Dl_info info{};
  if (::dladdr(p, &info) == 0 || info.dli_saddr != p) return nullptr;
  return info.dli_sname;
}

}  // namespace procpool::detail::posix
