#pragma once
/// gradscope's optional distributed component: data-parallel training over MPI. Needs an MPI
/// implementation (CMake: the gradscope::dist target, or find_package(MPI) and MPI::MPI_CXX);
/// nothing else in gradscope includes it. docs/distributed.md is the guide.

#include "context.hpp"
#include "data_parallel.hpp"
#include "sampler.hpp"
