#pragma once
/// Verdicts on a gradient history: vanishing, exploding, dead ReLUs, saturation, update ratios,
/// each with the numbers that triggered it, the layers involved and remedies that fit the cause.

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "../detail/compiled.hpp"
#include "events.hpp"
#include "finding.hpp"
#include "history.hpp"
#include "time.hpp"

namespace gradscope::diagnostics {

/// Thresholds of the verdicts (sources in docs/diagnostics.md).
struct Thresholds {
  double vanishing_ratio = 1e-2;     ///< first/last layer flow-norm ratio below this: vanishing
  double vanishing_mean_abs = 1e-7;  ///< a layer's mean |dW| below this: vanishing (SageMaker)
  double exploding_ratio = 1e2;      ///< first/last ratio above this: exploding toward the input
  double exploding_norm = 1e3;       ///< median pre-clip total norm above this: exploding
  /// The median total norm, or the median loss, of the window over that of the window before
  /// it (early in the run: over the first record) above this: exploding.
  double growth_factor = 1e2;
  /// The median loss of the window over the first recorded loss above this: diverged
  /// (exploding). Used when both are positive.
  double loss_divergence = 1e1;
  double dead_fraction = 0.5;       ///< over half the ReLU units dead (SageMaker)
  double saturated_fraction = 0.5;  ///< over half the sigmoid/tanh units saturated
  double update_ratio_low = 1e-5;   ///< CS231n: about 1e-3 is healthy
  double update_ratio_high = 1e-1;
  int window = 10;  ///< recorded steps whose medians the verdicts use
  /// A recurrent layer whose last step's gradient reaches its first step at below this part
  /// (median over the window's time profiles): vanishing through time.
  double time_vanishing_reach = 1e-3;
  /// ... at above this many times its size: exploding through time.
  double time_exploding_reach = 1e3;
};

/// The verdicts on the latest window, and the events of the run that led there.
struct Diagnosis {
  std::vector<Finding> findings;  ///< the latest window's verdicts, most severe first
  /// What happened during the run (the monitor's event log), oldest first: explosions,
  /// divergences and non-finite steps, kept after they passed. Empty from a bare diagnose().
  std::vector<Event> events;
  std::string events_note;  ///< says how many events a full log could not keep, or ""
  std::int64_t step = 0;    ///< the last recorded step the diagnosis looked at

  /// The most severe verdict of the latest window, or healthy.
  Verdict verdict() const {
    Verdict v = Verdict::healthy;
    for (const auto& f : findings) v = std::min(v, f.verdict);
    return v;
  }
  /// Whether the latest window has no finding (events of the past aside).
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
  /// Whether an event of verdict `v` happened during the run (over or ongoing).
  bool happened(Verdict v) const {
    return std::any_of(events.begin(), events.end(),
                       [v](const Event& e) { return e.verdict() == v; });
  }
  /// Whether event `e` still holds: it fired at the latest recorded step (or after it).
  bool ongoing(const Event& e) const { return e.last_step >= step; }
  /// The events that are over, briefly: "exploding (steps 1-17), exploding (step 40)"; at most
  /// `max_items`, then "and N more"; "" when none.
  std::string earlier(std::size_t max_items = 4) const {
    std::string out;
    std::size_t items = 0, more = 0;
    for (const auto& e : events) {
      if (ongoing(e)) continue;
      std::string item = verdict_name(e.verdict());
      item += " (";
      item += e.steps();
      item += ")";
      if (out.find(item) != std::string::npos) continue;
      if (items == max_items) {
        ++more;
        continue;
      }
      out += (items++ ? ", " : "") + item;
    }
    if (more) out += " and " + std::to_string(more) + " more";
    return out;
  }
  /// The verdict line ("verdict: vanishing (step 59); earlier in the run: exploding (steps
  /// 1-17)"), each finding with its hints, then the events of the run.
  std::string str() const {
    std::ostringstream os;
    os << "verdict: " << verdict_name(verdict()) << " (step " << step << ")";
    if (const auto e = earlier(); !e.empty()) os << "; earlier in the run: " << e;
    os << '\n';
    for (const auto& f : findings) {
      os << "  [" << verdict_name(f.verdict) << "] " << f.summary << '\n';
      for (const auto& h : f.hints) os << "      hint: " << h << '\n';
    }
    if (!events.empty()) {
      os << "events during the run (" << events.size() << "):\n";
      for (const auto& e : events) {
        const bool shown =
            ongoing(e) && std::any_of(findings.begin(), findings.end(), [&](const Finding& f) {
              return f.verdict == e.verdict() && f.rule == e.rule();
            });
        if (shown) {  // its finding is above: only the steps
          os << "  [" << verdict_name(e.verdict()) << "] " << e.steps() << " (ongoing, above)\n";
          continue;
        }
        os << "  " << e.str() << (ongoing(e) ? " (ongoing)" : "") << '\n';
        if (!ongoing(e))
          for (const auto& h : e.finding.hints) os << "      hint: " << h << '\n';
      }
    }
    if (!events_note.empty()) os << "  " << events_note << '\n';
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
  if (std::isnan(v)) return "nan";  // not "-nan" for the sign-bit NaN of 0/0
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}
/// The number an event log orders occurrences of a finding by: its headline number over the
/// threshold it crossed (or the count of non-finite values), so larger is worse.
inline double severity(const Finding& f, const Thresholds& t) {
  auto get = [&](const char* name) {
    for (const auto& [k, v] : f.evidence)
      if (k == name) return v;
    return not_measured;
  };
  auto over = [](double v, double threshold) {
    return std::isfinite(v) && threshold > 0 ? v / threshold : 0.0;
  };
  auto count = [&](const char* name) {
    const double v = get(name);
    return std::isfinite(v) ? v : 0.0;  // not measured: 0
  };
  if (f.rule == "non_finite") return count("nan") + count("inf") + 1;
  if (f.rule == "flow_ratio")
    return f.verdict == Verdict::exploding ? over(get("ratio"), t.exploding_ratio)
                                           : over(t.vanishing_ratio, get("ratio"));
  if (f.rule == "divergence")
    return std::max(
        {over(get("total_norm"), t.exploding_norm), over(get("growth"), t.growth_factor),
         over(get("loss_ratio"), t.loss_divergence), over(get("loss_growth"), t.growth_factor)});
  if (f.rule == "time_reach")
    return f.verdict == Verdict::exploding_through_time
               ? over(get("reach"), t.time_exploding_reach)
               : over(t.time_vanishing_reach, get("reach"));
  return 1;
}
}  // namespace detail

/// The findings of the last `t.window` records of a history. `events_only`: only the rules
/// whose findings are events of the run (the exploding ones), which a monitor checks at every
/// recorded step.
GRADSCOPE_COMPILED_API std::vector<Finding> window_findings(const std::vector<LayerInfo>& layers,
                                                            const History& history,
                                                            const Thresholds& t = {},
                                                            bool events_only = false)
#if GRADSCOPE_DIAGNOSTICS_DECLARE_ONLY
    ;
#else
{
  std::vector<Finding> out;
  const auto& recs = history.records();
  if (recs.empty()) return out;
  const std::size_t n =
      std::min<std::size_t>(recs.size(), static_cast<std::size_t>(std::max(1, t.window)));
  const std::size_t first_rec = recs.size() - n;
  const std::size_t L = layers.size();
  auto median_of = [&](std::size_t from, std::size_t to, auto get) {
    std::vector<double> v;
    v.reserve(to - from);
    for (std::size_t r = from; r < to; ++r) v.push_back(get(recs[r]));
    return detail::median(std::move(v));
  };
  auto layer_median = [&](std::size_t l, auto get) {
    return median_of(first_rec, recs.size(), [&](const StepRecord& r) {
      return l < r.layers.size() ? get(r.layers[l]) : not_measured;
    });
  };

  // Non-finite values in the latest record: gradients, activations, the total norm, the loss.
  {
    std::int64_t nans = 0, infs = 0;
    std::vector<std::string> where;
    const auto& last = recs.back();
    for (std::size_t l = 0; l < L && l < last.layers.size(); ++l) {
      if (last.layers[l].nan_count + last.layers[l].inf_count > 0) where.push_back(layers[l].path);
      nans += last.layers[l].nan_count;
      infs += last.layers[l].inf_count;
    }
    const bool bad_total = measured(last.total_norm) && !std::isfinite(last.total_norm);
    const bool bad_loss = measured(last.loss) && !std::isfinite(last.loss);
    if (nans + infs > 0 || bad_total || bad_loss) {
      Finding f;
      f.verdict = Verdict::exploding;
      f.rule = "non_finite";
      f.summary = std::to_string(nans) + " NaN and " + std::to_string(infs) +
                  " Inf values in gradients or activations at step " + std::to_string(last.step) +
                  (where.empty() ? "" : ", first in layer " + where.front()) +
                  (bad_loss ? "; the loss is " + detail::num(last.loss) : "");
      f.layers = where;
      f.evidence = {{"nan", static_cast<double>(nans)},
                    {"inf", static_cast<double>(infs)},
                    {"total_norm", last.total_norm},
                    {"loss", last.loss}};
      f.hints = {"enable detect_nan_origin to name the op and module that made the first NaN",
                 "clip gradients by global norm (clip_grad_norm(params, 1.0))",
                 "lower the learning rate"};
      out.push_back(f);
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
    if (std::isfinite(ratio) && ratio < t.vanishing_ratio && !events_only) {
      Finding f;
      f.verdict = Verdict::vanishing;
      f.rule = "flow_ratio";
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
      out.push_back(f);
    } else if (std::isfinite(ratio) && ratio > t.exploding_ratio) {
      Finding f;
      f.verdict = Verdict::exploding;
      f.rule = "flow_ratio";
      f.summary = "gradients grow toward the input: the first layer (" + layers[a].path +
                  ") gets " + detail::num(ratio) + " times the gradient of the last (" +
                  layers[b].path + "), a gain of " + detail::num(gain) + " per layer";
      f.layers = {layers[a].path, layers[b].path};
      f.evidence = {{"first_norm", first}, {"last_norm", last}, {"ratio", ratio}, {"gain", gain}};
      f.hints = {"the weights are too large for the depth: use Xavier or He initialisation",
                 "clip gradients by global norm (clip_grad_norm(params, 1.0))",
                 "add batch normalisation", "add L2 weight decay or lower the learning rate"};
      out.push_back(f);
    }
    // Vanishing by magnitude: any layer's mean |dW| below the floor.
    for (auto l : flow) {
      if (events_only) break;
      const double m = layer_median(l, [](const LayerStats& s) { return s.grad_mean_abs; });
      const bool vanishing = std::any_of(
          out.begin(), out.end(), [](const Finding& f) { return f.verdict == Verdict::vanishing; });
      if (std::isfinite(m) && m < t.vanishing_mean_abs && !vanishing) {
        Finding f;
        f.verdict = Verdict::vanishing;
        f.rule = "mean_abs";
        f.summary = "layer " + layers[l].path + " has a mean |dL/dW| of " + detail::num(m) +
                    ", below " + detail::num(t.vanishing_mean_abs) + ": it has stopped learning";
        f.layers = {layers[l].path};
        f.evidence = {{"grad_mean_abs", m}};
        f.hints = {"use ReLU-family activations with He initialisation",
                   "add batch normalisation or residual connections"};
        out.push_back(f);
      }
    }
  }

  // Divergence: the size or the growth of the total gradient norm, the loss far above where it
  // started, or the loss growing. Medians over windows of records, so that the noise of small
  // batches (a batch of easy samples has a tiny gradient, the next a large one) does not count as
  // growth: a median moves only when most of its window does. Growth compares the window's
  // median with the median of the window before it; early in the run, when there is none, with
  // the first record. A norm that grows while the loss falls is a network leaving a plateau, not
  // an explosion.
  {
    std::size_t c0 = first_rec, r0 = first_rec >= n ? first_rec - n : 0, r1 = first_rec;
    if (r1 == 0 && recs.size() >= 2) c0 = r1 = 1;
    const auto total = [](const StepRecord& r) { return r.total_norm; };
    const auto loss = [](const StepRecord& r) { return r.loss; };
    const double norm_w = median_of(first_rec, recs.size(), total);
    double norm_growth = not_measured, loss_growth = not_measured, loss_ratio = not_measured;
    double norm_c = not_measured, norm_r = not_measured, loss_c = not_measured,
           loss_r = not_measured;
    if (r1 > r0) {
      norm_c = median_of(c0, recs.size(), total);
      norm_r = median_of(r0, r1, total);
      loss_c = median_of(c0, recs.size(), loss);
      loss_r = median_of(r0, r1, loss);
      if (norm_r > 0 && std::isfinite(norm_r) && norm_c >= 0) norm_growth = norm_c / norm_r;
      if (loss_r > 0 && std::isfinite(loss_r) && loss_c >= 0) loss_growth = loss_c / loss_r;
    }
    const double loss_w = median_of(first_rec, recs.size(), loss);
    double start = not_measured;
    std::int64_t start_step = 0;
    for (const auto& r : recs)
      if (measured(r.loss) && std::isfinite(r.loss)) {
        start = r.loss;
        start_step = r.step;
        break;
      }
    if (start > 0 && loss_w >= 0) loss_ratio = loss_w / start;
    const bool loss_falling = loss_c < loss_r;  // false when either is not measured
    const bool big = norm_w > t.exploding_norm;
    const bool norm_grew = norm_growth > t.growth_factor && !loss_falling;
    const bool diverged = loss_ratio > t.loss_divergence;
    const bool loss_grew = loss_growth > t.growth_factor;
    if (big || norm_grew || diverged || loss_grew) {
      const std::string window = std::to_string(recs.size() - first_rec);
      const std::string before =
          c0 == 1 && r1 == 1 ? " at step " + std::to_string(recs.front().step)
                             : " over the " + std::to_string(r1 - r0) + " recorded steps before";
      std::vector<std::string> parts;
      if (diverged)
        parts.push_back("the loss is " + detail::num(loss_w) + " (median of the last " + window +
                        " recorded steps), " + detail::num(loss_ratio) +
                        " times its first recorded value (" + detail::num(start) + " at step " +
                        std::to_string(start_step) + "): training has diverged");
      else if (loss_grew)
        parts.push_back("the loss grew " + detail::num(loss_growth) + "x (median " +
                        detail::num(loss_c) + " against " + detail::num(loss_r) + before + ")");
      if (big)
        parts.push_back("the total gradient norm is " + detail::num(norm_w) + " (median of the " +
                        "last " + window + " recorded steps), above " +
                        detail::num(t.exploding_norm));
      else if (norm_grew)
        parts.push_back("the total gradient norm grew " + detail::num(norm_growth) + "x (median " +
                        detail::num(norm_c) + " against " + detail::num(norm_r) + before + ")");
      Finding f;
      f.verdict = Verdict::exploding;
      f.rule = "divergence";
      for (std::size_t k = 0; k < parts.size(); ++k) f.summary += (k ? "; " : "") + parts[k];
      f.evidence = {{"total_norm", norm_w},     {"growth", norm_growth},
                    {"loss", loss_w},           {"start_loss", start},
                    {"loss_ratio", loss_ratio}, {"loss_growth", loss_growth}};
      f.hints = {
          "lower the learning rate (or warm it up with a schedule): steps that overshoot "
          "make the loss and the gradients grow",
          "clip gradients by global norm (clip_grad_norm(params, 1.0))"};
      if (big || norm_grew) {
        f.hints.push_back("add L2 weight decay");
        f.hints.push_back("use Xavier or He initialisation instead of large weights");
      }
      out.push_back(f);
    }
  }
  if (events_only) return out;

  // Dead ReLUs and saturated sigmoid/tanh units.
  for (std::size_t l = 0; l < L; ++l) {
    const double dead = layer_median(l, [](const LayerStats& s) { return s.dead_fraction; });
    if (std::isfinite(dead) && dead > t.dead_fraction) {
      Finding f;
      f.verdict = Verdict::dead_relu;
      f.rule = "dead_relu";
      f.summary = detail::num(100 * dead) + "% of the ReLU units after layer " + layers[l].path +
                  " output zero for the whole batch";
      f.layers = {layers[l].path};
      f.evidence = {{"dead_fraction", dead}};
      f.hints = {"use LeakyReLU or ELU, which keep a gradient for negative inputs",
                 "lower the learning rate (large updates push units into the dead region)",
                 "use He initialisation"};
      out.push_back(f);
    }
    const double sat = layer_median(l, [](const LayerStats& s) { return s.saturated_fraction; });
    if (std::isfinite(sat) && sat > t.saturated_fraction) {
      Finding f;
      f.verdict = Verdict::saturated;
      f.rule = "saturated";
      f.summary = detail::num(100 * sat) + "% of the " + layers[l].activation +
                  " units after layer " + layers[l].path +
                  " are saturated (derivative below 1% of its maximum)";
      f.layers = {layers[l].path};
      f.evidence = {{"saturated_fraction", sat}};
      f.hints = {"use ReLU-family activations with He initialisation",
                 "use Xavier initialisation to keep pre-activations small",
                 "add batch normalisation before the activation"};
      out.push_back(f);
    }
  }

  // Update-to-weight ratios.
  {
    Finding f;
    f.verdict = Verdict::update_ratio;
    f.rule = "update_ratio";
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
      out.push_back(f);
    }
  }
  return out;
}
#endif

/// The finding for a non-finite value whose origin anomaly mode or an optimiser named: where it
/// appeared (the op and module, or the optimiser and the parameter with its layer), how the loss
/// and the norms grew in the recorded steps before it, and hints that fit that cause.
GRADSCOPE_COMPILED_API Finding origin_finding(const NanOrigin& o,
                                              const std::vector<LayerInfo>& layers,
                                              const History& history)
#if GRADSCOPE_DIAGNOSTICS_DECLARE_ONLY
    ;
#else
{
  Finding f;
  f.verdict = Verdict::exploding;
  f.rule = "nan_origin";
  // The message without its "[gradscope.numerical] " id, and without a leading "<op>: ".
  std::string what = o.message;
  if (const auto p = what.find("] "); what.rfind("[gradscope.", 0) == 0 && p != std::string::npos)
    what = what.substr(p + 2);
  if (!o.op.empty() && what.rfind(o.op + ": ", 0) == 0) what = what.substr(o.op.size() + 2);
  const std::string step = std::to_string(o.step);
  std::size_t layer = layers.size();  // the layer of a parameter named by an optimiser
  if (o.phase == "update") {
    const auto dot = o.label.rfind('.');
    const std::string path = dot == std::string::npos ? "(root)" : o.label.substr(0, dot);
    for (std::size_t l = 0; l < layers.size(); ++l)
      if (layers[l].path == path) layer = l;
    const std::string who = o.op.empty() ? std::string("the optimiser") : o.op;
    f.summary =
        who + " refused the update of step " + step +
        (o.label.empty() ? std::string() : " at parameter '" + o.label + "'") +
        (layer < layers.size() ? " (layer " + layers[layer].path + ", " + layers[layer].kind + ")"
                               : std::string()) +
        ": " + what;
    f.layers.push_back(layer < layers.size() ? layers[layer].path : o.label);
  } else if (!o.op.empty()) {
    f.summary = "non-finite value first produced " +
                (o.phase.empty() ? std::string("by") : "in " + o.phase + " of") + " '" + o.op +
                "'" + (o.label.empty() ? "" : " at '" + o.label + "'") + " (step " + step + ")";
    f.layers.push_back(o.label);
  } else {
    f.summary = "non-finite value reported at step " + step + ": " + what;
  }

  // How the loss and the norms moved before it: from their lowest recorded value to the last
  // finite one at or before the step.
  struct Move {
    double low = std::numeric_limits<double>::infinity(), last = not_measured;
    std::int64_t low_step = 0, last_step = 0;
    void see(double v, std::int64_t s) {
      if (!measured(v) || !std::isfinite(v)) return;
      if (v < low) low = v, low_step = s;
      last = v, last_step = s;
    }
    bool known() const { return measured(last) && low > 0; }
    double growth() const { return known() ? last / low : not_measured; }
    std::string str(const std::string& what) const {
      return what + " went from " + detail::num(low) + " (step " + std::to_string(low_step) +
             ") to " + detail::num(last) + " (step " + std::to_string(last_step) + ", " +
             detail::num(growth()) + "x)";
    }
  } loss, norm, grad;
  for (const auto& r : history.records()) {
    if (r.step > o.step) break;
    loss.see(r.loss, r.step);
    norm.see(r.total_norm, r.step);
    if (layer < r.layers.size()) grad.see(r.layers[layer].weight_grad_norm, r.step);
  }
  const bool grew = (loss.known() && loss.growth() >= 10) || (norm.known() && norm.growth() >= 10);
  std::vector<std::string> moves;
  if (loss.known()) moves.push_back(loss.str("the loss"));
  if (norm.known()) moves.push_back(norm.str("the total gradient norm"));
  if (grad.known()) moves.push_back(grad.str("layer " + layers[layer].path + "'s |dW|"));
  if (!moves.empty()) {
    f.summary += grew ? ". Before it, " : ". Before it nothing grew by 10x or more: ";
    for (std::size_t k = 0; k < moves.size(); ++k)
      f.summary += (k == 0 ? "" : k + 1 == moves.size() ? " and " : ", ") + moves[k];
  }
  f.evidence = {{"loss_low", loss.known() ? loss.low : not_measured},
                {"loss_last", loss.last},
                {"loss_growth", loss.growth()},
                {"total_norm_low", norm.known() ? norm.low : not_measured},
                {"total_norm_last", norm.last},
                {"total_norm_growth", norm.growth()}};
  if (grad.known()) {
    f.evidence.emplace_back("weight_grad_norm_low", grad.low);
    f.evidence.emplace_back("weight_grad_norm_last", grad.last);
  }

  // Hints that fit the cause.
  const std::string at = o.label.empty() ? std::string() : " at '" + o.label + "'";
  if (o.op == "log" || o.op == "sqrt" || o.op == "pow" || o.op == "div")
    f.hints.push_back("check the domain of '" + o.op + "'" + at +
                      ": log or sqrt of a value <= 0, a division by zero, a negative base to a "
                      "fractional power (clamp the input or add an epsilon)");
  else if (o.op == "exp")
    f.hints.push_back("exp overflowed" + at +
                      " (inputs above about 88 in float, 709 in double): work in log space "
                      "(log_softmax, softmax_cross_entropy) or clamp its input");
  if (grew) {
    f.hints.push_back(
        "the loss and the gradients grew before the non-finite value: lower the learning rate "
        "(or warm it up), and clip gradients by global norm (clip_grad_norm(params, 1.0))");
  } else if (o.phase == "update" || o.op.empty()) {
    f.hints.push_back(
        "nothing grew before it, so the non-finite value came at once: look for a NaN or Inf "
        "in that batch (inputs, targets), and run the step under monitor.guard with "
        "detect_nan_origin to name the op that produced it");
  } else if (o.op != "log" && o.op != "sqrt" && o.op != "pow" && o.op != "div" && o.op != "exp") {
    f.hints.push_back("a value overflowed in '" + o.op + "'" + at +
                      ": look for NaN or Inf in the inputs of that batch, and for weights that "
                      "grew large");
  }
  if (o.phase == "update")
    f.hints.push_back(
        "an optimiser with the NonFinite::skip policy skips such a step and training goes on "
        "(the monitor keeps it as an event)");
  return f;
}
#endif

/// Diagnoses the last `t.window` records of a history. `nan_origin` (from the monitor) is a
/// finding while it is recent: at or after the first step of the window, or nothing recorded
/// since. `events` (the monitor's event log) is copied into the diagnosis.
GRADSCOPE_COMPILED_API Diagnosis diagnose(const std::vector<LayerInfo>& layers,
                                          const History& history, const Thresholds& t = {},
                                          const std::optional<NanOrigin>& nan_origin = std::nullopt,
                                          const EventLog* events = nullptr)
#if GRADSCOPE_DIAGNOSTICS_DECLARE_ONLY
    ;
#else
{
  Diagnosis d;
  const auto& recs = history.records();
  if (!recs.empty()) d.step = recs.back().step;
  d.findings = window_findings(layers, history, t);
  if (nan_origin) {
    const std::size_t n =
        std::min<std::size_t>(recs.size(), static_cast<std::size_t>(std::max(1, t.window)));
    if (recs.empty() || nan_origin->step >= recs[recs.size() - n].step) {
      // It explains the non-finite values of the latest records.
      std::erase_if(d.findings, [](const Finding& f) { return f.rule == "non_finite"; });
      d.findings.insert(d.findings.begin(), origin_finding(*nan_origin, layers, history));
    }
  }
  std::stable_sort(d.findings.begin(), d.findings.end(),
                   [](const Finding& a, const Finding& b) { return a.verdict < b.verdict; });
  if (events) {
    d.events = events->events();
    d.events_note = events->dropped_note();
  }
  return d;
}
#endif

/// The verdicts through time of the recurrent layers (vanishing_through_time,
/// exploding_through_time), from the medians of each layer's latest `t.window` profiles.
/// `weight_rows[i]` are the paths of the report's rows for time layer i (its recurrent weight),
/// which the findings name.
inline std::vector<Finding> time_findings(const std::vector<TimeLayerInfo>& layers,
                                          const std::vector<TimeRecords>& records,
                                          const std::vector<std::string>& weight_rows,
                                          const Thresholds& t) {
  std::vector<Finding> out;
  for (std::size_t i = 0; i < layers.size() && i < records.size(); ++i) {
    const auto& profiles = records[i].profiles();
    const std::size_t n =
        std::min<std::size_t>(profiles.size(), static_cast<std::size_t>(std::max(1, t.window)));
    std::vector<double> log_reach, gain, horizon;
    bool bound = false;
    for (std::size_t k = profiles.size() - n; k < profiles.size(); ++k) {
      const auto& p = profiles[k];
      if (!measured(p.reach) || p.reach <= 0) continue;
      log_reach.push_back(std::log(p.reach));
      gain.push_back(p.gain);
      horizon.push_back(static_cast<double>(p.horizon));
      bound = bound || p.reach_at_bound;
    }
    if (log_reach.empty()) continue;
    const TimeProfile& last = profiles.back();
    const double reach = std::exp(detail::median(log_reach));
    const double g = detail::median(gain), h = detail::median(horizon);
    const bool vanishing = reach < t.time_vanishing_reach;
    if (!vanishing && !(reach > t.time_exploding_reach)) continue;
    Finding f;
    f.verdict = vanishing ? Verdict::vanishing_through_time : Verdict::exploding_through_time;
    f.rule = "time_reach";
    const auto& li = layers[i];
    if (i < weight_rows.size() && !weight_rows[i].empty()) f.layers = {weight_rows[i]};
    std::ostringstream os;
    os << "layer " << li.name() << " (" << li.kind << "): the gradient reaching step 1 is "
       << time_figure(reach, vanishing && bound) << (vanishing ? " of" : " times")
       << " the one at step " << last.steps << ", a gain of " << detail::num(g)
       << " per step; memory horizon " << static_cast<std::int64_t>(h) << " of " << last.steps - 1
       << " steps";
    if (measured(last.carry_gate))
      os << "; mean " << li.carry_gate << " " << detail::num(last.carry_gate);
    if (n > 1) os << " (medians of the latest " << n << " recorded steps)";
    f.summary = os.str();
    f.evidence = {{"reach", reach},
                  {"gain_per_step", g},
                  {"memory_horizon", h},
                  {"time_steps", static_cast<double>(last.steps)}};
    if (measured(last.carry_gate)) f.evidence.emplace_back("carry_gate", last.carry_gate);
    if (vanishing) {
      if (li.carry_gate.empty())
        f.hints.push_back(
            "use an LSTM (forget-gate bias 1) or a GRU: their gates carry the state "
            "and its gradient over many steps");
      else if (measured(last.carry_gate) && last.carry_gate < 0.5)
        f.hints.push_back("the " + li.carry_gate + " is mostly closed (mean " +
                          detail::num(last.carry_gate) +
                          "): for an LSTM raise forget_bias (1 by default; 0 in PyTorch)");
      f.hints.push_back(
          "initialise the recurrent matrix orthogonal (init::orthogonal) or, for a ReLU RNN, as "
          "the identity (IRNN, init::identity)");
      f.hints.push_back("if the task's dependencies are shorter than " +
                        std::to_string(last.steps) +
                        " steps, truncate backpropagation through time (carry the state "
                        "detached) to about the memory horizon");
      f.hints.push_back("an untrained gated network often starts here; judge it after training");
    } else {
      f.hints.push_back("clip gradients by global norm (clip_grad_norm(params, 1.0))");
      f.hints.push_back("lower the learning rate");
      f.hints.push_back(
          "bring the recurrent matrix's spectral radius to 1 or below (init::orthogonal, a "
          "smaller gain)");
    }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace gradscope::diagnostics
