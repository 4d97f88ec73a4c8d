#pragma once
/// RMSprop.

#include "optimizer.hpp"

namespace gradscope::optim {

/// Options of RMSprop (PyTorch's names and defaults).
template <Scalar T>
struct RMSpropOptions {
  T lr = T(0.01);
  T alpha = T(0.99);  ///< smoothing of the squared-gradient average
  T eps = T(1e-8);
  T momentum = 0;
  bool centered =
      false;  ///< divide by an estimate of the variance instead of the raw second moment
  T weight_decay = 0;
  T l1 = 0;
  NonFinite non_finite = NonFinite::error;
};

/// PyTorch's RMSprop: v = a v + (1 - a) g^2; with centered, v~ = v - gbar^2 where
/// gbar = a gbar + (1 - a) g; with momentum, b = mu b + g / (sqrt(v~) + eps) and p -= lr b;
/// else p -= lr g / (sqrt(v~) + eps).
template <Scalar T>
class RMSprop : public Optimizer<T> {
 public:
  RMSprop(std::vector<Tensor<T>> params, RMSpropOptions<T> opt = {});
  RMSprop(std::vector<ParamGroup<T>> groups, RMSpropOptions<T> opt);
  std::string kind() const override { return "RMSprop"; }
  const RMSpropOptions<T>& options() const noexcept { return o_; }

 protected:
  void apply() override;
  std::vector<std::pair<std::string, Tensor<T>>> state_of(std::size_t i) override;

 private:
  RMSpropOptions<T> o_;
  std::vector<Tensor<T>> square_avg_, grad_avg_, momentum_;
};

template <Scalar T>
RMSprop<T>::RMSprop(std::vector<Tensor<T>> params, RMSpropOptions<T> opt)
    : RMSprop(std::vector<ParamGroup<T>>{{std::move(params), {}, {}}}, opt) {}

template <Scalar T>
RMSprop<T>::RMSprop(std::vector<ParamGroup<T>> groups, RMSpropOptions<T> opt)
    : Optimizer<T>(std::move(groups)), o_(opt) {
  if (!(opt.alpha >= 0 && opt.alpha <= 1)) throw ValueError("RMSprop: alpha must be in [0, 1]");
  if (opt.momentum < 0 || !(opt.eps >= 0) || opt.weight_decay < 0 || opt.l1 < 0)
    throw ValueError("RMSprop: momentum, eps, weight_decay and l1 must be >= 0");
  this->set_lr(opt.lr);
  this->set_non_finite_policy(opt.non_finite);
  for (auto& p : this->parameters()) {
    square_avg_.push_back(this->zeros_like(p));
    grad_avg_.push_back(this->zeros_like(p));
    momentum_.push_back(this->zeros_like(p));
  }
}

template <Scalar T>
void RMSprop<T>::apply() {
  std::size_t i = 0;
  for (auto& group : this->groups_) {
    const T lr = this->group_lr(group);
    for (auto& p : group.params) {
      if (!this->trainable(p)) {  // frozen: value and averages kept
        ++i;
        continue;
      }
      auto g = this->work(p, 0);
      g = p.grad();
      this->regularize(g, p.value(), this->regularized(group, p), o_.weight_decay, o_.l1);
      auto v = square_avg_[i].mutable_value();
      v.array() = o_.alpha * v.array() + (T(1) - o_.alpha) * g.array().square();
      auto denom = this->work(p, 1);
      denom = v;
      if (o_.centered) {
        auto ga = grad_avg_[i].mutable_value();
        ga = o_.alpha * ga + (T(1) - o_.alpha) * g;
        denom.array() -= ga.array().square();
      }
      denom.array() = denom.array().max(T(0)).sqrt() + o_.eps;  // rounding can make v~ < 0
      if (o_.momentum > 0) {
        auto b = momentum_[i].mutable_value();
        b.array() = o_.momentum * b.array() + g.array() / denom.array();
        p.mutable_value() -= lr * b;
      } else {
        p.mutable_value().array() -= lr * g.array() / denom.array();
      }
      ++i;
    }
  }
}

template <Scalar T>
std::vector<std::pair<std::string, Tensor<T>>> RMSprop<T>::state_of(std::size_t i) {
  std::vector<std::pair<std::string, Tensor<T>>> s{{"square_avg", square_avg_[i]}};
  if (o_.centered) s.emplace_back("grad_avg", grad_avg_[i]);
  if (o_.momentum > 0) s.emplace_back("momentum_buffer", momentum_[i]);
  return s;
}

}  // namespace gradscope::optim
