// Residual connections and residual_block: layer order, values, the "+1" identity path of the
// gradient, numerical gradient checks and shape errors.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <memory>
#include <string>
#include <vector>

#include "nn_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
using nn_test::Mat;

namespace {

constexpr int shapes_per_layer = 3;

std::shared_ptr<nn::Sequential<double>> dense_tanh(gs::Index in, gs::Index out, gs::Rng& rng) {
  auto s = std::make_shared<nn::Sequential<double>>();
  s->add<nn::Dense>(in, out, gs::init::xavier_normal, true, &rng);
  s->add<nn::Tanh>();
  return s;
}

std::vector<std::string> child_descriptions(const nn::Module<double>& m) {
  std::vector<std::string> out;
  for (const auto& c : m.children()) out.push_back(c.first + ":" + c.second->describe());
  return out;
}

Mat run(nn::Module<double>& m, const Mat& x) { return m(gs::Tensor<double>(x)).to_matrix(); }

}  // namespace

TEST_CASE("Residual adds its inner branch to the identity or to a projection", "[nn][residual]") {
  gs::Rng rng(1);
  const Mat x = nn_test::randn(4, 3, rng);

  auto inner = dense_tanh(3, 3, rng);
  nn::Residual<double> identity(inner);
  CHECK(identity.kind() == "Residual");
  CHECK(identity.describe() == "Residual(identity)");
  CHECK(&identity.inner() == inner.get());
  CHECK(run(identity, x).isApprox(x + run(*inner, x), 1e-15));

  auto inner2 = dense_tanh(3, 5, rng);
  auto projection = std::make_shared<nn::Dense<double>>(3, 5, gs::init::xavier_normal, false, &rng);
  nn::Residual<double> projected(inner2, projection);
  CHECK(projected.describe() == "Residual(projection)");
  CHECK(run(projected, x).isApprox(run(*inner2, x) + run(*projection, x), 1e-15));
  CHECK(
      child_descriptions(projected) ==
      std::vector<std::string>{"inner:Sequential(2 layers)", "projection:Dense(3 -> 5, no bias)"});
}

TEST_CASE("residual_block builds the post- and pre-activation designs in order",
          "[nn][residual][block]") {
  gs::manual_seed(2);
  gs::Rng rng(2);
  const Mat x = nn_test::randn(5, 4, rng);

  SECTION("post (He et al. 2015): Dense, BN, ReLU, Dense, BN, add, ReLU") {
    auto block = nn::residual_block<double>(4, {.kind = nn::ResidualKind::post});
    CHECK(block->describe() == "Residual(identity, ReLU)");
    CHECK(child_descriptions(*block) ==
          std::vector<std::string>{"inner:Sequential(5 layers)", "post:ReLU"});
    auto& inner = static_cast<nn::Residual<double>&>(*block).inner();
    CHECK(child_descriptions(inner) == std::vector<std::string>{"0:Dense(4 -> 4)", "1:BatchNorm(4)",
                                                                "2:ReLU", "3:Dense(4 -> 4)",
                                                                "4:BatchNorm(4)"});
    nn_test::randomize_state(*block, rng);
    block->eval();  // deterministic: running statistics
    CHECK(run(*block, x).isApprox((x + run(inner, x)).cwiseMax(0.0), 1e-14));
  }
  SECTION("pre (He et al. 2016): BN, ReLU, Dense, BN, ReLU, Dense, add") {
    auto block = nn::residual_block<double>(4);  // pre is the default
    CHECK(block->describe() == "Residual(identity)");
    CHECK(child_descriptions(*block) == std::vector<std::string>{"inner:Sequential(6 layers)"});
    auto& inner = static_cast<nn::Residual<double>&>(*block).inner();
    CHECK(child_descriptions(inner) == std::vector<std::string>{"0:BatchNorm(4)", "1:ReLU",
                                                                "2:Dense(4 -> 4)", "3:BatchNorm(4)",
                                                                "4:ReLU", "5:Dense(4 -> 4)"});
    nn_test::randomize_state(*block, rng);
    block->eval();
    CHECK(run(*block, x).isApprox(x + run(inner, x), 1e-14));
  }
  SECTION("without batch norm") {
    auto post =
        nn::residual_block<double>(4, {.kind = nn::ResidualKind::post, .batch_norm = false});
    CHECK(child_descriptions(static_cast<nn::Residual<double>&>(*post).inner()) ==
          std::vector<std::string>{"0:Dense(4 -> 4)", "1:ReLU", "2:Dense(4 -> 4)"});
    auto pre = nn::residual_block<double>(4, {.batch_norm = false});
    CHECK(child_descriptions(static_cast<nn::Residual<double>&>(*pre).inner()) ==
          std::vector<std::string>{"0:ReLU", "1:Dense(4 -> 4)", "2:ReLU", "3:Dense(4 -> 4)"});
  }
  SECTION("the initialiser option reaches every Dense") {
    auto block = nn::residual_block<double>(4, {.init = gs::init::lecun_normal});
    int dense = 0;
    block->visit([&](nn::Module<double>& m) {
      if (auto* d = dynamic_cast<nn::Dense<double>*>(&m)) {
        ++dense;
        CHECK(d->init_name() == "lecun_normal");
      }
    });
    CHECK(dense == 2);
  }
}

TEST_CASE("Residual passes gradient checks with the identity and with a projection",
          "[nn][residual][gradcheck]") {
  gs::Rng rng(51);
  for (int s = 0; s < shapes_per_layer; ++s) {
    const gs::Index batch = nn_test::draw(rng, 2, 6);
    const gs::Index in = nn_test::draw(rng, 1, 6);
    const gs::Index out = nn_test::draw(rng, 1, 6);
    const Mat x = nn_test::randn(batch, in, rng);
    {
      nn::Residual<double> identity(dense_tanh(in, in, rng));
      nn_test::randomize_state(identity, rng);
      nn_test::check_module_gradients_both_modes(identity, x);
    }
    {
      auto projection =
          std::make_shared<nn::Dense<double>>(in, out, gs::init::xavier_normal, true, &rng);
      nn::Residual<double> projected(dense_tanh(in, out, rng), projection);
      nn_test::randomize_state(projected, rng);
      nn_test::check_module_gradients_both_modes(projected, x);
    }
  }
}

TEST_CASE("residual_block passes gradient checks, post and pre", "[nn][residual][gradcheck]") {
  gs::manual_seed(52);
  gs::Rng rng(52);
  for (const auto kind : {nn::ResidualKind::post, nn::ResidualKind::pre}) {
    for (int s = 0; s < shapes_per_layer; ++s) {
      const gs::Index batch = nn_test::draw(rng, 3, 6);
      const gs::Index width = nn_test::draw(rng, 1, 5);
      auto block = nn::residual_block<double>(width, {.kind = kind});
      nn_test::randomize_state(*block, rng);
      nn_test::check_module_gradients_both_modes(*block, nn_test::randn(batch, width, rng));
    }
  }
}

TEST_CASE("A residual's input gradient is the seed plus the inner branch's contribution",
          "[nn][residual][gradcheck]") {
  // y = x + inner(x), so dL/dx = G + J_inner^T G: the "+1" path carries G through unchanged.
  gs::manual_seed(53);
  gs::Rng rng(53);
  for (int s = 0; s < shapes_per_layer; ++s) {
    const gs::Index batch = nn_test::draw(rng, 2, 6);
    const gs::Index width = nn_test::draw(rng, 1, 6);
    const Mat x = nn_test::randn(batch, width, rng);
    const Mat G = nn_test::randn(batch, width, rng);

    nn::Residual<double> around_dense(dense_tanh(width, width, rng));
    nn_test::randomize_state(around_dense, rng);
    // A pre-activation block: its inner branch has batch norm (batch statistics) and ReLU.
    auto block = std::static_pointer_cast<nn::Residual<double>>(nn::residual_block<double>(width));
    nn_test::randomize_state(*block, rng);

    for (nn::Residual<double>* res : {&around_dense, block.get()}) {
      INFO(res->inner().describe());
      Mat dx_residual, dx_inner;
      {
        gs::Tape<double> tape;
        auto xv = tape.variable(x);
        tape.backward((*res)(xv), G);
        dx_residual = xv.grad();
      }
      {
        gs::Tape<double> tape;
        auto xv = tape.variable(x);
        tape.backward(res->inner()(xv), G);
        dx_inner = xv.grad();
      }
      CHECK((dx_residual - (G + dx_inner)).cwiseAbs().maxCoeff() < 1e-12);
      // The inner branch contributes something: the identity path is not all there is.
      CHECK(dx_inner.cwiseAbs().maxCoeff() > 1e-6);
    }
  }
}

TEST_CASE("Residual rejects an inner branch that changes the width without a projection",
          "[nn][residual][errors]") {
  gs::Rng rng(4);
  const auto x = gs::Tensor<double>::zeros(2, 4);

  nn::Residual<double> bad(std::make_shared<nn::Dense<double>>(4, 3));
  CHECK_THROWS_AS(bad(x), gs::ShapeError);
  CHECK_THROWS_WITH(bad(x), Catch::Contains("[2, 3]") && Catch::Contains("[2, 4]") &&
                                Catch::Contains("projection"));

  // Nested, the message names the module's path.
  nn::Sequential<double> net;
  net.add<nn::Identity>();
  net.add(std::make_shared<nn::Residual<double>>(std::make_shared<nn::Dense<double>>(4, 3)));
  CHECK_THROWS_WITH(net(x), Catch::Contains("Residual '1'"));

  // A projection to the wrong width is still a shape error.
  nn::Residual<double> wrong_projection(std::make_shared<nn::Dense<double>>(4, 3),
                                        std::make_shared<nn::Dense<double>>(4, 2));
  CHECK_THROWS_AS(wrong_projection(x), gs::ShapeError);
  CHECK_THROWS_AS(nn::Residual<double>(nullptr), gs::UsageError);
}
