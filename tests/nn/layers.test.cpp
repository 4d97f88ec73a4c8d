// Dense, the activation layers, Dropout and Sequential: values against their formulas, and
// numerical gradient checks (double) with respect to input and parameters, in train and eval
// mode, on random shapes.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "nn_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
using nn_test::Mat;

namespace {

constexpr int shapes_per_layer = 3;

struct ActivationCase {
  std::string kind;
  std::string describe;
  std::function<std::shared_ptr<nn::Module<double>>()> make;
  std::function<double(double)> formula;
};

std::vector<ActivationCase> activation_cases() {
  return {
      {"Identity", "Identity", [] { return std::make_shared<nn::Identity<double>>(); },
       [](double v) { return v; }},
      {"Sigmoid", "Sigmoid", [] { return std::make_shared<nn::Sigmoid<double>>(); },
       [](double v) { return 1.0 / (1.0 + std::exp(-v)); }},
      {"Tanh", "Tanh", [] { return std::make_shared<nn::Tanh<double>>(); },
       [](double v) { return std::tanh(v); }},
      {"ReLU", "ReLU", [] { return std::make_shared<nn::ReLU<double>>(); },
       [](double v) { return v > 0 ? v : 0.0; }},
      {"LeakyReLU", "LeakyReLU(0.01)", [] { return std::make_shared<nn::LeakyReLU<double>>(); },
       [](double v) { return v > 0 ? v : 0.01 * v; }},
      {"LeakyReLU", "LeakyReLU(0.2)", [] { return std::make_shared<nn::LeakyReLU<double>>(0.2); },
       [](double v) { return v > 0 ? v : 0.2 * v; }},
      {"ELU", "ELU(1)", [] { return std::make_shared<nn::ELU<double>>(); },
       [](double v) { return v > 0 ? v : std::exp(v) - 1.0; }},
      {"ELU", "ELU(0.5)", [] { return std::make_shared<nn::ELU<double>>(0.5); },
       [](double v) { return v > 0 ? v : 0.5 * (std::exp(v) - 1.0); }},
  };
}

}  // namespace

TEST_CASE("Dense computes x W^T + b with W of shape [out, in]", "[nn][layers][dense]") {
  gs::Rng rng(11);
  nn::Dense<double> dense(3, 2, gs::init::xavier_uniform, true, &rng);
  REQUIRE(dense.weight().shape() == gs::Shape::matrix(2, 3));
  REQUIRE(dense.bias().shape() == gs::Shape::vector(2));
  dense.weight().mutable_value() << 1, 2, 3, -1, 0, 4;
  dense.bias().mutable_value() << 0.5, -2;
  const gs::Tensor<double> x{{1, 1, 1}, {2, 0, -1}};
  const Mat y = dense(x).to_matrix();
  Mat expected(2, 2);
  expected << 1 + 2 + 3 + 0.5, -1 + 0 + 4 - 2, 2 + 0 - 3 + 0.5, -2 + 0 - 4 - 2;
  CHECK(y.isApprox(expected, 1e-15));
  CHECK(dense.in_features() == 3);
  CHECK(dense.out_features() == 2);
  CHECK(dense.kind() == "Dense");
  CHECK(dense.describe() == "Dense(3 -> 2)");
  CHECK(dense.init_name() == "xavier_uniform(gain=1.000000)");

  nn::Dense<double> no_bias(3, 2, gs::init::xavier_uniform, false, &rng);
  CHECK_FALSE(no_bias.bias().defined());
  CHECK(no_bias.parameters().size() == 1);
  CHECK(no_bias.parameter_count() == 6);
  CHECK(no_bias.describe() == "Dense(3 -> 2, no bias)");
  no_bias.weight().mutable_value() = dense.weight().value();
  CHECK(no_bias(x).to_matrix().isApprox(x.value() * dense.weight().value().transpose(), 1e-15));
}

TEST_CASE("Dense rejects bad sizes and a wrong input width", "[nn][layers][dense][errors]") {
  CHECK_THROWS_AS(nn::Dense<double>(0, 3), gs::ValueError);
  CHECK_THROWS_AS(nn::Dense<double>(3, -1), gs::ValueError);
  nn::Dense<double> dense(4, 6);
  const auto x = gs::Tensor<double>::zeros(3, 5);
  CHECK_THROWS_AS(dense(x), gs::ShapeError);
  // The message names the input's shape and the weight's shape.
  CHECK_THROWS_WITH(dense(x), Catch::Contains("[3, 5]") && Catch::Contains("[6, 4]"));
}

TEST_CASE("Dense passes gradient checks with and without bias", "[nn][layers][dense][gradcheck]") {
  gs::Rng rng(101);
  for (const bool bias : {true, false}) {
    for (int s = 0; s < shapes_per_layer; ++s) {
      const gs::Index batch = nn_test::draw(rng, 1, 6);
      const gs::Index in = nn_test::draw(rng, 1, 7);
      const gs::Index out = nn_test::draw(rng, 1, 7);
      nn::Dense<double> dense(in, out, gs::init::xavier_normal, bias, &rng);
      nn_test::randomize_state(dense, rng);
      CHECK(dense.parameters().size() == (bias ? 2u : 1u));
      nn_test::check_module_gradients_both_modes(dense, nn_test::randn(batch, in, rng));
    }
  }
}

TEST_CASE("Activation layers apply their formulas", "[nn][layers][activation]") {
  gs::Rng rng(7);
  const Mat x = nn_test::randn_away_from_zero(4, 5, rng);
  for (const auto& c : activation_cases()) {
    INFO(c.describe);
    auto m = c.make();
    CHECK(m->kind() == c.kind);
    CHECK(m->describe() == c.describe);
    CHECK(m->parameters().empty());
    const Mat y = (*m)(gs::Tensor<double>(x)).to_matrix();
    for (gs::Index i = 0; i < x.size(); ++i)
      CHECK(y.data()[i] == Approx(c.formula(x.data()[i])).epsilon(1e-14).margin(1e-300));
  }
}

TEST_CASE("Activation layers pass gradient checks", "[nn][layers][activation][gradcheck]") {
  gs::Rng rng(202);
  for (const auto& c : activation_cases()) {
    for (int s = 0; s < shapes_per_layer; ++s) {
      auto m = c.make();
      const Mat x =
          nn_test::randn_away_from_zero(nn_test::draw(rng, 1, 6), nn_test::draw(rng, 1, 7), rng);
      nn_test::check_module_gradients_both_modes(*m, x);
    }
  }
}

TEST_CASE("Dropout is inverted dropout in training and the identity in eval",
          "[nn][layers][dropout]") {
  const double p = 0.3;
  nn::Dropout<double> drop(p, 1234);
  CHECK(drop.kind() == "Dropout");
  CHECK(drop.describe() == "Dropout(0.3)");
  CHECK(drop.probability() == p);

  const Mat x = Mat::Constant(200, 300, 2.0);
  const Mat y = drop(gs::Tensor<double>(x)).to_matrix();
  const double n = static_cast<double>(x.size());
  const double zeros = static_cast<double>((y.array() == 0).count());
  const double kept = static_cast<double>((y.array() == 2.0 / (1 - p)).count());
  CHECK(zeros + kept == n);  // every element is dropped or scaled by 1 / (1 - p)
  // The fraction dropped is p within 5 standard errors of a binomial proportion.
  CHECK(std::abs(zeros / n - p) < 5 * std::sqrt(p * (1 - p) / n));

  // The same seed gives the same mask; the stream moves on otherwise.
  drop.seed(99);
  const Mat a = drop(gs::Tensor<double>(x)).to_matrix();
  const Mat b = drop(gs::Tensor<double>(x)).to_matrix();
  drop.seed(99);
  const Mat c = drop(gs::Tensor<double>(x)).to_matrix();
  CHECK(a == c);
  CHECK(a != b);

  drop.eval();
  CHECK(drop(gs::Tensor<double>(x)).to_matrix() == x);

  nn::Dropout<double> none(0.0), all(1.0);
  CHECK(none(gs::Tensor<double>(x)).to_matrix() == x);
  CHECK(all(gs::Tensor<double>(x)).to_matrix().isZero(0));
  CHECK_THROWS_AS(nn::Dropout<double>(1.5), gs::ValueError);
  CHECK_THROWS_AS(nn::Dropout<double>(-0.1), gs::ValueError);
}

TEST_CASE("Dropout passes gradient checks with its seed reset in f",
          "[nn][layers][dropout][gradcheck]") {
  gs::Rng rng(303);
  for (const double p : {0.2, 0.5}) {
    for (int s = 0; s < shapes_per_layer; ++s) {
      nn::Dropout<double> drop(p);
      const Mat x = nn_test::randn(nn_test::draw(rng, 2, 6), nn_test::draw(rng, 2, 7), rng);
      nn_test::check_module_gradients_both_modes(drop, x, [&] { drop.seed(42); });
    }
  }
}

TEST_CASE("Sequential chains its layers", "[nn][layers][sequential]") {
  gs::Rng rng(5);
  nn::Sequential<double> net;
  auto& d0 = net.add<nn::Dense>(3, 4, gs::init::he_normal, true, &rng);
  net.add<nn::Tanh>();
  auto& d2 = net.add<nn::Dense>(4, 2, gs::init::he_normal, true, &rng);
  CHECK(net.size() == 3);
  CHECK(net.kind() == "Sequential");
  CHECK(net.describe() == "Sequential(3 layers)");
  CHECK(&net.at(0) == &d0);
  CHECK(&net[2] == &d2);
  CHECK_THROWS_AS(net.at(3), gs::UsageError);
  CHECK_THROWS_WITH(net.at(3), Catch::Contains("at(3)") && Catch::Contains("3 layers"));
  CHECK_THROWS_AS(net[7], gs::UsageError);

  const Mat x = nn_test::randn(5, 3, rng);
  const Mat h = (x * d0.weight().value().transpose()).rowwise() + d0.bias().value().row(0);
  const Mat expected = (h.array().tanh().matrix() * d2.weight().value().transpose()).rowwise() +
                       d2.bias().value().row(0);
  CHECK(net(gs::Tensor<double>(x)).to_matrix().isApprox(expected, 1e-14));

  // An existing module is shared, not copied.
  auto shared = std::make_shared<nn::Dense<double>>(2, 2, gs::init::zeros, true, &rng);
  net.add(shared);
  CHECK(&net.at(3) == shared.get());
  CHECK(net(gs::Tensor<double>(x)).to_matrix().isZero(0));
}

TEST_CASE("Sequential passes gradient checks", "[nn][layers][sequential][gradcheck]") {
  gs::Rng rng(404);
  for (int s = 0; s < shapes_per_layer; ++s) {
    const gs::Index batch = nn_test::draw(rng, 3, 6);
    const gs::Index in = nn_test::draw(rng, 1, 5);
    const gs::Index hidden = nn_test::draw(rng, 2, 6);
    const gs::Index out = nn_test::draw(rng, 1, 4);
    nn::Sequential<double> net;
    net.add<nn::Dense>(in, hidden, gs::init::he_normal, true, &rng);
    net.add<nn::BatchNorm>(hidden);
    net.add<nn::ReLU>();
    auto& drop = net.add<nn::Dropout>(0.25);
    net.add<nn::Dense>(hidden, hidden, gs::init::xavier_normal, false, &rng);
    net.add<nn::ELU>();
    net.add<nn::Dense>(hidden, out, gs::init::lecun_normal, true, &rng);
    net.add<nn::Sigmoid>();
    nn_test::randomize_state(net, rng);
    nn_test::check_module_gradients_both_modes(net, nn_test::randn(batch, in, rng),
                                               [&] { drop.seed(7); });
  }
}

TEST_CASE("float layers compute what double layers compute", "[nn][layers][float]") {
  // Initialisers draw in double and round, so the same seed gives the same weights.
  auto build = []<class T>(nn::Sequential<T>& net) {
    gs::Rng rng(77);
    net.template add<nn::Dense>(3, 8, gs::init::he_uniform, true, &rng);
    net.template add<nn::BatchNorm>(8);
    net.template add<nn::LeakyReLU>(0.1);
    net.template add<nn::Dense>(8, 2, gs::init::nielsen, true, &rng);
  };
  nn::Sequential<double> d;
  nn::Sequential<float> f;
  build(d);
  build(f);
  gs::Rng rng(8);
  const Mat x = nn_test::randn(6, 3, rng);
  const Mat yd = d(gs::Tensor<double>(x)).to_matrix();
  const gs::Matrix<float> yf = f(gs::Tensor<float>(x.cast<float>())).to_matrix();
  CHECK(yf.cast<double>().isApprox(yd, 1e-5));

  // A float backward agrees with the double one to float precision.
  gs::Tape<double> td;
  td.backward(gs::sum(d(gs::Tensor<double>(x))));
  gs::Tape<float> tf;
  tf.backward(gs::sum(f(gs::Tensor<float>(x.cast<float>()))));
  const auto pd = d.parameters();
  const auto pf = f.parameters();
  REQUIRE(pd.size() == pf.size());
  for (std::size_t i = 0; i < pd.size(); ++i) {
    INFO("parameter " << i);
    CHECK((pf[i].grad().cast<double>() - pd[i].grad()).cwiseAbs().maxCoeff() <
          1e-4 * (1 + pd[i].grad().cwiseAbs().maxCoeff()));
  }
}
