#pragma once

#include <cerrno>
#include <string>
#include <system_error>

#include <procpool/errors.hpp>

namespace procpool::detail::posix {

inline std::error_code last_error() noexcept {
  return {errno, std::generic_category()};
}

/// The one place where an operating-system failure becomes an exception.
[[noreturn]] inline void throw_system_error(std::error_code ec, const std::string& call) {
  throw SystemError(ec, call);
}

inline void check(std::error_code ec, const char* call) {
  if (ec) throw_system_error(ec, call);
}

}  // namespace procpool::detail::posix
