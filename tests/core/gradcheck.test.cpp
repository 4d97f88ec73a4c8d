// check_gradients and check_parameter_gradients: they pass right gradients, detect wrong ones,
// and leave parameters as they found them.

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "support.hpp"

namespace gs = gradscope;
using M = gs::Matrix<double>;
using T = gs::Tensor<double>;
using Inputs = std::vector<T>;

TEST_CASE("check_gradients passes a correct gradient and reports what it compared",
          "[core][gradcheck]") {
  gs::Rng rng(3);
  const std::vector<M> inputs = {gs::testing::uniform(3, 4, rng), gs::testing::uniform(1, 4, rng)};
  const auto report = gs::check_gradients(
      [](const Inputs& v) { return gs::tanh(gs::add(gs::mul(v[0], v[0]), v[1])); }, inputs, {},
      {2, 1});
  INFO(report.str());
  CHECK(report.ok);
  CHECK(report.max_rel_error < 1e-6);
  CHECK(report.checked == 12 + 4);
  CHECK_THAT(report.str(), Catch::Matchers::StartsWith("gradient check passed"));
}

TEST_CASE("check_gradients detects a wrong gradient", "[core][gradcheck]") {
  // f(x) = x * exp(x), but exp(x) is computed under NoGrad: the tape's gradient misses the
  // x exp(x) term, while finite differences see all of f.
  const auto f = [](const Inputs& v) {
    T e;
    {
      gs::NoGrad no_grad;
      e = gs::exp(v[0]);
    }
    return gs::sum(gs::mul(v[0], e));
  };
  gs::Rng rng(4);
  const M x = gs::testing::uniform(2, 3, rng, 0.5, 1.5);
  const auto report = gs::check_gradients(f, {x});
  INFO(report.str());
  CHECK_FALSE(report.ok);
  CHECK(report.max_rel_error > 0.1);
  CHECK_THAT(report.str(), Catch::Matchers::StartsWith("gradient check FAILED"));
  // The worst element: analytic exp(x), numeric (1 + x) exp(x).
  const double worst = x(report.worst_row, report.worst_col);
  CHECK(report.worst_input == 0);
  CHECK(report.analytic == Approx(std::exp(worst)));
  CHECK(report.numeric == Approx((1 + worst) * std::exp(worst)).epsilon(1e-6));
}

TEST_CASE("check_gradients detects a gradient that is missing altogether", "[core][gradcheck]") {
  // The whole result is computed under NoGrad: the tape has nothing to back-propagate.
  const auto f = [](const Inputs& v) {
    gs::NoGrad no_grad;
    return gs::square(v[0]);
  };
  const auto report = gs::check_gradients(f, {M{{1, 2}}});
  CHECK_FALSE(report.ok);
  CHECK(report.analytic == 0);
}

TEST_CASE("check_gradients accepts a function that ignores an input", "[core][gradcheck]") {
  const auto report =
      gs::check_gradients([](const Inputs& v) { return gs::exp(v[0]); }, {M{{0.5, 1}}, M{{3, 4}}});
  INFO(report.str());
  CHECK(report.ok);
  CHECK(report.checked == 4);
}

TEST_CASE("check_gradients projects non-scalar outputs so every element is tested",
          "[core][gradcheck]") {
  // A wrong gradient in one output element only must still be caught: y = x, except that the
  // last element is replaced by a NoGrad'd copy.
  const auto f = [](const Inputs& v) {
    T frozen;
    {
      gs::NoGrad no_grad;
      frozen = gs::scale(v[0], 1.0);
    }
    const T mask{{1, 1, 0}};
    const T keep{{0, 0, 1}};
    return gs::add(gs::mul(v[0], mask), gs::mul(frozen, keep));
  };
  const auto report = gs::check_gradients(f, {M{{1, 2, 3}}});
  CHECK_FALSE(report.ok);
  CHECK(report.worst_col == 2);
}

TEST_CASE("check_parameter_gradients checks parameters and restores them",
          "[core][gradcheck][parameter]") {
  gs::Rng rng(8);
  auto W = T::parameter(gs::testing::uniform(3, 4, rng));
  auto b = T::parameter(gs::testing::uniform(1, 3, rng), 1);
  const T x(gs::testing::uniform(5, 4, rng));
  const std::vector<int> labels = {0, 2, 1, 1, 0};
  W.mutable_grad().setConstant(0.25);  // a gradient accumulated before the check
  const M W_before = W.to_matrix();

  const auto report = gs::check_parameter_gradients(
      [&] { return gs::softmax_cross_entropy(gs::sigmoid(gs::linear(x, W, b)), labels); }, {W, b});
  INFO(report.str());
  CHECK(report.ok);
  CHECK(report.max_rel_error < 1e-6);
  CHECK(report.checked == 12 + 3);
  CHECK(W.to_matrix() == W_before);
  CHECK((W.grad().array() == 0.25).all());
  CHECK(b.grad().isZero());
}

TEST_CASE("check_parameter_gradients detects a wrong gradient", "[core][gradcheck][parameter]") {
  auto w = T::parameter(M{{0.5, 1.5}});
  const auto report = gs::check_parameter_gradients(
      [&] {
        T frozen;
        {
          gs::NoGrad no_grad;
          frozen = gs::square(w);
        }
        return gs::sum(gs::mul(w, frozen));  // w^3 with the gradient of only one factor
      },
      {w});
  CHECK_FALSE(report.ok);
}

TEST_CASE("check_parameter_gradients needs parameters", "[core][gradcheck][errors]") {
  const auto c = T::zeros(1, 1);
  CHECK_THROWS_AS(gs::check_parameter_gradients([&] { return gs::exp(c); }, {c}), gs::UsageError);
}

TEST_CASE("check_gradients honours its tolerances", "[core][gradcheck]") {
  // A deliberately coarse step makes the finite difference of exp visibly wrong: with a loose
  // tolerance it passes, with the default it fails.
  const auto f = [](const Inputs& v) { return gs::sum(gs::exp(v[0])); };
  gs::GradCheckOptions coarse;
  coarse.eps = 0.1;
  const auto strict = gs::check_gradients(f, {M{{1, 2}}}, coarse);
  CHECK_FALSE(strict.ok);
  coarse.rtol = 1e-2;
  const auto loose = gs::check_gradients(f, {M{{1, 2}}}, coarse);
  CHECK(loose.ok);
}
