// Must not compile: the io headers in a program that links a gradscope::compiled built without
// nlohmann_json (GRADSCOPE_COMPILED_LIBRARY without GRADSCOPE_COMPILED_LIBRARY_IO).
#include <gradscope/io/io.hpp>
