#pragma once
// Helpers shared by the nn tests. Not a test file itself (the build globs *.test.cpp only).

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

namespace nn_test {

namespace gs = gradscope;
namespace nn = gradscope::nn;
using Mat = gs::Matrix<double>;

/// A matrix of N(0, sd^2) draws.
inline Mat randn(gs::Index rows, gs::Index cols, gs::Rng& rng, double sd = 1.0) {
  Mat m(rows, cols);
  for (gs::Index i = 0; i < m.size(); ++i) m.data()[i] = rng.normal(0.0, sd);
  return m;
}

/// Normal draws pushed `gap` further from zero, so a finite-difference step of 1e-5 never
/// crosses the kink of ReLU or LeakyReLU (or the switch of ELU).
inline Mat randn_away_from_zero(gs::Index rows, gs::Index cols, gs::Rng& rng, double gap = 0.1) {
  Mat m = randn(rows, cols, rng);
  for (gs::Index i = 0; i < m.size(); ++i) m.data()[i] += m.data()[i] < 0 ? -gap : gap;
  return m;
}

/// A uniform integer in [lo, hi].
inline gs::Index draw(gs::Rng& rng, gs::Index lo, gs::Index hi) {
  return lo + static_cast<gs::Index>(rng.below(static_cast<std::uint64_t>(hi - lo + 1)));
}

/// Moves every parameter off its initial value (BatchNorm's gamma off 1, biases off 0) and gives
/// running statistics random values (variances in [0.5, 2]), so eval-mode checks are not trivial.
inline void randomize_state(nn::Module<double>& m, gs::Rng& rng) {
  for (auto& p : m.named_parameters())
    p.tensor.mutable_value() += randn(p.tensor.rows(), p.tensor.cols(), rng, 0.3);
  for (auto& b : m.named_buffers()) {
    auto v = b.tensor.mutable_value();
    const bool is_var = b.name.size() >= 11 && b.name.substr(b.name.size() - 11) == "running_var";
    for (gs::Index i = 0; i < v.size(); ++i)
      v.data()[i] = is_var ? rng.uniform(0.5, 2.0) : rng.normal(0.0, 0.5);
  }
}

/// Checks the module's gradient with respect to its input (check_gradients) and to each of its
/// parameters (check_parameter_gradients) at x, in the module's current mode. `before` runs at
/// the start of every evaluation (Dropout reseeds its mask stream there).
inline void check_module_gradients(nn::Module<double>& m, const Mat& x,
                                   const std::function<void()>& before = {},
                                   gs::GradCheckOptions opt = {}) {
  INFO("module " << m.describe() << (m.is_training() ? " in train" : " in eval") << " mode, input ["
                 << x.rows() << ", " << x.cols() << "]");
  const auto input_report = gs::check_gradients(
      [&](const std::vector<gs::Tensor<double>>& in) {
        if (before) before();
        return m(in[0]);
      },
      {x}, opt);
  {
    INFO("with respect to the input: " << input_report.str());
    CHECK(input_report.checked == static_cast<std::size_t>(x.size()));
    REQUIRE(input_report.ok);
  }
  const gs::Tensor<double> xc(x, 2, false);
  const auto param_report = gs::check_parameter_gradients(
      [&] {
        if (before) before();
        return m(xc);
      },
      m.parameters(), opt);
  INFO("with respect to the parameters: " << param_report.str());
  CHECK(param_report.checked == static_cast<std::size_t>(m.parameter_count()));
  REQUIRE(param_report.ok);
}

/// Runs check_module_gradients in train mode and in eval mode.
inline void check_module_gradients_both_modes(nn::Module<double>& m, const Mat& x,
                                              const std::function<void()>& before = {}) {
  m.train();
  check_module_gradients(m, x, before);
  m.eval();
  check_module_gradients(m, x, before);
  m.train();
}

}  // namespace nn_test
