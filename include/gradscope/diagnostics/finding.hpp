#pragma once
/// What a verdict says: its kind, the rule that fired, the sentence with the numbers, the layers
/// involved and the remedies. Shared by the verdicts of the latest window and the event log.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gradscope::diagnostics {

/// The kinds of verdict, most severe first.
/// The through-time kinds are about a recurrent layer's gradient over its time steps (its depth in
/// time), the others about the layers of the network (its depth).
enum class Verdict {
  exploding,
  exploding_through_time,
  vanishing,
  vanishing_through_time,
  dead_relu,
  saturated,
  update_ratio,
  healthy
};

inline const char* verdict_name(Verdict v) {
  constexpr const char* names[] = {
      "exploding", "exploding_through_time", "vanishing", "vanishing_through_time", "dead_relu",
      "saturated", "update_ratio",           "healthy"};
  return names[static_cast<int>(v)];
}

/// One verdict with its evidence.
struct Finding {
  Verdict verdict = Verdict::healthy;
  std::string summary;                                   ///< one sentence with the numbers
  std::vector<std::string> layers;                       ///< paths of the layers involved
  std::vector<std::pair<std::string, double>> evidence;  ///< named numbers behind it
  std::vector<std::string> hints;                        ///< remedies that match the cause
  /// The rule that fired, stable for programs: "non_finite", "nan_origin", "flow_ratio",
  /// "mean_abs", "divergence", "dead_relu", "saturated", "update_ratio", "time_reach" (the
  /// gradient through time of a recurrent layer). With the verdict it
  /// names an event of the run (EventLog merges occurrences of the same verdict and rule).
  std::string rule{};
};

/// Where the first non-finite value appeared: from anomaly mode (op, forward or backward, the
/// module's label) or from an optimiser or clip_grad_norm that refused a non-finite value (op
/// "Adam.step" or "clip_grad_norm", phase "update", label the parameter's name).
struct NanOrigin {
  std::int64_t step = 0;  ///< the step it belongs to, numbered as the monitor's records
  std::string op;         ///< e.g. "log", "Adam.step"
  std::string phase;      ///< "forward", "backward", "update", or "" when the error says nothing
  std::string label;      ///< the module, e.g. "2 (Log)", or for "update" the parameter, "2.weight"
  std::string message;    ///< the exception's what()
};

}  // namespace gradscope::diagnostics
