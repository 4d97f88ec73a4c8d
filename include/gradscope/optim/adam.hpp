#pragma once
/// Adam and AdamW.

#include <cmath>

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
  Adam(std::vector<Tensor<T>> params, AdamOptions<T> opt = {});
  Adam(std::vector<ParamGroup<T>> groups, AdamOptions<T> opt, bool decoupled = false);
  std::string kind() const override { return decoupled_ ? "AdamW" : "Adam"; }
  const AdamOptions<T>& options() const noexcept { return o_; }

 protected:
  void apply() override;
  std::vector<std::pair<std::string, Tensor<T>>> state_of(std::size_t i) override;

 private:
  static constexpr Index kChunk = 1024;
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
  if (!(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1))
    throw ValueError("Adam: betas must be in [0, 1)");
  if (!(opt.eps >= 0) || opt.weight_decay < 0 || opt.l1 < 0)
    throw ValueError("Adam: eps, weight_decay and l1 must be >= 0");
  this->set_lr(opt.lr);
  this->set_non_finite_policy(opt.non_finite);
  for (auto& p : this->parameters()) {
    m_.push_back(this->zeros_like(p));
    v_.push_back(this->zeros_like(p));
  }
}

template <Scalar T>
void Adam<T>::apply() {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
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
      for (Index k = 0, n = p.size(); k < n; k += kChunk) {
        const Index len = std::min(kChunk, n - k);
        Eigen::Map<Array> w(wp + k, len), m(mp + k, len), v(vp + k, len);
        if (shrink) w *= T(1) - lr * o_.weight_decay;
        Eigen::Map<Array> g(copy ? this->work(p, 0).data() : nullptr, copy ? len : 0);
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
      }
      ++i;
    }
  }
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
