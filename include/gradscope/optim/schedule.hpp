#pragma once
/// Learning-rate schedules: step, exponential, cosine, linear warm-up, and their composition.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>
#include <utility>

#include "../detail/compiled.hpp"
#include "optimizer.hpp"

namespace gradscope::optim {

/// A learning-rate multiplier as a function of the step (or epoch) count, starting at 0.
class Schedule {
 public:
  Schedule() : f_([](std::int64_t) { return 1.0; }) {}
  explicit Schedule(std::function<double(std::int64_t)> f) : f_(std::move(f)) {}
  /// The multiplier of the base learning rate at step t.
  double operator()(std::int64_t t) const { return f_(t); }
  /// `this` for steps before `at`, then `next` counted from `at` (scaled to continue from
  /// where this one ended).
  Schedule then(std::int64_t at, Schedule next) const;

 private:
  std::function<double(std::int64_t)> f_;
};

/// Product of two schedules: warmup(500) * cosine(10000).
GRADSCOPE_COMPILED_API Schedule operator*(Schedule a, Schedule b);

// The schedules are defined below, out of line: with GRADSCOPE_EXTERN_TEMPLATES each is compiled
// once (a std::function per schedule is not cheap to compile), see detail/compiled.hpp.
namespace schedule {
/// Multiplies by gamma every `step_size` steps.
GRADSCOPE_COMPILED_API Schedule step(std::int64_t step_size, double gamma);
/// Multiplies by gamma every step.
GRADSCOPE_COMPILED_API Schedule exponential(double gamma);
/// Cosine annealing from 1 to min_factor over `total` steps, then min_factor.
GRADSCOPE_COMPILED_API Schedule cosine(std::int64_t total, double min_factor = 0);
/// Linear warm-up from start_factor to 1 over `steps` steps, then 1.
GRADSCOPE_COMPILED_API Schedule warmup(std::int64_t steps, double start_factor = 0);
/// A constant multiplier.
GRADSCOPE_COMPILED_API Schedule constant(double factor = 1);
}  // namespace schedule

#if !GRADSCOPE_OPTIM_DECLARE_ONLY
GRADSCOPE_COMPILED_API Schedule operator*(Schedule a, Schedule b) {
  return Schedule([a = std::move(a), b = std::move(b)](std::int64_t t) { return a(t) * b(t); });
}
GRADSCOPE_COMPILED_API Schedule Schedule::then(std::int64_t at, Schedule next) const {
  return Schedule([a = *this, b = std::move(next), at](std::int64_t t) {
    return t < at ? a(t) : a(at) * b(t - at);
  });
}
namespace schedule {
GRADSCOPE_COMPILED_API Schedule step(std::int64_t step_size, double gamma) {
  if (step_size <= 0) throw ValueError("schedule::step: step_size must be > 0");
  return Schedule(
      [=](std::int64_t t) { return std::pow(gamma, static_cast<double>(t / step_size)); });
}
GRADSCOPE_COMPILED_API Schedule exponential(double gamma) {
  return Schedule([=](std::int64_t t) { return std::pow(gamma, static_cast<double>(t)); });
}
GRADSCOPE_COMPILED_API Schedule cosine(std::int64_t total, double min_factor) {
  if (total <= 0) throw ValueError("schedule::cosine: total must be > 0");
  return Schedule([=](std::int64_t t) {
    const double x = std::min(1.0, static_cast<double>(t) / static_cast<double>(total));
    return min_factor + (1 - min_factor) * 0.5 * (1 + std::cos(std::numbers::pi * x));
  });
}
GRADSCOPE_COMPILED_API Schedule warmup(std::int64_t steps, double start_factor) {
  if (steps <= 0) throw ValueError("schedule::warmup: steps must be > 0");
  return Schedule([=](std::int64_t t) {
    if (t >= steps) return 1.0;
    return start_factor + (1 - start_factor) * static_cast<double>(t) / static_cast<double>(steps);
  });
}
GRADSCOPE_COMPILED_API Schedule constant(double factor) {
  return Schedule([=](std::int64_t) { return factor; });
}
}  // namespace schedule
#endif  // !GRADSCOPE_OPTIM_DECLARE_ONLY

/// Drives an optimiser's learning rate: base_lr * schedule(t), t advanced by step().
template <Scalar T>
class LrScheduler {
 public:
  LrScheduler(Optimizer<T>& opt, Schedule s)
      : opt_(opt), schedule_(std::move(s)), base_(static_cast<double>(opt.lr())) {
    apply();
  }
  /// Advances the count (per iteration or per epoch, as the caller chooses) and sets the rate.
  void step() {
    ++t_;
    apply();
  }
  std::int64_t count() const noexcept { return t_; }
  /// Sets the count (after loading a checkpoint) and the rate.
  void set_count(std::int64_t t) {
    t_ = t;
    apply();
  }
  double lr() const { return base_ * schedule_(t_); }

 private:
  void apply() { opt_.set_lr(static_cast<T>(lr())); }
  Optimizer<T>& opt_;
  Schedule schedule_;
  double base_;
  std::int64_t t_ = 0;
};

}  // namespace gradscope::optim
