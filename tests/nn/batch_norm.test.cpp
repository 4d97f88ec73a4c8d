// BatchNorm against PyTorch's conventions, written out independently: biased batch variance for
// the normalisation, unbiased variance in running_var, momentum 0.1 weighting the new batch,
// eps 1e-5; eval with the running statistics; a batch of one in training is an error.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "nn_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
using nn_test::Mat;

namespace {

/// A direct, loop-by-loop BatchNorm, independent of the library's Eigen expressions.
struct ReferenceBatchNorm {
  std::vector<double> gamma, beta, running_mean, running_var;
  double momentum = 0.1;
  double eps = 1e-5;

  explicit ReferenceBatchNorm(std::size_t c)
      : gamma(c, 1.0), beta(c, 0.0), running_mean(c, 0.0), running_var(c, 1.0) {}

  Mat train_step(const Mat& x) {
    const auto n = static_cast<std::size_t>(x.rows());
    Mat y(x.rows(), x.cols());
    for (gs::Index j = 0; j < x.cols(); ++j) {
      const auto c = static_cast<std::size_t>(j);
      double mean = 0;
      for (gs::Index i = 0; i < x.rows(); ++i) mean += x(i, j);
      mean /= static_cast<double>(n);
      double ss = 0;
      for (gs::Index i = 0; i < x.rows(); ++i) ss += (x(i, j) - mean) * (x(i, j) - mean);
      const double biased = ss / static_cast<double>(n);
      const double unbiased = ss / static_cast<double>(n - 1);
      for (gs::Index i = 0; i < x.rows(); ++i)
        y(i, j) = gamma[c] * (x(i, j) - mean) / std::sqrt(biased + eps) + beta[c];
      running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean;
      running_var[c] = (1 - momentum) * running_var[c] + momentum * unbiased;
    }
    return y;
  }

  Mat eval(const Mat& x) const {
    Mat y(x.rows(), x.cols());
    for (gs::Index j = 0; j < x.cols(); ++j) {
      const auto c = static_cast<std::size_t>(j);
      for (gs::Index i = 0; i < x.rows(); ++i)
        y(i, j) =
            gamma[c] * (x(i, j) - running_mean[c]) / std::sqrt(running_var[c] + eps) + beta[c];
    }
    return y;
  }
};

double max_abs_diff(const Mat& a, const Mat& b) { return (a - b).cwiseAbs().maxCoeff(); }

std::vector<double> as_vector(const gs::Tensor<double>& t) {
  const auto v = t.value();
  return std::vector<double>(v.data(), v.data() + v.size());
}

}  // namespace

TEST_CASE("BatchNorm follows PyTorch's formulas over three training steps", "[nn][batch_norm]") {
  const double momentum = GENERATE(0.1, 0.5);
  constexpr gs::Index features = 4;
  gs::Rng rng(31);
  nn::BatchNorm<double> bn(features, momentum);
  REQUIRE(nn::BatchNorm<double>(features).momentum() == 0.1);  // the defaults
  REQUIRE(nn::BatchNorm<double>(features).eps() == 1e-5);
  ReferenceBatchNorm ref(features);
  ref.momentum = momentum;

  // Defaults: gamma ones, beta zeros, running mean zeros, running variance ones.
  CHECK(bn.weight().value().isOnes(0));
  CHECK(bn.bias().value().isZero(0));
  CHECK(bn.running_mean().value().isZero(0));
  CHECK(bn.running_var().value().isOnes(0));
  CHECK(bn.weight().shape() == gs::Shape::vector(features));
  CHECK(bn.running_var().shape() == gs::Shape::vector(features));

  // Non-trivial affine parameters, in both implementations.
  for (gs::Index j = 0; j < features; ++j) {
    const auto c = static_cast<std::size_t>(j);
    ref.gamma[c] = bn.weight().mutable_value()(0, j) = 0.5 + 0.25 * static_cast<double>(j);
    ref.beta[c] = bn.bias().mutable_value()(0, j) = -1.0 + 0.6 * static_cast<double>(j);
  }

  const gs::Index batches[] = {5, 8, 3};
  for (int step = 0; step < 3; ++step) {
    INFO("step " << step);
    // Features with different means and scales, as real activations have.
    Mat x = nn_test::randn(batches[step], features, rng);
    for (gs::Index j = 0; j < features; ++j)
      x.col(j) =
          (x.col(j).array() * (0.5 + static_cast<double>(j)) + 3.0 - 2.0 * static_cast<double>(j))
              .matrix();
    const Mat expected = ref.train_step(x);
    Mat y;
    if (step == 1) {  // one step recorded on a tape, the others computed eagerly
      gs::Tape<double> tape;
      y = bn(gs::Tensor<double>(x)).to_matrix();
    } else {
      y = bn(gs::Tensor<double>(x)).to_matrix();
    }
    CHECK(max_abs_diff(y, expected) < 1e-6);
  }
  for (gs::Index j = 0; j < features; ++j) {
    const auto c = static_cast<std::size_t>(j);
    CHECK(bn.running_mean().value()(0, j) == Approx(ref.running_mean[c]).margin(1e-6));
    CHECK(bn.running_var().value()(0, j) == Approx(ref.running_var[c]).margin(1e-6));
  }

  // Eval: the running statistics normalise, and are left alone.
  const auto mean_before = as_vector(bn.running_mean());
  const auto var_before = as_vector(bn.running_var());
  bn.eval();
  const Mat x = nn_test::randn(6, features, rng, 2.0);
  CHECK(max_abs_diff(bn(gs::Tensor<double>(x)).to_matrix(), ref.eval(x)) < 1e-6);
  CHECK(as_vector(bn.running_mean()) == mean_before);
  CHECK(as_vector(bn.running_var()) == var_before);
}

TEST_CASE("BatchNorm normalises each feature to zero mean and unit biased variance",
          "[nn][batch_norm]") {
  gs::Rng rng(5);
  nn::BatchNorm<double> bn(3);
  const Mat x = nn_test::randn(50, 3, rng, 4.0).array() + 7.0;
  const Mat y = bn(gs::Tensor<double>(x)).to_matrix();
  for (gs::Index j = 0; j < 3; ++j) {
    CHECK(y.col(j).mean() == Approx(0).margin(1e-12));
    const double var = (y.col(j).array() - y.col(j).mean()).square().mean();
    const double bvar = (x.col(j).array() - x.col(j).mean()).square().mean();
    CHECK(var == Approx(bvar / (bvar + 1e-5)).epsilon(1e-12));
  }
}

TEST_CASE("BatchNorm needs more than one sample in training, not in eval",
          "[nn][batch_norm][errors]") {
  gs::Rng rng(3);
  nn::BatchNorm<double> bn(3);
  nn_test::randomize_state(bn, rng);
  const auto mean_before = as_vector(bn.running_mean());
  const Mat one = nn_test::randn(1, 3, rng);
  CHECK_THROWS_AS(bn(gs::Tensor<double>(one)), gs::ValueError);
  CHECK_THROWS_WITH(bn(gs::Tensor<double>(one)),
                    Catch::Contains("batch of 1") && Catch::Contains("eval()"));
  CHECK(as_vector(bn.running_mean()) == mean_before);  // a failed step changes nothing

  bn.eval();
  Mat y;
  REQUIRE_NOTHROW(y = bn(gs::Tensor<double>(one)).to_matrix());
  for (gs::Index j = 0; j < 3; ++j) {
    const double expected = bn.weight().value()(0, j) *
                                (one(0, j) - bn.running_mean().value()(0, j)) /
                                std::sqrt(bn.running_var().value()(0, j) + 1e-5) +
                            bn.bias().value()(0, j);
    CHECK(y(0, j) == Approx(expected).epsilon(1e-12));
  }
}

TEST_CASE("BatchNorm rejects bad sizes", "[nn][batch_norm][errors]") {
  CHECK_THROWS_AS(nn::BatchNorm<double>(0), gs::ValueError);
  nn::BatchNorm<double> bn(3);
  CHECK_THROWS_AS(bn(gs::Tensor<double>::zeros(4, 5)), gs::ShapeError);
  CHECK_THROWS_WITH(bn(gs::Tensor<double>::zeros(4, 5)), Catch::Contains("[4, 5]"));
  CHECK_THROWS_AS(nn::BatchNorm<double>(3, 1.5)(gs::Tensor<double>::zeros(4, 3)), gs::ValueError);
}

TEST_CASE("BatchNorm names its parameters and buffers", "[nn][batch_norm][names]") {
  nn::Sequential<double> net;
  net.add<nn::Dense>(2, 3);
  auto& bn = net.add<nn::BatchNorm>(3);
  CHECK(bn.kind() == "BatchNorm");
  CHECK(bn.describe() == "BatchNorm(3)");
  CHECK(bn.parameter_count() == 6);

  std::vector<std::string> names, buffers;
  for (const auto& p : bn.named_parameters()) names.push_back(p.name);
  for (const auto& b : bn.named_buffers()) buffers.push_back(b.name);
  CHECK(names == std::vector<std::string>{"weight", "bias"});
  CHECK(buffers == std::vector<std::string>{"running_mean", "running_var"});

  buffers.clear();
  for (const auto& b : net.named_buffers()) buffers.push_back(b.name);
  CHECK(buffers == std::vector<std::string>{"1.running_mean", "1.running_var"});
  // Buffers are not parameters: no gradient, not counted.
  for (const auto& b : net.named_buffers()) CHECK_FALSE(b.tensor.requires_grad());
  CHECK(net.parameter_count() == 2 * 3 + 3 + 3 + 3);
  // The named buffer is the layer's running statistic itself, not a copy.
  CHECK(net.named_buffers()[0].tensor.same_as(bn.running_mean()));
}

TEST_CASE("BatchNorm passes gradient checks in train and eval mode",
          "[nn][batch_norm][gradcheck]") {
  gs::Rng rng(909);
  for (int s = 0; s < 4; ++s) {
    const gs::Index batch = nn_test::draw(rng, 2, 7);
    const gs::Index features = nn_test::draw(rng, 1, 6);
    nn::BatchNorm<double> bn(features);
    nn_test::randomize_state(bn, rng);
    nn_test::check_module_gradients_both_modes(bn, nn_test::randn(batch, features, rng, 1.5));
  }
}
