#pragma once
// PROCPOOL_SEPARATE_COMPILATION: the engine's type-independent functions are compiled once, in
// src/procpool.cpp (CMake: procpool::compiled), and a program's files only declare them. Every
// file of a program must agree on it. PROCPOOL_DECL marks those functions: inline header-only.

#ifdef PROCPOOL_SEPARATE_COMPILATION
#define PROCPOOL_DECL
#else
#define PROCPOOL_DECL inline
#endif
