// Parameter freezing (core, nn, optim): frozen parameters get no gradient and do not move under
// any optimiser (weight decay and momentum included).

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace optim = gradscope::optim;
using Catch::Matchers::Contains;
using Mat = gs::Matrix<double>;

/// True when a and b hold the same values bit for bit.
bool identical(const gs::ConstMatrixMap<double>& a, const Mat& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<std::size_t>(a.size())) == 0;
}

/// [in, h1, ..., out] with the given activation after each hidden layer, Xavier weights.
std::shared_ptr<nn::Sequential<double>> mlp(const std::vector<gs::Index>& sizes,
                                            nn::ActivationKind act, std::uint64_t seed) {
  gs::Rng rng(seed);
  auto net = std::make_shared<nn::Sequential<double>>();
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) {
    net->add<nn::Dense>(sizes[i], sizes[i + 1], gs::init::xavier_uniform, true, &rng);
    if (i + 2 < sizes.size()) net->add(std::make_shared<nn::Activation<double>>(act));
  }
  return net;
}

/// Inputs in [0, 1] with structure: each row is one of four prototypes, pixels flipped with
/// probability 0.1, then blurred toward 0.5 a little. Labels are the prototype.
std::pair<Mat, std::vector<int>> patterns(gs::Index rows, gs::Index cols, std::uint64_t seed) {
  gs::Rng rng(seed);
  Mat proto(4, cols);
  for (gs::Index i = 0; i < proto.size(); ++i) proto.data()[i] = rng.bernoulli(0.5) ? 1.0 : 0.0;
  Mat x(rows, cols);
  std::vector<int> y(static_cast<std::size_t>(rows));
  for (gs::Index r = 0; r < rows; ++r) {
    const auto k = static_cast<gs::Index>(rng.below(4));
    y[static_cast<std::size_t>(r)] = static_cast<int>(k);
    for (gs::Index c = 0; c < cols; ++c) {
      const double v = rng.bernoulli(0.1) ? 1 - proto(k, c) : proto(k, c);
      x(r, c) = 0.9 * v + 0.05;
    }
  }
  return {x, y};
}

/// One SGD step of softmax cross-entropy on the whole batch.
void supervised_step(nn::Sequential<double>& net, optim::Optimizer<double>& opt, const Mat& x,
                     const std::vector<int>& y) {
  gs::Tape<double> tape;
  auto loss = nn::softmax_cross_entropy(net(gs::Tensor<double>(x)), y);
  tape.backward(loss);
  opt.step();
  opt.zero_grad();
}

std::map<std::string, Mat> snapshot(const nn::Module<double>& m) {
  std::map<std::string, Mat> out;
  for (const auto& p : m.named_parameters()) out[p.name] = p.tensor.to_matrix();
  return out;
}

}  // namespace

// ---- freezing ------------------------------------------------------------------------------

TEST_CASE("a frozen layer gets no gradient and passes the gradient to the layers below",
          "[freeze]") {
  auto frozen = mlp({5, 4, 4, 3}, nn::ActivationKind::sigmoid, 7);
  auto twin = mlp({5, 4, 4, 3}, nn::ActivationKind::sigmoid, 7);
  frozen->at(2).set_requires_grad(false);
  CHECK_FALSE(frozen->at(2).parameters()[0].requires_grad());
  CHECK(frozen->at(2).parameters()[0].is_parameter());
  CHECK(frozen->at(0).parameters()[0].requires_grad());
  auto [x, y] = patterns(6, 5, 1);
  y = {0, 1, 2, 0, 1, 2};
  for (auto* net : {frozen.get(), twin.get()}) {
    gs::Tape<double> tape;
    tape.backward(nn::softmax_cross_entropy((*net)(gs::Tensor<double>(x)), y));
  }
  auto w = frozen->at(2).parameters()[0];
  CHECK_THROWS_AS(w.grad(), gs::UsageError);
  CHECK_THROWS_AS(w.mutable_grad(), gs::UsageError);
  // The layers on either side get exactly the gradients of the unfrozen twin.
  for (std::size_t i : {0u, 4u})
    for (std::size_t k = 0; k < 2; ++k) {
      const auto g = frozen->at(i).parameters()[k].grad();
      CHECK(g.norm() > 0);
      CHECK(identical(g, twin->at(i).parameters()[k].grad()));
    }
  // Unfrozen again: a zero gradient buffer, then gradients as before.
  frozen->at(2).set_requires_grad(true);
  CHECK(w.grad().isZero());
}

TEST_CASE(
    "freezing between forward and backward drops that gradient; unfreezing counts from the "
    "next op",
    "[freeze]") {
  auto net = mlp({4, 3, 2}, nn::ActivationKind::tanh, 3);
  const Mat x = Mat::Random(5, 4);
  const std::vector<int> y = {0, 1, 1, 0, 1};
  auto w0 = net->at(0).parameters()[0], w2 = net->at(2).parameters()[0];
  {
    gs::Tape<double> tape;
    auto loss = nn::softmax_cross_entropy((*net)(gs::Tensor<double>(x)), y);
    net->at(0).set_requires_grad(false);  // its leaf was recorded as a parameter
    tape.backward(loss);                  // must neither crash nor write a gradient
    CHECK_THROWS_AS(w0.grad(), gs::UsageError);
    CHECK(w2.grad().norm() > 0);
  }
  net->zero_grad();
  {
    gs::Tape<double> tape;
    gs::Tensor<double> xt(x);
    auto first = (*net)(xt);             // layer 0 recorded as a constant
    net->at(0).set_requires_grad(true);  // from here on it is a parameter again
    auto second = (*net)(xt);
    tape.backward(nn::softmax_cross_entropy(add(first, second), y));
    CHECK(w0.grad().norm() > 0);  // through the second forward only
  }
}

TEST_CASE("frozen parameters do not move under any optimiser, decay and momentum included",
          "[freeze][optim]") {
  using Factory =
      std::function<std::unique_ptr<optim::Optimizer<double>>(std::vector<gs::Tensor<double>>)>;
  const std::vector<std::pair<std::string, Factory>> optimisers = {
      {"SGD momentum, weight decay, L1",
       [](auto p) {
         return std::make_unique<optim::SGD<double>>(
             p, optim::SGDOptions<double>{
                    .lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .l1 = 0.01});
       }},
      {"SGD Nesterov",
       [](auto p) {
         return std::make_unique<optim::SGD<double>>(
             p, optim::SGDOptions<double>{.lr = 0.1, .momentum = 0.9, .nesterov = true});
       }},
      {"Adam weight decay",
       [](auto p) {
         return std::make_unique<optim::Adam<double>>(
             p, optim::AdamOptions<double>{.lr = 0.01, .weight_decay = 0.1});
       }},
      {"AdamW",
       [](auto p) {
         return std::make_unique<optim::AdamW<double>>(
             p, optim::AdamOptions<double>{.lr = 0.01, .weight_decay = 0.1});
       }},
      {"RMSprop centered, momentum, weight decay",
       [](auto p) {
         return std::make_unique<optim::RMSprop<double>>(
             p, optim::RMSpropOptions<double>{
                    .lr = 0.01, .momentum = 0.9, .centered = true, .weight_decay = 0.1});
       }},
  };
  auto [x, y] = patterns(16, 6, 5);
  for (const auto& [name, make] : optimisers) {
    INFO(name);
    auto net = mlp({6, 5, 5, 4}, nn::ActivationKind::sigmoid, 11);
    auto opt = make(net->parameters());
    for (int s = 0; s < 3; ++s) supervised_step(*net, *opt, x, y);  // state is non-zero now
    net->at(2).set_requires_grad(false);
    const auto frozen = snapshot(net->at(2));
    std::map<std::string, Mat> state;
    for (const auto& s : opt->named_state()) state[s.name] = s.tensor.to_matrix();
    const auto others = snapshot(*net);
    for (int s = 0; s < 4; ++s) {
      supervised_step(*net, *opt, x, y);
      // Clipping skips the frozen layer too.
      CHECK_NOTHROW(optim::clip_grad_norm(net->parameters(), 1.0));
      CHECK_NOTHROW(optim::clip_grad_value(net->parameters(), 1.0));
    }
    for (const auto& p : net->at(2).named_parameters())
      CHECK(identical(p.tensor.value(), frozen.at(p.name)));
    for (const auto& s : opt->named_state()) {
      INFO("state " << s.name);
      if (s.name.rfind("2.", 0) == 0) CHECK(identical(s.tensor.value(), state.at(s.name)));
    }
    for (const auto& p : net->named_parameters())
      if (p.name.rfind("2.", 0) != 0) CHECK_FALSE(identical(p.tensor.value(), others.at(p.name)));
    net->at(2).set_requires_grad(true);
    supervised_step(*net, *opt, x, y);
    for (const auto& p : net->at(2).named_parameters())
      CHECK_FALSE(identical(p.tensor.value(), frozen.at(p.name)));
  }
}

TEST_CASE("an optimiser accepts frozen parameters, and Adam counts steps per parameter",
          "[freeze][optim]") {
  // A weight frozen for the first 5 steps takes, at its first step, exactly the step of a fresh
  // Adam (bias correction by its own count, as PyTorch's per-parameter "step").
  auto a = gs::Tensor<double>::parameter(Mat::Constant(2, 2, 1.0));
  auto b = gs::Tensor<double>::parameter(Mat::Constant(2, 2, 1.0));
  auto fresh = gs::Tensor<double>::parameter(Mat::Constant(2, 2, 1.0));
  b.set_requires_grad(false);
  optim::Adam<double> opt({a, b}, {.lr = 0.1});
  optim::Adam<double> ref({fresh}, {.lr = 0.1});
  const Mat g = (Mat(2, 2) << 0.5, -2, 1e-3, 3).finished();
  for (int s = 0; s < 5; ++s) {
    a.mutable_grad() = g;
    opt.step();
  }
  CHECK(identical(b.value(), Mat::Constant(2, 2, 1.0)));
  b.set_requires_grad(true);
  a.mutable_grad() = g;
  b.mutable_grad() = g;
  fresh.mutable_grad() = g;
  opt.step();
  ref.step();
  CHECK(identical(b.value(), fresh.to_matrix()));
  CHECK(opt.steps() == 6);
  // Data tensors are still refused.
  CHECK_THROWS_AS(optim::SGD<double>({gs::Tensor<double>::zeros(2, 2)}), gs::UsageError);
}

TEST_CASE("gradient norms and clipping leave frozen parameters out", "[freeze][optim]") {
  auto a = gs::Tensor<double>::parameter(Mat::Zero(1, 2));
  auto b = gs::Tensor<double>::parameter(Mat::Zero(1, 2));
  a.mutable_grad() << 3, 4;
  b.set_requires_grad(false);
  CHECK(optim::grad_norm<double>({a, b}) == Approx(5));
  CHECK(optim::clip_grad_norm<double>({a, b}, 1.0) == Approx(5));
  CHECK(a.grad().norm() == Approx(1).epsilon(1e-5));
}

