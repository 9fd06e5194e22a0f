#pragma once

#include <procpool/detail/cxx20.hpp>

#include <procpool/detail/separate.hpp>

namespace procpool {

namespace detail {
PROCPOOL_SEPARATE_BEGIN
PROCPOOL_DECL void init_process(int argc, char** argv);
PROCPOOL_SEPARATE_END
}  // namespace detail

/// Call first thing in `main`, before the program starts any thread. In a worker started by
/// `StartMethod::spawn` (a fresh copy of this program) it runs the worker and never returns; in
/// a normal run it returns at once, after starting the small fork server that
/// `StartMethod::forkserver` pools use. `StartMethod::fork` needs no call.
inline void init(int argc, char** argv) {
  detail::init_process(argc, argv);
}

}  // namespace procpool

#ifndef PROCPOOL_SEPARATE_COMPILATION
#include <procpool/detail/init_impl.hpp>
#endif
