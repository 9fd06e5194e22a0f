#pragma once

#include <cstdint>

namespace procpool::detail::posix {

/// A code address made independent of where the image was loaded: which loaded object holds it
/// (a hash of its path; the main program's is the empty path) and the offset inside it. It stays
/// valid in a re-executed copy of the same program.
struct ImageAddress {
  std::uint64_t module = 0;
  std::uint64_t offset = 0;
};

}  // namespace procpool::detail::posix
