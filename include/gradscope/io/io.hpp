#pragma once
/// Checkpoints and the safetensors format. Needs nlohmann/json (header-only), so the main
/// umbrella gradscope.hpp does not include it: include <gradscope/io/io.hpp> to use it.

#include "checkpoint.hpp"
#include "safetensors.hpp"
#include "state_dict.hpp"

// Builds that compile <gradscope/instantiate.hpp> (with GRADSCOPE_INSTANTIATE_IO) once skip
// these instantiations everywhere else.
#if defined(GRADSCOPE_EXTERN_TEMPLATES)
#include "../detail/instances.hpp"
GRADSCOPE_IO_INSTANCES(extern template, float)
GRADSCOPE_IO_INSTANCES(extern template, double)
#endif
