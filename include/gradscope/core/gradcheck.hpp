#pragma once
/// Gradient checking: analytic gradients from the tape against central finite differences.

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ops.hpp"
#include "tape.hpp"

namespace gradscope {

/// Settings of check_gradients. An element passes when
/// |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
struct GradCheckOptions {
  double eps = 1e-5;            ///< finite-difference step
  double rtol = 1e-6;           ///< relative tolerance
  double atol = 1e-8;           ///< absolute tolerance (for gradients near zero)
  std::uint64_t seed = 0x5eed;  ///< seed of the projection used for non-scalar outputs
};

/// The outcome of a gradient check: the worst element and the largest errors.
struct GradCheckReport {
  bool ok = true;
  double max_abs_error = 0;
  double max_rel_error = 0;  ///< |a - n| / max(|a|, |n|, atol)
  std::size_t worst_input = 0;
  Index worst_row = 0;
  Index worst_col = 0;
  double analytic = 0;
  double numeric = 0;
  std::size_t checked = 0;  ///< number of elements compared

  std::string str() const {
    std::ostringstream os;
    os << (ok ? "gradient check passed" : "gradient check FAILED") << ": " << checked
       << " elements, max abs error " << max_abs_error << ", max rel error " << max_rel_error
       << "; worst: input " << worst_input << " (" << worst_row << ", " << worst_col
       << ") analytic " << analytic << " numeric " << numeric;
    return os.str();
  }
};

namespace detail {
struct GradComparer {
  GradCheckOptions opt;
  GradCheckReport report;
  void compare(std::size_t input, Index r, Index c, double a, double n) {
    const double err = std::abs(a - n);
    const double scale = std::max({std::abs(a), std::abs(n)});
    const double rel = err / std::max(scale, opt.atol);
    ++report.checked;
    if (err > opt.atol + opt.rtol * scale) report.ok = false;
    if (rel >= report.max_rel_error || report.checked == 1) {
      report.max_rel_error = std::max(report.max_rel_error, rel);
      report.worst_input = input;
      report.worst_row = r;
      report.worst_col = c;
      report.analytic = a;
      report.numeric = n;
    }
    report.max_abs_error = std::max(report.max_abs_error, err);
  }
};

// These two are templates (on T = double) although only double is used: a non-template
// inline function here would make every file that includes the umbrella header instantiate the
// double tape, tensor and ops it calls, used or not (0.7-0.9 s of g++ -O2 per file).

/// sum(y * w) for fixed weights w drawn once: a scalar whose gradient tests every output.
template <Scalar T>
T projected(const Tensor<T>& y, Matrix<T>& w, std::uint64_t seed) {
  if (y.size() == 1) return y.item();
  if (w.rows() != y.rows() || w.cols() != y.cols()) {
    Rng rng(seed);
    w.resize(y.rows(), y.cols());
    for (Index i = 0; i < w.size(); ++i) w.data()[i] = rng.uniform(-1.0, 1.0);
  }
  return y.value().cwiseProduct(w).sum();
}
template <Scalar T>
Tensor<T> projected_tensor(const Tensor<T>& y, Matrix<T>& w, std::uint64_t seed) {
  if (y.size() == 1) return y;
  projected(y, w, seed);
  return sum(mul(y, Tensor<T>(w, y.rank(), false)));
}
}  // namespace detail

/// Checks the gradient of `f` with respect to each input. `f` maps a vector of tensors (one per
/// input, of the given ranks, default 2) to a tensor; a non-scalar result is projected on fixed
/// random weights, so every output element is tested.
template <class F>
GradCheckReport check_gradients(F&& f, const std::vector<Matrix<double>>& inputs,
                                GradCheckOptions opt = {}, std::vector<int> ranks = {}) {
  ranks.resize(inputs.size(), 2);
  Matrix<double> w;
  std::vector<Matrix<double>> analytic;
  {
    Tape<double> tape;
    std::vector<Tensor<double>> vars;
    for (std::size_t i = 0; i < inputs.size(); ++i)
      vars.push_back(tape.variable(inputs[i], ranks[i]));
    const Tensor<double> y = f(static_cast<const std::vector<Tensor<double>>&>(vars));
    const Tensor<double> loss = detail::projected_tensor(y, w, opt.seed);
    const bool connected = !loss.is_persistent() && loss.requires_grad();
    if (connected) tape.backward(loss);
    for (std::size_t i = 0; i < inputs.size(); ++i)
      analytic.push_back(connected ? Matrix<double>(vars[i].grad())
                                   : Matrix<double>::Zero(inputs[i].rows(), inputs[i].cols()));
  }
  detail::GradComparer cmp{opt, {}};
  NoGrad no_grad;
  std::vector<Matrix<double>> x = inputs;
  auto eval = [&] {
    std::vector<Tensor<double>> ts;
    for (std::size_t i = 0; i < x.size(); ++i) ts.emplace_back(x[i], ranks[i], false);
    return detail::projected(f(static_cast<const std::vector<Tensor<double>>&>(ts)), w, opt.seed);
  };
  for (std::size_t i = 0; i < x.size(); ++i) {
    for (Index r = 0; r < x[i].rows(); ++r) {
      for (Index c = 0; c < x[i].cols(); ++c) {
        const double saved = x[i](r, c);
        x[i](r, c) = saved + opt.eps;
        const double fp = eval();
        x[i](r, c) = saved - opt.eps;
        const double fm = eval();
        x[i](r, c) = saved;
        cmp.compare(i, r, c, analytic[i](r, c), (fp - fm) / (2 * opt.eps));
      }
    }
  }
  return cmp.report;
}

/// Checks the gradient of `f()` (which reads the given parameters, e.g. a layer's forward) with
/// respect to each parameter. The parameters' gradients and values are restored afterwards.
template <class F>
GradCheckReport check_parameter_gradients(F&& f, std::vector<Tensor<double>> params,
                                          GradCheckOptions opt = {}) {
  Matrix<double> w;
  std::vector<Matrix<double>> saved_grads, analytic;
  for (auto& p : params) {
    if (!p.is_persistent() || !p.requires_grad())
      throw UsageError("check_parameter_gradients: every tensor must be a parameter");
    saved_grads.emplace_back(p.grad());
    p.zero_grad();
  }
  {
    Tape<double> tape;
    const Tensor<double> loss = detail::projected_tensor(f(), w, opt.seed);
    if (!loss.is_persistent() && loss.requires_grad()) tape.backward(loss);
    for (auto& p : params) analytic.emplace_back(p.grad());
  }
  for (std::size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = saved_grads[i];
  detail::GradComparer cmp{opt, {}};
  NoGrad no_grad;
  for (std::size_t i = 0; i < params.size(); ++i) {
    auto v = params[i].mutable_value();
    for (Index r = 0; r < v.rows(); ++r) {
      for (Index c = 0; c < v.cols(); ++c) {
        const double saved = v(r, c);
        v(r, c) = saved + opt.eps;
        const double fp = detail::projected(f(), w, opt.seed);
        v(r, c) = saved - opt.eps;
        const double fm = detail::projected(f(), w, opt.seed);
        v(r, c) = saved;
        cmp.compare(i, r, c, analytic[i](r, c), (fp - fm) / (2 * opt.eps));
      }
    }
  }
  return cmp.report;
}

}  // namespace gradscope
