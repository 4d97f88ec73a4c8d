#pragma once
/// RMSprop.

#include <limits>

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
  /// ValueError when an option is out of its domain: lr, weight_decay and l1 finite and >= 0,
  /// alpha and momentum in [0, 1), eps finite and > 0.
  RMSprop(std::vector<Tensor<T>> params, RMSpropOptions<T> opt = {});
  RMSprop(std::vector<ParamGroup<T>> groups, RMSpropOptions<T> opt);
  std::string kind() const override { return "RMSprop"; }
  const RMSpropOptions<T>& options() const noexcept { return o_; }

 protected:
  using typename Optimizer<T>::Overflow;
  std::optional<Overflow> apply(bool commit) override;
  bool bounded(std::size_t i, const ParamGroup<T>& group, const Tensor<T>& p, double grad_max,
               double value_max, std::array<double, 3>& next) const override;
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
  this->set_lr(opt.lr);
  // alpha 1 would keep the squared-gradient average at 0 forever: every step would divide by eps.
  this->check_option("alpha", opt.alpha, 0, 1, false, /*open_hi=*/true);
  this->check_option("momentum", opt.momentum, 0, 1, false, /*open_hi=*/true);
  this->check_option("eps", opt.eps, 0, std::numeric_limits<double>::infinity(), /*open_lo=*/true);
  this->check_option("weight_decay", opt.weight_decay, 0);
  this->check_option("l1", opt.l1, 0);
  this->set_non_finite_policy(opt.non_finite);
  // The average gradient only when centered, the momentum buffer only with momentum.
  for (auto& p : this->parameters()) {
    square_avg_.push_back(this->zeros_like(p));
    grad_avg_.push_back(opt.centered ? this->zeros_like(p) : Tensor<T>());
    momentum_.push_back(opt.momentum > 0 ? this->zeros_like(p) : Tensor<T>());
  }
}

template <Scalar T>
auto RMSprop<T>::apply(bool commit) -> std::optional<Overflow> {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  static constexpr const char* buffers[] = {"value", "square_avg", "grad_avg", "momentum_buffer"};
  static constexpr const char* hints[] = {
      "", "a squared gradient overflows: scale the loss down or clip the gradients", "", ""};
  const Index chunk = this->chunk_size;
  const T a = o_.alpha;
  std::size_t i = 0;
  for (auto& group : this->groups_) {
    const T lr = this->group_lr(group);
    for (auto& p : group.params) {
      if (!this->trainable(p)) {  // frozen: value and averages kept
        ++i;
        continue;
      }
      const bool reg = this->regularized(group, p);
      const T* grad = p.grad().data();
      T* wp = p.mutable_value().data();
      T* vp = square_avg_[i].mutable_value().data();
      for (Index k = 0, n = p.size(); k < n; k += chunk) {
        const Index len = std::min(chunk, n - k);
        const std::array<T*, 4> real{wp + k, vp + k, this->chunk_of(grad_avg_[i], k),
                                     this->chunk_of(momentum_[i], k)};
        const auto staged = this->stage(commit, real, len);
        Eigen::Map<Array> w(staged[0], len), v(staged[1], len), ga(staged[2], staged[2] ? len : 0),
            b(staged[3], staged[3] ? len : 0);
        Eigen::Map<Array> g(this->scratch(0), len), d(this->scratch(1), len);
        g = Eigen::Map<const Array>(grad + k, len);
        if (reg && o_.weight_decay != 0) g += o_.weight_decay * w;
        if (reg && o_.l1 != 0) g += o_.l1 * w.sign();
        v = a * v + (T(1) - a) * g.square();
        d = v;
        if (o_.centered) {
          ga = a * ga + (T(1) - a) * g;
          d -= ga.square();
        }
        d = d.max(T(0)).sqrt() + o_.eps;  // rounding can make v~ < 0
        if (o_.momentum > 0) {
          b = o_.momentum * b + g / d;
          w -= lr * b;
        } else {
          w -= lr * g / d;
        }
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
bool RMSprop<T>::bounded(std::size_t i, const ParamGroup<T>& group, const Tensor<T>& p, double g,
                         double w, std::array<double, 3>& next) const {
  // The denominator is at least eps: |g / d| <= |g| / eps. The buffers in state_of order.
  const double lr = static_cast<double>(this->group_lr(group)), a = o_.alpha, eps = o_.eps;
  const bool reg = this->regularized(group, p);
  const double ge = g + (reg ? double(o_.weight_decay) * w + double(o_.l1) : 0);
  next = {0, 0, 0};
  int k = 0;
  const double v = a * this->state_max(i, k) + (1 - a) * ge * ge;
  next[static_cast<std::size_t>(k++)] = v;
  double ga = 0, b = ge / eps;
  if (o_.centered) {
    ga = a * this->state_max(i, k) + (1 - a) * ge;
    next[static_cast<std::size_t>(k++)] = ga;
  }
  if (o_.momentum > 0) {
    b = double(o_.momentum) * this->state_max(i, k) + ge / eps;
    next[static_cast<std::size_t>(k++)] = b;
  }
  const double limit = this->bound_limit();
  return ge * ge < limit && v < limit && ga * ga < limit && b < limit && lr * ge < limit &&
         w + lr * b < limit;
}

template <Scalar T>
std::vector<std::pair<std::string, Tensor<T>>> RMSprop<T>::state_of(std::size_t i) {
  std::vector<std::pair<std::string, Tensor<T>>> s{{"square_avg", square_avg_[i]}};
  if (o_.centered) s.emplace_back("grad_avg", grad_avg_[i]);
  if (o_.momentum > 0) s.emplace_back("momentum_buffer", momentum_[i]);
  return s;
}

}  // namespace gradscope::optim
