// Regularisation: which parameters the optimisers' coupled weight_decay and l1 (and AdamW's
// decoupled decay) touch by default and with ParamGroup overrides; ParamGroup lr_scale; the
// differentiable l1_penalty / l2_penalty terms (values, exclusions, gradient checks) and their
// equivalence with the optimisers' options under Nielsen's lambda / (2 n) convention.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <memory>
#include <optional>
#include <vector>

#include "optim_test_util.hpp"

namespace gs = gradscope;
namespace opt = gradscope::optim;
using optim_test::identical;
using optim_test::Mat;
using optim_test::max_abs_diff;

namespace {

struct Params {
  gs::Tensor<double> W, b, s;  // a matrix [2, 3], a vector [3], a scalar []
  std::vector<gs::Tensor<double>> all() const { return {W, b, s}; }
};

Params make_params() {
  Mat W(2, 3), b(1, 3), s(1, 1);
  W << 0.5, -1.2, 0.7, 2.0, -0.3, 0.8;
  b << 0.4, -0.6, 0.25;
  s << 1.5;
  return {optim_test::parameter(W, 2, "w"), optim_test::parameter(b, 1, "b"),
          optim_test::parameter(s, 0, "s")};
}

Mat sign(const Mat& m) { return m.array().sign().matrix(); }

/// One optimiser of each kind, regularising through the option `what` ("weight_decay" or "l1").
std::unique_ptr<opt::Optimizer<double>> make(int kind, std::vector<opt::ParamGroup<double>> groups,
                                             double wd, double l1) {
  switch (kind) {
    case 0:
      return std::make_unique<opt::SGD<double>>(
          groups, opt::SGDOptions<double>{.lr = 0.5, .weight_decay = wd, .l1 = l1});
    case 1:
      return std::make_unique<opt::Adam<double>>(
          groups, opt::AdamOptions<double>{.lr = 0.1, .weight_decay = wd, .l1 = l1});
    case 2:
      return std::make_unique<opt::AdamW<double>>(
          groups, opt::AdamOptions<double>{.lr = 0.1, .weight_decay = wd, .l1 = l1});
    default:
      return std::make_unique<opt::RMSprop<double>>(
          groups, opt::RMSpropOptions<double>{.lr = 0.01, .weight_decay = wd, .l1 = l1});
  }
}

}  // namespace

TEST_CASE("weight_decay and l1 touch only matrices by default; biases and scalars are excluded",
          "[optim][regularization]") {
  const int kind = GENERATE(0, 1, 2, 3);
  const bool use_l1 = GENERATE(false, true);
  if (kind == 2 && use_l1) return;  // AdamW's own regulariser is the decay; L1 is checked below
  auto p = make_params();
  const Mat W0 = p.W.to_matrix(), b0 = p.b.to_matrix(), s0 = p.s.to_matrix();
  auto o = make(kind, {{.params = p.all(), .lr_scale = std::nullopt, .regularize = std::nullopt}},
                use_l1 ? 0.0 : 0.1, use_l1 ? 0.1 : 0.0);
  INFO(o->kind() << (use_l1 ? " with l1" : " with weight_decay"));
  // Zero data gradient: any movement comes from the regulariser alone.
  REQUIRE(o->step());
  CHECK(identical(p.b.value(), b0));
  CHECK(identical(p.s.value(), s0));
  // Every weight moved towards zero.
  const Mat W1 = p.W.to_matrix();
  for (gs::Index i = 0; i < W1.size(); ++i) CHECK(std::abs(W1.data()[i]) < std::abs(W0.data()[i]));
  if (kind == 0) {  // SGD: exactly p -= lr (wd p + l1 sign p)
    const Mat expected = use_l1 ? Mat(W0 - 0.5 * 0.1 * sign(W0)) : Mat(W0 * (1 - 0.5 * 0.1));
    CHECK(max_abs_diff(p.W.value(), expected) <= 1e-12);
  }
  if (kind == 2) {  // AdamW with a zero gradient: only the decoupled decay p *= 1 - lr wd
    CHECK(max_abs_diff(p.W.value(), W0 * (1 - 0.1 * 0.1)) <= 1e-12);
  }
}

TEST_CASE("ParamGroup.regularize overrides the rank rule in both directions",
          "[optim][regularization][groups]") {
  const int kind = GENERATE(0, 1, 2, 3);
  auto p = make_params();
  const Mat W0 = p.W.to_matrix(), b0 = p.b.to_matrix(), s0 = p.s.to_matrix();
  // The weight is exempted; the bias and the scalar are regularised.
  auto o = make(kind,
                {{.params = {p.W}, .lr_scale = std::nullopt, .regularize = false},
                 {.params = {p.b, p.s}, .lr_scale = std::nullopt, .regularize = true}},
                0.1, 0.0);
  INFO(o->kind());
  REQUIRE(o->step());
  CHECK(identical(p.W.value(), W0));
  for (gs::Index i = 0; i < b0.size(); ++i)
    CHECK(std::abs(p.b.value().data()[i]) < std::abs(b0.data()[i]));
  CHECK(std::abs(p.s.item()) < std::abs(s0(0, 0)));
  if (kind == 0) CHECK(max_abs_diff(p.b.value(), b0 * (1 - 0.5 * 0.1)) <= 1e-12);
  if (kind == 2) CHECK(max_abs_diff(p.b.value(), b0 * (1 - 0.1 * 0.1)) <= 1e-12);
}

TEST_CASE("AdamW decays only matrices by default, and L1 still applies through the gradient",
          "[optim][regularization][adamw]") {
  auto p = make_params();
  const Mat W0 = p.W.to_matrix(), b0 = p.b.to_matrix();
  opt::AdamW<double> o(p.all(), {.lr = 0.1, .weight_decay = 0.0, .l1 = 0.2});
  REQUIRE(o.step());
  // Adam's first step with g = l1 sign(W) moves each weight by lr against its sign.
  CHECK(max_abs_diff(p.W.value(), W0 - 0.1 * sign(W0)) <= 1e-6);
  CHECK(identical(p.b.value(), b0));
}

TEST_CASE("ParamGroup.lr_scale multiplies the (scheduled) learning rate", "[optim][groups]") {
  auto p = make_params();
  const Mat W0 = p.W.to_matrix(), b0 = p.b.to_matrix(), s0 = p.s.to_matrix();
  opt::SGD<double> o({{.params = {p.W}, .lr_scale = 0.5, .regularize = std::nullopt},
                      {.params = {p.b}, .lr_scale = 2.0, .regularize = std::nullopt},
                      {.params = {p.s}, .lr_scale = std::nullopt, .regularize = std::nullopt}},
                     {.lr = 0.1});
  for (auto& t : p.all()) t.mutable_grad().setOnes();
  REQUIRE(o.step());
  CHECK(max_abs_diff(p.W.value(), W0.array() - 0.05) <= 1e-12);
  CHECK(max_abs_diff(p.b.value(), b0.array() - 0.2) <= 1e-12);
  CHECK(max_abs_diff(p.s.value(), s0.array() - 0.1) <= 1e-12);
  // The base rate stays the optimiser's; set_lr (what a schedule does) rescales every group.
  CHECK(o.lr() == 0.1);
  o.set_lr(0.2);
  REQUIRE(o.step());
  CHECK(max_abs_diff(p.W.value(), W0.array() - 0.15) <= 1e-12);
  CHECK(max_abs_diff(p.b.value(), b0.array() - 0.6) <= 1e-12);
  CHECK(max_abs_diff(p.s.value(), s0.array() - 0.3) <= 1e-12);
}

TEST_CASE("l1_penalty and l2_penalty: values and the parameters they cover", "[optim][penalty]") {
  auto p = make_params();
  const Mat W = p.W.to_matrix(), b = p.b.to_matrix();
  const double s = p.s.item();
  SECTION("by default only matrices (biases, batch-norm vectors and scalars excluded)") {
    CHECK(opt::l1_penalty(p.all()).item() == Approx(W.cwiseAbs().sum()).epsilon(1e-14));
    CHECK(opt::l2_penalty(p.all()).item() == Approx(W.squaredNorm()).epsilon(1e-14));
  }
  SECTION("include_vectors covers every parameter") {
    const opt::PenaltyOptions all{.include_vectors = true};
    CHECK(opt::l1_penalty(p.all(), all).item() ==
          Approx(W.cwiseAbs().sum() + b.cwiseAbs().sum() + std::abs(s)).epsilon(1e-14));
    CHECK(opt::l2_penalty(p.all(), all).item() ==
          Approx(W.squaredNorm() + b.squaredNorm() + s * s).epsilon(1e-14));
  }
  SECTION("nothing covered: a scalar zero") {
    const auto l1 = opt::l1_penalty<double>({p.b, p.s});
    const auto l2 = opt::l2_penalty<double>({});
    CHECK(l1.shape() == gs::Shape::scalar());
    CHECK(l1.item() == 0.0);
    CHECK(l2.item() == 0.0);
  }
  SECTION("the result is a scalar that a loss can add") {
    gs::Tape<double> tape;
    const auto l2 = opt::l2_penalty(p.all());
    CHECK(l2.shape() == gs::Shape::scalar());
    CHECK_FALSE(l2.is_persistent());
    tape.backward(l2);
    CHECK(max_abs_diff(p.W.grad(), 2 * W) <= 1e-12);
    CHECK(p.b.grad().isZero(0));
    CHECK(p.s.grad().isZero(0));
  }
}

TEST_CASE("l1_penalty and l2_penalty pass numerical gradient checks",
          "[optim][penalty][gradcheck]") {
  gs::Rng rng(7);
  Mat W(3, 4), b(1, 3);  // a Dense(4 -> 3) layer's shapes
  // Away from zero by more than the finite-difference step, where |x| has its kink.
  for (gs::Index i = 0; i < W.size(); ++i) W.data()[i] = rng.uniform(0.2, 1.5) * (i % 2 ? -1 : 1);
  for (gs::Index i = 0; i < b.size(); ++i) b.data()[i] = rng.uniform(0.2, 1.5) * (i % 3 ? 1 : -1);
  const bool include_vectors = GENERATE(false, true);
  const opt::PenaltyOptions po{.include_vectors = include_vectors};
  INFO("include_vectors = " << include_vectors);

  SECTION("check_gradients on tape variables") {
    auto l1 = [&](const std::vector<gs::Tensor<double>>& v) { return opt::l1_penalty(v, po); };
    auto l2 = [&](const std::vector<gs::Tensor<double>>& v) { return opt::l2_penalty(v, po); };
    const auto r1 = gs::check_gradients(l1, {W, b}, {}, {2, 1});
    const auto r2 = gs::check_gradients(l2, {W, b}, {}, {2, 1});
    CHECK(r1.ok);
    CHECK(r2.ok);
    INFO(r1.str() << "\n" << r2.str());
    CHECK(r1.checked == static_cast<std::size_t>(W.size() + b.size()));
  }
  SECTION("check_parameter_gradients on a loss with a Nielsen-style penalty") {
    auto Wp = optim_test::parameter(W, 2, "w");
    auto bp = optim_test::parameter(b, 1, "b");
    Mat x(5, 4);
    for (gs::Index i = 0; i < x.size(); ++i) x.data()[i] = rng.normal();
    const gs::Tensor<double> X(x);
    const double lambda = 0.3, n = 5;
    auto loss = [&] {
      auto data = gs::mean(gs::square(gs::linear(X, Wp, bp)));
      return data + opt::l2_penalty<double>({Wp, bp}, po) * (lambda / (2 * n)) +
             opt::l1_penalty<double>({Wp, bp}, po) * 0.01;
    };
    const auto r = gs::check_parameter_gradients(loss, {Wp, bp});
    INFO(r.str());
    CHECK(r.ok);
  }
  SECTION("the analytic gradients are sign(w) and 2 w, and zero for excluded vectors") {
    auto Wp = optim_test::parameter(W, 2, "w");
    auto bp = optim_test::parameter(b, 1, "b");
    {
      gs::Tape<double> tape;
      tape.backward(opt::l1_penalty<double>({Wp, bp}, po) + opt::l2_penalty<double>({Wp, bp}, po));
    }
    CHECK(max_abs_diff(Wp.grad(), sign(W) + 2 * W) <= 1e-12);
    const Mat expected_b = include_vectors ? Mat(sign(b) + 2 * b) : Mat(Mat::Zero(1, 3));
    CHECK(max_abs_diff(bp.grad(), expected_b) <= 1e-12);
  }
}

TEST_CASE("Nielsen's lambda / (2 n) L2 penalty equals SGD weight_decay = lambda / n",
          "[optim][penalty][regularization]") {
  // C = C0 + lambda / (2 n) sum w^2 gives dC/dw = dC0/dw + (lambda / n) w: the same update as
  // coupled weight decay lambda / n. Both leave the bias alone by default.
  gs::Rng rng(11);
  const double lambda = 5.0, n = 50.0;
  Mat x(8, 3), y(8, 1), W(1, 3), b(1, 1);
  for (gs::Index i = 0; i < x.size(); ++i) x.data()[i] = rng.normal();
  for (gs::Index i = 0; i < y.size(); ++i) y.data()[i] = rng.normal();
  W << 0.5, -0.4, 0.9;
  b << 0.3;
  const gs::Tensor<double> X(x), Y(y);

  const bool l1 = GENERATE(false, true);
  INFO((l1 ? "L1: lambda * l1_penalty vs l1 = lambda" : "L2"));
  auto Wa = optim_test::parameter(W, 2, "w"), ba = optim_test::parameter(b, 1, "b");
  auto Wb = optim_test::parameter(W, 2, "w"), bb = optim_test::parameter(b, 1, "b");
  opt::SGD<double> with_penalty({Wa, ba}, {.lr = 0.1, .momentum = 0.9});
  opt::SGD<double> with_option(
      {Wb, bb},
      {.lr = 0.1, .momentum = 0.9, .weight_decay = l1 ? 0.0 : lambda / n, .l1 = l1 ? 0.05 : 0.0});
  gs::Tape<double> tape;
  for (int step = 0; step < 5; ++step) {
    tape.reset();
    auto penalty = l1 ? opt::l1_penalty<double>({Wa, ba}) * 0.05
                      : opt::l2_penalty<double>({Wa, ba}) * (lambda / (2 * n));
    tape.backward(gs::nn::mse(gs::linear(X, Wa, ba), Y) + penalty);
    tape.reset();
    tape.backward(gs::nn::mse(gs::linear(X, Wb, bb), Y));
    REQUIRE(with_penalty.step());
    REQUIRE(with_option.step());
    with_penalty.zero_grad();
    with_option.zero_grad();
  }
  CHECK(max_abs_diff(Wa.value(), Wb.value()) <= 1e-12);
  CHECK(max_abs_diff(ba.value(), bb.value()) <= 1e-12);
  CHECK(max_abs_diff(Wa.value(), W) > 1e-2);
}
