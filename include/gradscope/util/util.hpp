#pragma once
/// gradscope's utilities for examples and tools: a command-line parser and a progress line.
/// Not part of the umbrella header <gradscope/gradscope.hpp>; they depend on the standard
/// library alone.

#include "cli.hpp"       // IWYU pragma: export
#include "progress.hpp"  // IWYU pragma: export
