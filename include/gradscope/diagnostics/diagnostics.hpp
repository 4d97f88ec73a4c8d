#pragma once
/// Gradient diagnostics: the monitor, verdicts, reports and Nielsen's per-layer norms.

#include "history.hpp"
#include "monitor.hpp"
#include "nielsen.hpp"
#include "report.hpp"
#include "verdict.hpp"
