#pragma once
/// Neural-network modules, initialisers and losses.

#include "init.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "module.hpp"
#include "recurrent.hpp"
#include "sequential.hpp"

// Builds that compile <gradscope/instantiate.hpp> once skip these instantiations everywhere else.
#if defined(GRADSCOPE_EXTERN_TEMPLATES)
#include "../detail/instances.hpp"
GRADSCOPE_NN_INSTANCES(extern template, float)
GRADSCOPE_NN_INSTANCES(extern template, double)
#endif
