#pragma once

/// Umbrella header: every gradscope component that needs nothing but Eigen.
#include "version.hpp"

#include "core/core.hpp"
#include "diagnostics/diagnostics.hpp"
#include "nn/nn.hpp"
#include "optim/optim.hpp"
#include "pretrain/pretrain.hpp"
