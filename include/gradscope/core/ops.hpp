#pragma once
/// Differentiable ops on Tensor<T>. Each op records one tape node over whole Eigen blocks; its
/// backward rule is the case of the same name in core/backward.hpp.

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <type_traits>

#include "detail/broadcast.hpp"
#include "detail/eval.hpp"
#include "detail/gemm.hpp"
#include "detail/record.hpp"
#include "tensor.hpp"

namespace gradscope {

namespace detail {
template <class T>
using Arr = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// a (op) b elementwise, broadcasting, for inputs off the fast path (Recorder::record_pointwise).
template <Scalar T, class F>
[[gnu::noinline]] Tensor<T> binary_general(Op op, const Tensor<T>& a, const Tensor<T>& b, F f) {
  Recorder<T> r(op, a, b);
  if (r.same_shape()) {
    eval_pointwise(r.out(), f, r.in(0), r.in(1));
    return r.finish();
  }
  const Index rows = r.out().rows(), cols = r.out().cols();
  with_expanded(r.in(0), rows, cols, [&](const auto& x) {
    with_expanded(r.in(1), rows, cols, [&](const auto& y) { r.out().array() = f(x, y); });
  });
  return r.finish();
}

// a (op) b elementwise, broadcasting (one element in scalar code: eval_pointwise).
template <Scalar T, class F>
Tensor<T> binary(Op op, const Tensor<T>& a, const Tensor<T>& b, F f) {
  Tensor<T> y;
  if (!Recorder<T>::record_pointwise(y, op, T(0), T(0), f, a, b)) y = binary_general(op, a, b, f);
  return y;
}

// y = f(x) elementwise, for an x off the fast path (Recorder::record_pointwise).
template <Scalar T, class F>
[[gnu::noinline]] Tensor<T> unary_general(Op op, const Tensor<T>& x, F f, T alpha, T beta) {
  Recorder<T> r(op, {&x}, x.shape());  // shape() throws for an undefined x
  r.set_args(alpha, beta);
  eval_pointwise(r.out(), f, r.in(0));
  return r.finish();
}

// y = f(x) elementwise (one element in scalar code: eval_pointwise).
template <Scalar T, class F>
Tensor<T> unary(Op op, const Tensor<T>& x, F f, T alpha = 0, T beta = 0) {
  Tensor<T> y;
  if (!Recorder<T>::record_pointwise(y, op, alpha, beta, f, x))
    y = unary_general(op, x, f, alpha, beta);
  return y;
}

inline void check_finite_arg(const char* op, const char* name, double v) {
  if (!std::isfinite(v)) throw ValueError(cat(op, ": ", name, " must be finite, got ", v));
}
}  // namespace detail

// ---- elementwise arithmetic (broadcasting) ----

/// a + b, broadcasting scalars, row vectors and column vectors.
template <Scalar T>
Tensor<T> add(const Tensor<T>& a, const Tensor<T>& b) {
  return detail::binary(detail::Op::add, a, b, [](const auto& x, const auto& y) { return x + y; });
}
/// a - b, broadcasting.
template <Scalar T>
Tensor<T> sub(const Tensor<T>& a, const Tensor<T>& b) {
  return detail::binary(detail::Op::sub, a, b, [](const auto& x, const auto& y) { return x - y; });
}
/// a * b elementwise (not a matrix product: see matmul), broadcasting.
template <Scalar T>
Tensor<T> mul(const Tensor<T>& a, const Tensor<T>& b) {
  return detail::binary(detail::Op::mul, a, b, [](const auto& x, const auto& y) { return x * y; });
}
/// a / b elementwise, broadcasting.
template <Scalar T>
Tensor<T> div(const Tensor<T>& a, const Tensor<T>& b) {
  return detail::binary(detail::Op::div, a, b, [](const auto& x, const auto& y) { return x / y; });
}
/// -x.
template <Scalar T>
Tensor<T> neg(const Tensor<T>& x) {
  return detail::unary(detail::Op::neg, x, [](const auto& v) { return -v; });
}
/// s * x for a constant s.
template <Scalar T>
Tensor<T> scale(const Tensor<T>& x, std::type_identity_t<T> s) {
  return detail::unary(
      detail::Op::scale, x, [s](const auto& v) { return v * s; }, s);
}
/// x + s for a constant s.
template <Scalar T>
Tensor<T> add_scalar(const Tensor<T>& x, std::type_identity_t<T> s) {
  return detail::unary(
      detail::Op::add_scalar, x, [s](const auto& v) { return v + s; }, s);
}

template <Scalar T>
Tensor<T> operator+(const Tensor<T>& a, const Tensor<T>& b) {
  return add(a, b);
}
template <Scalar T>
Tensor<T> operator-(const Tensor<T>& a, const Tensor<T>& b) {
  return sub(a, b);
}
template <Scalar T>
Tensor<T> operator*(const Tensor<T>& a, const Tensor<T>& b) {
  return mul(a, b);
}
template <Scalar T>
Tensor<T> operator/(const Tensor<T>& a, const Tensor<T>& b) {
  return div(a, b);
}
template <Scalar T>
Tensor<T> operator-(const Tensor<T>& x) {
  return neg(x);
}
template <Scalar T>
Tensor<T> operator+(const Tensor<T>& x, std::type_identity_t<T> s) {
  return add_scalar(x, s);
}
template <Scalar T>
Tensor<T> operator+(std::type_identity_t<T> s, const Tensor<T>& x) {
  return add_scalar(x, s);
}
template <Scalar T>
Tensor<T> operator-(const Tensor<T>& x, std::type_identity_t<T> s) {
  return add_scalar(x, -s);
}
template <Scalar T>
Tensor<T> operator-(std::type_identity_t<T> s, const Tensor<T>& x) {
  return add_scalar(neg(x), s);
}
template <Scalar T>
Tensor<T> operator*(const Tensor<T>& x, std::type_identity_t<T> s) {
  return scale(x, s);
}
template <Scalar T>
Tensor<T> operator*(std::type_identity_t<T> s, const Tensor<T>& x) {
  return scale(x, s);
}
template <Scalar T>
Tensor<T> operator/(const Tensor<T>& x, std::type_identity_t<T> s) {
  return scale(x, T(1) / s);
}

// ---- elementwise functions ----

/// x^p elementwise for a constant exponent p.
template <Scalar T>
Tensor<T> pow(const Tensor<T>& x, std::type_identity_t<T> p) {
  detail::check_finite_arg("pow", "exponent", p);
  return detail::unary(
      detail::Op::pow, x, [p](const auto& v) { return v.pow(p); }, p);
}
template <Scalar T>
Tensor<T> operator/(std::type_identity_t<T> s, const Tensor<T>& x) {
  return scale(pow(x, T(-1)), s);
}
/// e^x.
template <Scalar T>
Tensor<T> exp(const Tensor<T>& x) {
  return detail::unary(detail::Op::exp, x, [](const auto& v) { return v.exp(); });
}
/// Natural logarithm.
template <Scalar T>
Tensor<T> log(const Tensor<T>& x) {
  return detail::unary(detail::Op::log, x, [](const auto& v) { return v.log(); });
}
/// Square root.
template <Scalar T>
Tensor<T> sqrt(const Tensor<T>& x) {
  return detail::unary(detail::Op::sqrt, x, [](const auto& v) { return v.sqrt(); });
}
/// x^2.
template <Scalar T>
Tensor<T> square(const Tensor<T>& x) {
  return detail::unary(detail::Op::square, x, [](const auto& v) { return v.square(); });
}
/// |x|; the gradient at 0 is taken as 0.
template <Scalar T>
Tensor<T> abs(const Tensor<T>& x) {
  return detail::unary(detail::Op::abs, x, [](const auto& v) { return v.abs(); });
}
/// min(max(x, lo), hi); the gradient passes where lo <= x <= hi.
template <Scalar T>
Tensor<T> clamp(const Tensor<T>& x, std::type_identity_t<T> lo, std::type_identity_t<T> hi) {
  if (!(lo <= hi)) throw ValueError(detail::cat("clamp: needs lo <= hi, got ", lo, " > ", hi));
  return detail::unary(
      detail::Op::clamp, x, [lo, hi](const auto& v) { return v.max(lo).min(hi); }, lo, hi);
}
/// 1 / (1 + e^-x), evaluated without overflow for large |x|.
template <Scalar T>
Tensor<T> sigmoid(const Tensor<T>& x) {
  return detail::unary(detail::Op::sigmoid, x, [](const auto& v) { return v.logistic(); });
}
/// Hyperbolic tangent.
template <Scalar T>
Tensor<T> tanh(const Tensor<T>& x) {
  return detail::unary(detail::Op::tanh, x, [](const auto& v) { return v.tanh(); });
}
/// max(x, 0); the gradient at 0 is 0.
template <Scalar T>
Tensor<T> relu(const Tensor<T>& x) {
  return detail::unary(detail::Op::relu, x, [](const auto& v) { return v.max(T(0)); });
}
/// x for x > 0, slope * x otherwise.
template <Scalar T>
Tensor<T> leaky_relu(const Tensor<T>& x, std::type_identity_t<T> slope = T(0.01)) {
  detail::check_finite_arg("leaky_relu", "slope", slope);
  return detail::unary(
      detail::Op::leaky_relu, x, [slope](const auto& v) { return (v > T(0)).select(v, v * slope); },
      slope);
}
/// x for x > 0, alpha * (e^x - 1) otherwise.
template <Scalar T>
Tensor<T> elu(const Tensor<T>& x, std::type_identity_t<T> alpha = T(1)) {
  detail::check_finite_arg("elu", "alpha", alpha);
  return detail::unary(
      detail::Op::elu, x,
      [alpha](const auto& v) { return (v > T(0)).select(v, alpha * (v.exp() - T(1))); }, alpha);
}

/// log(1 + e^x), evaluated as max(x, 0) + log1p(e^-|x|) so that it neither overflows for large
/// x nor loses precision for very negative x. Its derivative is sigmoid(x).
template <Scalar T>
Tensor<T> softplus(const Tensor<T>& x) {
  return detail::unary(detail::Op::softplus, x,
                       [](const auto& v) { return v.max(T(0)) + (-v.abs()).exp().log1p(); });
}
/// log(1 + x), accurate for small |x|.
template <Scalar T>
Tensor<T> log1p(const Tensor<T>& x) {
  return detail::unary(detail::Op::log1p, x, [](const auto& v) { return v.log1p(); });
}

// ---- products and shape ops ----

/// Which operands of matmul are transposed.
struct MatmulOptions {
  bool transpose_a = false;
  bool transpose_b = false;
};

/// op(a) * op(b), with op the transpose where asked; one GEMM (detail::gemm).
template <Scalar T>
Tensor<T> matmul(const Tensor<T>& a, const Tensor<T>& b, MatmulOptions opt = {}) {
  const Shape sa = a.shape(), sb = b.shape();
  const Index m = opt.transpose_a ? sa.cols : sa.rows;
  const Index ka = opt.transpose_a ? sa.rows : sa.cols;
  const Index kb = opt.transpose_b ? sb.cols : sb.rows;
  const Index n = opt.transpose_b ? sb.rows : sb.cols;
  if (ka != kb)
    throw ShapeError(detail::cat("matmul: inner dimensions differ: ", sa,
                                 opt.transpose_a ? "^T" : "", " x ", sb,
                                 opt.transpose_b ? "^T" : "", " (", ka, " vs ", kb, ")"));
  detail::Recorder<T> r(detail::Op::matmul, {&a, &b}, Shape::matrix(m, n));
  const std::uint8_t mode = (opt.transpose_a ? 1 : 0) | (opt.transpose_b ? 2 : 0);
  r.set_args(0, 0, mode);
  detail::gemm(r.out(), r.in(0), opt.transpose_a, r.in(1), opt.transpose_b, false);
  return r.finish();
}

/// The transpose (a rank-1 [n] becomes [n, 1]).
template <Scalar T>
Tensor<T> transpose(const Tensor<T>& x) {
  const Shape s = x.shape();
  detail::Recorder<T> r(detail::Op::transpose, {&x}, Shape::matrix(s.cols, s.rows));
  r.out() = r.in(0).transpose();
  return r.finish();
}

namespace detail {
inline Shape reduced_shape(const Shape& s, Reduce axis) {
  switch (axis) {
    case Reduce::all:
      return Shape::scalar();
    case Reduce::per_row:
      return Shape::matrix(s.rows, 1);
    default:
      return Shape::vector(s.cols);
  }
}
template <Scalar T>
Tensor<T> reduction(Op op, const Tensor<T>& x, Reduce axis) {
  const Shape s = x.shape();
  Recorder<T> r(op, {&x}, reduced_shape(s, axis));
  const Index count = axis == Reduce::all ? s.size() : (axis == Reduce::per_row ? s.cols : s.rows);
  const T k = op == Op::mean ? T(1) / static_cast<T>(count) : T(1);
  r.set_args(k, 0, static_cast<std::uint8_t>(axis));
  const auto& X = r.in(0);
  switch (axis) {
    case Reduce::all:
      r.out()(0, 0) = X.sum() * k;
      break;
    case Reduce::per_row:
      r.out() = X.rowwise().sum() * k;
      break;
    default:
      r.out() = X.colwise().sum() * k;
      break;
  }
  return r.finish();
}
}  // namespace detail

/// Sum of all elements ([]), of each row ([rows, 1]) or of each column ([cols]).
template <Scalar T>
Tensor<T> sum(const Tensor<T>& x, Reduce axis = Reduce::all) {
  return detail::reduction(detail::Op::sum, x, axis);
}
/// Mean of all elements, of each row or of each column.
template <Scalar T>
Tensor<T> mean(const Tensor<T>& x, Reduce axis = Reduce::all) {
  return detail::reduction(detail::Op::mean, x, axis);
}

// ---- row-wise distributions ----

/// Softmax of each row (each row is a distribution over its columns).
template <Scalar T>
Tensor<T> softmax(const Tensor<T>& x) {
  detail::Recorder<T> r(detail::Op::softmax, {&x}, x.shape());
  const auto& X = r.in(0);
  auto& Y = r.out();
  for (Index i = 0; i < X.rows(); ++i) {
    Y.row(i) = (X.row(i).array() - X.row(i).maxCoeff()).exp().matrix();
    Y.row(i) /= Y.row(i).sum();
  }
  return r.finish();
}

/// log(softmax(x)) of each row, computed stably as x - logsumexp(x).
template <Scalar T>
Tensor<T> log_softmax(const Tensor<T>& x) {
  detail::Recorder<T> r(detail::Op::log_softmax, {&x}, x.shape());
  const auto& X = r.in(0);
  auto& Y = r.out();
  for (Index i = 0; i < X.rows(); ++i) {
    const T m = X.row(i).maxCoeff();
    const T lse = m + std::log((X.row(i).array() - m).exp().sum());
    Y.row(i) = (X.row(i).array() - lse).matrix();
  }
  return r.finish();
}

// ---- fused layers and losses ----

/// x W^T + b: x is [batch, in], W is [out, in] (PyTorch's layout), b is [out] or undefined.
template <Scalar T>
Tensor<T> linear(const Tensor<T>& x, const Tensor<T>& W, const Tensor<T>& b = {}) {
  const Shape sx = x.shape(), sw = W.shape();
  if (sw.rank != 2 || sx.cols != sw.cols)
    throw ShapeError(detail::cat("linear: input ", sx, " does not fit weight ", sw,
                                 " (expected input [batch, ", sw.cols, "] and weight [out, in])"));
  if (b.defined() && (b.rows() != 1 || b.cols() != sw.rows))
    throw ShapeError(detail::cat("linear: bias has shape ", b.shape(), ", expected [", sw.rows,
                                 "] for weight ", sw));
  detail::Recorder<T> r(detail::Op::linear, {&x, &W, b.defined() ? &b : nullptr},
                        Shape::matrix(sx.rows, sw.rows));
  // The bias first, then the product added onto it: Eigen's `=` product zero-fills the output
  // before accumulating, so this saves a whole pass over it.
  auto& y = r.out();
  if (b.defined())
    for (Index i = 0; i < y.rows(); ++i) y.row(i) = r.in(2).row(0);
  else
    y.setZero();
  detail::gemm(y, r.in(0), false, r.in(1), true, true);
  return r.finish();
}

namespace detail {
inline void check_labels(const char* op, std::span<const int> labels, Index rows, Index classes) {
  if (static_cast<Index>(labels.size()) != rows)
    throw ShapeError(cat(op, ": ", labels.size(), " labels for a batch of ", rows, " rows"));
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      throw ValueError(cat(op, ": label ", labels[i], " at index ", i, " is out of range for ",
                           classes, " classes (expected 0 to ", classes - 1, ")"));
}
}  // namespace detail

/// Mean over the batch of -log softmax(logits)[label]: logits [batch, classes], one integer
/// label per row. Fused and stable (row maximum subtracted), so logits of magnitude 1e4 are fine.
template <Scalar T>
Tensor<T> softmax_cross_entropy(const Tensor<T>& logits, std::span<const int> labels) {
  const Shape s = logits.shape();
  detail::check_labels("softmax_cross_entropy", labels, s.rows, s.cols);
  detail::Recorder<T> r(detail::Op::softmax_cross_entropy, {&logits}, Shape::scalar());
  const auto& X = r.in(0);
  const bool keep = r.recording();
  T* probs = keep ? r.template scratch<T>(static_cast<std::size_t>(s.size())) : nullptr;
  int* saved = keep ? r.template scratch<int>(labels.size()) : nullptr;
  double total = 0;
  for (Index i = 0; i < s.rows; ++i) {
    const T m = X.row(i).maxCoeff();
    const T z = (X.row(i).array() - m).exp().sum();
    const T lse = m + std::log(z);
    total += static_cast<double>(lse - X(i, labels[static_cast<std::size_t>(i)]));
    if (keep) MatrixMap<T>(probs + i * s.cols, 1, s.cols) = (X.row(i).array() - lse).exp().matrix();
  }
  if (keep) {
    std::copy(labels.begin(), labels.end(), saved);
    auto& n = r.node();
    n.aux = probs;
    n.aux2 = saved;
    n.alpha = T(1) / static_cast<T>(s.rows);
  }
  r.out()(0, 0) = static_cast<T>(total / static_cast<double>(s.rows));
  return r.finish();
}

/// Mean over all elements of the binary cross-entropy between sigmoid(logits) and targets in
/// [0, 1], computed stably as max(x, 0) - x t + log(1 + e^-|x|).
template <Scalar T>
Tensor<T> binary_cross_entropy_with_logits(const Tensor<T>& logits, const Tensor<T>& targets) {
  if (logits.shape() != targets.shape())
    throw ShapeError(detail::cat("binary_cross_entropy_with_logits: logits ", logits.shape(),
                                 " and targets ", targets.shape(), " differ"));
  detail::Recorder<T> r(detail::Op::binary_cross_entropy_with_logits, {&logits, &targets},
                        Shape::scalar());
  const auto X = r.in(0).array();
  const auto t = r.in(1).array();
  const T n = static_cast<T>(logits.size());
  r.set_args(T(1) / n);
  r.out()(0, 0) = (X.max(T(0)) - X * t + (-X.abs()).exp().log1p()).sum() / n;
  return r.finish();
}

}  // namespace gradscope
