#pragma once
/// GradientMonitor<T>: records per-layer gradient statistics of a module tree during training,
/// through the public hooks of core (tensor gradient hooks) and nn (forward hooks).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/core.hpp"
#include "../nn/layers.hpp"
#include "../nn/module.hpp"
#include "history.hpp"
#include "report.hpp"
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
  Thresholds thresholds{};
};

/// Watches a model while it trains. Per training step:
///
///     tape.backward(loss);
///     monitor.record_gradients(loss.item());   // before clipping and before zero_grad
///     clip_grad_norm(...); opt.step();
///     monitor.record_update();                 // after the optimiser step
///
/// It follows every module that owns parameters (dense layers form the gradient-flow chain;
/// batch-norm layers are reported too) and the activation that follows each dense layer.
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
  /// Records a NumericalError caught elsewhere as the NaN origin (the first one wins).
  void note(const NumericalError& e) {
    if (!nan_origin_) nan_origin_ = NanOrigin{step_, e.op(), e.phase(), e.label(), e.what()};
  }
  const std::optional<NanOrigin>& nan_origin() const noexcept { return nan_origin_; }

  /// The verdicts on the latest recorded steps.
  Diagnosis diagnose() const {
    return diagnostics::diagnose(layers_, history_, opt_.thresholds, nan_origin_);
  }
  /// The console report: per-layer table with sparklines, the verdict and its hints.
  std::string report() const;
  /// One CSV row per recorded step, layer and metric.
  void write_csv(const std::string& path) const;
  /// One JSON object per recorded step.
  void write_jsonl(const std::string& path) const;
  /// A self-contained SVG "gradient flow" chart.
  void write_svg(const std::string& path, const SvgOptions& svg = {}) const;

  const std::vector<LayerInfo>& layers() const noexcept { return layers_; }
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

  bool recording(std::int64_t s) const { return history_.wants(s); }

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
  std::int64_t step_ = 0;
  bool pending_update_ = false;
};

template <Scalar T>
GradientMonitor<T>::GradientMonitor(nn::Module<T>& model, MonitorOptions opt)
    : model_(model), opt_(opt), history_(opt.max_history, opt.every) {
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
  if (!recording(s)) return;
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
    Watched w;
    w.module = &m;
    for (auto& p : params) {
      if (p.name == "weight") w.weight = p.tensor;
      if (p.name == "bias") w.bias = p.tensor;
    }
    if (!w.weight.defined()) w.weight = params.front().tensor;
    {
      const Index rows = w.weight.rows(), cols = w.weight.cols();
      const auto budget = static_cast<Index>(opt_.update_sample);
      const Index take = budget == 0 || rows * cols <= budget
                             ? rows
                             : std::clamp<Index>(budget / std::max<Index>(cols, 1), 1, rows);
      for (Index k = 0; k < take; ++k)  // evenly spaced, the first and the last included
        w.sample_rows.push_back(take == 1 ? 0 : k * (rows - 1) / (take - 1));
      if (opt_.track_updates) w.snapshot = w.weight.value()(w.sample_rows, Eigen::all);
    }
    LayerInfo info;
    info.path = m.path().empty() ? "(root)" : m.path();
    info.kind = m.describe();
    info.shape = w.weight.shape().str();
    info.in_flow = dynamic_cast<nn::Dense<T>*>(&m) != nullptr;
    if (info.in_flow) pending = watched_.size();
    watched_.push_back(std::move(w));
    layers_.push_back(std::move(info));
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
  diagnostics::write_csv(os, layers_, history_);
}

template <Scalar T>
void GradientMonitor<T>::write_jsonl(const std::string& path) const {
  auto os = open(path);
  diagnostics::write_jsonl(os, layers_, history_);
}

template <Scalar T>
void GradientMonitor<T>::write_svg(const std::string& path, const SvgOptions& svg) const {
  auto os = open(path);
  diagnostics::write_svg(os, layers_, history_, diagnose(), svg);
}

template <Scalar T>
std::string GradientMonitor<T>::report() const {
  return format_report(layers_, history_, diagnose());
}

}  // namespace gradscope::diagnostics
