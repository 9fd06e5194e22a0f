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

/// Made anew each time (it names types in errors only): a function-local static would have a
/// guard, and a fork-started worker would wait for ever on one that another thread of the
/// program held at the fork.
template <class T>
std::string type_name() {
  return demangle(typeid(T).name());
}

}  // namespace procpool::detail

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/demangle_impl.hpp>
#endif
