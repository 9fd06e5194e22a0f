#pragma once
// The codec's error paths: inline in a header-only build, compiled once by src/procpool.cpp with
// PROCPOOL_SEPARATE_COMPILATION.

#include <procpool/detail/codec/io.hpp>

namespace procpool {

namespace detail {
PROCPOOL_SEPARATE_BEGIN
PROCPOOL_DECL std::string describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}
PROCPOOL_SEPARATE_END
}  // namespace detail

PROCPOOL_DECL void Reader::fail(std::string_view reason) const {
  std::string msg = "cannot decode ";
  msg += outer_ != nullptr ? outer_() : std::string("input");
  msg += ": ";
  msg += reason;
  if (inner_ != nullptr && inner_ != outer_) {
    msg += " (in ";
    msg += inner_();
    msg += ')';
  }
  throw CodecError(msg);
}

PROCPOOL_DECL void Reader::fail_truncated(std::size_t wanted) const {
  fail("truncated input: " + std::to_string(wanted) + " bytes needed, " +
       std::to_string(size_ - pos_) + " left");
}

PROCPOOL_DECL void Reader::fail_length(std::uint64_t n, std::size_t left) const {
  fail("length " + std::to_string(n) + " is more than the " + std::to_string(left) +
       " remaining bytes can hold");
}

}  // namespace procpool
