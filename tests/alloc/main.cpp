// The Catch2 main of test_alloc, in a file of its own so that it is compiled cheaply (see
// tests/CMakeLists.txt) while alloc.test.cpp, which replaces operator new, stays optimised.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
