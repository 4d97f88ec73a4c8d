// End-to-end training loops with a fixed seed: a 2-16-2 MLP on XOR and a linear regression,
// with each optimiser, through the full step (tape reset, forward, loss, backward, clip, step,
// zero_grad).

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "optim_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace opt = gradscope::optim;

namespace {

template <class T>
using MakeOptimizer = std::function<std::unique_ptr<opt::Optimizer<T>>(std::vector<gs::Tensor<T>>)>;

template <class T>
struct Case {
  std::string name;
  MakeOptimizer<T> make;
};

/// The six optimisers with settings that suit small full-batch problems.
template <class T>
std::vector<Case<T>> optimizers(T sgd_lr, T adaptive_lr) {
  using P = std::vector<gs::Tensor<T>>;
  return {
      {"SGD",
       [=](P p) { return std::make_unique<opt::SGD<T>>(p, opt::SGDOptions<T>{.lr = sgd_lr}); }},
      {"SGD+momentum",
       [=](P p) {
         return std::make_unique<opt::SGD<T>>(
             p, opt::SGDOptions<T>{.lr = sgd_lr / 5, .momentum = T(0.9)});
       }},
      {"Nesterov",
       [=](P p) {
         return std::make_unique<opt::SGD<T>>(
             p, opt::SGDOptions<T>{.lr = sgd_lr / 5, .momentum = T(0.9), .nesterov = true});
       }},
      {"Adam",
       [=](P p) {
         return std::make_unique<opt::Adam<T>>(p, opt::AdamOptions<T>{.lr = adaptive_lr});
       }},
      {"AdamW",
       [=](P p) {
         return std::make_unique<opt::AdamW<T>>(
             p, opt::AdamOptions<T>{.lr = adaptive_lr, .weight_decay = T(0.01)});
       }},
      {"RMSprop",
       [=](P p) {
         return std::make_unique<opt::RMSprop<T>>(p, opt::RMSpropOptions<T>{.lr = adaptive_lr / 5});
       }},
  };
}

}  // namespace

TEMPLATE_TEST_CASE("A 2-16-2 MLP learns XOR with every optimiser", "[optim][convergence]", float,
                   double) {
  using T = TestType;
  const std::array<int, 4> labels{0, 1, 1, 0};
  gs::Matrix<T> x(4, 2);
  x << 0, 0, 0, 1, 1, 0, 1, 1;
  const gs::Tensor<T> X(x);

  for (const auto& c : optimizers<T>(T(0.5), T(0.05))) {
    INFO(c.name);
    gs::Rng rng(42);  // the same initial network for every optimiser
    nn::Sequential<T> net;
    net.template add<nn::Dense>(2, 16, gs::init::xavier_uniform, true, &rng);
    net.template add<nn::Tanh>();
    net.template add<nn::Dense>(16, 2, gs::init::xavier_uniform, true, &rng);
    auto o = c.make(net.parameters());

    gs::Tape<T> tape;
    double first = 0, last = 0;
    for (int step = 0; step < 300; ++step) {
      tape.reset();
      auto loss = nn::softmax_cross_entropy(net(X), labels);
      if (step == 0) first = loss.item();
      last = loss.item();
      tape.backward(loss);
      const double norm = opt::clip_grad_norm(net.parameters(), 5.0);
      REQUIRE(std::isfinite(norm));
      REQUIRE(o->step());
      o->zero_grad();
    }
    tape.reset();
    const auto logits = net(X);
    INFO("loss " << first << " -> " << last);
    CHECK(last < 0.05);
    CHECK(nn::accuracy(logits, labels) == 1.0);
  }
}

TEST_CASE("Linear regression converges with every optimiser", "[optim][convergence]") {
  // y = x w* + b* exactly, 64 samples of 3 features; the loss must fall below 1e-4.
  gs::Rng data_rng(7);
  gs::Matrix<double> x(64, 3), y(64, 1);
  const double w_star[3] = {1.5, -2.0, 0.5}, b_star = 0.3;
  for (gs::Index i = 0; i < 64; ++i) {
    double target = b_star;
    for (gs::Index j = 0; j < 3; ++j) {
      x(i, j) = data_rng.normal();
      target += w_star[j] * x(i, j);
    }
    y(i, 0) = target;
  }
  const gs::Tensor<double> X(x), Y(y);

  for (const auto& c : optimizers<double>(0.1, 0.05)) {
    INFO(c.name);
    auto W = optim_test::parameter(gs::Matrix<double>::Zero(1, 3), 2, "weight");
    auto b = optim_test::parameter(gs::Matrix<double>::Zero(1, 1), 1, "bias");
    auto o = c.make(std::vector<gs::Tensor<double>>{W, b});
    gs::Tape<double> tape;
    double last = 0;
    for (int step = 0; step < 400; ++step) {
      tape.reset();
      auto loss = nn::mse(gs::linear(X, W, b), Y);
      last = loss.item();
      tape.backward(loss);
      REQUIRE(o->step());
      o->zero_grad();
    }
    INFO("final loss " << last << ", w " << W.value() << ", b " << b.item());
    CHECK(last < 1e-4);
    // AdamW's decay pulls w slightly towards 0; the others recover w* closely.
    CHECK(W.value()(0, 0) == Approx(w_star[0]).margin(0.02));
    CHECK(b.item() == Approx(b_star).margin(0.02));
  }
}
