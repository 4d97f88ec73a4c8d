#pragma once
/// Checkpoints and the safetensors format. Needs nlohmann/json (header-only), so the main
/// umbrella gradscope.hpp does not include it: include <gradscope/io/io.hpp> to use it.

#include "checkpoint.hpp"
#include "safetensors.hpp"

// Builds with GRADSCOPE_EXTERN_TEMPLATES instantiate these once, where
// GRADSCOPE_INSTANTIATE_IO is defined (see <gradscope/instantiate.hpp>).
#if defined(GRADSCOPE_EXTERN_TEMPLATES)
#include "../detail/instances.hpp"
#if defined(GRADSCOPE_INSTANTIATE_IO)
GRADSCOPE_IO_INSTANCES(template, float)
GRADSCOPE_IO_INSTANCES(template, double)
#else
GRADSCOPE_IO_INSTANCES(extern template, float)
GRADSCOPE_IO_INSTANCES(extern template, double)
#endif
#endif
