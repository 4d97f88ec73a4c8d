#pragma once
/// Reports of a gradient history, all from the same numbers: a console table with sparklines,
/// CSV, JSON Lines and a self-contained SVG chart.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "../detail/compiled.hpp"
#include "history.hpp"
#include "time.hpp"
#include "verdict.hpp"

namespace gradscope::diagnostics {

namespace detail {
/// "1.23e-02"; "nan", "inf" or "-inf" for a measured non-finite value; "-" when not measured.
inline std::string sci(double v) {
  if (!measured(v)) return "-";
  if (std::isnan(v)) return "nan";  // glibc prints "-nan" for the sign-bit NaN of 0/0
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2e", v);
  return buf;
}
/// A gain for its 9-character column: "%.3f" between 1e-3 and 1e4, where three decimals carry
/// the information, else "%.2e" (so 1e-6 does not read as 0.000 and 1e16 keeps to its column).
inline std::string gain_text(double g) {
  if (!measured(g)) return "-";
  const double a = std::abs(g);
  if (!std::isfinite(g) || a == 0 || a < 1e-3 || a >= 1e4) return sci(g);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", g);
  return buf;
}
/// Shortest round-trip text for machine-readable outputs: parsing it gives the same double.
inline std::string exact(double v) {
  if (std::isnan(v)) return "nan";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
inline std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}
inline std::string json_number(double v) { return std::isfinite(v) ? exact(v) : "null"; }
inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}
inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

/// The metrics of LayerStats, by name, in a fixed order (CSV, JSON).
struct Metric {
  const char* name;
  double (*get)(const LayerStats&);
};
inline const std::vector<Metric>& metrics() {
  static const std::vector<Metric> m = {
      {"weight_grad_norm", [](const LayerStats& s) { return s.weight_grad_norm; }},
      {"bias_grad_norm", [](const LayerStats& s) { return s.bias_grad_norm; }},
      {"delta_norm", [](const LayerStats& s) { return s.delta_norm; }},
      {"grad_mean_abs", [](const LayerStats& s) { return s.grad_mean_abs; }},
      {"weight_norm", [](const LayerStats& s) { return s.weight_norm; }},
      {"update_ratio", [](const LayerStats& s) { return s.update_ratio; }},
      {"act_mean", [](const LayerStats& s) { return s.act_mean; }},
      {"act_std", [](const LayerStats& s) { return s.act_std; }},
      {"saturated_fraction", [](const LayerStats& s) { return s.saturated_fraction; }},
      {"dead_fraction", [](const LayerStats& s) { return s.dead_fraction; }},
      {"nan_count", [](const LayerStats& s) { return static_cast<double>(s.nan_count); }},
      {"inf_count", [](const LayerStats& s) { return static_cast<double>(s.inf_count); }},
  };
  return m;
}

/// Flow norm of layer l in every record (NaN where not measured).
inline std::vector<double> flow_series(const History& h, std::size_t l) {
  std::vector<double> v;
  for (const auto& r : h.records())
    v.push_back(l < r.layers.size() ? r.layers[l].flow_norm() : not_measured);
  return v;
}

/// Unicode block sparkline of log10(values), on the shared scale [lo, hi] (log10 units).
inline std::string sparkline(const std::vector<double>& values, double lo, double hi,
                             std::size_t width = 24) {
  static const char* blocks[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                 "\u2585", "\u2586", "\u2587", "\u2588"};
  std::string out;
  if (values.empty()) return out;
  const std::size_t n = std::min(width, values.size());
  for (std::size_t k = 0; k < n; ++k) {
    // Take the last value of each bucket so the right end is the latest step.
    const std::size_t i = (k + 1) * values.size() / n - 1;
    const double v = values[i];
    if (!(v > 0) || !std::isfinite(v)) {
      out += std::isfinite(v) ? " " : "!";
      continue;
    }
    const double x = hi > lo ? (std::log10(v) - lo) / (hi - lo) : 0.5;
    out += blocks[std::clamp(static_cast<int>(x * 7.999), 0, 7)];
  }
  return out;
}

/// Indices of the dense (in-flow) layers.
inline std::vector<std::size_t> flow_layers(const std::vector<LayerInfo>& layers) {
  std::vector<std::size_t> f;
  for (std::size_t l = 0; l < layers.size(); ++l)
    if (layers[l].in_flow) f.push_back(l);
  return f;
}

/// Gain of each layer: its flow norm over the next dense layer's (toward the output); NaN for
/// the last dense layer and for layers outside the flow.
inline std::vector<double> gains(const std::vector<LayerInfo>& layers, const StepRecord& r) {
  std::vector<double> g(layers.size(), not_measured);
  const auto f = flow_layers(layers);
  for (std::size_t k = 0; k + 1 < f.size(); ++k) {
    const double a = r.layers[f[k]].flow_norm(), b = r.layers[f[k + 1]].flow_norm();
    g[f[k]] = measured(a) && measured(b) ? a / b : not_measured;
  }
  return g;
}
}  // namespace detail

/// The console table (latest recorded step), then the diagnosis.
GRADSCOPE_COMPILED_API std::string format_report(const std::vector<LayerInfo>& layers,
                                                 const History& h, const Diagnosis& d)
#if GRADSCOPE_DIAGNOSTICS_DECLARE_ONLY
    ;
#else
{
  std::ostringstream os;
  if (h.empty()) {
    os << "no gradients recorded yet\n" << d.str();
    return os.str();
  }
  const StepRecord& r = h.records().back();
  const auto gain = detail::gains(layers, r);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (std::size_t l = 0; l < layers.size(); ++l)
    for (double v : detail::flow_series(h, l))
      if (v > 0 && std::isfinite(v)) {
        lo = std::min(lo, std::log10(v));
        hi = std::max(hi, std::log10(v));
      }
  os << "gradient report: step " << r.step << ", loss " << detail::sci(r.loss)
     << ", pre-clip total norm " << detail::sci(r.total_norm) << ", " << h.size()
     << " recorded steps";
  if (h.downsamplings() > 0) os << " (history downsampled: every " << h.spacing() << " steps)";
  os << '\n';
  int pw = 6;
  for (const auto& li : layers) pw = std::max(pw, static_cast<int>(li.path.size()) + 2);
  os << std::left << std::setw(pw) << "layer" << std::setw(24) << "kind" << std::setw(12) << "shape"
     << std::right << std::setw(10) << "|dW|" << std::setw(10) << "|db|" << std::setw(10)
     << "|delta|" << std::setw(9) << "gain" << std::setw(10) << "upd/W"
     << "  " << std::left << std::setw(24) << "flow norm history"
     << " flags\n";
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const auto& s = r.layers[l];
    std::string flags;
    for (const auto& f : d.findings)
      if (std::find(f.layers.begin(), f.layers.end(), layers[l].path) != f.layers.end()) {
        const char c = "EeVvDSUH"[static_cast<int>(f.verdict)];
        if (flags.find(c) == std::string::npos) flags += c;
      }
    if (s.nan_count + s.inf_count > 0) flags += 'N';
    std::string kind = layers[l].kind;
    if (kind.size() > 23) kind = kind.substr(0, 22) + "~";
    os << std::left << std::setw(pw) << layers[l].path << std::setw(24) << kind << std::setw(12)
       << layers[l].shape << std::right << std::setw(10) << detail::sci(s.weight_grad_norm)
       << std::setw(10) << detail::sci(s.bias_grad_norm) << std::setw(10)
       << detail::sci(s.delta_norm) << std::setw(9) << detail::gain_text(gain[l]) << std::setw(10)
       << detail::sci(s.update_ratio) << "  "
       << detail::sparkline(detail::flow_series(h, l), lo, hi);
    const std::size_t spark = std::min<std::size_t>(24, h.size());
    os << std::string(24 - spark, ' ') << ' ' << flags << '\n';
  }
  os << "flags: E exploding, V vanishing, e/v exploding/vanishing through time, D dead ReLU, S "
        "saturated, U update ratio, N NaN/Inf\n";
  os << d.str();
  return os.str();
}
#endif

/// CSV with header step,layer,kind,metric,value: one row per recorded step, layer and measured
/// metric, plus rows with an empty layer for the loss and the total norm. Values round-trip
/// exactly (%.17g); a measured NaN or Inf is written as nan, inf or -inf (strtod, Python's float
/// and pandas read them), an unmeasured one has no row. Then the events of the run, if given:
/// rows whose kind is "event:<verdict>/<rule>" (e.g. "event:exploding/divergence"), step the
/// event's first step, layer the first layer involved, metrics first_step, last_step,
/// worst_step, occurrences, severity and the worst occurrence's evidence; a full log adds rows
/// of kind "event:dropped" (count, first_step, last_step).
GRADSCOPE_COMPILED_API void write_csv(std::ostream& os, const std::vector<LayerInfo>& layers,
                                      const History& h, const EventLog* events = nullptr)
#if GRADSCOPE_DIAGNOSTICS_DECLARE_ONLY
    ;
#else
{
  os << "step,layer,kind,metric,value\n";
  for (const auto& r : h.records()) {
    if (measured(r.loss)) os << r.step << ",,,loss," << detail::exact(r.loss) << '\n';
    if (measured(r.total_norm))
      os << r.step << ",,,total_norm," << detail::exact(r.total_norm) << '\n';
    for (std::size_t l = 0; l < layers.size(); ++l)
      for (const auto& m : detail::metrics()) {
        const double v = m.get(r.layers[l]);
        if (!measured(v)) continue;
        os << r.step << ',' << detail::csv_field(layers[l].path) << ','
           << detail::csv_field(layers[l].kind) << ',' << m.name << ',' << detail::exact(v) << '\n';
      }
  }
  if (!events) return;
  for (const auto& e : events->events()) {
    const std::string head =
        std::to_string(e.first_step) + ',' +
        detail::csv_field(e.finding.layers.empty() ? std::string() : e.finding.layers.front()) +
        ',' +
        detail::csv_field("event:" + std::string(verdict_name(e.verdict())) + "/" + e.rule()) + ',';
    const std::pair<const char*, double> fields[] = {
        {"first_step", static_cast<double>(e.first_step)},
        {"last_step", static_cast<double>(e.last_step)},
        {"worst_step", static_cast<double>(e.worst_step)},
        {"occurrences", static_cast<double>(e.occurrences)},
        {"severity", e.severity}};
    for (const auto& [name, v] : fields) os << head << name << ',' << detail::exact(v) << '\n';
    for (const auto& [name, v] : e.finding.evidence)
      if (measured(v)) os << head << detail::csv_field(name) << ',' << detail::exact(v) << '\n';
  }
  if (events->dropped() > 0) {
    const std::string head = std::to_string(events->dropped_first_step()) + ",,event:dropped,";
    os << head << "count," << events->dropped() << '\n'
       << head << "first_step," << events->dropped_first_step() << '\n'
       << head << "last_step," << events->dropped_last_step() << '\n';
  }
}
#endif

/// JSON Lines: one object per recorded step, {"step", "loss", "total_norm", "layers": [...]},
/// unmeasured or non-finite numbers as null (JSON has no NaN; each layer's nan_count and
/// inf_count say which nulls are non-finite measurements). Then, if given, one object per event
/// of the run, {"event": verdict, "rule", "first_step", "last_step", "worst_step",
/// "occurrences", "severity", "summary", "layers", "evidence": {name: number}, "hints"}, and
/// {"events_dropped", "first_step", "last_step", "capacity"} when the log was full. Step lines
/// have a "step" key, event lines an "event" key.
GRADSCOPE_COMPILED_API void write_jsonl(std::ostream& os, const std::vector<LayerInfo>& layers,
                                        const History& h, const EventLog* events = nullptr)
#if GRADSCOPE_DIAGNOSTICS_DECLARE_ONLY
    ;
#else
{
  for (const auto& r : h.records()) {
    os << "{\"step\":" << r.step << ",\"loss\":" << detail::json_number(r.loss)
       << ",\"total_norm\":" << detail::json_number(r.total_norm) << ",\"layers\":[";
    for (std::size_t l = 0; l < layers.size(); ++l) {
      if (l) os << ',';
      os << "{\"path\":" << detail::json_string(layers[l].path)
         << ",\"kind\":" << detail::json_string(layers[l].kind)
         << ",\"shape\":" << detail::json_string(layers[l].shape)
         << ",\"activation\":" << detail::json_string(layers[l].activation)
         << ",\"in_flow\":" << (layers[l].in_flow ? "true" : "false");
      for (const auto& m : detail::metrics())
        os << ",\"" << m.name << "\":" << detail::json_number(m.get(r.layers[l]));
      os << '}';
    }
    os << "]}\n";
  }
  if (!events) return;
  auto strings = [&](const std::vector<std::string>& v) {
    os << '[';
    for (std::size_t k = 0; k < v.size(); ++k) os << (k ? "," : "") << detail::json_string(v[k]);
    os << ']';
  };
  for (const auto& e : events->events()) {
    os << "{\"event\":" << detail::json_string(verdict_name(e.verdict()))
       << ",\"rule\":" << detail::json_string(e.rule()) << ",\"first_step\":" << e.first_step
       << ",\"last_step\":" << e.last_step << ",\"worst_step\":" << e.worst_step
       << ",\"occurrences\":" << e.occurrences
       << ",\"severity\":" << detail::json_number(e.severity)
       << ",\"summary\":" << detail::json_string(e.finding.summary) << ",\"layers\":";
    strings(e.finding.layers);
    os << ",\"evidence\":{";
    for (std::size_t k = 0; k < e.finding.evidence.size(); ++k)
      os << (k ? "," : "") << detail::json_string(e.finding.evidence[k].first) << ':'
         << detail::json_number(e.finding.evidence[k].second);
    os << "},\"hints\":";
    strings(e.finding.hints);
    os << "}\n";
  }
  if (events->dropped() > 0)
    os << "{\"events_dropped\":" << events->dropped()
       << ",\"first_step\":" << events->dropped_first_step()
       << ",\"last_step\":" << events->dropped_last_step() << ",\"capacity\":" << events->capacity()
       << "}\n";
}
#endif

/// The console table of the recurrent layers through time (their latest profiles): T, the norm
/// of dL/dh_t at the last and the first step, the gain per step, the reach, the memory horizon,
/// the carry gate and a sparkline of log |dL/dh_t| over t (first step on the left). "" when no
/// layer has a profile.
inline std::string format_time_report(const std::vector<TimeLayerInfo>& layers,
                                      const std::vector<TimeRecords>& records) {
  std::ostringstream os;
  bool any = false;
  int pw = 6;
  for (const auto& li : layers) pw = std::max(pw, static_cast<int>(li.name().size()) + 2);
  for (std::size_t i = 0; i < layers.size() && i < records.size(); ++i) {
    if (records[i].empty()) continue;
    const TimeProfile& p = records[i].profiles().back();
    if (!any) {
      os << "gradient through time (per-sample norm of dL/dh_t at step " << p.step << "):\n"
         << std::left << std::setw(pw) << "layer" << std::setw(32) << "kind" << std::right
         << std::setw(6) << "T" << std::setw(11) << "|dh_T|" << std::setw(11) << "|dh_1|"
         << std::setw(10) << "gain/t" << std::setw(11) << "reach" << std::setw(9) << "horizon"
         << std::setw(8) << "carry"
         << "  " << std::left << "log |dL/dh_t|, t = 1..T\n";
      any = true;
    }
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (double v : p.total)
      if (v > 0 && std::isfinite(v)) {
        lo = std::min(lo, std::log10(v));
        hi = std::max(hi, std::log10(v));
      }
    std::string kind = layers[i].kind;
    if (kind.size() > 31) kind = kind.substr(0, 30) + "~";
    os << std::left << std::setw(pw) << layers[i].name() << std::setw(32) << kind << std::right
       << std::setw(6) << p.steps << std::setw(11)
       << detail::sci(p.total.empty() ? not_measured : p.total.back()) << std::setw(11)
       << detail::sci(p.total.empty() ? not_measured : p.total.front()) << std::setw(10)
       << detail::gain_text(p.gain) << std::setw(11)
       << (measured(p.reach) ? time_figure(p.reach, p.reach_at_bound) : std::string("-"))
       << std::setw(9) << p.horizon << std::setw(8) << detail::gain_text(p.carry_gate) << "  "
       << detail::sparkline(p.total, lo, hi, 32) << '\n';
  }
  if (any)
    os << "reach: the part of the last step's gradient that gets back to step 1; horizon: steps "
          "back over which it stays above 1%; carry: mean forget (LSTM) or update (GRU) gate\n";
  return os.str();
}

/// CSV rows of the time profiles, in write_csv's columns (step,layer,kind,metric,value): per
/// profile the metrics time_steps, time_bin, time_gain, time_reach, time_horizon, carry_gate
/// (when measured) and time_underflow, then grad_h_total:<t> and grad_h_recurrent:<t> for each
/// stored point (t the first time step of its bin, counted from 0). The layer column is
/// TimeLayerInfo::name().
inline void write_time_csv(std::ostream& os, const std::vector<TimeLayerInfo>& layers,
                           const std::vector<TimeRecords>& records) {
  for (std::size_t i = 0; i < layers.size() && i < records.size(); ++i)
    for (const auto& p : records[i].profiles()) {
      const std::string head = std::to_string(p.step) + ',' + detail::csv_field(layers[i].name()) +
                               ',' + detail::csv_field(layers[i].kind) + ',';
      const std::pair<const char*, double> fields[] = {
          {"time_steps", static_cast<double>(p.steps)},
          {"time_bin", static_cast<double>(p.bin)},
          {"time_gain", p.gain},
          {"time_reach", p.reach},
          {"time_horizon", static_cast<double>(p.horizon)},
          {"carry_gate", p.carry_gate},
          {"time_underflow", p.underflow ? 1.0 : 0.0}};
      for (const auto& [name, v] : fields)
        if (measured(v)) os << head << name << ',' << detail::exact(v) << '\n';
      for (std::size_t k = 0; k < p.total.size(); ++k) {
        const std::size_t t = k * static_cast<std::size_t>(p.bin);
        os << head << "grad_h_total:" << t << ',' << detail::exact(p.total[k]) << '\n';
        if (k < p.recurrent.size() && measured(p.recurrent[k]))
          os << head << "grad_h_recurrent:" << t << ',' << detail::exact(p.recurrent[k]) << '\n';
      }
    }
}

/// JSON Lines of the time profiles: one object per profile, {"time_profile": name, "path",
/// "layer", "kind", "step", "steps", "bin", "gain", "reach", "horizon", "carry_gate",
/// "underflow", "total": [...], "recurrent": [...]} (unmeasured numbers as null).
inline void write_time_jsonl(std::ostream& os, const std::vector<TimeLayerInfo>& layers,
                             const std::vector<TimeRecords>& records) {
  for (std::size_t i = 0; i < layers.size() && i < records.size(); ++i)
    for (const auto& p : records[i].profiles()) {
      os << "{\"time_profile\":" << detail::json_string(layers[i].name())
         << ",\"path\":" << detail::json_string(layers[i].path) << ",\"layer\":" << layers[i].layer
         << ",\"kind\":" << detail::json_string(layers[i].kind) << ",\"step\":" << p.step
         << ",\"steps\":" << p.steps << ",\"bin\":" << p.bin
         << ",\"gain\":" << detail::json_number(p.gain)
         << ",\"reach\":" << detail::json_number(p.reach) << ",\"horizon\":" << p.horizon
         << ",\"carry_gate\":" << detail::json_number(p.carry_gate)
         << ",\"underflow\":" << (p.underflow ? "true" : "false");
      for (const auto* v : {&p.total, &p.recurrent}) {
        os << (v == &p.total ? ",\"total\":[" : ",\"recurrent\":[");
        for (std::size_t k = 0; k < v->size(); ++k)
          os << (k ? "," : "") << detail::json_number((*v)[k]);
        os << ']';
      }
      os << "}\n";
    }
}

/// Settings of the SVG chart.
struct SvgOptions {
  std::string title = "Gradient flow";
  std::int64_t bar_step = -1;  ///< the step of the bar chart; -1: the latest recorded step
  int width = 960;
};

/// A self-contained SVG: log-scale flow norm of each dense layer over the recorded steps, on a
/// step axis with numbered ticks (class "step-tick", data-step), the events of the run as
/// shaded bands over the steps they lasted (class "event", data-verdict, data-rule,
/// data-first-step, data-last-step, data-worst-step, a title with the finding), and a bar per
/// layer at one step. Bars and points carry data-layer / data-value attributes.
GRADSCOPE_COMPILED_API void write_svg(std::ostream& os, const std::vector<LayerInfo>& layers,
                                      const History& h, const Diagnosis& d,
                                      const SvgOptions& opt = {},
                                      const std::vector<TimeLayerInfo>* time_layers = nullptr,
                                      const std::vector<TimeRecords>* time_records = nullptr)
#if GRADSCOPE_DIAGNOSTICS_DECLARE_ONLY
    ;
#else
{
  const auto flow = detail::flow_layers(layers);
  // The time panels: one per recurrent layer with profiles (at most 4), below the two others.
  std::vector<std::size_t> timed;
  if (time_layers && time_records)
    for (std::size_t i = 0; i < time_layers->size() && i < time_records->size(); ++i)
      if (!(*time_records)[i].empty() && timed.size() < 4) timed.push_back(i);
  const int time_h = 250;
  const int W = opt.width, H = 640 + time_h * static_cast<int>(timed.size()), left = 80,
            right = 170, top = 50, mid = 330, bottom = 600;
  const int pw = W - left - right;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (auto l : flow)
    for (double v : detail::flow_series(h, l))
      if (v > 0 && std::isfinite(v)) {
        lo = std::min(lo, std::floor(std::log10(v)));
        hi = std::max(hi, std::ceil(std::log10(v)));
      }
  if (!(hi > lo)) {
    lo = -3;
    hi = 0;
  }
  const auto& recs = h.records();
  const double s0 = recs.empty() ? 0 : static_cast<double>(recs.front().step);
  const double s1 = recs.empty() ? 1 : std::max(s0 + 1, static_cast<double>(recs.back().step));
  auto color = [&](std::size_t k) {
    const double t =
        flow.size() > 1 ? static_cast<double>(k) / static_cast<double>(flow.size() - 1) : 0;
    char buf[16];
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(40 + 200 * t),
                  static_cast<int>(90 + 40 * (1 - std::abs(2 * t - 1))),
                  static_cast<int>(220 - 190 * t));
    return std::string(buf);
  };
  auto y_of = [&](double v, int y0, int y1) {
    return y1 - (std::log10(v) - lo) / (hi - lo) * (y1 - y0);
  };
  auto x_of = [&](double step) {
    return left + std::clamp((step - s0) / (s1 - s0), 0.0, 1.0) * pw;
  };
  const std::string earlier = d.earlier(3);
  os << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
     << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
     << "\" viewBox=\"0 0 " << W << ' ' << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
     << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
     << "<text x=\"" << left << "\" y=\"24\" font-size=\"16\" font-weight=\"bold\">"
     << detail::xml_escape(opt.title) << "</text>\n"
     << "<text x=\"" << left << "\" y=\"42\" fill=\"#444\">verdict: " << verdict_name(d.verdict())
     << " (step " << d.step << ")"
     << (earlier.empty() ? std::string() : "; earlier in the run: " + detail::xml_escape(earlier))
     << "; per-sample gradient norm of each dense layer's output, log scale</text>\n";
  // Axes and decade grid lines for both panels.
  const int panels[2][2] = {{top + 10, mid - 30}, {mid + 20, bottom - 30}};
  for (const auto& p : panels) {
    for (int e = static_cast<int>(lo); e <= static_cast<int>(hi); ++e) {
      const double y = y_of(std::pow(10.0, e), p[0], p[1]);
      os << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y << "\" y2=\"" << y
         << "\" stroke=\"#ddd\"/><text x=\"" << left - 6 << "\" y=\"" << y + 4
         << "\" text-anchor=\"end\">1e" << e << "</text>\n";
    }
    os << "<line x1=\"" << left << "\" x2=\"" << left << "\" y1=\"" << p[0] << "\" y2=\"" << p[1]
       << "\" stroke=\"#333\"/>\n";
  }
  // The step axis of panel 1: ticks at 1, 2 or 5 times a power of ten, about six of them.
  {
    const int y = panels[0][1];
    os << "<g id=\"step-axis\">\n<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y
       << "\" y2=\"" << y << "\" stroke=\"#333\"/>\n";
    const double span = s1 - s0;
    double tick = std::pow(10.0, std::floor(std::log10(span / 6)));
    for (const double m : {1.0, 2.0, 5.0, 10.0})
      if (span / (tick * m) <= 7.5) {
        tick *= m;
        break;
      }
    tick = std::max(1.0, std::round(tick));
    for (double t = std::ceil(s0 / tick) * tick; t <= s1 + 0.5; t += tick) {
      const double x = x_of(t);
      const long long step = std::llround(t);
      os << "<line x1=\"" << x << "\" x2=\"" << x << "\" y1=\"" << y << "\" y2=\"" << y + 4
         << "\" stroke=\"#333\"/><text class=\"step-tick\" data-step=\"" << step << "\" x=\"" << x
         << "\" y=\"" << y + 15 << "\" text-anchor=\"middle\">" << step << "</text>\n";
    }
    os << "</g>\n";
  }
  // The events of the run: a band over the steps each lasted, the finding in its title.
  os << "<g id=\"events\">\n";
  {
    double label_end = -1;
    for (const auto& e : d.events) {
      const double x0 = x_of(static_cast<double>(e.first_step));
      const double x1 = std::max(x_of(static_cast<double>(e.last_step)), x0 + 3);
      const char* fill = e.verdict() == Verdict::exploding ? "#d62728" : "#1f77b4";
      os << "<rect class=\"event\" data-verdict=\"" << verdict_name(e.verdict())
         << "\" data-rule=\"" << detail::xml_escape(e.rule()) << "\" data-first-step=\""
         << e.first_step << "\" data-last-step=\"" << e.last_step << "\" data-worst-step=\""
         << e.worst_step << "\" x=\"" << x0 << "\" y=\"" << panels[0][0] << "\" width=\"" << x1 - x0
         << "\" height=\"" << panels[0][1] - panels[0][0] << "\" fill=\"" << fill
         << "\" fill-opacity=\"0.15\"><title>" << detail::xml_escape(e.str())
         << "</title></rect>\n";
      if (x0 >= label_end) {  // a label where it does not overlap the previous one
        const std::string label =
            std::string(verdict_name(e.verdict())) + " " +
            (e.first_step == e.last_step
                 ? std::to_string(e.first_step)
                 : std::to_string(e.first_step) + "-" + std::to_string(e.last_step));
        os << "<text x=\"" << x0 + 2 << "\" y=\"" << panels[0][0] + 11
           << "\" font-size=\"10\" fill=\"" << fill << "\">" << detail::xml_escape(label)
           << "</text>\n";
        label_end = x0 + 6.0 * static_cast<double>(label.size()) + 8;
      }
    }
  }
  os << "</g>\n";
  // Panel 1: lines over steps.
  os << "<g id=\"history\">\n";
  for (std::size_t k = 0; k < flow.size(); ++k) {
    const std::size_t l = flow[k];
    std::ostringstream pts;
    for (const auto& r : recs) {
      const double v = r.layers[l].flow_norm();
      if (!(v > 0) || !std::isfinite(v)) continue;
      const double x = x_of(static_cast<double>(r.step));
      pts << x << ',' << y_of(v, panels[0][0], panels[0][1]) << ' ';
    }
    os << "<polyline data-layer=\"" << detail::xml_escape(layers[l].path) << "\" points=\""
       << pts.str() << "\" fill=\"none\" stroke=\"" << color(k) << "\" stroke-width=\"2\"/>\n";
    os << "<text x=\"" << left + pw + 10 << "\" y=\"" << top + 16 + 16 * static_cast<int>(k)
       << "\" fill=\"" << color(k) << "\">layer " << detail::xml_escape(layers[l].path)
       << "</text>\n";
  }
  os << "<text x=\"" << left + pw / 2 << "\" y=\"" << mid - 1
     << "\" text-anchor=\"middle\">step</text>\n</g>\n";
  // Panel 2: bars at one step.
  const StepRecord* bar = recs.empty() ? nullptr : &recs.back();
  if (opt.bar_step >= 0)
    for (const auto& r : recs)
      if (r.step <= opt.bar_step) bar = &r;
  os << "<g id=\"bars\">\n";
  if (bar && !flow.empty()) {
    os << "<text x=\"" << left << "\" y=\"" << mid + 12 << "\">per-layer norm at step " << bar->step
       << " (input on the left, output on the right)</text>\n";
    const double bw = static_cast<double>(pw) / static_cast<double>(flow.size());
    for (std::size_t k = 0; k < flow.size(); ++k) {
      const std::size_t l = flow[k];
      const double v = bar->layers[l].flow_norm();
      const double x = left + bw * static_cast<double>(k) + bw * 0.15;
      const double y =
          (v > 0 && std::isfinite(v)) ? y_of(v, panels[1][0], panels[1][1]) : panels[1][1];
      os << "<rect data-layer=\"" << detail::xml_escape(layers[l].path) << "\" data-value=\""
         << detail::exact(v) << "\" x=\"" << x << "\" y=\"" << y << "\" width=\"" << bw * 0.7
         << "\" height=\"" << panels[1][1] - y << "\" fill=\"" << color(k) << "\"/>\n"
         << "<text x=\"" << x + bw * 0.35 << "\" y=\"" << panels[1][1] + 14
         << "\" text-anchor=\"middle\">" << detail::xml_escape(layers[l].path) << "</text>\n"
         << "<text x=\"" << x + bw * 0.35 << "\" y=\"" << y - 4
         << "\" text-anchor=\"middle\" font-size=\"10\">" << detail::sci(v) << "</text>\n";
    }
  }
  os << "</g>\n";
  // The time panels: log |dL/dh_t| against the time step t, at up to 5 recorded steps spread
  // over the run (darker is later), each line a <polyline class="time-profile" data-layer
  // data-step>.
  for (std::size_t k = 0; k < timed.size(); ++k) {
    const auto& li = (*time_layers)[timed[k]];
    const auto& ps = (*time_records)[timed[k]].profiles();
    std::vector<std::size_t> pick;
    const std::size_t m = std::min<std::size_t>(5, ps.size());
    for (std::size_t j = 0; j < m; ++j)
      pick.push_back(m == 1 ? ps.size() - 1 : j * (ps.size() - 1) / (m - 1));
    double tlo = std::numeric_limits<double>::infinity(), thi = -tlo, tmax = 1;
    for (auto j : pick) {
      for (double v : ps[j].total)
        if (v > 0 && std::isfinite(v)) {
          tlo = std::min(tlo, std::floor(std::log10(v)));
          thi = std::max(thi, std::ceil(std::log10(v)));
        }
      tmax = std::max(tmax, static_cast<double>(ps[j].steps - 1));
    }
    if (!(thi > tlo)) {
      tlo = std::isfinite(tlo) ? tlo - 1 : -3;
      thi = tlo + 2;
    }
    const int y0 = bottom + 40 + time_h * static_cast<int>(k), y1 = y0 + time_h - 70;
    auto ty = [&](double v) { return y1 - (std::log10(v) - tlo) / (thi - tlo) * (y1 - y0); };
    auto tx = [&](double t) { return left + t / tmax * pw; };
    os << "<g class=\"time-panel\" data-layer=\"" << detail::xml_escape(li.name()) << "\">\n"
       << "<text x=\"" << left << "\" y=\"" << y0 - 10 << "\">layer "
       << detail::xml_escape(li.name()) << " (" << detail::xml_escape(li.kind)
       << "): per-sample norm of dL/dh_t against the time step t, log scale</text>\n";
    const int decades = static_cast<int>(thi - tlo);
    const int every = std::max(1, decades / 6);
    for (int e = static_cast<int>(tlo); e <= static_cast<int>(thi); e += every) {
      const double y = ty(std::pow(10.0, e));
      os << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y << "\" y2=\"" << y
         << "\" stroke=\"#ddd\"/><text x=\"" << left - 6 << "\" y=\"" << y + 4
         << "\" text-anchor=\"end\">1e" << e << "</text>\n";
    }
    os << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << y1 << "\" y2=\"" << y1
       << "\" stroke=\"#333\"/><text x=\"" << left << "\" y=\"" << y1 + 15
       << "\">t = 1</text><text x=\"" << left + pw << "\" y=\"" << y1 + 15
       << "\" text-anchor=\"end\">t = " << static_cast<long long>(tmax) + 1 << "</text>\n";
    for (std::size_t j = 0; j < pick.size(); ++j) {
      const auto& p = ps[pick[j]];
      const double shade = pick.size() > 1 ? static_cast<double>(j) / (pick.size() - 1) : 1;
      char col[16];
      std::snprintf(col, sizeof col, "#%02x%02x%02x", static_cast<int>(200 - 170 * shade),
                    static_cast<int>(200 - 120 * shade), static_cast<int>(230 - 60 * shade));
      std::ostringstream pts;
      for (std::size_t q = 0; q < p.total.size(); ++q) {
        const double v = std::max(p.total[q], std::pow(10.0, tlo));
        if (!std::isfinite(v)) continue;
        pts << tx(static_cast<double>(q) * static_cast<double>(p.bin)) << ',' << ty(v) << ' ';
      }
      os << "<polyline class=\"time-profile\" data-layer=\"" << detail::xml_escape(li.name())
         << "\" data-step=\"" << p.step << "\" points=\"" << pts.str()
         << "\" fill=\"none\" stroke=\"" << col << "\" stroke-width=\"2\"><title>step " << p.step
         << ": gain " << detail::xml_escape(detail::gain_text(p.gain)) << " per time step, reach "
         << detail::xml_escape(time_figure(p.reach, p.reach_at_bound)) << ", horizon " << p.horizon
         << "</title></polyline>\n<text x=\"" << left + pw + 10 << "\" y=\""
         << y0 + 16 * static_cast<int>(j) + 6 << "\" fill=\"" << col << "\">step " << p.step
         << "</text>\n";
    }
    os << "</g>\n";
  }
  os << "</svg>\n";
}
#endif

}  // namespace gradscope::diagnostics
