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
  /// ValueError when an option is out of its domain: lr, weight_decay and l1 finite and >= 0,
  /// momentum in [0, 1), dampening in [0, 1].
  SGD(std::vector<Tensor<T>> params, SGDOptions<T> opt = {});
  SGD(std::vector<ParamGroup<T>> groups, SGDOptions<T> opt);
  std::string kind() const override { return "SGD"; }
  const SGDOptions<T>& options() const noexcept { return o_; }

 protected:
  using typename Optimizer<T>::Overflow;
  std::optional<Overflow> apply(bool commit) override;
  bool bounded(std::size_t i, const ParamGroup<T>& group, const Tensor<T>& p, double grad_max,
               double value_max, std::array<double, 3>& next) const override;
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
  this->set_lr(opt.lr);
  this->check_option("momentum", opt.momentum, 0, 1, false, /*open_hi=*/true);
  this->check_option("dampening", opt.dampening, 0, 1);
  this->check_option("weight_decay", opt.weight_decay, 0);
  this->check_option("l1", opt.l1, 0);
  if (opt.nesterov && (opt.momentum <= 0 || opt.dampening != 0))
    throw ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0");
  this->set_non_finite_policy(opt.non_finite);
  // Buffers only with momentum: plain SGD keeps no state.
  for (auto& p : this->parameters())
    momentum_.push_back(opt.momentum != 0 ? this->zeros_like(p) : Tensor<T>());
}

template <Scalar T>
auto SGD<T>::apply(bool commit) -> std::optional<Overflow> {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  static constexpr const char* buffers[] = {"value", "momentum_buffer"};
  const Index chunk = this->chunk_size;
  const bool decays = o_.weight_decay != 0 || o_.l1 != 0;
  const T mu = o_.momentum;
  std::size_t i = 0;
  for (auto& group : this->groups_) {
    const T lr = this->group_lr(group);
    for (auto& p : group.params) {
      if (!this->trainable(p)) {  // frozen: no update, no decay, momentum buffer kept
        ++i;
        continue;
      }
      const bool first = this->param_steps(i) == 1;  // its buffer starts at its first gradient
      const bool reg = decays && this->regularized(group, p);
      const T* grad = p.grad().data();
      T* wp = p.mutable_value().data();
      for (Index k = 0, n = p.size(); k < n; k += chunk) {
        const Index len = std::min(chunk, n - k);
        const std::array<T*, 2> real{wp + k, this->chunk_of(momentum_[i], k)};
        const auto staged = this->stage(commit, real, len);
        Eigen::Map<Array> w(staged[0], len), b(staged[1], staged[1] ? len : 0);
        // g: the gradient, or a regularised copy of it.
        const Eigen::Map<const Array> g0(grad + k, len);
        Eigen::Map<Array> g(this->scratch(0), reg ? len : 0);
        if (reg) {
          g = g0;
          if (o_.weight_decay != 0) g += o_.weight_decay * w;
          if (o_.l1 != 0) g += o_.l1 * w.sign();
        }
        const auto update = [&](const auto& gk) {
          if (mu == 0) {
            w -= lr * gk;
            return;
          }
          if (first)
            b = gk;
          else
            b = mu * b + (T(1) - o_.dampening) * gk;
          if (o_.nesterov)
            w -= lr * (gk + mu * b);
          else
            w -= lr * b;
        };
        if (reg)
          update(g);
        else
          update(g0);
        if (!commit)
          if (const int bad = this->first_overflow(real, staged, len); bad >= 0)
            return Overflow{i, buffers[bad], ""};
      }
      ++i;
    }
  }
  return std::nullopt;
}

template <Scalar T>
bool SGD<T>::bounded(std::size_t i, const ParamGroup<T>& group, const Tensor<T>& p, double g,
                     double w, std::array<double, 3>& next) const {
  const double lr = static_cast<double>(this->group_lr(group)), mu = o_.momentum;
  const bool reg = (o_.weight_decay != 0 || o_.l1 != 0) && this->regularized(group, p);
  const double ge = g + (reg ? double(o_.weight_decay) * w + double(o_.l1) : 0);
  double d = ge;  // how far the weight moves, over lr
  next = {0, 0, 0};
  if (mu != 0) {
    const double b = this->param_steps(i) == 1 ? ge : mu * this->state_max(i, 0) + ge;
    next[0] = b;
    d = o_.nesterov ? ge + mu * b : b;
  }
  const double limit = this->bound_limit();
  return ge < limit && d < limit && lr * d < limit && w + lr * d < limit;
}

template <Scalar T>
std::vector<std::pair<std::string, Tensor<T>>> SGD<T>::state_of(std::size_t i) {
  if (o_.momentum == 0) return {};
  return {{"momentum_buffer", momentum_[i]}};
}

}  // namespace gradscope::optim
