#pragma once
/// Data: the IDX reader (needs zlib), datasets, the batch loader and synthetic digits.

#include "dataset.hpp"
#include "idx.hpp"
#include "loader.hpp"
#include "synthetic.hpp"

// Builds with GRADSCOPE_EXTERN_TEMPLATES instantiate these once, where
// GRADSCOPE_INSTANTIATE_DATA is defined (see <gradscope/instantiate.hpp>).
#if defined(GRADSCOPE_EXTERN_TEMPLATES)
#include "../detail/instances.hpp"
#if defined(GRADSCOPE_INSTANTIATE_DATA)
GRADSCOPE_DATA_INSTANCES(template, float)
GRADSCOPE_DATA_INSTANCES(template, double)
#else
GRADSCOPE_DATA_INSTANCES(extern template, float)
GRADSCOPE_DATA_INSTANCES(extern template, double)
#endif
#endif
