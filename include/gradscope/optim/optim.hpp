#pragma once
/// Optimisers, clipping, regularisation and learning-rate schedules.

#include "adam.hpp"
#include "clip.hpp"
#include "optimizer.hpp"
#include "rmsprop.hpp"
#include "schedule.hpp"
#include "sgd.hpp"

// Builds that compile <gradscope/instantiate.hpp> once skip these instantiations everywhere else.
#if defined(GRADSCOPE_EXTERN_TEMPLATES)
#include "../detail/instances.hpp"
GRADSCOPE_OPTIM_INSTANCES(extern template, float)
GRADSCOPE_OPTIM_INSTANCES(extern template, double)
#endif
