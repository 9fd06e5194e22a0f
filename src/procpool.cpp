// procpool's compiled mode (procpool::compiled): the engine's type-independent functions,
// defined once here instead of inline in every file that uses a pool.

#ifndef PROCPOOL_SEPARATE_COMPILATION
#error "src/procpool.cpp is built with PROCPOOL_SEPARATE_COMPILATION defined"
#endif

#include <procpool/detail/engine_impl.hpp>
#include <procpool/detail/init_impl.hpp>
