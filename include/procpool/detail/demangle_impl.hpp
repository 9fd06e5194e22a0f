#pragma once
// Definitions of what demangle.hpp declares: inline in a header-only build, compiled once by
// src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <cstdlib>
#include <memory>
#include <string>

#include <cxxabi.h>

#include <procpool/detail/demangle.hpp>

namespace procpool::detail {

PROCPOOL_SEPARATE_BEGIN

PROCPOOL_DECL std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> p(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                           std::free);
  return status == 0 && p ? std::string(p.get()) : std::string(mangled);
}

PROCPOOL_DECL std::string current_exception_type() {
  const std::type_info* t = abi::__cxa_current_exception_type();
  return t ? demangle(t->name()) : std::string("unknown exception");
}

PROCPOOL_SEPARATE_END

}  // namespace procpool::detail
