// Explicit instantiations of gradscope's heavy templates for float and double.
//
// For faster builds of programs with many translation units: define GRADSCOPE_EXTERN_TEMPLATES
// for every translation unit (e.g. target_compile_definitions(app PRIVATE
// GRADSCOPE_EXTERN_TEMPLATES)), and include this header in exactly one source file of the
// program. The other files then reuse these instantiations instead of compiling their own
// (docs/benchmarks.md, "Compile time", has the measurements). The prebuilt library
// gradscope::compiled is this header compiled once for you (README, "Use it in your project").
// No include guard on purpose: it defines, it does not declare.
//
// It also compiles, once, the heavy non-template functions that GRADSCOPE_EXTERN_TEMPLATES turns
// into declarations elsewhere (detail/compiled.hpp): the core's (the kernels of the CPU paths),
// nn's, optim's, the diagnostics' and util's always, and those of the io
// and data headers when this file defines GRADSCOPE_INSTANTIATE_IO (needs nlohmann/json) or
// GRADSCOPE_INSTANTIATE_DATA (needs zlib) before including this header:
//
//     #define GRADSCOPE_INSTANTIATE_IO    // the program saves or loads checkpoints
//     #define GRADSCOPE_INSTANTIATE_DATA  // the program reads IDX files
//     #include <gradscope/instantiate.hpp>
//
// It must come before any other gradscope header in its file, and the file must be compiled with
// GRADSCOPE_EXTERN_TEMPLATES like the others (without it the functions above would be compiled
// inline here, emitted nowhere, and the other files' calls would fail to link); a program that
// links gradscope::compiled, which holds all of this already, must not have such a file. Each of
// these mistakes stops the compilation here with what to do.
#if defined(GRADSCOPE_COMPILED_LIBRARY)
#error \
    "this program links gradscope::compiled, which already holds what <gradscope/instantiate.hpp> compiles: remove this file from the program (or link gradscope::gradscope instead of gradscope::compiled)"
#endif
#if !defined(GRADSCOPE_EXTERN_TEMPLATES)
#error \
    "<gradscope/instantiate.hpp> compiles gradscope's templates once for the files built with GRADSCOPE_EXTERN_TEMPLATES: define it for every file of the program, this one included (CMake: target_compile_definitions(my_app PRIVATE GRADSCOPE_EXTERN_TEMPLATES)), or link gradscope::compiled and drop this file"
#endif
#if defined(GRADSCOPE_DETAIL_COMPILED_INCLUDED)
#error "include <gradscope/instantiate.hpp> before any other gradscope header of its file"
#endif
#define GRADSCOPE_DETAIL_INSTANCE_UNIT
#define GRADSCOPE_INSTANTIATE_CORE
#define GRADSCOPE_INSTANTIATE_NN
#define GRADSCOPE_INSTANTIATE_OPTIM
#define GRADSCOPE_INSTANTIATE_DIAGNOSTICS
#define GRADSCOPE_INSTANTIATE_UTIL
#include "gradscope.hpp"
#include "util/util.hpp"
#if defined(GRADSCOPE_INSTANTIATE_IO)
#include "io/io.hpp"
#endif
#if defined(GRADSCOPE_INSTANTIATE_DATA)
#include "data/data.hpp"
#endif

#include "detail/instances.hpp"

GRADSCOPE_CORE_INSTANCES(template, float)
GRADSCOPE_CORE_INSTANCES(template, double)
GRADSCOPE_NN_INSTANCES(template, float)
GRADSCOPE_NN_INSTANCES(template, double)
GRADSCOPE_OPTIM_INSTANCES(template, float)
GRADSCOPE_OPTIM_INSTANCES(template, double)
GRADSCOPE_DIAGNOSTICS_INSTANCES(template, float)
GRADSCOPE_DIAGNOSTICS_INSTANCES(template, double)
#if defined(GRADSCOPE_INSTANTIATE_IO)
GRADSCOPE_IO_INSTANCES(template, float)
GRADSCOPE_IO_INSTANCES(template, double)
#endif
#if defined(GRADSCOPE_INSTANTIATE_DATA)
GRADSCOPE_DATA_INSTANCES(template, float)
GRADSCOPE_DATA_INSTANCES(template, double)
#endif
