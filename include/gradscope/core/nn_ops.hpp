#pragma once
/// Fused ops behind the normalisation and regularisation layers: batch_norm and dropout.

#include <cmath>
#include <initializer_list>

#include "ops.hpp"

namespace gradscope {

/// Settings of batch_norm, PyTorch's conventions.
template <Scalar T>
struct BatchNormOptions {
  bool training = true;
  T momentum = T(0.1);  ///< weight of the new batch in the running statistics
  T eps = T(1e-5);
};

/// Batch normalisation over the rows of x [batch, features], one fused tape node.
/// Training: normalises with the batch mean and the biased batch variance, then updates
/// running_mean and running_var (unbiased) in place with `momentum`. Eval: uses the running
/// statistics. y = gamma * xhat + beta, with gamma and beta of shape [features].
template <Scalar T>
Tensor<T> batch_norm(const Tensor<T>& x, const Tensor<T>& gamma, const Tensor<T>& beta,
                     Tensor<T>& running_mean, Tensor<T>& running_var,
                     const BatchNormOptions<T>& opt = {}) {
  const Shape s = x.shape();
  const Index N = s.rows, C = s.cols;
  for (const Tensor<T>* p :
       std::initializer_list<const Tensor<T>*>{&gamma, &beta, &running_mean, &running_var})
    if (p->rows() != 1 || p->cols() != C)
      throw ShapeError(detail::cat("batch_norm: input ", s, " needs parameters and running ",
                                   "statistics of shape [", C, "], got ", p->shape()));
  if (opt.training && N < 2)
    throw ValueError(detail::cat("batch_norm: training needs more than one sample per feature, ",
                                 "got a batch of ", N, " (call eval() to use running statistics)"));
  if (!(opt.eps > 0) || !(opt.momentum >= 0 && opt.momentum <= 1))
    throw ValueError(detail::cat("batch_norm: needs eps > 0 and 0 <= momentum <= 1, got eps ",
                                 opt.eps, ", momentum ", opt.momentum));
  detail::Recorder<T> r(detail::Op::batch_norm, {&x, &gamma, &beta}, s);
  r.set_args(opt.eps, opt.momentum, opt.training ? 0 : 1);
  // Rows are contiguous and features are columns: every statistic is accumulated row by row,
  // so each pass streams through memory once and stays vectorised.
  const auto& X = r.in(0);
  const auto gamma_row = r.in(1).row(0).array();
  const auto beta_row = r.in(2).row(0).array();
  MatrixMap<T> xhat(r.template scratch<T>(static_cast<std::size_t>(N * C)), N, C);
  MatrixMap<T> invstd(r.template scratch<T>(static_cast<std::size_t>(C)), 1, C);
  auto is = invstd.row(0).array();
  if (opt.training) {
    MatrixMap<T> mean(r.template scratch<T>(static_cast<std::size_t>(C)), 1, C);
    MatrixMap<T> var(r.template scratch<T>(static_cast<std::size_t>(C)), 1, C);
    auto m = mean.row(0).array();
    auto v = var.row(0).array();
    m = X.row(0).array();
    for (Index i = 1; i < N; ++i) m += X.row(i).array();
    m /= static_cast<T>(N);
    v.setZero();
    for (Index i = 0; i < N; ++i) v += (X.row(i).array() - m).square();
    v /= static_cast<T>(N);  // biased: the normalisation uses the batch's own variance
    is = (v + opt.eps).rsqrt();
    auto rm = running_mean.mutable_value().row(0).array();
    auto rv = running_var.mutable_value().row(0).array();
    const T unbias = static_cast<T>(N) / static_cast<T>(N - 1);
    rm = (T(1) - opt.momentum) * rm + opt.momentum * m;
    rv = (T(1) - opt.momentum) * rv + (opt.momentum * unbias) * v;
    for (Index i = 0; i < N; ++i) {
      xhat.row(i).array() = (X.row(i).array() - m) * is;
      r.out().row(i).array() = xhat.row(i).array() * gamma_row + beta_row;
    }
  } else {
    is = (running_var.value().row(0).array() + opt.eps).rsqrt();
    const auto rm = running_mean.value().row(0).array();
    for (Index i = 0; i < N; ++i) {
      xhat.row(i).array() = (X.row(i).array() - rm) * is;
      r.out().row(i).array() = xhat.row(i).array() * gamma_row + beta_row;
    }
  }
  r.set_aux(xhat.data());
  if (r.recording()) r.node().aux2 = invstd.data();
  return r.finish();
}

/// Inverted dropout: zeroes each element with probability p and scales the rest by 1 / (1 - p),
/// drawing the mask from `rng`. p = 1 gives zeros.
template <Scalar T>
Tensor<T> dropout(const Tensor<T>& x, double p, Rng& rng) {
  if (!(p >= 0 && p <= 1))
    throw ValueError(detail::cat("dropout: probability must be in [0, 1], got ", p));
  const Shape s = x.shape();
  detail::Recorder<T> r(detail::Op::dropout, {&x}, s);
  MatrixMap<T> mask(r.template scratch<T>(static_cast<std::size_t>(s.size())), s.rows, s.cols);
  const T keep = p < 1 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
  for (Index i = 0; i < mask.size(); ++i) mask.data()[i] = rng.uniform() < p ? T(0) : keep;
  r.out() = (r.in(0).array() * mask.array()).matrix();
  r.set_aux(mask.data());
  return r.finish();
}

}  // namespace gradscope
