#pragma once
/// Adam and AdamW.

#include <cmath>
#include <limits>

#include "optimizer.hpp"

namespace gradscope::optim {

/// Options of Adam and AdamW (PyTorch's defaults; AdamW's weight_decay default is 0.01).
template <Scalar T>
struct AdamOptions {
  T lr = T(1e-3);
  T beta1 = T(0.9);
  T beta2 = T(0.999);
  T eps = T(1e-8);
  T weight_decay = 0;  ///< Adam: coupled L2 on the gradient; AdamW: decoupled, p -= lr wd p
  T l1 = 0;            ///< adds l1 * sign(p) to the gradient
  NonFinite non_finite = NonFinite::error;
};

/// PyTorch's Adam (decoupled = false) and AdamW (decoupled = true):
/// m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, p -= lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) +
/// eps).
template <Scalar T>
class Adam : public Optimizer<T> {
 public:
  /// ValueError when an option is out of its domain: lr, weight_decay and l1 finite and >= 0,
  /// beta1 and beta2 in [0, 1), eps finite and > 0.
  Adam(std::vector<Tensor<T>> params, AdamOptions<T> opt = {});
  Adam(std::vector<ParamGroup<T>> groups, AdamOptions<T> opt, bool decoupled = false);
  std::string kind() const override { return decoupled_ ? "AdamW" : "Adam"; }
  const AdamOptions<T>& options() const noexcept { return o_; }

 protected:
  using typename Optimizer<T>::Overflow;
  std::optional<Overflow> apply(bool commit) override;
  bool bounded(std::size_t i, const ParamGroup<T>& group, const Tensor<T>& p, double grad_max,
               double value_max, std::array<double, 3>& next) const override;
  std::vector<std::pair<std::string, Tensor<T>>> state_of(std::size_t i) override;

 private:
  AdamOptions<T> o_;
  bool decoupled_;
  std::vector<Tensor<T>> m_, v_;
};

template <Scalar T>
Adam<T>::Adam(std::vector<Tensor<T>> params, AdamOptions<T> opt)
    : Adam(std::vector<ParamGroup<T>>{{std::move(params), {}, {}}}, opt) {}

template <Scalar T>
Adam<T>::Adam(std::vector<ParamGroup<T>> groups, AdamOptions<T> opt, bool decoupled)
    : Optimizer<T>(std::move(groups)), o_(opt), decoupled_(decoupled) {
  this->set_lr(opt.lr);
  this->check_option("beta1", opt.beta1, 0, 1, false, /*open_hi=*/true);
  this->check_option("beta2", opt.beta2, 0, 1, false, /*open_hi=*/true);
  // eps 0 divides 0 by 0 for a parameter whose gradient has always been 0.
  this->check_option("eps", opt.eps, 0, std::numeric_limits<double>::infinity(), /*open_lo=*/true);
  this->check_option("weight_decay", opt.weight_decay, 0);
  this->check_option("l1", opt.l1, 0);
  this->set_non_finite_policy(opt.non_finite);
  for (auto& p : this->parameters()) {
    m_.push_back(this->zeros_like(p));
    v_.push_back(this->zeros_like(p));
  }
}

template <Scalar T>
auto Adam<T>::apply(bool commit) -> std::optional<Overflow> {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  static constexpr const char* buffers[] = {"value", "exp_avg", "exp_avg_sq"};
  static constexpr const char* hints[] = {
      "", "", "a squared gradient overflows: scale the loss down or clip the gradients"};
  const Index chunk = this->chunk_size;
  std::size_t i = 0;
  std::int64_t corrected = -1;  // the step count c1 and c2 belong to (usually one for all)
  T c1 = 1, c2 = 1;
  for (auto& group : this->groups_) {
    const T lr = this->group_lr(group);
    for (auto& p : group.params) {
      if (!this->trainable(p)) {  // frozen: value, moments and step count kept
        ++i;
        continue;
      }
      // Bias correction by the parameter's own step count (PyTorch's per-parameter "step").
      if (this->param_steps(i) != corrected) {
        corrected = this->param_steps(i);
        c1 = T(1) - std::pow(o_.beta1, static_cast<T>(corrected));
        c2 = T(1) - std::pow(o_.beta2, static_cast<T>(corrected));
      }
      const bool reg = this->regularized(group, p);
      const T coupled = reg && !decoupled_ ? o_.weight_decay : T(0);  // Adam: g += wd p
      const T l1 = reg ? o_.l1 : T(0);                                // both: g += l1 sign(p)
      const bool shrink = reg && decoupled_ && o_.weight_decay != 0;  // AdamW: p *= 1 - lr wd
      const bool copy = coupled != 0 || l1 != 0;
      const T* grad = p.grad().data();
      T* wp = p.mutable_value().data();
      T* mp = m_[i].mutable_value().data();
      T* vp = v_[i].mutable_value().data();
      // A chunk at a time, so the passes below find g, p, m and v in L1 instead of memory.
      for (Index k = 0, n = p.size(); k < n; k += chunk) {
        const Index len = std::min(chunk, n - k);
        const std::array<T*, 3> real{wp + k, mp + k, vp + k};
        const auto staged = this->stage(commit, real, len);
        Eigen::Map<Array> w(staged[0], len), m(staged[1], len), v(staged[2], len);
        if (shrink) w *= T(1) - lr * o_.weight_decay;
        Eigen::Map<Array> g(copy ? this->scratch(0) : nullptr, copy ? len : 0);
        if (copy) {
          g = Eigen::Map<const Array>(grad + k, len);
          if (coupled != 0) g += coupled * w;
          if (l1 != 0) g += l1 * w.sign();
        }
        const auto step = [&](const auto& gk) {
          m = o_.beta1 * m + (T(1) - o_.beta1) * gk;
          v = o_.beta2 * v + (T(1) - o_.beta2) * gk.square();
          w -= (lr / c1) * m / ((v / c2).sqrt() + o_.eps);
        };
        if (copy)
          step(g);
        else
          step(Eigen::Map<const Array>(grad + k, len));
        if (!commit)
          if (const int bad = this->first_overflow(real, staged, len); bad >= 0)
            return Overflow{i, buffers[bad], hints[bad]};
      }
      ++i;
    }
  }
  return std::nullopt;
}

template <Scalar T>
bool Adam<T>::bounded(std::size_t i, const ParamGroup<T>& group, const Tensor<T>& p, double g,
                      double w, std::array<double, 3>& next) const {
  // Every intermediate of apply() bounded by magnitudes: |m / (sqrt(v^) + eps)| <= |m| / eps.
  const double lr = static_cast<double>(this->group_lr(group)), wd = o_.weight_decay, b1 = o_.beta1,
               b2 = o_.beta2, eps = o_.eps;
  const T t = static_cast<T>(this->param_steps(i));  // c1 and c2 exactly as apply() rounds them
  const double c1 = static_cast<double>(T(1) - std::pow(o_.beta1, t));
  const double c2 = static_cast<double>(T(1) - std::pow(o_.beta2, t));
  const bool reg = this->regularized(group, p);
  const double ge = g + (reg && !decoupled_ ? wd * w : 0) + (reg ? double(o_.l1) : 0);
  const double shrunk = reg && decoupled_ ? w * std::abs(1 - lr * wd) : w;
  const double m = b1 * this->state_max(i, 0) + (1 - b1) * ge;
  const double v = b2 * this->state_max(i, 1) + (1 - b2) * ge * ge;
  next = {m, v, 0};
  const double step = lr / c1;
  const double limit = this->bound_limit();
  return lr * wd < limit && ge * ge < limit && m < limit && v < limit && v / c2 < limit &&
         step * m < limit && shrunk + step * m / eps < limit;
}

template <Scalar T>
std::vector<std::pair<std::string, Tensor<T>>> Adam<T>::state_of(std::size_t i) {
  return {{"exp_avg", m_[i]}, {"exp_avg_sq", v_[i]}};
}

/// Adam with decoupled weight decay (Loshchilov and Hutter): p -= lr wd p before the Adam step.
template <Scalar T>
class AdamW : public Adam<T> {
 public:
  AdamW(std::vector<Tensor<T>> params, AdamOptions<T> opt = with_default_decay());
  AdamW(std::vector<ParamGroup<T>> groups, AdamOptions<T> opt);
  /// AdamOptions with PyTorch's AdamW default weight_decay = 0.01.
  static AdamOptions<T> with_default_decay() {
    AdamOptions<T> o;
    o.weight_decay = T(0.01);
    return o;
  }
};

template <Scalar T>
AdamW<T>::AdamW(std::vector<Tensor<T>> params, AdamOptions<T> opt)
    : Adam<T>(std::vector<ParamGroup<T>>{{std::move(params), {}, {}}}, opt, true) {}

template <Scalar T>
AdamW<T>::AdamW(std::vector<ParamGroup<T>> groups, AdamOptions<T> opt)
    : Adam<T>(std::move(groups), opt, true) {}

}  // namespace gradscope::optim
