// The compiled mode without CMake: the engine, compiled once, in one file of the program.
#include <procpool/src.hpp>
