#pragma once
// PROCPOOL_SEPARATE_COMPILATION: the engine's type-independent functions are compiled once, in
// src/procpool.cpp (CMake: procpool::compiled), and a program's files only declare them.
// PROCPOOL_DECL marks those functions (inline header-only). They live in an inline namespace
// named after the mode, so the two modes' definitions never share a symbol, and a compiled-mode
// program without the engine's file fails to link naming `compiled_mode`.

#ifdef PROCPOOL_SEPARATE_COMPILATION
#define PROCPOOL_DECL
#define PROCPOOL_SEPARATE_BEGIN inline namespace compiled_mode {
#else
#define PROCPOOL_DECL inline
#define PROCPOOL_SEPARATE_BEGIN inline namespace header_only {
#endif
#define PROCPOOL_SEPARATE_END }
