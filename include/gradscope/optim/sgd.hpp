#pragma once
/// Stochastic gradient descent with momentum, dampening, Nesterov, weight decay and L1.

#include "optimizer.hpp"

namespace gradscope::optim {

/// Options of SGD (PyTorch's names and defaults, lr aside).
template <Scalar T>
struct SGDOptions {
  T lr = T(0.01);
  T momentum = 0;
  T dampening = 0;
  bool nesterov = false;
  T weight_decay = 0;  ///< coupled L2: adds weight_decay * p to the gradient
  T l1 = 0;            ///< adds l1 * sign(p) to the gradient
  NonFinite non_finite = NonFinite::error;
};

/// PyTorch's SGD: g = grad + wd p (+ l1 sign p); with momentum mu, b = g on the first step and
/// b = mu b + (1 - dampening) g afterwards; g = g + mu b (Nesterov) or g = b; p -= lr g.
template <Scalar T>
class SGD : public Optimizer<T> {
 public:
  SGD(std::vector<Tensor<T>> params, SGDOptions<T> opt = {});
  SGD(std::vector<ParamGroup<T>> groups, SGDOptions<T> opt);
  std::string kind() const override { return "SGD"; }
  const SGDOptions<T>& options() const noexcept { return o_; }

 protected:
  void apply() override;
  std::vector<std::pair<std::string, Tensor<T>>> state_of(std::size_t i) override;

 private:
  SGDOptions<T> o_;
  std::vector<Tensor<T>> momentum_;
};

template <Scalar T>
SGD<T>::SGD(std::vector<Tensor<T>> params, SGDOptions<T> opt)
    : SGD(std::vector<ParamGroup<T>>{{std::move(params), {}, {}}}, opt) {}

template <Scalar T>
SGD<T>::SGD(std::vector<ParamGroup<T>> groups, SGDOptions<T> opt)
    : Optimizer<T>(std::move(groups)), o_(opt) {
  if (opt.nesterov && (opt.momentum <= 0 || opt.dampening != 0))
    throw ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0");
  if (opt.momentum < 0 || opt.weight_decay < 0 || opt.l1 < 0)
    throw ValueError("SGD: momentum, weight_decay and l1 must be >= 0");
  this->set_lr(opt.lr);
  this->set_non_finite_policy(opt.non_finite);
  for (auto& p : this->parameters()) momentum_.push_back(this->zeros_like(p));
}

template <Scalar T>
void SGD<T>::apply() {
  std::size_t i = 0;
  const bool decays = o_.weight_decay != 0 || o_.l1 != 0;
  for (auto& group : this->groups_) {
    const T lr = this->group_lr(group);
    for (auto& p : group.params) {
      if (!this->trainable(p)) {  // frozen: no update, no decay, momentum buffer kept
        ++i;
        continue;
      }
      const bool first = this->param_steps(i) == 1;  // its buffer starts at its first gradient
      auto w = p.mutable_value();
      // g: the gradient, or a regularised copy of it; p -= lr g in one pass when plain.
      const auto update = [&](const auto& g) {
        if (o_.momentum == 0) {
          w -= lr * g;
          return;
        }
        auto b = momentum_[i].mutable_value();
        if (first)
          b = g;
        else
          b = o_.momentum * b + (T(1) - o_.dampening) * g;
        if (o_.nesterov)
          w -= lr * (g + o_.momentum * b);
        else
          w -= lr * b;
      };
      if (decays && this->regularized(group, p)) {
        auto g = this->work(p, 0);
        g = p.grad();
        this->regularize(g, p.value(), true, o_.weight_decay, o_.l1);
        update(g);
      } else {
        update(p.grad());
      }
      ++i;
    }
  }
}

template <Scalar T>
std::vector<std::pair<std::string, Tensor<T>>> SGD<T>::state_of(std::size_t i) {
  if (o_.momentum == 0) return {};
  return {{"momentum_buffer", momentum_[i]}};
}

}  // namespace gradscope::optim
