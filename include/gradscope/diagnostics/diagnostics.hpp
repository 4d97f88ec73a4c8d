#pragma once
/// Gradient diagnostics: the monitor, verdicts, the event log, reports and Nielsen's per-layer
/// norms.

#include "events.hpp"
#include "finding.hpp"
#include "history.hpp"
#include "monitor.hpp"
#include "nielsen.hpp"
#include "report.hpp"
#include "verdict.hpp"

// Builds that compile <gradscope/instantiate.hpp> once skip these instantiations everywhere else.
#if defined(GRADSCOPE_EXTERN_TEMPLATES)
#include "../detail/instances.hpp"
GRADSCOPE_DIAGNOSTICS_INSTANCES(extern template, float)
GRADSCOPE_DIAGNOSTICS_INSTANCES(extern template, double)
#endif
