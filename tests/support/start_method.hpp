#pragma once
// The start method the test programs use, from PROCPOOL_TEST_START (CTest runs the pool suites
// once per method).
#include <cstdlib>
#include <optional>
#include <string_view>

#include <procpool/options.hpp>

namespace procpool_test {

/// fork when the variable is unset; nothing when it names no start method.
inline std::optional<procpool::StartMethod> start_method_from_env() {
  const char* m = std::getenv("PROCPOOL_TEST_START");
  const std::string_view s = m ? m : "fork";
  if (s == "fork") return procpool::StartMethod::fork;
  if (s == "spawn") return procpool::StartMethod::spawn;
  if (s == "forkserver") return procpool::StartMethod::forkserver;
  return std::nullopt;
}

}  // namespace procpool_test
