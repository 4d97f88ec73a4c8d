// Gradient clipping: grad_norm, clip_grad_norm (pre-clip norm, scaling, argument checks,
// non-finite policies) and clip_grad_value. Expected norms are computed here with plain loops.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "optim_test_util.hpp"

namespace gs = gradscope;
namespace opt = gradscope::optim;
using optim_test::identical;
using optim_test::Mat;

namespace {

constexpr double qnan = std::numeric_limits<double>::quiet_NaN();
constexpr double inf = std::numeric_limits<double>::infinity();

/// W [2, 3] and b [3], named like a Dense layer's, with gradients of both signs.
std::vector<gs::Tensor<double>> make_params() {
  auto W = optim_test::parameter(Mat::Zero(2, 3), 2, "dense.weight");
  auto b = optim_test::parameter(Mat::Zero(1, 3), 1, "dense.bias");
  W.mutable_grad() << 3.0, -4.0, 0.5, -1.5, 2.0, 0.25;
  b.mutable_grad() << -6.0, 1.0, -0.75;
  return {W, b};
}

/// (sum |g|^p)^(1/p) over every element, or max |g| for p = infinity.
double loop_norm(const std::vector<gs::Tensor<double>>& params, double p) {
  double acc = 0;
  for (const auto& t : params) {
    const auto g = t.grad();
    for (gs::Index i = 0; i < g.size(); ++i) {
      const double a = std::abs(g.data()[i]);
      acc = std::isinf(p) ? std::max(acc, a) : acc + std::pow(a, p);
    }
  }
  return std::isinf(p) ? acc : std::pow(acc, 1.0 / p);
}

std::vector<Mat> grads_of(const std::vector<gs::Tensor<double>>& params) {
  std::vector<Mat> out;
  for (const auto& p : params) out.emplace_back(p.grad());
  return out;
}

bool grads_unchanged(const std::vector<gs::Tensor<double>>& params,
                     const std::vector<Mat>& before) {
  for (std::size_t k = 0; k < params.size(); ++k)
    if (!identical(params[k].grad(), before[k])) return false;
  return true;
}

}  // namespace

TEST_CASE("grad_norm is the p-norm over every gradient element", "[optim][clip]") {
  auto params = make_params();
  CHECK(opt::grad_norm(params) == Approx(loop_norm(params, 2)).epsilon(1e-14));
  CHECK(opt::grad_norm(params, 2) ==
        Approx(std::sqrt(9 + 16 + 0.25 + 2.25 + 4 + 0.0625 + 36 + 1 + 0.5625)).epsilon(1e-14));
  CHECK(opt::grad_norm(params, 1) == Approx(19.0).epsilon(1e-14));
  CHECK(opt::grad_norm(params, inf) == 6.0);
  CHECK(opt::grad_norm(params, 3) == Approx(loop_norm(params, 3)).epsilon(1e-14));
  CHECK(opt::grad_norm(std::vector<gs::Tensor<double>>{}) == 0.0);
  CHECK_THROWS_AS(opt::grad_norm(params, 0.5), gs::ValueError);
  CHECK_THROWS_AS(opt::grad_norm(params, qnan), gs::ValueError);
}

TEST_CASE("clip_grad_norm returns the pre-clip norm and scales the total norm to max_norm",
          "[optim][clip]") {
  const double p = GENERATE(Catch::Generators::values<double>({2.0, 1.0, inf, 3.0}));
  INFO("p = " << p);
  auto params = make_params();
  const auto before = grads_of(params);
  const double expected = loop_norm(params, p);

  SECTION("above max_norm: scaled, direction kept") {
    const double max_norm = GENERATE(0.5, 1.0, 2.5);
    INFO("max_norm = " << max_norm);
    const double pre = opt::clip_grad_norm(params, max_norm, p);
    CHECK(pre == Approx(expected).epsilon(1e-12));
    const double after = loop_norm(params, p);
    CHECK(std::abs(after - max_norm) <= 1e-6 * max_norm);
    // Every element scaled by the same factor max_norm / pre.
    for (std::size_t k = 0; k < params.size(); ++k)
      CHECK(optim_test::max_abs_diff(params[k].grad(), before[k] * (max_norm / pre)) <= 1e-6);
  }
  SECTION("below max_norm: the gradients are not touched") {
    const double pre = opt::clip_grad_norm(params, expected * 1.5, p);
    CHECK(pre == Approx(expected).epsilon(1e-12));
    CHECK(grads_unchanged(params, before));
  }
}

TEST_CASE("clip_grad_norm rejects max_norm <= 0, NaN and infinity with ValueError",
          "[optim][clip][errors]") {
  auto params = make_params();
  const auto before = grads_of(params);
  const double max_norm =
      GENERATE(Catch::Generators::values<double>({0.0, -1.0, -0.0, qnan, inf, -inf}));
  INFO("max_norm = " << max_norm);
  CHECK_THROWS_AS(opt::clip_grad_norm(params, max_norm), gs::ValueError);
  CHECK_THROWS_WITH(opt::clip_grad_norm(params, max_norm), Catch::Contains("max_norm"));
  CHECK(grads_unchanged(params, before));
}

TEST_CASE("clip_grad_norm rejects p < 1", "[optim][clip][errors]") {
  auto params = make_params();
  const auto before = grads_of(params);
  CHECK_THROWS_AS(opt::clip_grad_norm(params, 1.0, 0.5), gs::ValueError);
  CHECK(grads_unchanged(params, before));
}

TEST_CASE("clip_grad_norm with a non-finite gradient follows its policy",
          "[optim][clip][nonfinite]") {
  const double bad = GENERATE(Catch::Generators::values<double>({qnan, inf, -inf}));
  const double p = GENERATE(Catch::Generators::values<double>({2.0, 1.0, inf}));
  INFO("bad value " << bad << ", p = " << p);
  auto params = make_params();
  params[1].mutable_grad()(0, 2) = bad;  // dense.bias; dense.weight stays finite
  const auto before = grads_of(params);

  SECTION("error (the default) throws NumericalError naming the parameter") {
    CHECK_THROWS_AS(opt::clip_grad_norm(params, 1.0, p), gs::NumericalError);
    CHECK_THROWS_WITH(opt::clip_grad_norm(params, 1.0, p),
                      Catch::Contains("dense.bias") && !Catch::Contains("dense.weight"));
    CHECK_THROWS_AS(opt::clip_grad_norm(params, 1.0, p, opt::NonFinite::error), gs::NumericalError);
    CHECK(grads_unchanged(params, before));
  }
  SECTION("skip and proceed leave the gradients untouched and return the non-finite norm") {
    const auto policy = GENERATE(opt::NonFinite::skip, opt::NonFinite::proceed);
    const double norm = opt::clip_grad_norm(params, 1.0, p, policy);
    CHECK_FALSE(std::isfinite(norm));
    // Never scaled by a non-finite factor: the finite gradient keeps its values exactly.
    CHECK(grads_unchanged(params, before));
  }
}

TEST_CASE("clip_grad_norm names an unnamed parameter '(unnamed)'", "[optim][clip][nonfinite]") {
  auto p = gs::Tensor<double>::parameter(Mat::Zero(2, 2));
  p.mutable_grad()(0, 0) = qnan;
  CHECK_THROWS_WITH(opt::clip_grad_norm<double>({p}, 1.0), Catch::Contains("(unnamed)"));
}

TEST_CASE("clip then step: a non-finite gradient under skip leaves the model unchanged",
          "[optim][clip][nonfinite]") {
  auto params = make_params();
  const Mat W0 = params[0].to_matrix(), b0 = params[1].to_matrix();
  params[0].mutable_grad()(1, 1) = qnan;
  opt::Adam<double> o(params, {.lr = 0.1, .non_finite = opt::NonFinite::skip});
  const double norm = opt::clip_grad_norm(params, 1.0, 2, opt::NonFinite::skip);
  CHECK(std::isnan(norm));
  CHECK_FALSE(o.step());
  CHECK(o.skipped_steps() == 1);
  CHECK(identical(params[0].value(), W0));
  CHECK(identical(params[1].value(), b0));
}

TEST_CASE("grad_norm and clip_grad_norm of float gradients accumulate in double",
          "[optim][clip][float]") {
  // Each element is finite in float (max 3.4e38), and so is the norm sqrt(2) 1e20; only the
  // squared sum 2e40 overflows float. grad_norm promises accumulation in double.
  auto w = optim_test::parameter<float>(gs::Matrix<float>::Zero(1, 2), 1, "w");
  w.mutable_grad() << 1e20f, -1e20f;
  const double expected = std::sqrt(2.0) * static_cast<double>(1e20f);
  CHECK(opt::grad_norm<float>({w}) == Approx(expected).epsilon(1e-6));
  double pre = 0;
  CHECK_NOTHROW(pre = opt::clip_grad_norm<float>({w}, 1.0));
  CHECK(pre == Approx(expected).epsilon(1e-6));
  CHECK(w.grad()(0, 0) == Approx(1 / std::sqrt(2.0)).epsilon(1e-5));
}

TEST_CASE("clip_grad_norm works on float parameters in the ordinary range",
          "[optim][clip][float]") {
  auto w = optim_test::parameter<float>(gs::Matrix<float>::Zero(2, 2), 2, "w");
  w.mutable_grad() << 3.0f, 4.0f, 0.0f, 0.0f;
  CHECK(opt::clip_grad_norm<float>({w}, 1.0) == Approx(5.0));
  CHECK(w.grad()(0, 0) == Approx(0.6f).epsilon(1e-5));
  CHECK(w.grad()(0, 1) == Approx(0.8f).epsilon(1e-5));
}

TEST_CASE("clip_grad_value clamps every element to [-limit, limit]", "[optim][clip]") {
  auto params = make_params();
  opt::clip_grad_value(params, 1.0);
  Mat W(2, 3), b(1, 3);
  W << 1.0, -1.0, 0.5, -1.0, 1.0, 0.25;
  b << -1.0, 1.0, -0.75;
  CHECK(identical(params[0].grad(), W));
  CHECK(identical(params[1].grad(), b));

  SECTION("a limit above every element changes nothing") {
    const auto before = grads_of(params);
    opt::clip_grad_value(params, 10.0);
    CHECK(grads_unchanged(params, before));
  }
  SECTION("infinities are clamped, NaNs left for the optimiser's policy") {
    params[0].mutable_grad()(0, 0) = inf;
    params[0].mutable_grad()(0, 1) = -inf;
    params[1].mutable_grad()(0, 0) = qnan;
    opt::clip_grad_value(params, 0.5);
    CHECK(params[0].grad()(0, 0) == 0.5);
    CHECK(params[0].grad()(0, 1) == -0.5);
    CHECK(std::isnan(params[1].grad()(0, 0)));
    CHECK(params[1].grad()(0, 1) == 0.5);
  }
}

TEST_CASE("clip_grad_value rejects a limit <= 0, NaN or infinity", "[optim][clip][errors]") {
  auto params = make_params();
  const auto before = grads_of(params);
  const double limit = GENERATE(Catch::Generators::values<double>({0.0, -1.0, qnan, inf}));
  INFO("limit = " << limit);
  CHECK_THROWS_AS(opt::clip_grad_value(params, limit), gs::ValueError);
  CHECK(grads_unchanged(params, before));
}
