// Must not compile: an instantiation file in a program that links gradscope::compiled
// (GRADSCOPE_COMPILED_LIBRARY), which holds the same functions (they would be defined twice).
#include <gradscope/instantiate.hpp>
