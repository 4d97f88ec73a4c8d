#pragma once
/// What the gradient monitor records: per-layer statistics per recorded step, in a bounded
/// history that downsamples its oldest half (and says so) instead of dropping steps silently.

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace gradscope::diagnostics {

/// The value of a statistic that was not measured: a quiet NaN with a payload of its own, so a
/// measured NaN (which the reports must show, never hide) is told apart from "not measured".
/// Arithmetic never produces this payload: NaNs made by invalid operations carry none, and a
/// float NaN widened to double leaves the low payload bits that mark this one at zero.
inline constexpr double not_measured =
    std::bit_cast<double>(std::uint64_t{0x7ff8'0000'6e6d'6e6dULL});

/// Whether `v` holds a measurement, possibly a non-finite one.
constexpr bool measured(double v) noexcept {
  return std::bit_cast<std::uint64_t>(v) != std::bit_cast<std::uint64_t>(not_measured);
}

/// A layer the monitor follows: a module that owns parameters.
struct LayerInfo {
  std::string path;        ///< module path, e.g. "3"
  std::string kind;        ///< description, e.g. "Dense(784 -> 256)"
  std::string shape;       ///< weight shape, e.g. "[256, 784]"
  std::string activation;  ///< the activation that follows it ("ReLU", "Sigmoid", ...) or ""
  bool in_flow = false;    ///< a dense layer: part of the gradient-flow chain (gain, verdicts)
};

/// One layer at one recorded step. Unmeasured values are `not_measured` (test with `measured`).
struct LayerStats {
  double weight_grad_norm = not_measured;    ///< ||dL/dW||
  double bias_grad_norm = not_measured;      ///< ||dL/db||: Nielsen's "speed of learning"
  double delta_norm = not_measured;          ///< mean over the batch of ||dL/dy_i||, y the output
  double grad_mean_abs = not_measured;       ///< mean |dL/dW|
  double weight_norm = not_measured;         ///< ||W|| before the step
  double update_ratio = not_measured;        ///< ||W_after - W_before|| / ||W_before||
  double act_mean = not_measured;            ///< mean of the following activation's output
  double act_std = not_measured;             ///< its standard deviation
  double saturated_fraction = not_measured;  ///< sigmoid/tanh: derivative below 1% of its max
  double dead_fraction = not_measured;       ///< ReLU: units zero for the whole batch
  std::int64_t nan_count = 0;                ///< NaNs in the layer's gradients and activations
  std::int64_t inf_count = 0;                ///< Infs likewise

  /// The gradient-flow measure: the per-sample delta norm when measured, else the weight
  /// gradient norm.
  double flow_norm() const { return measured(delta_norm) ? delta_norm : weight_grad_norm; }
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
  /// Appends a record; when the history is then full, keeps every other record (the first
  /// included) and doubles the spacing, so the records stay evenly spaced. Thinning happens only
  /// at an odd count (capacity + 1 for an even capacity, capacity for an odd one), so the record
  /// just appended is always kept: the latest step stays the latest record.
  void push(StepRecord r) {
    records_.push_back(std::move(r));
    const std::size_t n = records_.size();
    if (n > capacity_ || (n == capacity_ && n % 2 == 1)) {
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
