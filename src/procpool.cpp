// procpool::compiled: the engine, defined once instead of inline in every file using a pool.
#include <procpool/src.hpp>
