#pragma once
/// Optimisers, clipping, regularisation and learning-rate schedules.

#include "adam.hpp"
#include "clip.hpp"
#include "optimizer.hpp"
#include "rmsprop.hpp"
#include "schedule.hpp"
#include "sgd.hpp"
