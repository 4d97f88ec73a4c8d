#pragma once
/// Gradients through time: the profile of dL/dh_t over the steps of a recurrent layer (Pascanu,
/// Mikolov and Bengio 2013 plot its norm against t), its gain per step, how much of the last
/// step's gradient reaches the first, and the memory horizon; a bounded record of the profiles.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "history.hpp"

namespace gradscope::diagnostics {

/// The gradient through time of one recurrent layer at one recorded step.
///
/// total[t] is the per-sample norm of dL/dh_t (the mean over the batch of each sample's norm;
/// for an LSTM the norm of (dL/dh_t, dL/dc_t), its whole state), through the output and the
/// recurrence; recurrent[t] the same through the recurrence alone (from step t+1). Their
/// ratio recurrent[t] / total[t+1] is how much of the gradient at step t+1 the step carries back
/// to t, whether or not the loss also reads every step's output: its geometric mean over t is the
/// gain per step, its running product from the last step back the part of the last step's
/// gradient that reaches each earlier step. (With the loss on the last step only, recurrent[t]
/// is total[t], and the product reaching step 0 is total[0] / total[T-1].)
struct TimeProfile {
  std::int64_t step = 0;   ///< the training step
  std::int64_t steps = 0;  ///< T, the length of the sequence
  /// Steps per stored point: 1, or more when T exceeded the monitor's max_time_points and each
  /// point holds the geometric mean of its steps (the measures below are computed before that).
  std::int64_t bin = 1;
  std::vector<double> total;      ///< per point, steps ascending
  std::vector<double> recurrent;  ///< per point; the last step has none (not_measured)
  double gain = not_measured;     ///< geometric mean over t of recurrent[t] / total[t+1]
  /// The part of the last step's gradient that reaches the first step: the product of the
  /// ratios. Below the smallest normal number (`underflow`) it is reported as that bound.
  double reach = not_measured;
  /// Steps back from the last over which the part of its gradient still reaching them stays at
  /// or above 1% (T - 1 when it reaches the first step above 1%).
  std::int64_t horizon = 0;
  /// The mean of the LSTM's forget gate or the GRU's update gate (how much state each step
  /// carries on), or not_measured.
  double carry_gate = not_measured;
  /// Some norm or product fell below the smallest normal number of the model's scalar type
  /// (a float gradient that underflowed to 0): figures involving it are upper bounds.
  bool underflow = false;
  /// The reach is that bound itself (its true value is below it): reports print "< bound".
  bool reach_at_bound = false;
};

namespace detail {
/// log of a norm, with 0 (or anything below the smallest normal number) as that number.
inline double log_norm(double v, double min_normal) { return std::log(std::max(v, min_normal)); }
}  // namespace detail

/// The profile of one layer at one step from the norms of every step (total: T values,
/// recurrent: T - 1 values for steps 0..T-2). `min_normal` is the smallest normal number of the
/// model's scalar type (a float gradient that underflows is 0, reported as below it). The gain,
/// reach and horizon are computed on every step; the norms are then kept at most `max_points`
/// (>= 2) points per profile.
inline TimeProfile make_time_profile(std::int64_t step, std::span<const double> total,
                                     std::span<const double> recurrent, double carry_gate,
                                     std::size_t max_points, double min_normal) {
  TimeProfile p;
  p.step = step;
  p.steps = static_cast<std::int64_t>(total.size());
  p.carry_gate = carry_gate;
  const std::size_t T = total.size();
  for (double v : total) p.underflow = p.underflow || v < min_normal;
  if (T >= 2 && recurrent.size() + 1 >= T) {
    // Running log-product of the ratios from the last step back; the horizon is where it first
    // drops below log(0.01).
    const double log_floor = std::log(0.01);
    double log_product = 0, log_sum = 0;
    bool below = false;
    p.horizon = static_cast<std::int64_t>(T - 1);
    for (std::size_t t = T - 1; t-- > 0;) {
      if (recurrent[t] < min_normal) p.underflow = true;
      const double log_ratio =
          detail::log_norm(recurrent[t], min_normal) - detail::log_norm(total[t + 1], min_normal);
      log_product += log_ratio;
      log_sum += log_ratio;
      if (!below && log_product < log_floor) {
        below = true;
        p.horizon = static_cast<std::int64_t>(T - 2 - t);
      }
    }
    p.gain = std::exp(log_sum / static_cast<double>(T - 1));
    p.reach = std::max(std::exp(log_product), p.underflow ? min_normal : 0.0);
    p.reach_at_bound = p.underflow && p.reach <= min_normal;
  }
  // Storage: every step, or geometric means of bins of steps.
  max_points = std::max<std::size_t>(max_points, 2);
  const std::size_t bin = (T + max_points - 1) / max_points;
  p.bin = static_cast<std::int64_t>(std::max<std::size_t>(bin, 1));
  const auto keep = [&](std::span<const double> v, std::size_t n) {
    std::vector<double> out;
    for (std::size_t a = 0; a < n; a += p.bin) {
      const std::size_t b = std::min(n, a + static_cast<std::size_t>(p.bin));
      double s = 0;
      for (std::size_t t = a; t < b; ++t) s += detail::log_norm(v[t], min_normal);
      out.push_back(b - a == 1 ? v[a] : std::exp(s / static_cast<double>(b - a)));
    }
    return out;
  };
  p.total = keep(total, T);
  p.recurrent = keep(recurrent, std::min(recurrent.size(), T > 0 ? T - 1 : 0));
  p.recurrent.resize(p.total.size(), not_measured);
  return p;
}

/// A recurrent layer the monitor follows through time.
struct TimeLayerInfo {
  std::string path;        ///< module path, e.g. "1"
  std::string kind;        ///< description, e.g. "LSTM(28 -> 128)"
  int layer = 0;           ///< the layer within a stacked module (0 for the first)
  std::string carry_gate;  ///< "forget gate" (LSTM), "update gate" (GRU) or "" (RNN)
  /// "1" or "1, layer 2" (the stacked layers of one module are told apart).
  std::string name() const {
    return layer == 0 ? path : path + ", layer " + std::to_string(layer + 1);
  }
};

/// The profiles of one layer over the run, bounded: when full, every other profile is dropped
/// and the spacing doubles (like History), so the record spans the whole run evenly; the latest
/// profile is always kept.
class TimeRecords {
 public:
  explicit TimeRecords(std::size_t capacity = 64) : capacity_(std::max<std::size_t>(capacity, 4)) {}
  void push(TimeProfile p) {
    profiles_.push_back(std::move(p));
    const std::size_t n = profiles_.size();
    if (n > capacity_ || (n == capacity_ && n % 2 == 1)) {
      std::vector<TimeProfile> kept;
      kept.reserve(capacity_);
      for (std::size_t i = 0; i < n; i += 2) kept.push_back(std::move(profiles_[i]));
      profiles_ = std::move(kept);
      ++downsamplings_;
    }
  }
  const std::vector<TimeProfile>& profiles() const noexcept { return profiles_; }
  bool empty() const noexcept { return profiles_.empty(); }
  /// How often the record was thinned (each time, half the profiles were dropped).
  int downsamplings() const noexcept { return downsamplings_; }

 private:
  std::vector<TimeProfile> profiles_;
  std::size_t capacity_;
  int downsamplings_ = 0;
};

/// A number for a report: "3.1e-09", or "< 1.2e-38" for one at the underflow bound.
inline std::string time_figure(double v, bool bound) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2g", v);
  return bound ? std::string("< ") + buf : std::string(buf);
}

}  // namespace gradscope::diagnostics
