#pragma once
/// Data: the IDX reader (needs zlib), datasets, the batch loader and synthetic digits.

#include "dataset.hpp"
#include "idx.hpp"
#include "loader.hpp"
#include "synthetic.hpp"
