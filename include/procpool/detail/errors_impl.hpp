#pragma once
// The error types' constructors: inline in a header-only build, compiled once by src/procpool.cpp
// with PROCPOOL_SEPARATE_COMPILATION (they build strings, which is code every file throwing one
// would otherwise generate again).

#include <procpool/errors.hpp>

namespace procpool {

namespace detail {
PROCPOOL_SEPARATE_BEGIN
PROCPOOL_DECL std::string prefixed(std::string_view msg) {
  std::string s;
  s.reserve(error_prefix.size() + msg.size());
  s.append(error_prefix).append(msg);
  return s;
}
PROCPOOL_SEPARATE_END
}  // namespace detail

PROCPOOL_DECL Error::Error(const std::string& msg) : std::runtime_error(detail::prefixed(msg)) {
}

PROCPOOL_DECL RemoteError::RemoteError(std::string type_name, const std::string& message)
    : Error("task raised " + type_name + ": " + message), type_name_(std::move(type_name)) {
}

PROCPOOL_DECL WorkerCrashed::WorkerCrashed(const std::string& msg, pid_t pid, int sig, int code)
    : Error(msg), pid_(pid), signal_(sig), exit_code_(code) {
}

PROCPOOL_DECL SystemError::SystemError(std::error_code ec, const std::string& call)
    : Error(call + " failed: " + ec.message()), code_(ec) {
}

}  // namespace procpool
