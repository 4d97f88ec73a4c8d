// Nielsen's per-layer "speed of learning" (Neural Networks and Deep Learning, chapter 5) on the
// [784, 30, 30, 30, 30, 10] sigmoid network, and the monitor's vanishing verdict on it.

#include "diag_test_util.hpp"

#include <array>

using namespace diag_test;

namespace {

const std::vector<gs::Index> kNielsen4 = {784, 30, 30, 30, 30, 10};
constexpr std::array<std::uint64_t, 4> kSeeds = {1, 7, 2024, 0xBEEF};

}  // namespace

TEST_CASE("nielsen_gradient_norms grow toward the output by at least 2x per hidden layer",
          "[diagnostics][nielsen]") {
  for (const auto seed : kSeeds) {
    auto net = nielsen_net<double>(kNielsen4, seed);
    const auto x = pixels<double>(1000, 784, seed + 100);
    const auto y = labels(1000, 10, seed + 200);
    const auto norms = dg::nielsen_gradient_norms(*net, x, y);
    INFO("seed " << seed);
    REQUIRE(norms.size() == 4);  // every hidden layer, not the output layer
    const std::vector<std::string> paths = {"0", "2", "4", "6"};
    for (std::size_t k = 0; k < norms.size(); ++k) {
      INFO("layer " << norms[k].path << ": " << norms[k].value);
      CHECK(norms[k].path == paths[k]);
      CHECK(std::isfinite(norms[k].value));
      CHECK(norms[k].value > 0);
    }
    for (std::size_t k = 0; k + 1 < norms.size(); ++k) {
      INFO("layers " << norms[k].path << " -> " << norms[k + 1].path << ": " << norms[k].value
                     << " -> " << norms[k + 1].value);
      CHECK(norms[k + 1].value > norms[k].value);
      CHECK(norms[k + 1].value >= 2 * norms[k].value);
    }
    // The book: the first hidden layer learns about 100x slower than the last.
    CHECK(norms.back().value / norms.front().value > 20);
  }
}

TEST_CASE("nielsen_gradient_norms is the norm of the mean dC/db and leaves gradients alone",
          "[diagnostics][nielsen]") {
  auto net = nielsen_net<double>({20, 8, 8, 4}, 3);
  const auto x = pixels<double>(50, 20, 4);
  const auto y = labels(50, 4, 5);
  // Put known values in the gradient buffers: the call must restore them.
  std::vector<gs::Matrix<double>> before;
  gs::Rng rng(6);
  for (auto& p : net->parameters()) {
    p.mutable_grad() = gs::Matrix<double>::Random(p.rows(), p.cols());
    before.emplace_back(p.grad());
  }
  const auto norms = dg::nielsen_gradient_norms(*net, x, y);
  const auto params = net->parameters();
  for (std::size_t i = 0; i < params.size(); ++i)
    CHECK(gs::Matrix<double>(params[i].grad()) == before[i]);

  // The same quantity by hand: C = mean over samples of the sum over output units of the
  // binary cross-entropy of sigmoid(z) against the one-hot label; report ||dC/db|| per hidden
  // layer.
  net->zero_grad();
  {
    gs::Tape<double> tape;
    gs::Tensor<double> h = x;
    for (std::size_t i = 0; i + 1 < net->size(); ++i) h = net->at(i)(h);
    gs::Matrix<double> onehot = gs::Matrix<double>::Zero(50, 4);
    for (int i = 0; i < 50; ++i) onehot(i, y[static_cast<std::size_t>(i)]) = 1;
    // -(t log a + (1 - t) log(1 - a)) with a = sigmoid(h), written out with elementary ops.
    const auto a = gs::sigmoid(h);
    const gs::Tensor<double> t(onehot);
    const auto ce =
        gs::neg(gs::add(gs::mul(t, gs::log(a)), gs::mul(gs::add_scalar(gs::neg(t), 1.0),
                                                        gs::log(gs::add_scalar(gs::neg(a), 1.0)))));
    tape.backward(gs::scale(gs::sum(ce), 1.0 / 50));
  }
  const auto dense = dense_layers(*net);
  REQUIRE(norms.size() == 2);
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK(norms[k].path == dense[k]->path());
    CHECK(norms[k].value == Approx(dense[k]->bias().grad().norm()).epsilon(1e-9));
  }
}

TEST_CASE("nielsen_gradient_norms: the softmax cost gives smaller norms with similar ratios",
          "[diagnostics][nielsen]") {
  const auto x = pixels<double>(1000, 784, 11);
  const auto y = labels(1000, 10, 12);
  auto book = nielsen_net<double>(kNielsen4, 13);
  auto logits = nielsen_net<double>(kNielsen4, 13, /*final_sigmoid=*/false);  // same weights
  const auto a = dg::nielsen_gradient_norms(*book, x, y);
  const auto b = dg::nielsen_gradient_norms(*logits, x, y, dg::NielsenCost::softmax_cross_entropy);
  REQUIRE(a.size() == 4);
  REQUIRE(b.size() == 4);
  for (std::size_t k = 0; k < 4; ++k) {
    INFO("layer " << a[k].path << ": sigmoid BCE " << a[k].value << ", softmax " << b[k].value);
    CHECK(b[k].value < a[k].value);
    CHECK(a[k].value / b[k].value > 2);
    CHECK(a[k].value / b[k].value < 10);
  }
  for (std::size_t k = 0; k + 1 < 4; ++k) {
    const double ra = a[k + 1].value / a[k].value, rb = b[k + 1].value / b[k].value;
    INFO("step " << k << ": " << ra << " vs " << rb);
    CHECK(rb / ra > 0.5);
    CHECK(rb / ra < 2.0);
  }
}

TEST_CASE("nielsen_gradient_norms rejects models it cannot measure", "[diagnostics][nielsen]") {
  const auto x = pixels<double>(4, 6, 1);
  const std::vector<int> y = {0, 1, 2, 0};
  auto no_sigmoid = nielsen_net<double>({6, 5, 3}, 1, false);
  CHECK_THROWS_AS(dg::nielsen_gradient_norms(*no_sigmoid, x, y), gs::UsageError);
  auto one_layer = nielsen_net<double>({6, 3}, 1);
  CHECK_THROWS_AS(dg::nielsen_gradient_norms(*one_layer, x, y), gs::UsageError);
  gs::Rng rng(2);
  nn::Sequential<double> no_bias;
  no_bias.add<nn::Dense>(6, 5, gs::init::nielsen, false, &rng);
  no_bias.add<nn::Sigmoid>();
  no_bias.add<nn::Dense>(5, 3, gs::init::nielsen, true, &rng);
  no_bias.add<nn::Sigmoid>();
  CHECK_THROWS_AS(dg::nielsen_gradient_norms(no_bias, x, y), gs::UsageError);
  auto ok = nielsen_net<double>({6, 5, 3}, 1);
  const std::vector<int> bad = {0, 1, 3, 0};  // 3 classes: label 3 is out of range
  CHECK_THROWS_AS(dg::nielsen_gradient_norms(*ok, x, bad), gs::ValueError);
}

TEST_CASE("the monitor finds vanishing gradients in the deep sigmoid network",
          "[diagnostics][nielsen][verdict]") {
  for (const auto seed : kSeeds) {
    INFO("seed " << seed);
    auto net = nielsen_net<double>(kNielsen4, seed);
    dg::GradientMonitor<double> monitor(*net);
    const auto x = pixels<double>(500, 784, seed + 100);
    const auto y = labels(500, 10, seed + 200);
    gs::Tape<double> tape;
    auto loss = nn::softmax_cross_entropy((*net)(x), y);
    tape.backward(loss);
    monitor.record_gradients(loss.item());

    // The flow chain is the five dense layers; each is followed by its Sigmoid.
    const auto& layers = monitor.layers();
    REQUIRE(layers.size() == 5);
    for (const auto& l : layers) {
      CHECK(l.in_flow);
      CHECK(l.activation == "Sigmoid");
    }
    CHECK(layers[0].path == "0");
    CHECK(layers[0].shape == "[30, 784]");

    const auto d = monitor.diagnose();
    INFO(d.str());
    CHECK(d.verdict() == dg::Verdict::vanishing);
    const auto* f = d.find(dg::Verdict::vanishing);
    REQUIRE(f != nullptr);
    REQUIRE_FALSE(f->layers.empty());
    CHECK(f->layers.front() == "0");
    double ratio = -1, gain = -1;
    for (const auto& [name, v] : f->evidence) {
      if (name == "ratio") ratio = v;
      if (name == "gain") gain = v;
    }
    CHECK(ratio > 0);
    CHECK(ratio < 1e-2);
    // The per-layer gain is the geometric mean over the four steps of the chain.
    CHECK(std::pow(gain, 4) == Approx(ratio).epsilon(1e-9));
    // The remedy names the cause: sigmoid's derivative bound.
    bool sigmoid_hint = false;
    for (const auto& h : f->hints)
      sigmoid_hint = sigmoid_hint || h.find("1/4") != std::string::npos;
    CHECK(sigmoid_hint);
    // Flow norms (per-sample deltas) grow toward the output at every layer.
    const auto& r = monitor.history().records().back();
    for (std::size_t k = 0; k + 1 < r.layers.size(); ++k)
      CHECK(r.layers[k].flow_norm() < r.layers[k + 1].flow_norm());
  }
}
