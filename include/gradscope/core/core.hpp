#pragma once
/// The autodiff core: tensors, the tape, differentiable ops and gradient checking.

#include "custom_op.hpp"
#include "error.hpp"
#include "gradcheck.hpp"
#include "mode.hpp"
#include "nn_ops.hpp"
#include "ops.hpp"
#include "recurrent_ops.hpp"
#include "rng.hpp"
#include "runtime.hpp"
#include "sequence_ops.hpp"
#include "tape.hpp"
#include "tensor.hpp"
#include "types.hpp"

// Builds that compile <gradscope/instantiate.hpp> once skip these instantiations everywhere else.
#if defined(GRADSCOPE_EXTERN_TEMPLATES)
#include "../detail/instances.hpp"
GRADSCOPE_CORE_INSTANCES(extern template, float)
GRADSCOPE_CORE_INSTANCES(extern template, double)
#endif
