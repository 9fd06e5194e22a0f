#pragma once

#include <string>
#include <typeinfo>

#include <procpool/detail/separate.hpp>

namespace procpool::detail {

PROCPOOL_SEPARATE_BEGIN

/// Returns the readable name of a type as the compiler's ABI library spells it.
PROCPOOL_DECL std::string demangle(const char* mangled);

/// The demangled type of the exception being handled (inside a catch block).
PROCPOOL_DECL std::string current_exception_type();

PROCPOOL_SEPARATE_END

template <class T>
const std::string& type_name() {
  static const std::string name = demangle(typeid(T).name());
  return name;
}

}  // namespace procpool::detail

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/demangle_impl.hpp>
#endif
