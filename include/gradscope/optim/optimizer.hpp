#pragma once
/// Optimizer<T>: the base of SGD, Adam, AdamW and RMSprop. Parameter groups, coupled L2 and L1
/// regularisation, a policy for non-finite gradients, and named state for checkpoints.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../core/core.hpp"

namespace gradscope::optim {

/// What an optimiser (or clip_grad_norm) does when a gradient holds a NaN or Inf.
enum class NonFinite {
  error,    ///< throw NumericalError naming the first parameter with a non-finite gradient
  skip,     ///< leave every parameter unchanged this step (step() returns false)
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

  /// Applies one update from the current gradients. Returns false when the step was skipped
  /// (NonFinite::skip) or applied despite non-finite gradients (NonFinite::proceed).
  bool step();
  /// Zeroes every parameter's gradient.
  void zero_grad();

  /// The base learning rate (schedules set it each step).
  T lr() const noexcept { return lr_; }
  void set_lr(T lr) {
    if (!(lr >= 0))
      throw ValueError(gradscope::detail::cat(kind(), ": learning rate must be >= 0"));
    lr_ = lr;
  }
  /// Number of applied steps (the bias-correction step count of Adam).
  std::int64_t steps() const noexcept { return steps_; }
  /// Steps skipped under NonFinite::skip.
  std::int64_t skipped_steps() const noexcept { return skipped_; }
  /// Steps applied with non-finite gradients under NonFinite::proceed.
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
  }

 protected:
  /// The update itself, for every parameter (called by step()).
  virtual void apply() = 0;
  /// The named buffers of parameter i (in parameters() order).
  virtual std::vector<std::pair<std::string, Tensor<T>>> state_of(std::size_t i) = 0;

  /// False for a frozen parameter, which apply() must leave alone (value and state).
  static bool trainable(const Tensor<T>& p) { return p.requires_grad(); }
  /// The steps parameter i (in parameters() order) took part in, this one included: steps()
  /// less the steps it was frozen for.
  std::int64_t param_steps(std::size_t i) const { return param_steps_[i]; }

  /// Adds coupled L2 (weight_decay * p) and L1 (l1 * sign(p)) to a gradient copy.
  template <class G>
  void regularize(G& g, const ConstMatrixMap<T>& p, bool on, T weight_decay, T l1) const {
    if (!on) return;
    if (weight_decay != 0) g += weight_decay * p;
    if (l1 != 0) g.array() += l1 * p.array().sign();
  }
  /// Whether weight decay and L1 apply to parameter p of group g.
  static bool regularized(const ParamGroup<T>& g, const Tensor<T>& p) {
    return g.regularize.value_or(p.rank() == 2);
  }
  T group_lr(const ParamGroup<T>& g) const { return lr_ * g.lr_scale.value_or(T(1)); }
  static std::string display_name(const Tensor<T>& p) {
    return p.name().empty() ? std::string("(unnamed)") : p.name();
  }
  /// Preallocated working memory shaped like p (k = 0 or 1): no allocation during step().
  MatrixMap<T> work(const Tensor<T>& p, int k) {
    return {work_.data() + k * max_size_, p.rows(), p.cols()};
  }
  /// A zero state buffer shaped like p.
  static Tensor<T> zeros_like(const Tensor<T>& p) { return Tensor<T>::zeros(p.shape()); }

  std::vector<ParamGroup<T>> groups_;
  T lr_ = T(0.01);

 private:
  std::optional<Tensor<T>> first_non_finite() const;

  void count_param_steps();

  Matrix<T> work_;
  std::vector<std::int64_t> param_steps_;
  Index max_size_ = 1;
  std::int64_t steps_ = 0, skipped_ = 0, non_finite_steps_ = 0;
  NonFinite non_finite_ = NonFinite::error;
  Tensor<T> step_tensor_;
};

template <Scalar T>
Optimizer<T>::Optimizer(std::vector<Tensor<T>> params)
    : Optimizer(std::vector<ParamGroup<T>>{ParamGroup<T>{std::move(params), {}, {}}}) {}

template <Scalar T>
Optimizer<T>::Optimizer(std::vector<ParamGroup<T>> groups) : groups_(std::move(groups)) {
  std::size_t i = 0;
  for (auto& g : groups_) {
    for (auto& p : g.params) {
      if (!p.is_parameter())  // trainable or frozen; data and tape nodes are not parameters
        throw UsageError(gradscope::detail::cat("optimizer: parameter ", i, " ('", p.name(),
                                                "') is not a parameter tensor"));
      max_size_ = std::max(max_size_, p.size());
      ++i;
    }
  }
  work_ = Matrix<T>::Zero(2, max_size_);
  param_steps_.assign(i, 0);
}

template <Scalar T>
bool Optimizer<T>::step() {
  if (const auto bad = first_non_finite()) {
    const auto& p = *bad;
    switch (non_finite_) {
      case NonFinite::error:
        throw NumericalError(gradscope::detail::cat(
            kind(), ".step: non-finite gradient in parameter '", display_name(p), "' of shape ",
            p.shape(), "; the step was not applied"));
      case NonFinite::skip:
        ++skipped_;
        return false;
      case NonFinite::proceed:
        ++non_finite_steps_;
        break;
    }
    ++steps_;
    count_param_steps();
    apply();
    return false;
  }
  ++steps_;
  count_param_steps();
  apply();
  return true;
}

template <Scalar T>
void Optimizer<T>::count_param_steps() {
  std::size_t i = 0;
  for (const auto& g : groups_)
    for (const auto& p : g.params) param_steps_[i++] += trainable(p);
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
std::optional<Tensor<T>> Optimizer<T>::first_non_finite() const {
  for (const auto& g : groups_)
    for (const auto& p : g.params)
      if (trainable(p) && !gradscope::detail::all_finite(p.grad())) return p;
  return std::nullopt;
}

}  // namespace gradscope::optim
