#pragma once
/// Verdicts on a gradient history: vanishing, exploding, dead ReLUs, saturation, update ratios,
/// each with the numbers that triggered it, the layers involved and remedies that fit the cause.

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "../detail/compiled.hpp"
#include "history.hpp"

namespace gradscope::diagnostics {

/// Thresholds of the verdicts (sources in docs/diagnostics.md).
struct Thresholds {
  double vanishing_ratio = 1e-2;     ///< first/last layer flow-norm ratio below this: vanishing
  double vanishing_mean_abs = 1e-7;  ///< a layer's mean |dW| below this: vanishing (SageMaker)
  double exploding_ratio = 1e2;      ///< first/last ratio above this: exploding toward the input
  double exploding_norm = 1e3;       ///< pre-clip total norm above this: exploding
  double growth_factor = 1e2;        ///< total norm growing by this factor within the window
  double dead_fraction = 0.5;        ///< over half the ReLU units dead (SageMaker)
  double saturated_fraction = 0.5;   ///< over half the sigmoid/tanh units saturated
  double update_ratio_low = 1e-5;    ///< CS231n: about 1e-3 is healthy
  double update_ratio_high = 1e-1;
  int window = 10;  ///< recorded steps whose medians the verdicts use
};

/// The kinds of verdict, most severe first.
enum class Verdict { exploding, vanishing, dead_relu, saturated, update_ratio, healthy };

inline const char* verdict_name(Verdict v) {
  constexpr const char* names[] = {"exploding", "vanishing",    "dead_relu",
                                   "saturated", "update_ratio", "healthy"};
  return names[static_cast<int>(v)];
}

/// One verdict with its evidence.
struct Finding {
  Verdict verdict = Verdict::healthy;
  std::string summary;                                   ///< one sentence with the numbers
  std::vector<std::string> layers;                       ///< paths of the layers involved
  std::vector<std::pair<std::string, double>> evidence;  ///< named numbers behind it
  std::vector<std::string> hints;                        ///< remedies that match the cause
};

/// Where the first non-finite value appeared (from anomaly mode).
struct NanOrigin {
  std::int64_t step = 0;
  std::string op;     ///< e.g. "log"
  std::string phase;  ///< "forward" or "backward"
  std::string label;  ///< the module, e.g. "2 (Log)"
  std::string message;
};

/// Every finding about a history; healthy when there is none.
struct Diagnosis {
  std::vector<Finding> findings;
  std::int64_t step = 0;  ///< the last recorded step the diagnosis looked at
  /// The most severe verdict, or healthy.
  Verdict verdict() const {
    Verdict v = Verdict::healthy;
    for (const auto& f : findings) v = std::min(v, f.verdict);
    return v;
  }
  bool healthy() const { return findings.empty(); }
  bool has(Verdict v) const {
    return std::any_of(findings.begin(), findings.end(),
                       [v](const Finding& f) { return f.verdict == v; });
  }
  const Finding* find(Verdict v) const {
    for (const auto& f : findings)
      if (f.verdict == v) return &f;
    return nullptr;
  }
  /// "healthy" or the findings, one paragraph each, with hints.
  std::string str() const {
    std::ostringstream os;
    if (findings.empty()) {
      os << "verdict: healthy (step " << step << ")\n";
      return os.str();
    }
    os << "verdict: " << verdict_name(verdict()) << " (step " << step << ")\n";
    for (const auto& f : findings) {
      os << "  [" << verdict_name(f.verdict) << "] " << f.summary << '\n';
      for (const auto& h : f.hints) os << "      hint: " << h << '\n';
    }
    return os.str();
  }
};

namespace detail {
inline double median(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  if (v.empty()) return not_measured;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}
inline std::string num(double v) {
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}
}  // namespace detail

/// Diagnoses the last `t.window` records of a history.
GRADSCOPE_COMPILED_API Diagnosis diagnose(const std::vector<LayerInfo>& layers,
                                          const History& history, const Thresholds& t = {},
                                          const std::optional<NanOrigin>& nan_origin = std::nullopt)
#if GRADSCOPE_DIAGNOSTICS_DECLARE_ONLY
    ;
#else
{
  Diagnosis d;
  const auto& recs = history.records();
  if (nan_origin) {
    Finding f;
    f.verdict = Verdict::exploding;
    f.summary = "non-finite value first produced in " + nan_origin->phase + " of '" +
                nan_origin->op + "'" +
                (nan_origin->label.empty() ? "" : " at '" + nan_origin->label + "'") + " (step " +
                std::to_string(nan_origin->step) + ")";
    f.layers.push_back(nan_origin->label);
    f.hints = {
        "check the op's domain at that module (log or sqrt of a non-positive value, "
        "division by zero, exp overflow)",
        "lower the learning rate or clip gradients (clip_grad_norm) if values grew first"};
    d.findings.push_back(f);
  }
  if (recs.empty()) return d;
  d.step = recs.back().step;
  const std::size_t n =
      std::min<std::size_t>(recs.size(), static_cast<std::size_t>(std::max(1, t.window)));
  const std::size_t first_rec = recs.size() - n;
  const std::size_t L = layers.size();
  auto layer_median = [&](std::size_t l, auto get) {
    std::vector<double> v;
    for (std::size_t r = first_rec; r < recs.size(); ++r)
      if (l < recs[r].layers.size()) v.push_back(get(recs[r].layers[l]));
    return detail::median(v);
  };

  // Non-finite values in the recorded numbers.
  {
    std::int64_t nans = 0, infs = 0;
    std::vector<std::string> where;
    const auto& last = recs.back();
    for (std::size_t l = 0; l < L && l < last.layers.size(); ++l) {
      if (last.layers[l].nan_count + last.layers[l].inf_count > 0) where.push_back(layers[l].path);
      nans += last.layers[l].nan_count;
      infs += last.layers[l].inf_count;
    }
    if ((nans + infs > 0 || !std::isfinite(last.total_norm)) && !nan_origin) {
      Finding f;
      f.verdict = Verdict::exploding;
      f.summary = std::to_string(nans) + " NaN and " + std::to_string(infs) +
                  " Inf values in gradients or activations at step " + std::to_string(last.step) +
                  (where.empty() ? "" : ", first in layer " + where.front());
      f.layers = where;
      f.evidence = {{"nan", static_cast<double>(nans)},
                    {"inf", static_cast<double>(infs)},
                    {"total_norm", last.total_norm}};
      f.hints = {"enable detect_nan_origin to name the op and module that made the first NaN",
                 "clip gradients by global norm (clip_grad_norm(params, 1.0))",
                 "lower the learning rate"};
      d.findings.push_back(f);
    }
  }

  // Flow: first and last dense layers.
  std::vector<std::size_t> flow;
  for (std::size_t l = 0; l < L; ++l)
    if (layers[l].in_flow) flow.push_back(l);
  if (flow.size() >= 2) {
    const std::size_t a = flow.front(), b = flow.back();
    const double first = layer_median(a, [](const LayerStats& s) { return s.flow_norm(); });
    const double last = layer_median(b, [](const LayerStats& s) { return s.flow_norm(); });
    const double ratio = first / last;
    const double gain = std::pow(ratio, 1.0 / static_cast<double>(flow.size() - 1));
    bool sigmoid_like = false;
    for (auto l : flow)
      sigmoid_like =
          sigmoid_like || layers[l].activation == "Sigmoid" || layers[l].activation == "Tanh";
    if (std::isfinite(ratio) && ratio < t.vanishing_ratio) {
      Finding f;
      f.verdict = Verdict::vanishing;
      f.summary = "gradients shrink toward the input: the first layer (" + layers[a].path +
                  ") gets " + detail::num(ratio) + " times the gradient of the last (" +
                  layers[b].path + "), a gain of " + detail::num(gain) + " per layer over " +
                  std::to_string(flow.size()) + " dense layers";
      f.layers = {layers[a].path, layers[b].path};
      f.evidence = {{"first_norm", first}, {"last_norm", last}, {"ratio", ratio}, {"gain", gain}};
      if (sigmoid_like)
        f.hints.push_back(
            "sigmoid's derivative is at most 1/4 (tanh's at most 1), so each layer "
            "multiplies the gradient by at most |w|/4: use ReLU, LeakyReLU or ELU "
            "with He initialisation");
      else
        f.hints.push_back("use variance-preserving initialisation (He for ReLU, Xavier for tanh)");
      f.hints.push_back("add batch normalisation after the dense layers");
      f.hints.push_back(
          "for deep stacks, use residual blocks (pre-activation) so the identity "
          "path carries the gradient undecayed");
      d.findings.push_back(f);
    } else if (std::isfinite(ratio) && ratio > t.exploding_ratio) {
      Finding f;
      f.verdict = Verdict::exploding;
      f.summary = "gradients grow toward the input: the first layer (" + layers[a].path +
                  ") gets " + detail::num(ratio) + " times the gradient of the last (" +
                  layers[b].path + "), a gain of " + detail::num(gain) + " per layer";
      f.layers = {layers[a].path, layers[b].path};
      f.evidence = {{"first_norm", first}, {"last_norm", last}, {"ratio", ratio}, {"gain", gain}};
      f.hints = {"the weights are too large for the depth: use Xavier or He initialisation",
                 "clip gradients by global norm (clip_grad_norm(params, 1.0))",
                 "add batch normalisation", "add L2 weight decay or lower the learning rate"};
      d.findings.push_back(f);
    }
    // Vanishing by magnitude: any layer's mean |dW| below the floor.
    for (auto l : flow) {
      const double m = layer_median(l, [](const LayerStats& s) { return s.grad_mean_abs; });
      if (std::isfinite(m) && m < t.vanishing_mean_abs && !d.has(Verdict::vanishing)) {
        Finding f;
        f.verdict = Verdict::vanishing;
        f.summary = "layer " + layers[l].path + " has a mean |dL/dW| of " + detail::num(m) +
                    ", below " + detail::num(t.vanishing_mean_abs) + ": it has stopped learning";
        f.layers = {layers[l].path};
        f.evidence = {{"grad_mean_abs", m}};
        f.hints = {"use ReLU-family activations with He initialisation",
                   "add batch normalisation or residual connections"};
        d.findings.push_back(f);
      }
    }
  }

  // Exploding by size or growth of the total norm.
  {
    std::vector<double> totals;
    for (std::size_t r = first_rec; r < recs.size(); ++r) totals.push_back(recs[r].total_norm);
    const double med = detail::median(totals);
    double lo = std::numeric_limits<double>::infinity(), growth = 1;
    for (double v : totals) {
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, v);
      if (lo > 0) growth = std::max(growth, v / lo);
    }
    if (std::isfinite(med) && (med > t.exploding_norm || growth > t.growth_factor) &&
        !d.has(Verdict::exploding)) {
      Finding f;
      f.verdict = Verdict::exploding;
      f.summary = med > t.exploding_norm
                      ? "the total gradient norm is " + detail::num(med) + ", above " +
                            detail::num(t.exploding_norm)
                      : "the total gradient norm grew " + detail::num(growth) + "x within " +
                            std::to_string(totals.size()) + " recorded steps";
      f.evidence = {{"total_norm", med}, {"growth", growth}};
      f.hints = {"clip gradients by global norm (clip_grad_norm(params, 1.0))",
                 "lower the learning rate", "add L2 weight decay",
                 "use Xavier or He initialisation instead of large weights"};
      d.findings.push_back(f);
    }
  }

  // Dead ReLUs and saturated sigmoid/tanh units.
  for (std::size_t l = 0; l < L; ++l) {
    const double dead = layer_median(l, [](const LayerStats& s) { return s.dead_fraction; });
    if (std::isfinite(dead) && dead > t.dead_fraction) {
      Finding f;
      f.verdict = Verdict::dead_relu;
      f.summary = detail::num(100 * dead) + "% of the ReLU units after layer " + layers[l].path +
                  " output zero for the whole batch";
      f.layers = {layers[l].path};
      f.evidence = {{"dead_fraction", dead}};
      f.hints = {"use LeakyReLU or ELU, which keep a gradient for negative inputs",
                 "lower the learning rate (large updates push units into the dead region)",
                 "use He initialisation"};
      d.findings.push_back(f);
    }
    const double sat = layer_median(l, [](const LayerStats& s) { return s.saturated_fraction; });
    if (std::isfinite(sat) && sat > t.saturated_fraction) {
      Finding f;
      f.verdict = Verdict::saturated;
      f.summary = detail::num(100 * sat) + "% of the " + layers[l].activation +
                  " units after layer " + layers[l].path +
                  " are saturated (derivative below 1% of its maximum)";
      f.layers = {layers[l].path};
      f.evidence = {{"saturated_fraction", sat}};
      f.hints = {"use ReLU-family activations with He initialisation",
                 "use Xavier initialisation to keep pre-activations small",
                 "add batch normalisation before the activation"};
      d.findings.push_back(f);
    }
  }

  // Update-to-weight ratios.
  {
    Finding f;
    f.verdict = Verdict::update_ratio;
    double worst = 0;
    bool low = false, high = false;
    for (auto l : flow) {
      const double u = layer_median(l, [](const LayerStats& s) { return s.update_ratio; });
      if (!std::isfinite(u)) continue;
      if (u < t.update_ratio_low || u > t.update_ratio_high) {
        f.layers.push_back(layers[l].path);
        f.evidence.emplace_back("update_ratio[" + layers[l].path + "]", u);
        low = low || u < t.update_ratio_low;
        high = high || u > t.update_ratio_high;
        worst = u;
      }
    }
    if (!f.layers.empty()) {
      f.summary = "update-to-weight ratio " + detail::num(worst) + " in layer " + f.layers.back() +
                  " (and " + std::to_string(f.layers.size() - 1) + " more) is outside [" +
                  detail::num(t.update_ratio_low) + ", " + detail::num(t.update_ratio_high) +
                  "]; about 1e-3 is healthy";
      if (high) f.hints.push_back("updates are too large: lower the learning rate or clip");
      if (low)
        f.hints.push_back(
            "updates are too small: raise the learning rate, or check for "
            "vanishing gradients in those layers");
      d.findings.push_back(f);
    }
  }
  std::stable_sort(d.findings.begin(), d.findings.end(),
                   [](const Finding& a, const Finding& b) { return a.verdict < b.verdict; });
  return d;
}
#endif

}  // namespace gradscope::diagnostics
