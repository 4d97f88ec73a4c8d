// Must not compile: the instantiation file of a program built without GRADSCOPE_EXTERN_TEMPLATES
// (its functions would be compiled inline, emitted nowhere, and the program would not link).
#include <gradscope/instantiate.hpp>
