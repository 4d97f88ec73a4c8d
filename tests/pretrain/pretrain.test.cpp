// Parameter freezing (core, nn, optim) and greedy layer-wise pre-training
// (gradscope/pretrain/pretrain.hpp): frozen parameters get no gradient and do not move under any
// optimiser (weight decay and momentum included); each pre-trained layer reconstructs its input
// better than at initialisation; earlier layers do not move while later ones pre-train; fine-tuning
// then updates every parameter; the auto-encoders' gradients match finite differences.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>
#include <gradscope/pretrain/pretrain.hpp>

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
namespace pt = gradscope::pretrain;
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

// ---- the auto-encoders -----------------------------------------------------------------------

TEST_CASE("auto-encoder losses have the gradients of finite differences", "[pretrain][gradcheck]") {
  const auto weights = GENERATE(pt::DecoderWeights::tied, pt::DecoderWeights::untied);
  const auto loss = GENERATE(pt::Reconstruction::cross_entropy, pt::Reconstruction::squared_error);
  INFO(pt::name(weights) << ", " << pt::name(loss));
  gs::Rng rng(17);
  auto dense = std::make_shared<nn::Dense<double>>(5, 3, gs::init::xavier_uniform, true, &rng);
  auto act = std::make_shared<nn::Sigmoid<double>>();
  pt::AutoEncoder<double> ae(dense, act, weights, loss, &rng);
  ae.decoder_bias().mutable_value().setRandom();
  auto [target, labels] = patterns(4, 5, 3);
  Mat input = target;
  input(0, 1) = 0;  // a corrupted copy: the gradient must follow the input, not the target
  input(2, 3) = 0;
  const gs::Tensor<double> in(input), tg(target);
  const auto report =
      gs::check_parameter_gradients([&] { return ae.loss(in, tg); }, ae.parameters());
  INFO(report.str());
  CHECK(report.checked ==
        static_cast<std::size_t>(15 + 3 + (weights == pt::DecoderWeights::untied ? 15 : 0) + 5));
  CHECK(report.ok);
}

TEST_CASE("auto-encoder losses are per-sample sums over the inputs", "[pretrain]") {
  gs::Rng rng(2);
  auto dense = std::make_shared<nn::Dense<double>>(4, 2, gs::init::xavier_uniform, true, &rng);
  pt::AutoEncoder<double> ae(dense, std::make_shared<nn::Sigmoid<double>>());
  ae.decoder_bias().mutable_value() << 0.1, -0.2, 0.3, 0;
  auto [x, y] = patterns(3, 4, 9);
  // By hand: h = sigmoid(x W^T + b), z = h W + c, sum_j [log(1 + e^z) - x z], mean over rows.
  const Mat W = dense->weight().to_matrix();
  const Eigen::RowVectorXd b = dense->bias().to_matrix().row(0);
  const Eigen::RowVectorXd c = ae.decoder_bias().to_matrix().row(0);
  double want = 0;
  for (gs::Index r = 0; r < 3; ++r) {
    const Eigen::RowVectorXd h = 1.0 / (1.0 + (-(x.row(r) * W.transpose() + b).array()).exp());
    const Eigen::RowVectorXd z = h * W + c;
    for (gs::Index j = 0; j < 4; ++j) want += std::log1p(std::exp(z(j))) - x(r, j) * z(j);
  }
  want /= 3;
  CHECK(ae.evaluate(x, 2) == Approx(want).epsilon(1e-12));
  CHECK(ae.loss(gs::Tensor<double>(x), gs::Tensor<double>(x)).item() ==
        Approx(want).epsilon(1e-12));
  CHECK_THROWS_AS(pt::AutoEncoder<double>(dense, std::make_shared<nn::Sigmoid<double>>(),
                                          pt::DecoderWeights::tied, pt::Reconstruction::automatic),
                  gs::ValueError);
}

// ---- greedy layer-wise pre-training ----------------------------------------------------------

TEST_CASE("each pre-trained layer reconstructs its input better than at initialisation",
          "[pretrain]") {
  struct Case {
    std::string name;
    nn::ActivationKind act;
    pt::DecoderWeights weights;
    double noise;
    pt::Reconstruction want;
  };
  const auto c = GENERATE(Case{"sigmoid, tied", nn::ActivationKind::sigmoid,
                               pt::DecoderWeights::tied, 0, pt::Reconstruction::cross_entropy},
                          Case{"sigmoid, untied, denoising", nn::ActivationKind::sigmoid,
                               pt::DecoderWeights::untied, 0.25, pt::Reconstruction::cross_entropy},
                          Case{"ReLU, tied, denoising", nn::ActivationKind::relu,
                               pt::DecoderWeights::tied, 0.2, pt::Reconstruction::squared_error});
  INFO(c.name);
  auto net = mlp({16, 10, 8, 6, 4}, c.act, 21);
  auto [x, y] = patterns(200, 16, 4);
  // The first layer's initial loss, computed independently: its code under the initial weights
  // with a zero decoder bias (tied) is all a reader needs.
  const Mat W0 = net->at(0).parameters()[0].to_matrix();
  const Mat b0 = net->at(0).parameters()[1].to_matrix();
  pt::PretrainOptions<double> opt;
  opt.epochs = 15;
  opt.lr = c.act == nn::ActivationKind::relu ? 0.01 : 0.1;
  opt.momentum = 0.5;
  opt.weights = c.weights;
  opt.noise = c.noise;
  opt.seed = 99;
  const auto result = pt::greedy_layerwise(*net, x, opt);
  REQUIRE(result.layers.size() == 3);
  REQUIRE(result.autoencoders.size() == 3);
  Mat inputs = x;  // layer k's inputs: the codes of the trained layers below
  for (std::size_t k = 0; k < 3; ++k) {
    const auto& L = result.layers[k];
    // The part of the loss a reconstruction can remove: the cross-entropy of targets in (0, 1)
    // never falls below their entropy; the squared error's floor is 0.
    double floor = 0;
    if (L.loss == pt::Reconstruction::cross_entropy)
      for (gs::Index i = 0; i < inputs.size(); ++i) {
        const double t = inputs.data()[i];
        floor -= t > 0 && t < 1 ? t * std::log(t) + (1 - t) * std::log1p(-t) : 0;
      }
    floor /= static_cast<double>(inputs.rows());
    INFO("layer " << L.path << ": " << L.initial_loss << " -> " << L.final_loss << ", floor "
                  << floor);
    CHECK(L.path == std::to_string(2 * k));
    CHECK(L.epoch_losses.size() == 15);
    CHECK(std::isfinite(L.final_loss));
    CHECK(L.final_loss - floor < 0.7 * (L.initial_loss - floor));
    gs::NoGrad no_grad;
    inputs = result.autoencoders[k]->encode(gs::Tensor<double>(inputs)).to_matrix();
  }
  CHECK(result.layers[0].loss == pt::Reconstruction::cross_entropy);  // pixels in [0, 1]
  CHECK(result.layers[1].loss == c.want);
  // The reported losses are those of the returned auto-encoder, measured again here.
  auto& ae0 = *result.autoencoders[0];
  CHECK(ae0.evaluate(x) == Approx(result.layers[0].final_loss).epsilon(1e-12));
  if (c.weights == pt::DecoderWeights::tied) {
    // Recomputed by hand from the initial weights (sigmoid code, zero decoder bias).
    double initial = 0;
    for (gs::Index r = 0; r < x.rows(); ++r) {
      const Eigen::RowVectorXd pre = x.row(r) * W0.transpose() + b0.row(0);
      const Eigen::RowVectorXd h = c.act == nn::ActivationKind::relu
                                       ? Eigen::RowVectorXd(pre.array().max(0.0))
                                       : Eigen::RowVectorXd(1.0 / (1.0 + (-pre.array()).exp()));
      const Eigen::RowVectorXd z = h * W0;
      for (gs::Index j = 0; j < z.size(); ++j)
        initial += std::log1p(std::exp(z(j))) - x(r, j) * z(j);
    }
    CHECK(result.layers[0].initial_loss ==
          Approx(initial / static_cast<double>(x.rows())).epsilon(1e-10));
  }
}

TEST_CASE(
    "earlier layers do not move while later ones pre-train, even in an optimiser with "
    "weight decay and momentum",
    "[pretrain][freeze]") {
  const bool adam = GENERATE(false, true);
  INFO((adam ? "AdamW" : "SGD momentum 0.9, weight decay 0.1") << " over every parameter");
  auto net = mlp({12, 8, 8, 6, 3}, nn::ActivationKind::sigmoid, 5);
  auto [x, y] = patterns(120, 12, 8);
  const auto initial = snapshot(*net);
  std::vector<std::map<std::string, Mat>> after_layer;  // the network after each layer's last epoch
  int checks = 0;
  pt::PretrainOptions<double> opt;
  opt.epochs = 4;
  opt.noise = 0.2;
  opt.seed = 1;
  // Each layer's optimiser gets every parameter of the network (the frozen ones included) plus
  // the decoder's, with weight decay and momentum that would move anything they touch.
  opt.make_optimizer = [&](std::vector<gs::Tensor<double>> params,
                           double lr) -> std::unique_ptr<optim::Optimizer<double>> {
    auto all = net->parameters();
    for (auto& p : params)
      if (std::none_of(all.begin(), all.end(), [&](auto& q) { return q.same_as(p); }))
        all.push_back(p);
    if (adam)
      return std::make_unique<optim::AdamW<double>>(
          all, optim::AdamOptions<double>{.lr = lr / 10, .weight_decay = 0.1});
    return std::make_unique<optim::SGD<double>>(
        all, optim::SGDOptions<double>{.lr = lr, .momentum = 0.9, .weight_decay = 0.1});
  };
  opt.on_epoch = [&](const pt::EpochProgress& e) {
    const auto now = snapshot(*net);
    for (std::size_t j = 0; j < after_layer.size(); ++j)  // layers finished earlier
      for (const auto& [name, v] : after_layer[j])
        if (name.rfind(std::to_string(2 * j) + ".", 0) == 0) {
          INFO("layer " << e.layer << " epoch " << e.epoch << ": " << name);
          CHECK(now.at(name) == v);
          ++checks;
        }
    for (const auto& name : {"6.weight", "6.bias"}) CHECK(now.at(name) == initial.at(name));
    // The layer in training does move.
    CHECK_FALSE(now.at(std::to_string(2 * e.layer) + ".weight") ==
                initial.at(std::to_string(2 * e.layer) + ".weight"));
    if (e.epoch == e.epochs) after_layer.push_back(now);
  };
  const auto result = pt::greedy_layerwise(*net, x, opt);
  CHECK(result.layers.size() == 3);
  CHECK(checks == 4 * 2 + 4 * 2 * 2);  // layer 1: layer 0's two tensors; layer 2: four tensors
  const auto end = snapshot(*net);
  for (const auto& [name, v] : after_layer.back()) CHECK(end.at(name) == v);
}

TEST_CASE("after pre-training every parameter is trainable and fine-tuning updates all of them",
          "[pretrain]") {
  auto net = mlp({12, 8, 8, 3}, nn::ActivationKind::sigmoid, 6);
  auto [x, y] = patterns(60, 12, 2);
  for (auto& v : y) v %= 3;
  pt::PretrainOptions<double> opt;
  opt.epochs = 3;
  opt.seed = 4;
  pt::greedy_layerwise(*net, x, opt);
  for (const auto& p : net->named_parameters()) {
    INFO(p.name);
    CHECK(p.tensor.requires_grad());
    CHECK(p.tensor.grad().isZero());
  }
  const auto pretrained = snapshot(*net);
  optim::SGD<double> sgd(net->parameters(), {.lr = 0.1, .momentum = 0.9});
  for (int s = 0; s < 3; ++s) supervised_step(*net, sgd, x, y);
  for (const auto& p : net->named_parameters()) {
    INFO(p.name);
    const Mat moved = (p.tensor.to_matrix() - pretrained.at(p.name)).cwiseAbs();
    CHECK(moved.minCoeff() > 0);  // every element of every parameter
  }
}

TEST_CASE("pre-training options: per-layer overrides, max_layers, seeds, losses", "[pretrain]") {
  auto [x, y] = patterns(50, 10, 3);
  auto run = [&](const pt::PretrainOptions<double>& opt, std::uint64_t net_seed = 8) {
    auto net = mlp({10, 6, 5, 4, 2}, nn::ActivationKind::sigmoid, net_seed);
    auto result = pt::greedy_layerwise(*net, x, opt);
    return std::make_pair(net, result);
  };
  pt::PretrainOptions<double> opt;
  opt.epochs = 2;
  opt.seed = 12;
  opt.layers = {{.epochs = 5, .lr = 0.05}, {}, {.noise = 0.3}};
  const auto [net, r] = run(opt);
  REQUIRE(r.layers.size() == 3);
  CHECK(r.layers[0].epoch_losses.size() == 5);
  CHECK(r.layers[0].lr == 0.05);
  CHECK(r.layers[1].epoch_losses.size() == 2);
  CHECK(r.layers[1].lr == 0.1);
  CHECK(r.layers[2].noise == 0.3);
  CHECK(r.layers[1].inputs == 6);
  CHECK(r.layers[1].units == 5);
  // The same seed gives the same network, bit for bit; another seed does not.
  const auto [net2, r2] = run(opt);
  CHECK(snapshot(*net) == snapshot(*net2));
  opt.seed = 13;
  const auto [net3, r3] = run(opt);
  CHECK_FALSE(snapshot(*net) == snapshot(*net3));
  // max_layers: only the first layer moves.
  opt.layers = {};
  opt.max_layers = 1;
  auto fresh = mlp({10, 6, 5, 4, 2}, nn::ActivationKind::sigmoid, 8);
  const auto before = snapshot(*fresh);
  const auto one = pt::greedy_layerwise(*fresh, x, opt);
  CHECK(one.layers.size() == 1);
  const auto after = snapshot(*fresh);
  CHECK_FALSE(after.at("0.weight") == before.at("0.weight"));
  CHECK(after.at("2.weight") == before.at("2.weight"));
  // Zero epochs: reported, nothing moves.
  opt.max_layers = 5;
  opt.epochs = 0;
  const auto none = run(opt);
  CHECK(none.second.layers[0].initial_loss == none.second.layers[0].final_loss);
  // A network whose inputs are not in [0, 1] gets the squared error automatically.
  opt.epochs = 1;
  const Mat centred = x.array() - 0.5;
  auto net4 = mlp({10, 6, 2}, nn::ActivationKind::tanh, 1);
  const auto r4 = pt::greedy_layerwise(*net4, centred, opt);
  CHECK(r4.layers[0].loss == pt::Reconstruction::squared_error);
  // A custom optimiser receives the auto-encoder's parameters and the layer's learning rate.
  std::vector<std::size_t> sizes;
  opt.make_optimizer = [&](std::vector<gs::Tensor<double>> p, double lr) {
    sizes.push_back(p.size());
    CHECK(lr == 0.1);
    return std::make_unique<optim::Adam<double>>(p, optim::AdamOptions<double>{.lr = 1e-3});
  };
  opt.weights = pt::DecoderWeights::untied;
  run(opt);
  CHECK(sizes == std::vector<std::size_t>{4, 4, 4});  // W, b, V, c per layer
}

TEST_CASE("greedy_layerwise rejects bad networks, inputs and options and restores the flags",
          "[pretrain][errors]") {
  auto [x, y] = patterns(20, 6, 1);
  pt::PretrainOptions<double> opt;
  opt.epochs = 1;
  opt.seed = 1;
  {
    nn::Sequential<double> bn;
    bn.add<nn::Dense>(6, 4);
    bn.add<nn::BatchNorm>(4);
    bn.add<nn::Sigmoid>();
    bn.add<nn::Dense>(4, 2);
    CHECK_THROWS_WITH(pt::greedy_layerwise(bn, x, opt),
                      Contains("module 1 (BatchNorm(4))") && Contains("activation"));
    nn::Sequential<double> one;
    one.add<nn::Dense>(6, 2);
    CHECK_THROWS_WITH(pt::greedy_layerwise(one, x, opt), Contains("no hidden layer"));
    nn::Sequential<double> empty;
    CHECK_THROWS_AS(pt::greedy_layerwise(empty, x, opt), gs::UsageError);
  }
  auto net = mlp({6, 4, 3, 2}, nn::ActivationKind::sigmoid, 2);
  CHECK_THROWS_AS(pt::greedy_layerwise(*net, Mat(x.leftCols(5)), opt), gs::ShapeError);
  CHECK_THROWS_AS(pt::greedy_layerwise(*net, Mat(0, 6), opt), gs::ValueError);
  Mat bad = x;
  bad(3, 2) = std::nan("");
  CHECK_THROWS_WITH(pt::greedy_layerwise(*net, bad, opt), Contains("row 3, column 2"));
  auto with = [&](auto change) {
    auto o = opt;
    change(o);
    return o;
  };
  CHECK_THROWS_WITH(pt::greedy_layerwise(*net, x, with([](auto& o) { o.noise = 1.0; })),
                    Contains("noise") && Contains("layer '0'"));
  CHECK_THROWS_AS(pt::greedy_layerwise(*net, x, with([](auto& o) {
                    o.corruption = pt::Corruption::gaussian;
                    o.noise = -1;
                  })),
                  gs::ValueError);
  CHECK_THROWS_AS(pt::greedy_layerwise(*net, x, with([](auto& o) { o.batch_size = 0; })),
                  gs::ValueError);
  CHECK_THROWS_AS(pt::greedy_layerwise(*net, x, with([](auto& o) { o.epochs = -1; })),
                  gs::ValueError);
  CHECK_THROWS_AS(pt::greedy_layerwise(*net, x, with([](auto& o) { o.layers.resize(3); })),
                  gs::ValueError);
  const Mat wide = x.array() * 2 - 0.5;
  CHECK_THROWS_WITH(pt::greedy_layerwise(*net, wide, with([](auto& o) {
                      o.loss = pt::Reconstruction::cross_entropy;
                    })),
                    Contains("[0, 1]") && Contains("[-0.4, 1.4]"));
  // A bad learning rate for the second layer fails after the first was trained: every flag is
  // restored, and the network is trainable again.
  const auto lr_nan = with([](auto& o) { o.layers = {{}, {.lr = std::nan("")}}; });
  CHECK_THROWS_WITH(pt::greedy_layerwise(*net, x, lr_nan), Contains("lr") && Contains("'2'"));
  for (const auto& p : net->named_parameters()) CHECK(p.tensor.requires_grad());
  // A parameter the user froze stays frozen; a hidden layer the user froze is not pre-trained.
  net->at(4).set_requires_grad(false);
  net->at(0).set_requires_grad(false);
  const auto before = snapshot(*net);
  const auto r = pt::greedy_layerwise(*net, x, opt);
  CHECK_FALSE(net->at(4).parameters()[0].requires_grad());
  CHECK_FALSE(net->at(0).parameters()[0].requires_grad());
  CHECK(net->at(2).parameters()[0].requires_grad());
  const auto after = snapshot(*net);
  CHECK(after.at("0.weight") == before.at("0.weight"));
  CHECK(after.at("0.bias") == before.at("0.bias"));
  CHECK_FALSE(after.at("2.weight") == before.at("2.weight"));
  CHECK(r.layers[0].epochs == 0);
  CHECK(r.layers[0].epoch_losses.empty());
  CHECK(r.layers[1].epochs == 1);
}
