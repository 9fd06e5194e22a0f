// The suite's own main, so that later start methods can turn re-executed workers away from Catch.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

int main(int argc, char** argv) { return Catch::Session().run(argc, argv); }
