#pragma once

// Included first by every public header, so that a build without C++20 stops at one clear error
// instead of a thousand lines from the headers that follow.
#if __cplusplus < 201709L
#error \
    "procpool needs C++20: compile with -std=c++20 (CMake: link procpool::procpool, which asks for it)"
// A missing header is a fatal error, unlike #error: the compiler stops here.
#include <procpool-needs-cxx20>
#endif
