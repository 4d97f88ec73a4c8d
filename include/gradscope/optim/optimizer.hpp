#pragma once
/// Optimizer<T>: the base of SGD, Adam, AdamW and RMSprop. Parameter groups, coupled L2 and L1
/// regularisation, a policy for non-finite gradients and for steps that would produce non-finite
/// values, and named state for checkpoints.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../core/core.hpp"

namespace gradscope::optim {

/// What an optimiser (or clip_grad_norm) does when a gradient holds a NaN or Inf, or (optimisers)
/// when the update would turn a finite parameter or state value into a NaN or Inf.
enum class NonFinite {
  /// throw NumericalError naming the first parameter concerned (its op() is "<Kind>.step", its
  /// phase() "update", its label() the parameter's name); nothing changes
  error,
  skip,     ///< leave every parameter and buffer unchanged this step (step() returns false)
  proceed,  ///< apply the step anyway; counted in non_finite_steps() and reported by step()
};

/// A list of parameters sharing settings. Unset fields take the optimiser's options.
template <Scalar T>
struct ParamGroup {
  std::vector<Tensor<T>> params{};
  std::optional<T> lr_scale{};  ///< multiplies the optimiser's learning rate for this group
  /// Whether weight_decay and l1 apply. Unset: only to matrices (rank 2), so biases and
  /// batch-norm scales and shifts (rank 1) are excluded, as is common practice.
  std::optional<bool> regularize{};
};

/// The base of every optimiser. A frozen parameter (requires_grad off, e.g. through
/// Module::set_requires_grad(false)) is skipped by step(), as PyTorch skips parameters without a
/// gradient: neither the update nor weight decay, L1, momentum or moment estimates touch it, and
/// its step count (Adam's bias correction) stands still until it is trainable again.
template <Scalar T>
class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor<T>> params);
  explicit Optimizer(std::vector<ParamGroup<T>> groups);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// Applies one update from the current gradients. Before anything changes, the gradients are
  /// checked and the update is computed once without storing it: a non-finite gradient, or an
  /// update that would make a finite parameter or state value non-finite (an infinite or
  /// overflowing learning rate, an overflowing squared gradient), follows the non-finite policy.
  /// Returns false when the step was skipped (NonFinite::skip) or applied despite either
  /// (NonFinite::proceed).
  bool step();
  /// Zeroes every parameter's gradient.
  void zero_grad();

  /// The base learning rate (schedules set it each step).
  T lr() const noexcept { return lr_; }
  /// Sets the base learning rate: finite and >= 0, else ValueError.
  void set_lr(T lr) {
    if (!(std::isfinite(lr) && lr >= 0))
      throw ValueError(
          gradscope::detail::cat(kind(), ": learning rate must be finite and >= 0, got ", lr));
    lr_ = lr;
  }
  /// Number of applied steps (the bias-correction step count of Adam).
  std::int64_t steps() const noexcept { return steps_; }
  /// Steps skipped under NonFinite::skip.
  std::int64_t skipped_steps() const noexcept { return skipped_; }
  /// Steps applied under NonFinite::proceed with non-finite gradients or non-finite results.
  std::int64_t non_finite_steps() const noexcept { return non_finite_steps_; }
  void set_non_finite_policy(NonFinite p) noexcept { non_finite_ = p; }
  NonFinite non_finite_policy() const noexcept { return non_finite_; }
  const std::vector<ParamGroup<T>>& groups() const noexcept { return groups_; }
  /// Every parameter, in group order.
  std::vector<Tensor<T>> parameters() const;
  /// "SGD", "Adam", "AdamW", "RMSprop".
  virtual std::string kind() const = 0;

  /// The optimiser's state as named persistent tensors (for checkpoints): "step" and, per
  /// parameter, its buffers ("<param name>.exp_avg", ...). Loading writes into these tensors.
  std::vector<NamedTensor<T>> named_state();
  /// Call after loading values into named_state()'s tensors: takes the step count back. The
  /// state holds one step count, so every parameter's own count becomes it (exact unless some
  /// parameter was frozen for part of the run that was saved).
  void state_loaded() {
    steps_ = static_cast<std::int64_t>(std::llround(step_tensor_.item()));
    std::fill(param_steps_.begin(), param_steps_.end(), steps_);
    state_max_known_ = false;
  }

 protected:
  /// Where an update would first turn a finite value non-finite: parameter `param` (in
  /// parameters() order), in its value (`buffer` "value") or in a state buffer ("exp_avg_sq").
  struct Overflow {
    std::size_t param;
    const char* buffer;
    const char* hint;  ///< the likely cause, for the message ("" when none is known)
  };

  /// The update of every parameter, chunk_size elements at a time. With `commit` true it is
  /// applied (and returns nothing). With `commit` false nothing is stored: each chunk of the
  /// parameter and its state is copied to scratch (stage()), updated there by the same code,
  /// so to the same bits, and checked (first_overflow()); the result is the first value the
  /// step would make non-finite. step() runs it both ways when bounded() cannot rule that out.
  virtual std::optional<Overflow> apply(bool commit) = 0;
  /// Whether the update of parameter i provably stays finite, from magnitudes alone: the largest
  /// |gradient| and |value| of the parameter, and state_max(i, k) bounding its buffers. Sets
  /// `next` to bounds of the buffers after the update (whatever the answer). The bounds are
  /// computed in double and must stay below bound_limit(); false when in doubt, and step() then
  /// computes the update once without storing it, exactly.
  virtual bool bounded(std::size_t i, const ParamGroup<T>& group, const Tensor<T>& p,
                       double grad_max, double value_max, std::array<double, 3>& next) const = 0;
  /// The named buffers of parameter i (in parameters() order).
  virtual std::vector<std::pair<std::string, Tensor<T>>> state_of(std::size_t i) = 0;

  /// False for a frozen parameter, which apply() must leave alone (value and state).
  static bool trainable(const Tensor<T>& p) { return p.requires_grad(); }
  /// The steps parameter i (in parameters() order) takes part in, the one being applied
  /// included: steps() less the steps it was frozen for (PyTorch's per-parameter "step").
  std::int64_t param_steps(std::size_t i) const { return param_steps_[i]; }

  /// Elements updated together: the chunk's values, state and temporaries stay in L1.
  static constexpr Index chunk_size = 1024;
  /// Scratch block k (0 or 1) of chunk_size elements, for an update's temporaries.
  T* scratch(int k) noexcept { return scratch_.data() + k * chunk_size; }
  /// The bounds of bounded() must stay below this: T's largest value with a margin of 8 for the
  /// rounding of the few operations of an update.
  static constexpr double bound_limit() {
    return static_cast<double>(std::numeric_limits<T>::max()) / 8;
  }
  /// A bound on the magnitudes of state buffer k (the k-th of state_of(i), up to 3) of parameter
  /// i: carried from step to step by bounded()'s `next` (no pass over the state), measured again
  /// after the state was handed out (named_state()) or loaded (state_loaded()).
  double state_max(std::size_t i, int k) const {
    return state_max_[i][static_cast<std::size_t>(k)];
  }
  /// The largest |x| of n values; NaN when one is not finite; 0 when n is 0.
  static double abs_max(const T* x, Index n) {
    if (n == 0) return 0;
    if (!gradscope::detail::all_finite(x, n)) return std::numeric_limits<double>::quiet_NaN();
    return static_cast<double>(
        Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(x, n).abs().maxCoeff());
  }
  /// The chunk of N buffers (a parameter's values, then its state; nullptr for a buffer the
  /// configuration does not use) an update should work on: the buffers themselves when
  /// committing, copies in scratch blocks 2.. when checking.
  template <std::size_t N>
  std::array<T*, N> stage(bool commit, const std::array<T*, N>& buffers, Index len) {
    static_assert(N <= 4, "Optimizer::stage: at most four buffers per chunk");
    if (commit) return buffers;
    std::array<T*, N> copies{};
    for (std::size_t b = 0; b < N; ++b) {
      if (!buffers[b]) continue;
      copies[b] = scratch_.data() + (2 + static_cast<Index>(b)) * chunk_size;
      std::copy_n(buffers[b], len, copies[b]);
    }
    return copies;
  }
  /// After a checked chunk: a buffer holding a value that was finite before the update and is
  /// not after it, or -1. (A value already non-finite is not the step's doing.) State buffers are
  /// looked at before the parameter's value, which is computed from them: an overflowing
  /// momentum buffer is the cause of the Inf it puts into the weight.
  template <std::size_t N>
  static int first_overflow(const std::array<T*, N>& before, const std::array<T*, N>& after,
                            Index len) {
    for (std::size_t k = 1; k <= N; ++k) {
      const std::size_t b = k % N;  // 1, ..., N - 1, then 0
      if (!after[b] || gradscope::detail::all_finite(after[b], len)) continue;
      for (Index e = 0; e < len; ++e)
        if (std::isfinite(before[b][e]) && !std::isfinite(after[b][e])) return static_cast<int>(b);
    }
    return -1;
  }

  /// Whether weight decay and L1 apply to parameter p of group g.
  static bool regularized(const ParamGroup<T>& g, const Tensor<T>& p) {
    return g.regularize.value_or(p.rank() == 2);
  }
  T group_lr(const ParamGroup<T>& g) const { return lr_ * g.lr_scale.value_or(T(1)); }
  static std::string display_name(const Tensor<T>& p) {
    return p.name().empty() ? std::string("(unnamed)") : p.name();
  }
  /// A zero state buffer shaped like p.
  static Tensor<T> zeros_like(const Tensor<T>& p) { return Tensor<T>::zeros(p.shape()); }
  /// The elements of chunk [k, k + len) of a state buffer, or nullptr when it is not allocated
  /// (a buffer the configuration does not use).
  static T* chunk_of(Tensor<T>& buffer, Index k) {
    return buffer.defined() ? buffer.mutable_value().data() + k : nullptr;
  }
  /// Throws ValueError naming the option unless v is finite and in [lo, hi] (or an open end).
  void check_option(const char* name, T v, double lo,
                    double hi = std::numeric_limits<double>::infinity(), bool open_lo = false,
                    bool open_hi = false) const;

  std::vector<ParamGroup<T>> groups_;
  T lr_ = T(0.01);

 private:
  std::optional<Tensor<T>> first_non_finite();
  bool all_bounded();
  [[noreturn]] void throw_overflow(const Overflow& o) const;
  // Measures the state's magnitudes again (after named_state() or state_loaded()).
  void recompute_state_max();
  // Adds `delta` to the step count of every trainable parameter.
  void count_param_steps(int delta);

  // Two blocks for temporaries, four for the staged copies of a checked chunk: allocated once,
  // so that step() allocates nothing.
  Matrix<T> scratch_ = Matrix<T>::Zero(6, chunk_size);
  std::vector<double> grad_max_;  // per parameter, from the gradient scan
  // Bounds of the state's magnitudes by parameter and buffer, and those after the step.
  std::vector<std::array<double, 3>> state_max_, next_max_;
  bool state_max_known_ = true;  // the state starts at zero
  std::vector<std::int64_t> param_steps_;
  std::int64_t steps_ = 0, skipped_ = 0, non_finite_steps_ = 0;
  NonFinite non_finite_ = NonFinite::error;
  Tensor<T> step_tensor_;
};

template <Scalar T>
Optimizer<T>::Optimizer(std::vector<Tensor<T>> params)
    : Optimizer(std::vector<ParamGroup<T>>{ParamGroup<T>{std::move(params), {}, {}}}) {}

template <Scalar T>
Optimizer<T>::Optimizer(std::vector<ParamGroup<T>> groups) : groups_(std::move(groups)) {
  using gradscope::detail::cat;
  // Parameters by storage, to find one given twice: it would be updated twice per step.
  std::vector<std::pair<const void*, std::size_t>> seen;
  std::size_t i = 0;
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    const auto& g = groups_[gi];
    if (g.lr_scale && !(std::isfinite(*g.lr_scale) && *g.lr_scale >= 0))
      throw ValueError(cat("optimizer: parameter group ", gi,
                           ": lr_scale must be finite and >= 0, got ", *g.lr_scale));
    for (const auto& p : g.params) {
      if (!p.is_parameter())  // trainable or frozen; data and tape nodes are not parameters
        throw UsageError(
            cat("optimizer: parameter ", i, " ('", p.name(), "') is not a parameter tensor"));
      seen.emplace_back(p.storage().get(), i++);
    }
  }
  if (seen.empty())
    throw ValueError(
        "optimizer: no parameters to optimise (an empty parameter list; a model without "
        "parameters?)");
  grad_max_.assign(seen.size(), 0.0);
  param_steps_.assign(seen.size(), 0);
  state_max_.assign(seen.size(), {0, 0, 0});
  next_max_ = state_max_;
  std::sort(seen.begin(), seen.end());
  for (std::size_t k = 1; k < seen.size(); ++k)
    if (seen[k].first == seen[k - 1].first) {
      const auto all = parameters();
      throw ValueError(cat("optimizer: parameter ", seen[k - 1].second, " ('",
                           display_name(all[seen[k - 1].second]), "') is given again as parameter ",
                           seen[k].second,
                           "; each parameter may appear once (in one group), or it is updated "
                           "twice per step (a module added to a model twice shares its "
                           "parameters: pass them once)"));
    }
}

template <Scalar T>
void Optimizer<T>::check_option(const char* name, T v, double lo, double hi, bool open_lo,
                                bool open_hi) const {
  using gradscope::detail::cat;
  const double x = static_cast<double>(v);
  if (std::isfinite(x) && (open_lo ? x > lo : x >= lo) && (open_hi ? x < hi : x <= hi)) return;
  const std::string range =
      std::isinf(hi) ? cat(open_lo ? "> " : ">= ", lo)
                     : cat("in ", open_lo ? "(" : "[", lo, ", ", hi, open_hi ? ")" : "]");
  throw ValueError(cat(kind(), ": ", name, " must be finite and ", range, ", got ", v));
}

template <Scalar T>
bool Optimizer<T>::step() {
  if (const auto bad = first_non_finite()) {
    const auto& p = *bad;
    switch (non_finite_) {
      case NonFinite::error:
        throw NumericalError(
            gradscope::detail::cat(kind(), ".step: non-finite gradient in parameter '",
                                   display_name(p), "' of shape ", p.shape(),
                                   "; the step was not applied"),
            kind() + ".step", "update", display_name(p));
      case NonFinite::skip:
        ++skipped_;
        return false;
      case NonFinite::proceed:
        ++non_finite_steps_;
        break;
    }
    ++steps_;
    count_param_steps(1);
    apply(true);
    state_max_known_ = false;  // the state may hold NaNs now
    return false;
  }
  ++steps_;
  count_param_steps(1);
  // Would the update make a finite value non-finite? Usually the magnitudes rule it out at the
  // cost of reading the parameters once; else the update is computed once without storing it
  // (and the state's magnitudes are measured again at the next step, to get tight bounds back).
  const bool bounded_update = all_bounded();
  if (!bounded_update) state_max_known_ = false;
  if (const auto overflow = bounded_update ? std::nullopt : apply(false)) {
    switch (non_finite_) {
      case NonFinite::error:
        --steps_;
        count_param_steps(-1);
        throw_overflow(*overflow);
      case NonFinite::skip:
        --steps_;
        count_param_steps(-1);
        ++skipped_;
        return false;
      case NonFinite::proceed:
        ++non_finite_steps_;
        apply(true);
        state_max_known_ = false;
        return false;
    }
  }
  apply(true);
  if (bounded_update) state_max_.swap(next_max_);
  return true;
}

template <Scalar T>
void Optimizer<T>::count_param_steps(int delta) {
  std::size_t i = 0;
  for (const auto& g : groups_)
    for (const auto& p : g.params) param_steps_[i++] += trainable(p) ? delta : 0;
}

template <Scalar T>
void Optimizer<T>::throw_overflow(const Overflow& o) const {
  const Tensor<T> p = parameters()[o.param];
  const std::string what =
      std::string(o.buffer) == "value"
          ? "parameter '" + display_name(p) + "'"
          : std::string("the ") + o.buffer + " of parameter '" + display_name(p) + "'";
  throw NumericalError(
      gradscope::detail::cat(kind(), ".step: step ", steps_ + 1, " would make ", what, " of shape ",
                             p.shape(), " non-finite (learning rate ", lr_, *o.hint ? "; " : "",
                             o.hint, "); the step was not applied"),
      kind() + ".step", "update", display_name(p));
}

template <Scalar T>
void Optimizer<T>::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

template <Scalar T>
std::vector<Tensor<T>> Optimizer<T>::parameters() const {
  std::vector<Tensor<T>> out;
  for (const auto& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

template <Scalar T>
std::vector<NamedTensor<T>> Optimizer<T>::named_state() {
  std::vector<NamedTensor<T>> out;
  state_max_known_ = false;  // the buffers are handed out: they may be written
  Matrix<T> s(1, 1);
  s(0, 0) = static_cast<T>(steps_);
  step_tensor_ = Tensor<T>(s, 0, false);
  out.push_back({"step", step_tensor_});
  std::size_t i = 0;
  for (auto& g : groups_)
    for (auto& p : g.params) {
      for (auto& [name, buf] : state_of(i))
        out.push_back(
            {(p.name().empty() ? "param" + std::to_string(i) : p.name()) + "." + name, buf});
      ++i;
    }
  return out;
}

template <Scalar T>
std::optional<Tensor<T>> Optimizer<T>::first_non_finite() {
  // One pass per gradient finds a NaN or Inf and the largest magnitude (for bounded()).
  std::size_t i = 0;
  for (const auto& g : groups_)
    for (const auto& p : g.params) {
      grad_max_[i] = trainable(p) ? abs_max(p.grad().data(), p.size()) : 0.0;
      if (!std::isfinite(grad_max_[i++])) return p;
    }
  return std::nullopt;
}

template <Scalar T>
bool Optimizer<T>::all_bounded() {
  if (!state_max_known_) recompute_state_max();
  bool ok = true;  // every parameter is visited: bounded() also carries the state's bounds
  std::size_t i = 0;
  for (const auto& g : groups_)
    for (const auto& p : g.params) {
      if (!trainable(p)) {  // frozen: nothing of it changes
        next_max_[i] = state_max_[i];
        ++i;
        continue;
      }
      const double value_max = abs_max(p.value().data(), p.size());
      // A value already non-finite (NaN here) leaves the decision to the exact check.
      ok =
          bounded(i, g, p, grad_max_[i], value_max, next_max_[i]) && std::isfinite(value_max) && ok;
      ++i;
    }
  return ok;
}

template <Scalar T>
void Optimizer<T>::recompute_state_max() {
  for (std::size_t i = 0; i < state_max_.size(); ++i) {
    state_max_[i] = {0, 0, 0};
    std::size_t k = 0;
    for (const auto& [name, buffer] : state_of(i))
      if (k < 3) state_max_[i][k++] = abs_max(buffer.value().data(), buffer.size());
  }
  state_max_known_ = true;
}

}  // namespace gradscope::optim
