// Explicit instantiations of gradscope's heavy templates for float and double.
//
// For faster builds of programs with many translation units: define GRADSCOPE_EXTERN_TEMPLATES
// for every translation unit (e.g. target_compile_definitions(app PRIVATE
// GRADSCOPE_EXTERN_TEMPLATES)), and include this header in exactly one source file of the
// program. The other files then reuse these instantiations instead of compiling their own
// (docs/compile_time.md has the measurements). Without the macro, including this header is
// harmless but pointless. No include guard on purpose: it defines, it does not declare.
#include "gradscope.hpp"

#include "detail/instances.hpp"

GRADSCOPE_CORE_INSTANCES(template, float)
GRADSCOPE_CORE_INSTANCES(template, double)
GRADSCOPE_NN_INSTANCES(template, float)
GRADSCOPE_NN_INSTANCES(template, double)
GRADSCOPE_OPTIM_INSTANCES(template, float)
GRADSCOPE_OPTIM_INSTANCES(template, double)
GRADSCOPE_DIAGNOSTICS_INSTANCES(template, float)
GRADSCOPE_DIAGNOSTICS_INSTANCES(template, double)
