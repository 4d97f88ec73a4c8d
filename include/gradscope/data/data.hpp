#pragma once
/// Data: the IDX reader (needs zlib), datasets, the batch loader and synthetic digits.

#include "dataset.hpp"
#include "idx.hpp"
#include "loader.hpp"
#include "synthetic.hpp"

// Builds that compile <gradscope/instantiate.hpp> (with GRADSCOPE_INSTANTIATE_DATA) once skip
// these instantiations everywhere else.
#if defined(GRADSCOPE_EXTERN_TEMPLATES)
#include "../detail/instances.hpp"
GRADSCOPE_DATA_INSTANCES(extern template, float)
GRADSCOPE_DATA_INSTANCES(extern template, double)
#endif
