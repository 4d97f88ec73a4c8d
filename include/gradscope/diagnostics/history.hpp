#pragma once
/// What the gradient monitor records: per-layer statistics per recorded step, in a bounded
/// history that downsamples its oldest half (and says so) instead of dropping steps silently.

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace gradscope::diagnostics {

inline constexpr double not_measured = std::numeric_limits<double>::quiet_NaN();

/// A layer the monitor follows: a module that owns parameters.
struct LayerInfo {
  std::string path;        ///< module path, e.g. "3"
  std::string kind;        ///< description, e.g. "Dense(784 -> 256)"
  std::string shape;       ///< weight shape, e.g. "[256, 784]"
  std::string activation;  ///< the activation that follows it ("ReLU", "Sigmoid", ...) or ""
  bool in_flow = false;    ///< a dense layer: part of the gradient-flow chain (gain, verdicts)
};

/// One layer at one recorded step. Unmeasured values are NaN.
struct LayerStats {
  double weight_grad_norm = not_measured;  ///< ||dL/dW||
  double bias_grad_norm = not_measured;    ///< ||dL/db||: Nielsen's "speed of learning"
  double delta_norm = not_measured;        ///< mean over the batch of ||dL/dy_i||, y the output
  double grad_mean_abs = not_measured;     ///< mean |dL/dW|
  double weight_norm = not_measured;       ///< ||W|| before the step
  double update_ratio = not_measured;      ///< ||W_after - W_before|| / ||W_before||
  double act_mean = not_measured;          ///< mean of the following activation's output
  double act_std = not_measured;           ///< its standard deviation
  double saturated_fraction = not_measured;  ///< sigmoid/tanh: derivative below 1% of its max
  double dead_fraction = not_measured;       ///< ReLU: units zero for the whole batch
  std::int64_t nan_count = 0;  ///< NaNs in the layer's gradients and activations
  std::int64_t inf_count = 0;  ///< Infs likewise

  /// The gradient-flow measure: the per-sample delta norm when measured, else the weight
  /// gradient norm.
  double flow_norm() const { return std::isnan(delta_norm) ? weight_grad_norm : delta_norm; }
};

/// Every layer at one recorded step, plus the global numbers.
struct StepRecord {
  std::int64_t step = 0;
  double loss = not_measured;
  double total_norm = not_measured;  ///< pre-clip global L2 norm of all parameter gradients
  std::vector<LayerStats> layers;
};

/// The records, oldest first, bounded in size: when full, every other record of the history is
/// dropped and the stride doubles, so the history always spans the whole run evenly.
class History {
 public:
  /// `unit`: the steps between records before any downsampling (the monitor's `every`).
  explicit History(std::size_t capacity = 2048, std::int64_t unit = 1)
      : capacity_(capacity < 4 ? 4 : capacity), unit_(unit < 1 ? 1 : unit) {}

  /// Whether a step with this index would be kept at the current spacing.
  bool wants(std::int64_t step) const { return step % spacing() == 0; }
  /// Appends a record; when that overfills the history, keeps every other record (the first
  /// included) and doubles the spacing, so the records stay evenly spaced.
  void push(StepRecord r) {
    records_.push_back(std::move(r));
    if (records_.size() > capacity_) {
      std::vector<StepRecord> kept;
      kept.reserve(capacity_);
      for (std::size_t i = 0; i < records_.size(); i += 2) kept.push_back(std::move(records_[i]));
      records_ = std::move(kept);
      stride_ *= 2;
      ++downsamplings_;
    }
  }
  /// Steps between consecutive records: unit x stride.
  std::int64_t spacing() const noexcept { return unit_ * stride_; }
  const std::vector<StepRecord>& records() const noexcept { return records_; }
  StepRecord& back() { return records_.back(); }
  bool empty() const noexcept { return records_.empty(); }
  std::size_t size() const noexcept { return records_.size(); }
  /// Recorded steps are multiples of the stride (1 until the first downsampling).
  std::int64_t stride() const noexcept { return stride_; }
  int downsamplings() const noexcept { return downsamplings_; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  std::vector<StepRecord> records_;
  std::size_t capacity_;
  std::int64_t unit_ = 1;
  std::int64_t stride_ = 1;
  int downsamplings_ = 0;
};

}  // namespace gradscope::diagnostics
