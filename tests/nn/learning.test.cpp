// End-to-end: small networks learn real nonlinear tasks (XOR, two interleaved spirals) with a
// fixed seed, trained by a tiny local optimiser on net.parameters() through a long-lived tape.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <numbers>
#include <vector>

namespace gs = gradscope;
namespace nn = gradscope::nn;

namespace {

/// Plain gradient descent: p -= lr * grad, then zero the gradient.
template <class T>
void sgd_step(std::vector<gs::Tensor<T>>& params, T lr) {
  for (auto& p : params) {
    p.mutable_value() -= lr * p.grad();
    p.zero_grad();
  }
}

/// Adam (Kingma and Ba 2015) with bias correction, for the test only.
template <class T>
class TinyAdam {
 public:
  TinyAdam(std::vector<gs::Tensor<T>> params, T lr) : params_(std::move(params)), lr_(lr) {
    for (const auto& p : params_) {
      m_.push_back(gs::Matrix<T>::Zero(p.rows(), p.cols()));
      v_.push_back(gs::Matrix<T>::Zero(p.rows(), p.cols()));
    }
  }
  void step() {
    ++t_;
    const T c1 = T(1) - std::pow(b1_, T(t_)), c2 = T(1) - std::pow(b2_, T(t_));
    for (std::size_t i = 0; i < params_.size(); ++i) {
      auto& p = params_[i];
      const auto g = p.grad();
      m_[i] = b1_ * m_[i] + (T(1) - b1_) * g;
      v_[i] = b2_ * v_[i] + (T(1) - b2_) * g.cwiseProduct(g);
      p.mutable_value().array() -=
          lr_ * (m_[i].array() / c1) / ((v_[i].array() / c2).sqrt() + T(1e-8));
      p.zero_grad();
    }
  }

 private:
  std::vector<gs::Tensor<T>> params_;
  std::vector<gs::Matrix<T>> m_, v_;
  T lr_, b1_ = T(0.9), b2_ = T(0.999);
  int t_ = 0;
};

/// Two interleaved spirals: class c's point i sits at radius 0.1 + i / n and angle
/// 3 pi i / n + c pi (one and a half turns each), plus N(0, noise^2) on each coordinate.
void make_spirals(int n, double noise, gs::Rng& rng, gs::Matrix<double>& x,
                  std::vector<int>& labels) {
  x.resize(2 * n, 2);
  labels.assign(static_cast<std::size_t>(2 * n), 0);
  for (int c = 0; c < 2; ++c) {
    for (int i = 0; i < n; ++i) {
      const double t = static_cast<double>(i) / n;
      const double r = 0.1 + t;
      const double a = 3 * std::numbers::pi * t + c * std::numbers::pi;
      const gs::Index row = c * n + i;
      x(row, 0) = r * std::cos(a) + rng.normal(0.0, noise);
      x(row, 1) = r * std::sin(a) + rng.normal(0.0, noise);
      labels[static_cast<std::size_t>(row)] = c;
    }
  }
}

}  // namespace

TEST_CASE("A float MLP learns XOR with plain gradient descent", "[nn][learning]") {
  gs::Rng rng(2024);
  nn::Sequential<float> net;
  net.add<nn::Dense>(
      2, 8, gs::init::xavier_uniform_with(gs::init::gain(gs::init::Activation::tanh)), true, &rng);
  net.add<nn::Tanh>();
  net.add<nn::Dense>(8, 2, gs::init::xavier_uniform, true, &rng);

  const gs::Tensor<float> x{{0, 0}, {0, 1}, {1, 0}, {1, 1}};
  const std::vector<int> y{0, 1, 1, 0};
  auto params = net.parameters();
  gs::Tape<float> tape;
  float loss = 0;
  for (int step = 0; step < 1000; ++step) {
    tape.reset();
    auto l = nn::softmax_cross_entropy(net(x), y);
    tape.backward(l);
    loss = l.item();
    sgd_step(params, 0.5f);
  }
  INFO("final loss " << loss);
  CHECK(loss < 0.05f);
  gs::NoGrad no_grad;
  CHECK(nn::accuracy(net(x), y) == 1.0);
}

TEST_CASE("Two interleaved spirals are not linearly separable", "[nn][learning]") {
  // The control: a linear classifier trained the same way stays far from the MLP's accuracy.
  gs::Rng rng(7);
  gs::Matrix<double> points;
  std::vector<int> labels;
  make_spirals(120, 0.02, rng, points, labels);
  const gs::Tensor<double> x(points);
  nn::Dense<double> linear(2, 2, gs::init::xavier_uniform, true, &rng);
  TinyAdam<double> adam(linear.parameters(), 0.01);
  gs::Tape<double> tape;
  for (int step = 0; step < 600; ++step) {
    tape.reset();
    tape.backward(nn::softmax_cross_entropy(linear(x), labels));
    adam.step();
  }
  gs::NoGrad no_grad;
  const double acc = nn::accuracy(linear(x), labels);
  INFO("linear training accuracy " << acc);
  CHECK(acc < 0.8);
}

TEST_CASE("An MLP learns two interleaved spirals", "[nn][learning]") {
  gs::Rng rng(7);
  gs::Matrix<double> points;
  std::vector<int> labels;
  make_spirals(120, 0.02, rng, points, labels);
  const gs::Tensor<double> x(points);

  const auto tanh_init = gs::init::xavier_uniform_with(gs::init::gain(gs::init::Activation::tanh));
  nn::Sequential<double> net;
  net.add<nn::Dense>(2, 32, tanh_init, true, &rng);
  net.add<nn::Tanh>();
  net.add<nn::Dense>(32, 32, tanh_init, true, &rng);
  net.add<nn::Tanh>();
  net.add<nn::Dense>(32, 2, gs::init::xavier_uniform, true, &rng);

  TinyAdam<double> adam(net.parameters(), 0.01);
  gs::Tape<double> tape;
  double loss = 0;
  for (int step = 0; step < 600; ++step) {  // 100% from about step 300 on
    tape.reset();
    auto l = nn::softmax_cross_entropy(net(x), labels);
    tape.backward(l);
    loss = l.item();
    adam.step();
  }
  gs::NoGrad no_grad;
  const double acc = nn::accuracy(net(x), labels);
  INFO("final loss " << loss << ", training accuracy " << acc);
  CHECK(acc >= 0.97);
}

TEST_CASE("A residual network with batch norm learns the spirals and evaluates in eval mode",
          "[nn][learning]") {
  gs::manual_seed(11);  // residual_block draws from default_rng()
  gs::Rng rng(11);
  gs::Matrix<double> points;
  std::vector<int> labels;
  make_spirals(120, 0.02, rng, points, labels);
  const gs::Tensor<double> x(points);

  nn::Sequential<double> net;
  net.add<nn::Dense>(2, 32, gs::init::he_normal, true, &rng);
  net.add(nn::residual_block<double>(32));
  net.add(nn::residual_block<double>(32));
  net.add<nn::BatchNorm>(32);
  net.add<nn::ReLU>();
  net.add<nn::Dense>(32, 2, gs::init::xavier_uniform, true, &rng);

  TinyAdam<double> adam(net.parameters(), 0.01);
  gs::Tape<double> tape;
  for (int step = 0; step < 300; ++step) {
    tape.reset();
    tape.backward(nn::softmax_cross_entropy(net(x), labels));
    adam.step();
  }
  // Running statistics have caught up with the (full) batch once training has settled.
  for (int step = 0; step < 50; ++step) {
    gs::NoGrad no_grad;
    net(x);
  }
  net.eval();
  gs::NoGrad no_grad;
  const double acc = nn::accuracy(net(x), labels);
  INFO("training accuracy in eval mode " << acc);
  CHECK(acc >= 0.97);
}
