// The one file of the program that compiles gradscope's heavy templates and functions.
#define GRADSCOPE_INSTANTIATE_IO
#define GRADSCOPE_INSTANTIATE_DATA
#include <gradscope/instantiate.hpp>
