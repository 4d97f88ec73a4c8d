// Initialisers: sample mean and variance of large draws against each scheme's formula, with
// tolerances of 5 standard errors of the estimators; gains; look-up by name.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "nn_test_util.hpp"

namespace gs = gradscope;
namespace init = gradscope::init;
namespace nn = gradscope::nn;
using nn_test::Mat;

namespace {

constexpr gs::Index fan_out = 400;
constexpr gs::Index fan_in = 600;

enum class Dist { normal, uniform };

/// Checks that the entries of m look like draws with the given mean and variance: the sample
/// mean within 5 standard errors (sigma / sqrt(n)), the sample variance within 5 standard errors
/// of the variance estimator (sqrt((mu4 - sigma^4) / n), mu4 = 3 sigma^4 for a normal and
/// 9/5 sigma^4 for a uniform). A uniform is also checked to stay inside its bounds.
void check_moments(const Mat& m, double mean, double var, Dist shape) {
  const double n = static_cast<double>(m.size());
  const double sample_mean = m.mean();
  const double sample_var = (m.array() - sample_mean).square().sum() / (n - 1);
  const double se_mean = std::sqrt(var / n);
  const double kurtosis = shape == Dist::normal ? 3.0 : 1.8;
  const double se_var = var * std::sqrt((kurtosis - 1.0) / n);
  INFO("n " << n << ", mean " << sample_mean << " (expected " << mean << " +- " << 5 * se_mean
            << "), variance " << sample_var << " (expected " << var << " +- " << 5 * se_var << ")");
  CHECK(std::abs(sample_mean - mean) < 5 * se_mean);
  CHECK(std::abs(sample_var - var) < 5 * se_var);
  if (shape == Dist::uniform) {
    const double half_width = std::sqrt(3.0 * var);
    CHECK(m.minCoeff() >= mean - half_width);
    CHECK(m.maxCoeff() < mean + half_width);
    // With n draws, the extremes come within a few (width / n) of the bounds.
    CHECK(m.maxCoeff() > mean + half_width * (1 - 20 / n));
    CHECK(m.minCoeff() < mean - half_width * (1 - 20 / n));
  }
}

Mat draw_weight(const init::Initializer& in, std::uint64_t seed) {
  gs::Rng rng(seed);
  Mat W(fan_out, fan_in);
  in.weight(W, rng);
  return W;
}

struct Case {
  std::string name;
  init::Initializer initializer;
  double var;
  Dist shape;
};

}  // namespace

TEST_CASE("Variance-scaling initialisers draw with the variance of their formula", "[nn][init]") {
  const double fi = fan_in, fo = fan_out;
  const double tanh_gain = init::gain(init::Activation::tanh);
  const double leaky_gain = init::gain(init::Activation::leaky_relu, 0.2);
  const std::vector<Case> cases = {
      {"xavier_uniform", init::xavier_uniform, 2 / (fi + fo), Dist::uniform},
      {"xavier_normal", init::xavier_normal, 2 / (fi + fo), Dist::normal},
      {"xavier_uniform tanh", init::xavier_uniform_with(tanh_gain),
       tanh_gain * tanh_gain * 2 / (fi + fo), Dist::uniform},
      {"xavier_normal tanh", init::xavier_normal_with(tanh_gain),
       tanh_gain * tanh_gain * 2 / (fi + fo), Dist::normal},
      {"he_uniform", init::he_uniform, 2 / fi, Dist::uniform},
      {"he_normal", init::he_normal, 2 / fi, Dist::normal},
      {"he_uniform leaky 0.2", init::he_uniform_with(leaky_gain), leaky_gain * leaky_gain / fi,
       Dist::uniform},
      {"he_normal gain 1", init::he_normal_with(1.0), 1 / fi, Dist::normal},
      {"lecun_normal", init::lecun_normal, 1 / fi, Dist::normal},
      {"nielsen", init::nielsen, 1 / fi, Dist::normal},
      {"normal(0.3)", init::normal(0.3), 0.09, Dist::normal},
  };
  std::uint64_t seed = 1000;
  for (const auto& c : cases) {
    INFO(c.name);
    CHECK(c.initializer.weight_std(fan_in, fan_out) == Approx(std::sqrt(c.var)).epsilon(1e-12));
    check_moments(draw_weight(c.initializer, ++seed), 0.0, c.var, c.shape);
  }
}

TEST_CASE("uniform, constant and zeros fill weights and biases", "[nn][init]") {
  const Mat U = draw_weight(init::uniform(-0.2, 0.5), 7);
  check_moments(U, 0.15, 0.7 * 0.7 / 12, Dist::uniform);
  CHECK(init::uniform(-0.2, 0.5).weight_std(3, 4) == Approx(0.7 / std::sqrt(12.0)));

  CHECK((draw_weight(init::constant(0.7), 8).array() == 0.7).all());
  CHECK(draw_weight(init::zeros, 9).isZero(0));

  // Through Dense: these schemes fill the bias like the weight.
  gs::Rng rng(10);
  nn::Dense<double> c(5, 7, init::constant(-1.25), true, &rng);
  CHECK((c.weight().value().array() == -1.25).all());
  CHECK((c.bias().value().array() == -1.25).all());
  nn::Dense<double> z(5, 7, init::zeros, true, &rng);
  CHECK(z.weight().value().isZero(0));
  CHECK(z.bias().value().isZero(0));
  nn::Dense<double> u(50, 20000, init::uniform(1.0, 3.0), true, &rng);
  check_moments(u.bias().to_matrix(), 2.0, 4.0 / 12, Dist::uniform);
  nn::Dense<double> n(50, 20000, init::normal(0.3), true, &rng);
  check_moments(n.bias().to_matrix(), 0.0, 0.09, Dist::normal);

  CHECK_THROWS_AS(init::normal(-1.0), gs::ValueError);
  CHECK_THROWS_AS(init::uniform(2.0, 1.0), gs::ValueError);
}

TEST_CASE("Nielsen's scheme: weights N(0, 1 / fan_in), biases N(0, 1)", "[nn][init]") {
  gs::Rng rng(11);
  nn::Dense<double> d(50, 4000, init::nielsen, true, &rng);
  check_moments(d.weight().to_matrix(), 0.0, 1.0 / 50, Dist::normal);
  check_moments(d.bias().to_matrix(), 0.0, 1.0, Dist::normal);
}

TEST_CASE("Fan-based schemes leave biases at zero", "[nn][init]") {
  gs::Rng rng(12);
  for (const auto& in : {init::xavier_uniform, init::xavier_normal, init::he_uniform,
                         init::he_normal, init::lecun_normal}) {
    INFO(in.name());
    nn::Dense<double> d(6, 9, in, true, &rng);
    CHECK(d.bias().value().isZero(0));
    CHECK_FALSE(d.weight().value().isZero(0));
    CHECK(d.init_name() == in.name());
  }
}

TEST_CASE("The same seed gives the same weights", "[nn][init]") {
  CHECK(draw_weight(init::he_normal, 5) == draw_weight(init::he_normal, 5));
  CHECK(draw_weight(init::he_normal, 5) != draw_weight(init::he_normal, 6));
  // Layers without an explicit Rng draw from default_rng(), which manual_seed resets.
  gs::manual_seed(42);
  nn::Dense<double> a(4, 3);
  gs::manual_seed(42);
  nn::Dense<double> b(4, 3);
  CHECK(a.weight().to_matrix() == b.weight().to_matrix());
}

TEST_CASE("Initialisers reject empty weights", "[nn][init][errors]") {
  gs::Rng rng(1);
  Mat W(0, 3);
  CHECK_THROWS_AS(init::he_normal.weight(W, rng), gs::ValueError);
}

TEST_CASE("init::fill draws a custom parameter as a layer draws its weight", "[nn][init]") {
  // A tensor [fan_out, fan_in] gets exactly the weight Dense(fan_in, fan_out) draws from the same
  // stream, for every scheme, float and double.
  for (const auto& in : {init::he_normal, init::xavier_uniform, init::orthogonal(1.5),
                         init::nielsen, init::lecun_normal, init::identity(2.0)}) {
    INFO(in.name());
    gs::Rng a(9), b(9);
    auto w = gs::Tensor<float>::parameter(Eigen::MatrixXf::Zero(5, 3));
    CHECK(&init::fill(w, in, a) == &w);
    const nn::Dense<float> layer(3, 5, in, false, &b);
    CHECK(w.to_matrix() == const_cast<nn::Dense<float>&>(layer).weight().to_matrix());
    CHECK(w.is_parameter());  // in place: the same storage, still a parameter
  }
  // The fans come from the shape: he_normal on [fan_out, fan_in] has variance 2 / fan_in.
  gs::Rng rng(3);
  auto big = gs::Tensor<double>::parameter(Mat::Zero(fan_out, fan_in));
  init::fill(big, init::he_normal, rng);
  check_moments(big.to_matrix(), 0.0, 2.0 / fan_in, Dist::normal);
  auto tall = gs::Tensor<double>::zeros(fan_in, fan_out);  // data, not a parameter: fine too
  init::fill(tall, init::xavier_uniform, rng);
  check_moments(tall.to_matrix(), 0.0, 2.0 / (fan_in + fan_out), Dist::uniform);

  // Elementwise schemes fill any rank, vectors and scalars included.
  auto v = gs::Tensor<double>::zeros(gs::Shape::vector(4));
  init::fill(v, init::constant(0.5), rng);
  CHECK(v.to_matrix() == Mat::Constant(1, 4, 0.5));
  auto s = gs::Tensor<double>::scalar(0);
  init::fill(s, init::uniform(2, 3), rng);
  CHECK((s.item() >= 2 && s.item() < 3));
  // Without an Rng: default_rng(), which manual_seed resets.
  auto p = gs::Tensor<double>::parameter(Mat::Zero(3, 2)), q = p.detach();
  gs::manual_seed(7);
  init::fill(p, init::he_uniform);
  gs::manual_seed(7);
  init::fill(q, init::he_uniform);
  CHECK(p.to_matrix() == q.to_matrix());
  CHECK(p.to_matrix() != Mat::Zero(3, 2));
}

TEST_CASE("init::fill rejects what it cannot initialise", "[nn][init][errors]") {
  using Catch::Matchers::Contains;
  gs::Rng rng(1);
  gs::Tensor<double> undefined;
  CHECK_THROWS_AS(init::fill(undefined, init::he_normal, rng), gs::UsageError);
  CHECK_THROWS_WITH(init::fill(undefined, init::zeros, rng), Contains("undefined"));
  // A fan-based scheme needs [fan_out, fan_in]; the message names the scheme, tensor and shape.
  auto bias = gs::Tensor<double>::parameter(Mat::Zero(1, 4), 1);
  bias.set_name("gate.bias");
  CHECK_THROWS_WITH(init::fill(bias, init::xavier_normal, rng),
                    Contains("init::fill(xavier_normal(gain=1.000000), 'gate.bias')") &&
                        Contains("rank-2") && Contains("[4]"));
  auto empty = gs::Tensor<double>::parameter(Mat::Zero(0, 3));
  CHECK_THROWS_WITH(init::fill(empty, init::he_normal, rng), Contains("positive fan-in"));
  init::fill(empty, init::zeros, rng);  // nothing to fill, nothing wrong
  // A tape node is not storage one can initialise.
  gs::Tape<double> tape;
  auto x = tape.variable(Mat::Ones(2, 2));
  auto y = x * 2.0;
  CHECK_THROWS_WITH(init::fill(y, init::zeros, rng), Contains("tape node"));
}

TEST_CASE("gain follows PyTorch's calculate_gain", "[nn][init]") {
  using A = init::Activation;
  CHECK(init::gain(A::linear) == 1.0);
  CHECK(init::gain(A::sigmoid) == 1.0);
  CHECK(init::gain(A::tanh) == Approx(5.0 / 3.0).epsilon(1e-15));
  CHECK(init::gain(A::relu) == Approx(std::sqrt(2.0)).epsilon(1e-15));
  CHECK(init::gain(A::leaky_relu) == Approx(std::sqrt(2.0 / (1 + 0.01 * 0.01))).epsilon(1e-15));
  CHECK(init::gain(A::leaky_relu, 0.2) == Approx(std::sqrt(2.0 / 1.04)).epsilon(1e-15));
  CHECK(init::gain(A::elu) == 1.0);
  CHECK(init::he_normal.gain == init::gain(A::relu));
  CHECK(init::he_uniform.gain == init::gain(A::relu));
  CHECK(init::xavier_uniform.gain == 1.0);
}

TEST_CASE("Initialisers have descriptive names", "[nn][init]") {
  CHECK(init::zeros.name() == "zeros");
  CHECK(init::constant(0.5).name() == "constant(0.500000)");
  CHECK(init::normal(0.1).name() == "normal(std=0.100000)");
  CHECK(init::uniform(-1, 1).name() == "uniform(-1.000000, 1.000000)");
  CHECK(init::xavier_uniform.name() == "xavier_uniform(gain=1.000000)");
  CHECK(init::he_normal.name() == "he_normal(gain=1.414214)");
  CHECK(init::lecun_normal.name() == "lecun_normal");
  CHECK(init::nielsen.name() == "nielsen");
}

TEST_CASE("by_name finds the known initialisers and lists them otherwise", "[nn][init]") {
  using K = init::Initializer::Kind;
  const std::vector<std::pair<std::string, K>> known = {
      {"zeros", K::zeros},
      {"xavier_uniform", K::xavier_uniform},
      {"xavier", K::xavier_uniform},
      {"glorot", K::xavier_uniform},
      {"xavier_normal", K::xavier_normal},
      {"he_uniform", K::he_uniform},
      {"he_normal", K::he_normal},
      {"he", K::he_normal},
      {"kaiming", K::he_normal},
      {"lecun_normal", K::lecun_normal},
      {"lecun", K::lecun_normal},
      {"nielsen", K::nielsen},
  };
  for (const auto& [name, kind] : known) {
    INFO(name);
    CHECK(init::by_name(name).kind == kind);
  }
  CHECK(init::by_name("he").gain == init::gain(init::Activation::relu));
  CHECK(init::by_name("he_uniform").gain == init::gain(init::Activation::relu));
  CHECK(init::by_name("xavier").gain == 1.0);

  CHECK_THROWS_AS(init::by_name("orthonormal"), gs::ValueError);
  CHECK_THROWS_WITH(init::by_name("orthonormal"),
                    Catch::Contains("'orthonormal'") && Catch::Contains("zeros") &&
                        Catch::Contains("xavier_uniform") && Catch::Contains("xavier_normal") &&
                        Catch::Contains("he_uniform") && Catch::Contains("he_normal") &&
                        Catch::Contains("lecun_normal") && Catch::Contains("nielsen") &&
                        Catch::Contains("orthogonal") && Catch::Contains("identity"));
}
