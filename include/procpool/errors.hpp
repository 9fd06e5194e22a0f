#pragma once

#include <procpool/detail/cxx20.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <sys/types.h>

#include <procpool/detail/separate.hpp>

namespace procpool {

namespace detail {
/// The one place the prefix of procpool's messages is spelled.
inline constexpr std::string_view error_prefix = "procpool: ";
PROCPOOL_SEPARATE_BEGIN
PROCPOOL_DECL std::string prefixed(std::string_view msg);
PROCPOOL_SEPARATE_END
}  // namespace detail

/// Base of every error procpool throws. `what()` starts with "procpool: ".
class Error : public std::runtime_error {
 public:
  PROCPOOL_DECL explicit Error(const std::string& msg);
};

namespace detail {
/// An Error's message without the prefix its constructor added: for an error that travels (from
/// a worker, or into an ErrorInfo) and is prefixed again where it is thrown anew.
inline std::string bare_message(const Error& e) {
  return std::string(e.what() + error_prefix.size());
}
}  // namespace detail

/// The task threw. `type_name()` is the demangled dynamic type of what it threw.
class RemoteError : public Error {
 public:
  PROCPOOL_DECL RemoteError(std::string type_name, const std::string& message);
  const std::string& type_name() const noexcept { return type_name_; }

 private:
  std::string type_name_;
};

/// A `get`/`next` with a timeout ran out; the task itself is untouched.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// The task ran past its hard time limit; its worker was killed and replaced.
class TaskTimeout : public Error {
 public:
  using Error::Error;
};

/// The worker died while it ran this task.
class WorkerCrashed : public Error {
 public:
  PROCPOOL_DECL WorkerCrashed(const std::string& msg, pid_t pid, int sig, int code);
  pid_t pid() const noexcept { return pid_; }
  /// The signal that killed the worker, or 0.
  int signal() const noexcept { return signal_; }
  /// The worker's exit code, or -1 when a signal killed it.
  int exit_code() const noexcept { return exit_code_; }

 private:
  pid_t pid_;
  int signal_;
  int exit_code_;
};

/// A value could not be encoded or decoded; the message names the type.
class CodecError : public Error {
 public:
  using Error::Error;
};

/// Submission to a pool after `close()` or `terminate()`.
class PoolClosed : public Error {
 public:
  using Error::Error;
};

/// The task was cancelled, or its pool terminated before it finished.
class Cancelled : public Error {
 public:
  using Error::Error;
};

/// `get` on a closed, empty queue, or `recv` on a pipe whose other end is gone.
class QueueClosed : public Error {
 public:
  using Error::Error;
};

/// An operating-system call failed. `what()` names the call; `code()` gives the error.
class SystemError : public Error {
 public:
  PROCPOOL_DECL SystemError(std::error_code ec, const std::string& call);
  const std::error_code& code() const noexcept { return code_; }

 private:
  std::error_code code_;
};

}  // namespace procpool

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/errors_impl.hpp>
#endif
