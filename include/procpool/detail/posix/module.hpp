#pragma once

#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <procpool/detail/posix/fd.hpp>
#include <procpool/detail/posix/image_address.hpp>

namespace procpool::detail::posix {

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

/// The loaded objects, copied out of the dynamic loader's list so that a child forked later can
/// look up code addresses without asking the loader. dl_iterate_phdr takes a lock of glibc's
/// (_dl_load_write_lock) that fork does not reset: had another thread of the parent been inside
/// dl_iterate_phdr at the fork (submitting a task runs locate_code), the child's first lookup
/// would wait for a thread it does not have, for ever.
class ModuleTable {
 public:
  /// The objects loaded now. Empty if it cannot be made (then `resolve` finds nothing).
  static ModuleTable capture() noexcept {
    ModuleTable t;
    bool failed = false;
    struct Ctx {
      ModuleTable& t;
      bool& failed;
    } ctx{t, failed};
    dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* data) -> int {
          auto& c = *static_cast<Ctx*>(data);
          try {
            Module m;
            m.name = hash_name(info->dlpi_name ? info->dlpi_name : "");
            m.base = info->dlpi_addr;
            for (int i = 0; i < info->dlpi_phnum; ++i) {
              const auto& ph = info->dlpi_phdr[i];
              if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X))
                m.code.push_back({ph.p_vaddr, ph.p_vaddr + ph.p_memsz});
            }
            c.t.modules_.push_back(std::move(m));
            return 0;
          } catch (...) {
            c.failed = true;
            return 1;
          }
        },
        &ctx);
    if (failed) t.modules_.clear();
    return t;
  }

  /// As resolve_code, from the copy: nullptr if the copy has no such code.
  void* resolve(const ImageAddress& a) const noexcept {
    for (const Module& m : modules_) {
      if (m.name != a.module) continue;  // the first object of that name, as resolve_code
      for (const auto& [lo, hi] : m.code)
        if (a.offset >= lo && a.offset < hi) return reinterpret_cast<void*>(m.base + a.offset);
      return nullptr;
    }
    return nullptr;
  }

 private:
  struct Module {
    std::uint64_t name = 0;
    std::uintptr_t base = 0;
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> code;  // executable, base-relative
  };
  std::vector<Module> modules_;
};

namespace elf {

// The function at `offset` (or at the absolute address `addr`, in a program not built as
// position-independent) in the symbol table of the ELF image `img`; empty if it has none.
inline std::string function_at(const unsigned char* img, std::size_t size, std::uintptr_t offset,
                               std::uintptr_t addr) {
  auto fits = [&](std::uint64_t off, std::uint64_t len) {
    return off <= size && len <= size - off;
  };
  if (!fits(0, sizeof(ElfW(Ehdr)))) return {};
  ElfW(Ehdr) eh;
  std::memcpy(&eh, img, sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_shentsize != sizeof(ElfW(Shdr)) ||
      !fits(eh.e_shoff, std::uint64_t{eh.e_shnum} * sizeof(ElfW(Shdr))))
    return {};
  auto section = [&](std::size_t i) {
    ElfW(Shdr) sh;
    std::memcpy(&sh, img + eh.e_shoff + i * sizeof sh, sizeof sh);
    return sh;
  };
  for (std::size_t i = 0; i < eh.e_shnum; ++i) {
    const ElfW(Shdr) symtab = section(i);
    if (symtab.sh_type != SHT_SYMTAB || symtab.sh_link >= eh.e_shnum ||
        !fits(symtab.sh_offset, symtab.sh_size))
      continue;
    const ElfW(Shdr) strtab = section(symtab.sh_link);
    if (!fits(strtab.sh_offset, strtab.sh_size)) continue;
    for (std::uint64_t k = 0; k + sizeof(ElfW(Sym)) <= symtab.sh_size; k += sizeof(ElfW(Sym))) {
      ElfW(Sym) sym;
      std::memcpy(&sym, img + symtab.sh_offset + k, sizeof sym);
      if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_value == 0) continue;
      if (sym.st_value != offset && sym.st_value != addr) continue;
      if (sym.st_name >= strtab.sh_size) return {};
      const char* name = reinterpret_cast<const char*>(img + strtab.sh_offset + sym.st_name);
      return std::string(name, strnlen(name, strtab.sh_size - sym.st_name));
    }
  }
  return {};
}

}  // namespace elf

/// The (mangled) name of the function that starts at `p`: from the dynamic symbol table, else
/// from the symbol table in its loaded object's file (a program linked without -rdynamic exports
/// few of its own functions). Empty if neither has it (a stripped program). Slow: for messages.
inline std::string symbol_at(const void* p) {
  Dl_info info{};
  if (::dladdr(p, &info) == 0) return {};
  if (info.dli_sname && info.dli_saddr == p) return info.dli_sname;
  if (!info.dli_fbase) return {};
  // The main program's name as dladdr gives it may be relative to a directory left since.
  const bool main_program = info.dli_fbase == ::dlsym(RTLD_DEFAULT, "__executable_start") ||
                            !info.dli_fname || info.dli_fname[0] == '\0';
  const char* path = main_program ? "/proc/self/exe" : info.dli_fname;
  UniqueFd fd;
  if (create_registered([&](int* fds) { return fds[0] = ::open(path, O_RDONLY | O_CLOEXEC); }, fd))
    return {};
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_size <= 0) return {};
  const auto size = static_cast<std::size_t>(st.st_size);
  void* img = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (img == MAP_FAILED) return {};
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  std::string name =
      elf::function_at(static_cast<const unsigned char*>(img), size,
                       addr - reinterpret_cast<std::uintptr_t>(info.dli_fbase), addr);
  ::munmap(img, size);
  return name;
}

}  // namespace procpool::detail::posix
