// Losses against their direct formulas, gradient checks, label errors, and accuracy().

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <vector>

#include "nn_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
using nn_test::Mat;

namespace {

std::vector<int> random_labels(gs::Index n, gs::Index classes, gs::Rng& rng) {
  std::vector<int> labels(static_cast<std::size_t>(n));
  for (auto& l : labels) l = static_cast<int>(rng.below(static_cast<std::uint64_t>(classes)));
  return labels;
}

Mat random_targets(gs::Index rows, gs::Index cols, gs::Rng& rng) {
  Mat t(rows, cols);
  for (gs::Index i = 0; i < t.size(); ++i) t.data()[i] = rng.uniform();
  return t;
}

void require_ok(const gs::GradCheckReport& r) {
  INFO(r.str());
  REQUIRE(r.ok);
}

}  // namespace

TEST_CASE("softmax_cross_entropy is the mean negative log-likelihood", "[nn][loss]") {
  gs::Rng rng(1);
  for (int s = 0; s < 3; ++s) {
    const gs::Index n = nn_test::draw(rng, 1, 6), classes = nn_test::draw(rng, 2, 6);
    const Mat x = nn_test::randn(n, classes, rng, 2.0);
    const auto labels = random_labels(n, classes, rng);
    double expected = 0;
    for (gs::Index i = 0; i < n; ++i) {
      double z = 0;
      for (gs::Index j = 0; j < classes; ++j) z += std::exp(x(i, j));
      expected += std::log(z) - x(i, labels[static_cast<std::size_t>(i)]);
    }
    expected /= static_cast<double>(n);
    CHECK(nn::softmax_cross_entropy(gs::Tensor<double>(x), labels).item() ==
          Approx(expected).epsilon(1e-13));
    require_ok(gs::check_gradients(
        [&](const std::vector<gs::Tensor<double>>& in) {
          return nn::softmax_cross_entropy(in[0], labels);
        },
        {x}));
  }
  // Stable for large logits.
  const gs::Tensor<double> big{{1e4, 0, -1e4}, {0, 1e4, 0}};
  const std::vector<int> labels{0, 0};
  CHECK(nn::softmax_cross_entropy(big, labels).item() == Approx(0.5 * 1e4).epsilon(1e-12));
}

TEST_CASE("softmax_cross_entropy names an out-of-range label and the class count",
          "[nn][loss][errors]") {
  const auto logits = gs::Tensor<double>::zeros(3, 4);
  const std::vector<int> too_big{0, 4, 1};
  CHECK_THROWS_AS(nn::softmax_cross_entropy(logits, too_big), gs::ValueError);
  CHECK_THROWS_WITH(nn::softmax_cross_entropy(logits, too_big), Catch::Contains("label 4") &&
                                                                    Catch::Contains("index 1") &&
                                                                    Catch::Contains("4 classes"));
  const std::vector<int> negative{0, 1, -1};
  CHECK_THROWS_WITH(nn::softmax_cross_entropy(logits, negative),
                    Catch::Contains("label -1") && Catch::Contains("4 classes"));
  const std::vector<int> too_few{0, 1};
  CHECK_THROWS_AS(nn::softmax_cross_entropy(logits, too_few), gs::ShapeError);
}

TEST_CASE("mse is the mean squared difference", "[nn][loss]") {
  gs::Rng rng(2);
  for (int s = 0; s < 3; ++s) {
    const gs::Index r = nn_test::draw(rng, 1, 5), c = nn_test::draw(rng, 1, 5);
    const Mat p = nn_test::randn(r, c, rng), t = nn_test::randn(r, c, rng);
    const double expected = (p - t).array().square().sum() / static_cast<double>(p.size());
    CHECK(nn::mse(gs::Tensor<double>(p), gs::Tensor<double>(t)).item() ==
          Approx(expected).epsilon(1e-14));
    require_ok(gs::check_gradients(
        [](const std::vector<gs::Tensor<double>>& in) { return nn::mse(in[0], in[1]); }, {p, t}));
  }
  CHECK_THROWS_AS(nn::mse(gs::Tensor<double>::zeros(2, 3), gs::Tensor<double>::zeros(3, 2)),
                  gs::ShapeError);
  CHECK_THROWS_WITH(nn::mse(gs::Tensor<double>::zeros(2, 3), gs::Tensor<double>::zeros(3, 2)),
                    Catch::Contains("[2, 3]") && Catch::Contains("[3, 2]"));
}

TEST_CASE("binary_cross_entropy_with_logits is the mean BCE of sigmoid(logits)", "[nn][loss]") {
  gs::Rng rng(3);
  for (int s = 0; s < 3; ++s) {
    const gs::Index r = nn_test::draw(rng, 1, 5), c = nn_test::draw(rng, 1, 5);
    const Mat x = nn_test::randn(r, c, rng, 3.0);
    const Mat t = random_targets(r, c, rng);
    double expected = 0;
    for (gs::Index i = 0; i < x.size(); ++i) {
      const double p = 1 / (1 + std::exp(-x.data()[i]));
      expected -= t.data()[i] * std::log(p) + (1 - t.data()[i]) * std::log(1 - p);
    }
    expected /= static_cast<double>(x.size());
    CHECK(
        nn::binary_cross_entropy_with_logits(gs::Tensor<double>(x), gs::Tensor<double>(t)).item() ==
        Approx(expected).epsilon(1e-12));
    // With respect to the logits and to the targets.
    require_ok(gs::check_gradients(
        [](const std::vector<gs::Tensor<double>>& in) {
          return nn::binary_cross_entropy_with_logits(in[0], in[1]);
        },
        {x, t}));
  }
  // Stable where the naive formula overflows: log(1 + e^100) and log(sigmoid(-100)).
  const gs::Tensor<double> big{{100.0, -100.0}};
  const gs::Tensor<double> wrong{{0.0, 1.0}};
  CHECK(nn::binary_cross_entropy_with_logits(big, wrong).item() == Approx(100.0).epsilon(1e-12));
  CHECK_THROWS_AS(nn::binary_cross_entropy_with_logits(gs::Tensor<double>::zeros(2, 3),
                                                       gs::Tensor<double>::zeros(2, 2)),
                  gs::ShapeError);
}

TEST_CASE("binary_cross_entropy_with_logits at logit 0 has gradient sigmoid(0) - t", "[nn][loss]") {
  // |x| has a kink at 0 in the stable formula; the gradient there is still 0.5 - t (over n).
  const Mat t = (Mat(1, 4) << 0.0, 0.25, 0.5, 1.0).finished();
  gs::Tape<double> tape;
  auto x = tape.variable(Mat::Zero(1, 4));
  tape.backward(nn::binary_cross_entropy_with_logits(x, gs::Tensor<double>(t)));
  for (gs::Index j = 0; j < 4; ++j)
    CHECK(x.grad()(0, j) == Approx((0.5 - t(0, j)) / 4).epsilon(1e-15));
  // And the loss there is log 2 whatever the target.
  CHECK(nn::binary_cross_entropy_with_logits(gs::Tensor<double>(Mat::Zero(1, 4)),
                                             gs::Tensor<double>(t))
            .item() == Approx(std::log(2.0)).epsilon(1e-15));
}

TEST_CASE("accuracy is the fraction of rows whose largest logit is the label", "[nn][loss]") {
  const gs::Tensor<double> logits{{0.1, 0.9, 0.0}, {2.0, -1.0, 0.5}, {0.0, 0.0, 3.0}, {1, 2, 3}};
  CHECK(nn::accuracy(logits, std::vector<int>{1, 0, 2, 2}) == 1.0);
  CHECK(nn::accuracy(logits, std::vector<int>{1, 0, 2, 0}) == 0.75);
  CHECK(nn::accuracy(logits, std::vector<int>{0, 1, 0, 0}) == 0.0);
  // Ties go to the first column.
  const gs::Tensor<double> tie{{1.0, 1.0}};
  CHECK(nn::accuracy(tie, std::vector<int>{0}) == 1.0);
  CHECK_THROWS_AS(nn::accuracy(logits, std::vector<int>{1, 0}), gs::ShapeError);
  // Works on tape tensors as well as on constants.
  gs::Tape<double> tape;
  auto v = tape.variable(logits.value());
  CHECK(nn::accuracy(v, std::vector<int>{1, 0, 2, 2}) == 1.0);
}
