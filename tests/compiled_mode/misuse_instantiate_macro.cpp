// Must not compile: GRADSCOPE_INSTANTIATE_IO in a file that is not the instantiation file (as
// when it is defined for a whole target: every file would define the io functions).
#define GRADSCOPE_INSTANTIATE_IO
#include <gradscope/gradscope.hpp>
