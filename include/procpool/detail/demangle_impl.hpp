#pragma once
// Definitions of what demangle.hpp declares: inline in a header-only build, compiled once by
// src/procpool.cpp with PROCPOOL_SEPARATE_COMPILATION.

#include <cctype>
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
  if (status != 0 || !p) return std::string(mangled);
  // libc++ names its types std::__1::vector and so on: an ABI version nobody writes.
  std::string name(p.get());
  const std::string abi = "std::__1::";
  for (auto at = name.find(abi); at != std::string::npos; at = name.find(abi, at + 5)) {
    const char before = at > 0 ? name[at - 1] : ' ';
    if (!std::isalnum(static_cast<unsigned char>(before)) && before != '_')  // not mystd::
      name.erase(at + 5, 5);
  }
  return name;
}

PROCPOOL_DECL std::string current_exception_type() {
  const std::type_info* t = abi::__cxa_current_exception_type();
  return t ? demangle(t->name()) : std::string("unknown exception");
}

PROCPOOL_SEPARATE_END

}  // namespace procpool::detail
