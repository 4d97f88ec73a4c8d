#pragma once
/// Neural-network modules, initialisers and losses.

#include "init.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "module.hpp"
#include "sequential.hpp"
