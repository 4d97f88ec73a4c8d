#pragma once
/// GradientMonitor<T>: records per-layer gradient statistics of a module tree during training,
/// through the public hooks of core (tensor gradient hooks) and nn (forward hooks).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/core.hpp"
#include "../nn/layers.hpp"
#include "../nn/module.hpp"
#include "../nn/recurrent.hpp"
#include "events.hpp"
#include "history.hpp"
#include "report.hpp"
#include "time.hpp"
#include "verdict.hpp"

namespace gradscope::diagnostics {

namespace detail {
/// Sum of squares and sum of magnitudes of n values, in one pass. Each chunk of 1024 is summed
/// in T with Eigen's vectorised reductions and added into double totals, so a float gradient
/// keeps about 7 significant digits however long it is (Eigen would not vectorise a sum of
/// values widened to double: 4x slower). A chunk whose float sum of squares overflows although
/// its values are finite is summed again in double. A NaN or Inf makes the sums non-finite.
struct Sums {
  double squares = 0;
  double magnitudes = 0;
};
template <class T>
Sums sums(const T* p, Index n) {
  constexpr Index chunk = 1024;
  Sums s;
  for (Index k = 0; k < n; k += chunk) {
    const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> a(p + k, std::min(chunk, n - k));
    const T squares = a.square().sum();
    const T magnitudes = a.abs().sum();
    if (std::isfinite(squares) || !std::isfinite(magnitudes)) {
      s.squares += static_cast<double>(squares);
    } else {  // finite values whose squares overflow T
      for (Index i = 0; i < a.size(); ++i) s.squares += static_cast<double>(a[i]) * a[i];
    }
    s.magnitudes += static_cast<double>(magnitudes);
  }
  return s;
}

/// The rows of the report for one module's named parameters: each parameter whose name holds
/// "weight" with the bias named like it ("weight_ih_l0" with "bias_ih_l0"), then every parameter
/// left on its own; as (weight, bias) indices, bias npos when none, in parameter order.
inline std::vector<std::pair<std::size_t, std::size_t>> parameter_rows(
    const std::vector<std::string>& names) {
  constexpr std::size_t none = static_cast<std::size_t>(-1);
  std::vector<std::pair<std::size_t, std::size_t>> rows;
  std::vector<bool> used(names.size(), false);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto at = names[i].find("weight");
    if (at == std::string::npos) continue;
    std::string bias = names[i];
    bias.replace(at, 6, "bias");
    std::size_t b = none;
    for (std::size_t j = 0; j < names.size(); ++j)
      if (!used[j] && j != i && names[j] == bias) b = j;
    used[i] = true;
    if (b != none) used[b] = true;
    rows.emplace_back(i, b);
  }
  for (std::size_t i = 0; i < names.size(); ++i)
    if (!used[i]) rows.emplace_back(i, none);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return std::min(a.first, a.second) < std::min(b.first, b.second);
  });
  return rows;
}

/// The squared norm of row i of g, summed in double where T's squares would lose it (a float
/// gradient below 1e-19 squares to 0).
template <class T>
double row_squares(const ConstMatrixMap<T>& g, Index i) {
  double sq = static_cast<double>(g.row(i).squaredNorm());
  if (!(sq > 1e-30) || !std::isfinite(sq)) {
    sq = 0;
    for (Index j = 0; j < g.cols(); ++j) sq += static_cast<double>(g(i, j)) * g(i, j);
  }
  return sq;
}
/// The mean over the rows of g of each row's norm (the per-sample norm of a gradient).
template <class T>
double mean_row_norm(const ConstMatrixMap<T>& g) {
  double sum = 0;
  for (Index i = 0; i < g.rows(); ++i) sum += std::sqrt(row_squares(g, i));
  return sum / static_cast<double>(std::max<Index>(1, g.rows()));
}
}  // namespace detail

/// Settings of a GradientMonitor.
struct MonitorOptions {
  int every = 1;                   ///< record every N-th step
  std::size_t max_history = 2048;  ///< records kept; older ones are downsampled, never lost
  bool track_updates = true;       ///< keep a copy of the weights for update-to-weight ratios
  /// The weight norm and update ratio of a weight larger than this many elements are measured
  /// on evenly spaced rows holding about this many (the norm scaled to the whole weight), so a
  /// step reads no weight in full; 0: always every element.
  std::size_t update_sample = 8192;
  bool delta_norms = true;         ///< hook the layers' outputs for the per-sample delta norm
  bool activation_stats = true;    ///< hook the activations for mean/std/saturation/dead units
  bool detect_nan_origin = false;  ///< guard() runs the step in anomaly mode
  /// Events of the run kept for the reports (explosions, divergences, non-finite steps); later
  /// ones are counted, not kept.
  std::size_t max_events = EventLog::default_capacity;
  /// Follow the recurrent layers (nn::RNN, LSTM, GRU) through time: at every recorded step,
  /// the per-sample norm of dL/dh_t of each of their layers at every time step (TimeProfile).
  bool time_profiles = true;
  /// Points kept per time profile: a longer sequence keeps geometric means of bins of steps
  /// (the gain, reach and horizon are computed on every step first).
  std::size_t max_time_points = 256;
  /// Profiles kept per recurrent layer; older ones are thinned evenly (the latest is kept).
  std::size_t max_time_profiles = 64;
  Thresholds thresholds{};
};

/// Watches a model while it trains. Per training step:
///
///     tape.backward(loss);
///     monitor.record_gradients(loss.item());   // before clipping and before zero_grad
///     clip_grad_norm(...); opt.step();
///     monitor.record_update();                 // after the optimiser step
///
/// It follows every parameter of every module (a row per weight with its bias: "weight" and
/// "bias" of a dense layer, "weight_ih_l0" and "bias_ih_l0" of an LSTM, a parameter of a module
/// of your own on its own row); the modules whose in_gradient_flow() is true (dense and
/// recurrent layers) form the gradient-flow chain, with the activation that follows each. Each
/// recurrent layer is also followed through time (TimeProfile: dL/dh_t at every time step). At
/// every recorded step it checks the exploding verdicts and keeps what fired in an event log, so
/// the reports still tell of an explosion after the run calmed down.
template <Scalar T>
class GradientMonitor {
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

 public:
  explicit GradientMonitor(nn::Module<T>& model, MonitorOptions opt = {});
  ~GradientMonitor();
  GradientMonitor(const GradientMonitor&) = delete;
  GradientMonitor& operator=(const GradientMonitor&) = delete;

  /// Reads every followed layer's gradients (call after backward, before clipping and
  /// zero_grad) and closes the step. `loss` is stored with it when given.
  void record_gradients(double loss = not_measured);

  /// Call when the gradients changed after backward and before record_gradients (averaged
  /// across ranks by dist::DataParallel, or set by hand): record_gradients then reads them
  /// again instead of using the sums it took while backward produced them.
  void gradients_changed() noexcept { std::fill(summed_at_.begin(), summed_at_.end(), -1); }

  /// Reads the update-to-weight ratios (call after the optimiser step of a recorded step):
  /// ||W_after - W_before|| / ||W_before|| over the sampled rows (see update_sample).
  void record_update();

  /// Runs one training step `f`; with detect_nan_origin, in anomaly mode, recording where the
  /// first NaN or Inf appeared (module, op, forward or backward) before rethrowing.
  template <class F>
  decltype(auto) guard(F&& f) {
    if (!opt_.detect_nan_origin) return f();
    DetectAnomaly anomaly;
    try {
      return f();
    } catch (const NumericalError& e) {
      note(e);
      throw;
    }
  }
  /// Records a NumericalError caught elsewhere: as the NaN origin (the first one wins) and as an
  /// event. An error of an optimiser or of clip_grad_norm (phase "update") belongs to the step
  /// whose gradients record_gradients read last; one from anomaly mode to the step being run.
  void note(const NumericalError& e) {
    const std::int64_t s = e.phase() == "update" && step_ > 0 ? step_ - 1 : step_;
    NanOrigin o{s, e.op(), e.phase(), e.label(), e.what()};
    const Finding f = origin_finding(o, layers_, history_);
    events_.record(s, f, detail::severity(f, opt_.thresholds), merge_gap());
    if (!nan_origin_) nan_origin_ = std::move(o);
  }
  const std::optional<NanOrigin>& nan_origin() const noexcept { return nan_origin_; }

  /// The verdicts on the latest recorded steps (through time too), with the events of the run.
  Diagnosis diagnose() const {
    Diagnosis d = diagnostics::diagnose(layers_, history_, opt_.thresholds, nan_origin_, &events_);
    auto more = time_findings(time_layers_, time_records_, time_rows_, opt_.thresholds);
    if (!more.empty()) {
      for (auto& f : more) d.findings.push_back(std::move(f));
      std::stable_sort(d.findings.begin(), d.findings.end(),
                       [](const Finding& a, const Finding& b) { return a.verdict < b.verdict; });
    }
    return d;
  }
  /// What happened during the run: explosions, divergences and non-finite steps, oldest first.
  const EventLog& events() const noexcept { return events_; }
  /// The console report: per-layer table with sparklines, the verdict and its hints.
  std::string report() const;
  /// One CSV row per recorded step, layer and metric.
  void write_csv(const std::string& path) const;
  /// One JSON object per recorded step.
  void write_jsonl(const std::string& path) const;
  /// A self-contained SVG "gradient flow" chart.
  void write_svg(const std::string& path, const SvgOptions& svg = {}) const;

  const std::vector<LayerInfo>& layers() const noexcept { return layers_; }
  /// The recurrent layers followed through time (one per layer of a stacked module).
  const std::vector<TimeLayerInfo>& time_layers() const noexcept { return time_layers_; }
  /// The time profiles of time layer i over the run.
  const TimeRecords& time_records(std::size_t i) const { return time_records_.at(i); }
  const History& history() const noexcept { return history_; }
  /// Steps seen so far (recorded or not).
  std::int64_t step() const noexcept { return step_; }
  const MonitorOptions& options() const noexcept { return opt_; }

 private:
  struct Watched {
    nn::Module<T>* module = nullptr;
    Tensor<T> weight, bias;
    std::size_t weight_index = npos, bias_index = npos;  // in params_, npos when not there
    std::vector<Index> sample_rows;  // the rows of the weight the update ratio compares
    Matrix<T> snapshot;              // those rows before the step
    Matrix<T> column_max;            // scratch of the dead-unit count
    nn::Module<T>* activation = nullptr;
    nn::ActivationKind act_kind = nn::ActivationKind::identity;
  };

  /// A recurrent layer followed through time: the norms of its last forward of this step.
  struct TimeWatch {
    nn::Recurrent<T>* module = nullptr;
    Index layer = 0;
    std::vector<double> total, recurrent;
    /// LSTM: each sample's squared norm of dL/dh_t through the recurrence, per step, until the
    /// cell's hook adds dL/dc_t to it.
    std::vector<std::vector<double>> h_squares;
    std::int64_t step = -1;        // the step these norms belong to
    std::uint64_t generation = 0;  // of the forward whose hooks write them
  };

  bool recording(std::int64_t s) const { return history_.wants(s); }
  /// Hooks the time steps of a recurrent module's last forward (time watches [first, end)).
  void watch_time(nn::Recurrent<T>& m, std::size_t first, std::size_t end);
  /// Turns this step's norms into time profiles (step s).
  void record_time(std::int64_t s);
  /// Occurrences of an event at most this many steps apart belong to the same event.
  std::int64_t merge_gap() const {
    return static_cast<std::int64_t>(std::max(1, opt_.thresholds.window)) * history_.spacing();
  }
  /// Keeps the exploding verdicts of the latest window (step s) as events.
  void check_events(std::int64_t s);
  /// Keeps a non-finite loss at a step without a record (step s) as an event.
  void note_loss(std::int64_t s, double loss);

  /// Finds the layers (modules with parameters) in forward order and the activation that
  /// follows each dense layer.
  void discover(nn::Module<T>& root);

  void attach();

  /// Mean, standard deviation and saturated or dead fraction of an activation's output, in one
  /// pass over its rows (rows are contiguous; a unit is a column).
  void activation_stats(std::size_t l, const ConstMatrixMap<T>& y);

  /// The sums of parameter gradient `g`: from this step's pass when it is in params_.
  detail::Sums sums_of(std::size_t index, const ConstMatrixMap<T>& g) const {
    return index < sums_.size() ? sums_[index] : detail::sums(g.data(), g.size());
  }

  /// Counts the NaN and Inf values of m (called when a sum over m was not finite).
  template <class M>
  static void count_non_finite(const M& m, LayerStats& st) {
    for (Index i = 0; i < m.rows(); ++i)
      for (Index j = 0; j < m.cols(); ++j) {
        const T v = m(i, j);
        st.nan_count += std::isnan(v);
        st.inf_count += std::isinf(v);
      }
  }

  static std::ofstream open(const std::string& path) {
    std::ofstream os(path);
    if (!os) throw Error("[gradscope.io] cannot open '" + path + "' for writing");
    return os;
  }

  nn::Module<T>& model_;
  MonitorOptions opt_;
  History history_;
  std::vector<LayerInfo> layers_;
  std::vector<Watched> watched_;
  std::vector<LayerStats> current_;
  std::vector<HookHandle> handles_;
  std::vector<HookHandle> step_hooks_;
  std::vector<Tensor<T>> params_;
  std::vector<detail::Sums> sums_;       // this step's sums of each parameter's gradient
  std::vector<std::int64_t> summed_at_;  // the step each entry of sums_ was taken at
  std::optional<NanOrigin> nan_origin_;
  std::vector<TimeLayerInfo> time_layers_;
  std::vector<TimeRecords> time_records_;
  std::vector<std::string> time_rows_;  // the report row of each time layer's recurrent weight
  std::vector<TimeWatch> time_watch_;
  EventLog events_;
  std::int64_t step_ = 0;
  bool pending_update_ = false;
};

template <Scalar T>
GradientMonitor<T>::GradientMonitor(nn::Module<T>& model, MonitorOptions opt)
    : model_(model), opt_(opt), history_(opt.max_history, opt.every), events_(opt.max_events) {
  if (opt_.every < 1) throw ValueError("GradientMonitor: every must be >= 1");
  discover(model_);
  params_ = model_.parameters();
  sums_.resize(params_.size());
  summed_at_.assign(params_.size(), -1);
  for (auto& w : watched_)
    for (std::size_t i = 0; i < params_.size(); ++i) {
      if (params_[i].storage() == w.weight.storage()) w.weight_index = i;
      if (w.bias.defined() && params_[i].storage() == w.bias.storage()) w.bias_index = i;
    }
  current_.resize(layers_.size());
  attach();
}

template <Scalar T>
GradientMonitor<T>::~GradientMonitor() {
  for (auto& h : handles_) h.remove();
  for (auto& h : step_hooks_) h.remove();  // gradient hooks on a live tape capture this monitor
}

template <Scalar T>
void GradientMonitor<T>::record_gradients(double loss) {
  const std::int64_t s = step_++;
  pending_update_ = false;
  step_hooks_.clear();  // their nodes' sweep is over
  if (!recording(s)) {
    if (measured(loss) && !std::isfinite(loss)) note_loss(s, loss);
    return;
  }
  StepRecord r;
  r.step = s;
  r.loss = loss;
  r.layers.resize(layers_.size());
  // One pass over every parameter's gradient gives the total norm and each layer's norms and
  // mean magnitude; NaN and Inf are counted only where a sum is not finite. The pass mostly
  // happened already, in the post-accumulate hooks, while backward had each gradient in cache;
  // gradients that no backward of this step reached (or that were set by hand) are read now.
  double total = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (summed_at_[i] != s) {
      const auto g = params_[i].grad();
      sums_[i] = detail::sums(g.data(), g.size());
    }
    total += sums_[i].squares;
  }
  r.total_norm = std::sqrt(total);
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    auto& st = r.layers[l];
    st = current_[l];
    current_[l] = LayerStats{};
    auto& w = watched_[l];
    const auto gw = w.weight.grad();
    const detail::Sums sw = sums_of(w.weight_index, gw);
    st.weight_grad_norm = std::sqrt(sw.squares);
    st.grad_mean_abs = sw.magnitudes / static_cast<double>(gw.size());
    if (!std::isfinite(sw.squares)) count_non_finite(gw, st);
    if (w.bias.defined()) {
      const auto gb = w.bias.grad();
      const detail::Sums sb = sums_of(w.bias_index, gb);
      st.bias_grad_norm = std::sqrt(sb.squares);
      if (!std::isfinite(sb.squares)) count_non_finite(gb, st);
    }
    const auto wv = w.weight.value();
    double w2 = 0;
    for (std::size_t k = 0; k < w.sample_rows.size(); ++k) {
      const auto row = wv.row(w.sample_rows[k]);
      w2 += detail::sums(row.data(), row.size()).squares;
      if (opt_.track_updates) w.snapshot.row(static_cast<Index>(k)) = row;
    }
    st.weight_norm =
        std::sqrt(w2 * static_cast<double>(wv.rows()) / static_cast<double>(w.sample_rows.size()));
  }
  history_.push(std::move(r));
  pending_update_ = opt_.track_updates;
  record_time(s);
  check_events(s);
}

template <Scalar T>
void GradientMonitor<T>::record_time(std::int64_t s) {
  for (std::size_t i = 0; i < time_watch_.size(); ++i) {
    auto& w = time_watch_[i];
    if (w.step != s) continue;
    w.step = -1;
    // The steps the gradient reached: up to the last one whose hook ran (a loss that reads an
    // early output only leaves the later steps without a gradient); 0 for a step it skipped.
    std::size_t n = w.total.size();
    while (n > 0 && !measured(w.total[n - 1])) --n;
    if (n == 0) continue;
    for (auto& v : w.total)
      if (!measured(v)) v = 0;
    for (auto& v : w.recurrent)
      if (!measured(v)) v = 0;
    const std::span<const double> total(w.total.data(), n);
    const std::span<const double> recurrent(w.recurrent.data(), n - 1);
    const double carry = w.module->carry_gate_mean(w.layer);
    time_records_[i].push(make_time_profile(
        s, total, recurrent, std::isnan(carry) ? not_measured : carry, opt_.max_time_points,
        static_cast<double>(std::numeric_limits<T>::min())));
  }
}

template <Scalar T>
void GradientMonitor<T>::check_events(std::int64_t s) {
  for (const auto& f : window_findings(layers_, history_, opt_.thresholds, true))
    events_.record(s, f, detail::severity(f, opt_.thresholds), merge_gap());
  for (const auto& f : time_findings(time_layers_, time_records_, time_rows_, opt_.thresholds))
    if (f.verdict == Verdict::exploding_through_time)
      events_.record(s, f, detail::severity(f, opt_.thresholds), merge_gap());
}

template <Scalar T>
void GradientMonitor<T>::note_loss(std::int64_t s, double loss) {
  Finding f;
  f.verdict = Verdict::exploding;
  f.rule = "non_finite";
  f.summary = "the loss is " + detail::num(loss) + " at step " + std::to_string(s) +
              " (a step the monitor did not record)";
  f.evidence = {{"loss", loss}};
  f.hints = {"lower the learning rate",
             "clip gradients by global norm (clip_grad_norm(params, 1.0))",
             "enable detect_nan_origin to name the op and module that made the first NaN"};
  events_.record(s, f, detail::severity(f, opt_.thresholds), merge_gap());
}

template <Scalar T>
void GradientMonitor<T>::record_update() {
  if (!pending_update_ || history_.empty()) return;
  pending_update_ = false;
  auto& r = history_.back();
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const auto& w = watched_[l];
    const auto wv = w.weight.value();
    double before = 0, diff = 0;
    for (std::size_t k = 0; k < w.sample_rows.size(); ++k) {
      const auto old_row = w.snapshot.row(static_cast<Index>(k));
      before += static_cast<double>(old_row.squaredNorm());
      diff += static_cast<double>((wv.row(w.sample_rows[k]) - old_row).squaredNorm());
    }
    r.layers[l].update_ratio = before > 0 ? std::sqrt(diff / before) : not_measured;
  }
}

template <Scalar T>
void GradientMonitor<T>::discover(nn::Module<T>& root) {
  std::size_t pending = static_cast<std::size_t>(-1);
  root.visit([&](nn::Module<T>& m) {
    if (auto* a = dynamic_cast<nn::Activation<T>*>(&m)) {
      if (pending < watched_.size() && !watched_[pending].activation) {
        watched_[pending].activation = a;
        watched_[pending].act_kind = a->activation();
        layers_[pending].activation = a->kind();
      }
      return;
    }
    if (!m.children().empty()) return;
    auto params = m.named_parameters();
    if (params.empty()) return;
    std::vector<std::string> names;
    for (const auto& p : params) names.push_back(p.name);
    const auto rows = detail::parameter_rows(names);
    const std::string path = m.path().empty() ? "(root)" : m.path();
    const bool flow = m.in_gradient_flow();
    for (std::size_t k = 0; k < rows.size(); ++k) {
      Watched w;
      w.module = &m;
      w.weight = params[rows[k].first].tensor;
      if (rows[k].second != npos) w.bias = params[rows[k].second].tensor;
      const Index wr = w.weight.rows(), wc = w.weight.cols();
      const auto budget = static_cast<Index>(opt_.update_sample);
      const Index take = budget == 0 || wr * wc <= budget
                             ? wr
                             : std::clamp<Index>(budget / std::max<Index>(wc, 1), 1, wr);
      for (Index i = 0; i < take; ++i)  // evenly spaced, the first and the last included
        w.sample_rows.push_back(take == 1 ? 0 : i * (wr - 1) / (take - 1));
      if (opt_.track_updates) w.snapshot = w.weight.value()(w.sample_rows, Eigen::all);
      LayerInfo info;
      // One row: the module's path (as before rows per parameter); several: "1.weight_hh_l0".
      info.path = rows.size() == 1   ? path
                  : m.path().empty() ? names[rows[k].first]
                                     : m.path() + "." + names[rows[k].first];
      info.kind = m.describe();
      info.shape = w.weight.shape().str();
      info.in_flow = flow && k == 0;
      if (info.in_flow) pending = watched_.size();
      watched_.push_back(std::move(w));
      layers_.push_back(std::move(info));
    }
    auto* rec = dynamic_cast<nn::Recurrent<T>*>(&m);
    if (!rec || !opt_.time_profiles) return;
    for (Index k = 0; k < rec->num_layers(); ++k) {
      TimeLayerInfo info;
      info.path = path;
      info.kind = rec->describe();
      info.layer = static_cast<int>(k);
      info.carry_gate = rec->cell() == nn::CellKind::lstm  ? "forget gate"
                        : rec->cell() == nn::CellKind::gru ? "update gate"
                                                           : "";
      const std::string row = "weight_hh_l" + std::to_string(k);
      time_rows_.push_back(m.path().empty() ? row : m.path() + "." + row);
      time_layers_.push_back(std::move(info));
      time_records_.emplace_back(opt_.max_time_profiles);
      TimeWatch tw;
      tw.module = rec;
      tw.layer = k;
      time_watch_.push_back(std::move(tw));
    }
  });
}

template <Scalar T>
void GradientMonitor<T>::attach() {
  for (std::size_t i = 0; i < params_.size(); ++i)
    handles_.push_back(
        params_[i].register_post_accumulate_hook([this, i](const ConstMatrixMap<T>& g) {
          if (!recording(step_)) return;
          sums_[i] = detail::sums(g.data(), g.size());
          summed_at_[i] = step_;
        }));
  for (std::size_t i = 0; i < time_watch_.size();) {  // the time layers of one module at a time
    std::size_t end = i;
    while (end < time_watch_.size() && time_watch_[end].module == time_watch_[i].module) ++end;
    handles_.push_back(time_watch_[i].module->register_forward_hook(
        [this, i, end](nn::Module<T>& m, const Tensor<T>&, const Tensor<T>& y) {
          if (!m.is_training() || !recording(step_) || y.is_persistent() || !y.requires_grad())
            return;
          watch_time(static_cast<nn::Recurrent<T>&>(m), i, end);
        }));
    i = end;
  }
  for (std::size_t l = 0; l < watched_.size(); ++l) {
    auto& w = watched_[l];
    if (opt_.delta_norms && layers_[l].in_flow)
      handles_.push_back(w.module->register_forward_hook(
          [this, l](nn::Module<T>& m, const Tensor<T>&, const Tensor<T>& y) {
            if (!m.is_training() || !recording(step_) || y.is_persistent() || !y.requires_grad())
              return;
            Tensor<T> out = y;
            step_hooks_.push_back(out.register_hook([this, l](const ConstMatrixMap<T>& g) {
              auto& st = current_[l];
              const double sum = static_cast<double>(g.rowwise().norm().sum());
              st.delta_norm = sum / static_cast<double>(std::max<Index>(1, g.rows()));
              if (!std::isfinite(sum)) count_non_finite(g, st);
            }));
          }));
    if (opt_.activation_stats && w.activation)
      handles_.push_back(w.activation->register_forward_hook(
          [this, l](nn::Module<T>& m, const Tensor<T>&, const Tensor<T>& y) {
            if (!m.is_training() || !recording(step_)) return;
            activation_stats(l, y.value());
          }));
  }
}

template <Scalar T>
void GradientMonitor<T>::watch_time(nn::Recurrent<T>& m, std::size_t first, std::size_t end) {
  for (std::size_t i = first; i < end; ++i) {
    auto& w = time_watch_[i];
    const auto& ts = m.time_steps(w.layer);
    const std::size_t n = ts.outputs.size();
    w.total.assign(n, not_measured);
    w.recurrent.assign(n > 0 ? n - 1 : 0, not_measured);
    w.step = step_;
    const std::uint64_t gen = ++w.generation;  // a later forward of the step replaces this one
    if (m.cell() != nn::CellKind::lstm) {
      // The state is h_t: its gradient in total, and as step t+1 sends it back.
      auto norm_into = [this, i, gen](bool through_recurrence, std::size_t t) {
        return [this, i, gen, through_recurrence, t](const ConstMatrixMap<T>& g) {
          auto& tw = time_watch_[i];
          if (tw.generation != gen) return;
          (through_recurrence ? tw.recurrent : tw.total)[t] = detail::mean_row_norm(g);
        };
      };
      for (std::size_t t = 0; t < n; ++t) {
        Tensor<T> h = ts.outputs[t];
        if (h.requires_grad()) step_hooks_.push_back(h.register_hook(norm_into(false, t)));
        if (t + 1 < n) {
          Tensor<T> r = ts.recurrent[t];
          if (r.requires_grad()) step_hooks_.push_back(r.register_hook(norm_into(true, t)));
        }
      }
      continue;
    }
    // LSTM: the state is (h_t, c_t), and the cell state carries the long memory, so the norms
    // are those of (dL/dh_t, dL/dc_t) per sample. The view step t+1 reads h_t through gives
    // dL/dh_t through the recurrence (its hook runs first); the cell's node [h_t; c_t] gives the
    // total dL/dh_t and dL/dc_t, which (but at the last step) comes from step t+1 alone.
    w.h_squares.resize(n);
    for (std::size_t t = 0; t < n; ++t) {
      if (t + 1 < n) {
        Tensor<T> r = ts.recurrent[t];
        if (r.requires_grad())
          step_hooks_.push_back(r.register_hook([this, i, gen, t](const ConstMatrixMap<T>& g) {
            auto& tw = time_watch_[i];
            if (tw.generation != gen) return;
            auto& sq = tw.h_squares[t];
            sq.assign(static_cast<std::size_t>(g.rows()), 0.0);
            for (Index b = 0; b < g.rows(); ++b)
              sq[static_cast<std::size_t>(b)] = detail::row_squares(g, b);
          }));
      }
      Tensor<T> c = ts.cells[t];
      if (!c.requires_grad()) continue;
      step_hooks_.push_back(c.register_hook([this, i, gen, t, n](const ConstMatrixMap<T>& g) {
        auto& tw = time_watch_[i];
        if (tw.generation != gen) return;
        const Index B = g.rows() / 2;
        const auto& sq = tw.h_squares[t];
        const bool rec = t + 1 < n && sq.size() == static_cast<std::size_t>(B);
        double total = 0, recurrent = 0;
        for (Index b = 0; b < B; ++b) {
          const double c2 = detail::row_squares(g, B + b);
          total += std::sqrt(detail::row_squares(g, b) + c2);
          if (rec) recurrent += std::sqrt(sq[static_cast<std::size_t>(b)] + c2);
        }
        const double denom = static_cast<double>(std::max<Index>(1, B));
        tw.total[t] = total / denom;
        if (t + 1 < n) tw.recurrent[t] = rec ? recurrent / denom : 0.0;  // 0: no gradient came
      }));
    }
  }
}

template <Scalar T>
void GradientMonitor<T>::activation_stats(std::size_t l, const ConstMatrixMap<T>& y) {
  auto& st = current_[l];
  auto& w = watched_[l];
  const auto kind = w.act_kind;
  const bool relu = kind == nn::ActivationKind::relu;
  if (relu && w.column_max.cols() != y.cols()) w.column_max.resize(1, y.cols());
  double sum = 0, squares = 0;
  Index saturated = 0;
  for (Index i = 0; i < y.rows(); ++i) {
    const auto row = y.row(i).array();
    sum += static_cast<double>(row.sum());
    squares += static_cast<double>(row.square().sum());
    switch (kind) {
      case nn::ActivationKind::sigmoid:  // sigmoid' = y (1 - y) <= 1/4; saturated below 1%
        saturated += (row * (T(1) - row) < T(0.0025)).count();
        break;
      case nn::ActivationKind::tanh:  // tanh' = 1 - y^2 <= 1
        saturated += (T(1) - row.square() < T(0.01)).count();
        break;
      case nn::ActivationKind::relu:  // a unit is dead when zero for every row of the batch
        if (i == 0)
          w.column_max.row(0).array() = row;
        else
          w.column_max.row(0).array() = w.column_max.row(0).array().max(row);
        break;
      default:
        break;
    }
  }
  const double n = static_cast<double>(y.size());
  const double mean = sum / n;
  st.act_mean = mean;
  st.act_std = std::sqrt(std::max(0.0, squares / n - mean * mean));
  if (!std::isfinite(sum + squares)) count_non_finite(y, st);
  if (kind == nn::ActivationKind::sigmoid || kind == nn::ActivationKind::tanh)
    st.saturated_fraction = static_cast<double>(saturated) / n;
  if (relu && y.rows() > 0)
    st.dead_fraction =
        static_cast<double>((w.column_max.array() <= T(0)).count()) / static_cast<double>(y.cols());
}

template <Scalar T>
void GradientMonitor<T>::write_csv(const std::string& path) const {
  auto os = open(path);
  diagnostics::write_csv(os, layers_, history_, &events_);
  write_time_csv(os, time_layers_, time_records_);
}

template <Scalar T>
void GradientMonitor<T>::write_jsonl(const std::string& path) const {
  auto os = open(path);
  diagnostics::write_jsonl(os, layers_, history_, &events_);
  write_time_jsonl(os, time_layers_, time_records_);
}

template <Scalar T>
void GradientMonitor<T>::write_svg(const std::string& path, const SvgOptions& svg) const {
  auto os = open(path);
  diagnostics::write_svg(os, layers_, history_, diagnose(), svg, &time_layers_, &time_records_);
}

template <Scalar T>
std::string GradientMonitor<T>::report() const {
  return format_report(layers_, history_, diagnose()) +
         format_time_report(time_layers_, time_records_);
}

}  // namespace gradscope::diagnostics
