#pragma once
/// Checkpoints and the safetensors format. Needs nlohmann/json (header-only), so the main
/// umbrella gradscope.hpp does not include it: include <gradscope/io/io.hpp> to use it.

#include "checkpoint.hpp"
#include "safetensors.hpp"
