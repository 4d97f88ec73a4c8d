// Every differentiable op of core/ops.hpp against central finite differences in double, over
// 3 random shapes x 3 seeds (support.hpp), with broadcasting on either side of each binary op;
// then the forward values and error messages of the ops.

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "support.hpp"

namespace gs = gradscope;
using gs::Index;
using M = gs::Matrix<double>;
using T = gs::Tensor<double>;
using Inputs = std::vector<T>;
// One std::function type, so check_gradients is instantiated once for the whole file.
using Fn = std::function<T(const Inputs&)>;

namespace {

void require_gradients(const Fn& f, const std::vector<M>& inputs, std::vector<int> ranks = {}) {
  const gs::GradCheckReport report = gs::check_gradients(f, inputs, {}, std::move(ranks));
  INFO(report.str());
  CHECK(report.ok);
  CHECK(report.max_rel_error < 1e-6);
  CHECK(report.checked > 0);
}

/// Calls body(dims, rng) for the 3 random shapes of each of the 3 seeds.
template <class Body>
void for_shapes_and_seeds(Body&& body) {
  for (const auto seed : gs::testing::seeds) {
    for (const auto& dims : gs::testing::random_shapes(seed)) {
      INFO("seed " << seed << ", shape " << dims.str());
      gs::Rng rng(seed);
      body(dims, rng);
    }
  }
}

/// Where the values of an elementwise op's input are drawn from.
enum class Domain {
  any,             ///< [-2, 2): smooth ops
  positive,        ///< [0.5, 2.5): log, sqrt, pow, division
  away_from_zero,  ///< |x| in [0.1, 2): relu, leaky_relu, abs, elu
  clamp_safe,      ///< [-1.5, 1.5) but at least 0.02 from the clamp bounds -0.5 and 0.75
};
constexpr double clamp_lo = -0.5, clamp_hi = 0.75;

M draw(Domain d, Index rows, Index cols, gs::Rng& rng) {
  switch (d) {
    case Domain::any:
      return gs::testing::uniform(rows, cols, rng);
    case Domain::positive:
      return gs::testing::uniform(rows, cols, rng, 0.5, 2.5);
    case Domain::away_from_zero:
      return gs::testing::away_from_zero(rows, cols, rng);
    case Domain::clamp_safe: {
      M m(rows, cols);
      for (Index i = 0; i < m.size(); ++i) {
        double v;
        do {
          v = rng.uniform(-1.5, 1.5);
        } while (std::abs(v - clamp_lo) < 0.02 || std::abs(v - clamp_hi) < 0.02);
        m.data()[i] = v;
      }
      return m;
    }
  }
  return {};
}

struct UnaryCase {
  const char* name;
  Fn f;
  Domain domain;
};

}  // namespace

TEST_CASE("elementwise unary ops and scalar operators pass the gradient check",
          "[core][ops][gradcheck]") {
  const std::vector<UnaryCase> cases = {
      {"neg", [](const Inputs& v) { return gs::neg(v[0]); }, Domain::any},
      {"-x", [](const Inputs& v) { return -v[0]; }, Domain::any},
      {"scale", [](const Inputs& v) { return gs::scale(v[0], -1.75); }, Domain::any},
      {"add_scalar", [](const Inputs& v) { return gs::add_scalar(v[0], 0.3); }, Domain::any},
      {"x + s", [](const Inputs& v) { return v[0] + 1.5; }, Domain::any},
      {"s + x", [](const Inputs& v) { return 1.5 + v[0]; }, Domain::any},
      {"x - s", [](const Inputs& v) { return v[0] - 0.25; }, Domain::any},
      {"s - x", [](const Inputs& v) { return 0.25 - v[0]; }, Domain::any},
      {"x * s", [](const Inputs& v) { return v[0] * 3.0; }, Domain::any},
      {"s * x", [](const Inputs& v) { return -2.0 * v[0]; }, Domain::any},
      {"x / s", [](const Inputs& v) { return v[0] / 4.0; }, Domain::any},
      {"s / x", [](const Inputs& v) { return 3.0 / v[0]; }, Domain::positive},
      {"exp", [](const Inputs& v) { return gs::exp(v[0]); }, Domain::any},
      {"log", [](const Inputs& v) { return gs::log(v[0]); }, Domain::positive},
      {"sqrt", [](const Inputs& v) { return gs::sqrt(v[0]); }, Domain::positive},
      {"square", [](const Inputs& v) { return gs::square(v[0]); }, Domain::any},
      {"pow 2", [](const Inputs& v) { return gs::pow(v[0], 2.0); }, Domain::positive},
      {"pow 0.5", [](const Inputs& v) { return gs::pow(v[0], 0.5); }, Domain::positive},
      {"pow -1.5", [](const Inputs& v) { return gs::pow(v[0], -1.5); }, Domain::positive},
      {"pow 3 (negative bases)", [](const Inputs& v) { return gs::pow(v[0], 3.0); },
       Domain::away_from_zero},
      {"abs", [](const Inputs& v) { return gs::abs(v[0]); }, Domain::away_from_zero},
      {"clamp", [](const Inputs& v) { return gs::clamp(v[0], clamp_lo, clamp_hi); },
       Domain::clamp_safe},
      {"sigmoid", [](const Inputs& v) { return gs::sigmoid(v[0]); }, Domain::any},
      {"tanh", [](const Inputs& v) { return gs::tanh(v[0]); }, Domain::any},
      {"relu", [](const Inputs& v) { return gs::relu(v[0]); }, Domain::away_from_zero},
      {"leaky_relu default slope", [](const Inputs& v) { return gs::leaky_relu(v[0]); },
       Domain::away_from_zero},
      {"leaky_relu 0.2", [](const Inputs& v) { return gs::leaky_relu(v[0], 0.2); },
       Domain::away_from_zero},
      {"elu default alpha", [](const Inputs& v) { return gs::elu(v[0]); }, Domain::away_from_zero},
      {"elu 0.7", [](const Inputs& v) { return gs::elu(v[0], 0.7); }, Domain::away_from_zero},
      {"softmax", [](const Inputs& v) { return gs::softmax(v[0]); }, Domain::any},
      {"log_softmax", [](const Inputs& v) { return gs::log_softmax(v[0]); }, Domain::any},
      {"transpose", [](const Inputs& v) { return gs::transpose(v[0]); }, Domain::any},
  };
  for (const auto& c : cases) {
    INFO("op " << c.name);
    for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
      require_gradients(c.f, {draw(c.domain, d.rows, d.cols, rng)});
    });
    // One element, as a scalar [] and as a [1, 1] matrix: the scalar code paths of the forward
    // and of the backward rules (backward_pointwise_1x1).
    for (const auto seed : gs::testing::seeds) {
      INFO("seed " << seed << ", one element");
      gs::Rng rng(seed);
      require_gradients(c.f, {draw(c.domain, 1, 1, rng)}, {0});
      require_gradients(c.f, {draw(c.domain, 1, 1, rng)}, {2});
    }
  }
}

TEST_CASE("unary ops keep the rank of a rank-1 input and pass the gradient check",
          "[core][ops][gradcheck]") {
  const Fn f = [](const Inputs& v) {
    return gs::transpose(gs::tanh(gs::scale(gs::exp(v[0]), 0.5)));
  };
  for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
    require_gradients(f, {gs::testing::uniform(1, d.cols, rng)}, {1});
  });
}

TEST_CASE("add, sub, mul and div broadcast on either side and pass the gradient check",
          "[core][ops][gradcheck][broadcast]") {
  struct BinaryCase {
    const char* name;
    Fn f;
    bool positive_rhs;  // div: keep the denominator away from zero
  };
  const std::vector<BinaryCase> ops = {
      {"add", [](const Inputs& v) { return gs::add(v[0], v[1]); }, false},
      {"sub", [](const Inputs& v) { return gs::sub(v[0], v[1]); }, false},
      {"mul", [](const Inputs& v) { return gs::mul(v[0], v[1]); }, false},
      {"div", [](const Inputs& v) { return gs::div(v[0], v[1]); }, true},
      {"operator+", [](const Inputs& v) { return v[0] + v[1]; }, false},
      {"operator-", [](const Inputs& v) { return v[0] - v[1]; }, false},
      {"operator*", [](const Inputs& v) { return v[0] * v[1]; }, false},
      {"operator/", [](const Inputs& v) { return v[0] / v[1]; }, true},
  };
  // The other operand of a [r, c] matrix: same shape, scalar [], row vector [c], column
  // [r, 1]; and the outer broadcast of a column [r, 1] with a row vector [c].
  struct Layout {
    const char* name;
    Index a_rows, a_cols;  // as multiples of (r, c): 1 keeps the dimension, 0 makes it 1
    int a_rank;
    Index b_rows, b_cols;
    int b_rank;
  };
  const std::vector<Layout> layouts = {
      {"[r, c] op [r, c]", 1, 1, 2, 1, 1, 2}, {"[r, c] op []", 1, 1, 2, 0, 0, 0},
      {"[] op [r, c]", 0, 0, 0, 1, 1, 2},     {"[r, c] op [c]", 1, 1, 2, 0, 1, 1},
      {"[c] op [r, c]", 0, 1, 1, 1, 1, 2},    {"[r, c] op [r, 1]", 1, 1, 2, 1, 0, 2},
      {"[r, 1] op [r, c]", 1, 0, 2, 1, 1, 2}, {"[r, 1] op [c]", 1, 0, 2, 0, 1, 1},
      {"[c] op [r, 1]", 0, 1, 1, 1, 0, 2},    {"[] op [c]", 0, 0, 0, 0, 1, 1},
      {"[] op []", 0, 0, 0, 0, 0, 0},         {"[1, 1] op []", 0, 0, 2, 0, 0, 0},
  };
  auto extent = [](Index keep, Index n) { return keep ? n : Index{1}; };
  for (const auto& op : ops) {
    for (const auto& l : layouts) {
      INFO(op.name << " with " << l.name);
      for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
        const M a = draw(Domain::any, extent(l.a_rows, d.rows), extent(l.a_cols, d.cols), rng);
        const M b = draw(op.positive_rhs ? Domain::positive : Domain::any, extent(l.b_rows, d.rows),
                         extent(l.b_cols, d.cols), rng);
        require_gradients(op.f, {a, b}, {l.a_rank, l.b_rank});
      });
    }
  }
}

TEST_CASE("matmul passes the gradient check in all four transpose variants",
          "[core][ops][gradcheck][matmul]") {
  for (const bool ta : {false, true}) {
    for (const bool tb : {false, true}) {
      INFO("transpose_a " << ta << ", transpose_b " << tb);
      const Fn f = [ta, tb](const Inputs& v) {
        return gs::matmul(v[0], v[1], {.transpose_a = ta, .transpose_b = tb});
      };
      for (const auto seed : gs::testing::seeds) {
        gs::Rng rng(seed);
        for (int s = 0; s < 3; ++s) {
          // m x k times k x n, with 1 among the sizes for the first shape (vector products).
          const Index m = s == 0 ? 1 : static_cast<Index>(1 + rng.below(6));
          const Index k = static_cast<Index>(1 + rng.below(6));
          const Index n = static_cast<Index>(1 + rng.below(6));
          INFO("seed " << seed << ": [" << m << ", " << k << "] x [" << k << ", " << n << "]");
          const M a = ta ? gs::testing::uniform(k, m, rng) : gs::testing::uniform(m, k, rng);
          const M b = tb ? gs::testing::uniform(n, k, rng) : gs::testing::uniform(k, n, rng);
          require_gradients(f, {a, b});
        }
      }
    }
  }
}

TEST_CASE("matmul of a rank-1 row vector passes the gradient check",
          "[core][ops][gradcheck][matmul]") {
  const Fn f = [](const Inputs& v) { return gs::matmul(v[0], v[1]); };
  for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
    require_gradients(
        f, {gs::testing::uniform(1, d.rows, rng), gs::testing::uniform(d.rows, d.cols, rng)},
        {1, 2});
  });
}

TEST_CASE("transpose of a rank-1 vector passes the gradient check", "[core][ops][gradcheck]") {
  const Fn f = [](const Inputs& v) { return gs::square(gs::transpose(v[0])); };
  for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
    require_gradients(f, {gs::testing::uniform(1, d.cols, rng)}, {1});
  });
}

TEST_CASE("sum and mean pass the gradient check over every axis",
          "[core][ops][gradcheck][reduce]") {
  for (const auto axis : {gs::Reduce::all, gs::Reduce::per_row, gs::Reduce::per_column}) {
    INFO("axis " << static_cast<int>(axis));
    const Fn sum = [axis](const Inputs& v) { return gs::sum(v[0], axis); };
    const Fn mean = [axis](const Inputs& v) { return gs::mean(v[0], axis); };
    // A nonlinear consumer, so the reduction's gradient is not constant.
    const Fn sum_then_square = [axis](const Inputs& v) { return gs::square(gs::sum(v[0], axis)); };
    for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
      const M x = gs::testing::uniform(d.rows, d.cols, rng);
      require_gradients(sum, {x});
      require_gradients(mean, {x});
      require_gradients(sum_then_square, {x});
    });
  }
}

TEST_CASE("linear passes the gradient check with and without bias",
          "[core][ops][gradcheck][linear]") {
  const Fn with_bias = [](const Inputs& v) { return gs::linear(v[0], v[1], v[2]); };
  const Fn without_bias = [](const Inputs& v) { return gs::linear(v[0], v[1]); };
  for (const auto seed : gs::testing::seeds) {
    gs::Rng rng(seed);
    for (int s = 0; s < 3; ++s) {
      const Index batch = s == 0 ? 1 : static_cast<Index>(1 + rng.below(6));
      const Index in = static_cast<Index>(1 + rng.below(6));
      const Index out = static_cast<Index>(1 + rng.below(6));
      INFO("seed " << seed << ": batch " << batch << ", " << in << " -> " << out);
      const M x = gs::testing::uniform(batch, in, rng);
      const M W = gs::testing::uniform(out, in, rng);
      const M b = gs::testing::uniform(1, out, rng);
      require_gradients(with_bias, {x, W, b}, {2, 2, 1});
      require_gradients(without_bias, {x, W});
    }
  }
}

TEST_CASE("softmax_cross_entropy passes the gradient check", "[core][ops][gradcheck][loss]") {
  for (const auto seed : gs::testing::seeds) {
    for (const auto& d : gs::testing::random_shapes(seed)) {
      INFO("seed " << seed << ", logits " << d.str());
      gs::Rng rng(seed);
      std::vector<int> labels(static_cast<std::size_t>(d.rows));
      for (auto& l : labels) l = static_cast<int>(rng.below(static_cast<std::uint64_t>(d.cols)));
      const Fn f = [labels](const Inputs& v) { return gs::softmax_cross_entropy(v[0], labels); };
      require_gradients(f, {gs::testing::uniform(d.rows, d.cols, rng, -3, 3)});
    }
  }
}

TEST_CASE("binary_cross_entropy_with_logits passes the gradient check for logits and targets",
          "[core][ops][gradcheck][loss]") {
  const Fn f = [](const Inputs& v) { return gs::binary_cross_entropy_with_logits(v[0], v[1]); };
  for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
    const M logits = gs::testing::away_from_zero(d.rows, d.cols, rng, 0.1, 4);  // |x| has a kink
    const M targets = gs::testing::uniform(d.rows, d.cols, rng, 0, 1);
    require_gradients(f, {logits, targets});
  });
}

TEST_CASE("a composition of ops passes the gradient check", "[core][ops][gradcheck]") {
  // A two-layer network with a shared weight use, a residual add and a reused intermediate.
  const Fn f = [](const Inputs& v) {
    const T h = gs::tanh(gs::linear(v[0], v[1], v[2]));
    const T g = gs::sigmoid(gs::matmul(h, v[1], {.transpose_a = false, .transpose_b = false}));
    const T r = gs::add(g, gs::scale(v[0], 0.5));
    return gs::add(gs::mean(gs::log_softmax(r)), gs::sum(gs::mul(h, h), gs::Reduce::per_column));
  };
  for (const auto seed : gs::testing::seeds) {
    gs::Rng rng(seed);
    const Index batch = static_cast<Index>(1 + rng.below(4)),
                n = static_cast<Index>(2 + rng.below(4));
    require_gradients(f,
                      {gs::testing::uniform(batch, n, rng), gs::testing::uniform(n, n, rng, -1, 1),
                       gs::testing::uniform(1, n, rng)},
                      {2, 2, 1});
  }
}

// ---- forward values ----

TEST_CASE("elementwise ops compute the expected values", "[core][ops]") {
  const gs::Tensor<double> x{{1, -2}, {0.5, 4}};
  CHECK(gs::add(x, x).to_matrix() == M{{2, -4}, {1, 8}});
  CHECK(gs::sub(x, gs::Tensor<double>::scalar(1)).to_matrix() == M{{0, -3}, {-0.5, 3}});
  CHECK(gs::mul(x, gs::Tensor<double>::vector({2, 10})).to_matrix() == M{{2, -20}, {1, 40}});
  CHECK(gs::div(x, gs::Tensor<double>{{2}, {4}}).to_matrix() == M{{0.5, -1}, {0.125, 1}});
  CHECK((2.0 - x).to_matrix() == M{{1, 4}, {1.5, -2}});
  CHECK((2.0 / x).to_matrix() == M{{2, -1}, {4, 0.5}});
  CHECK(gs::relu(x).to_matrix() == M{{1, 0}, {0.5, 4}});
  CHECK(gs::leaky_relu(x, 0.5).to_matrix() == M{{1, -1}, {0.5, 4}});
  CHECK(gs::clamp(x, -1.0, 2.0).to_matrix() == M{{1, -1}, {0.5, 2}});
  CHECK(gs::abs(x).to_matrix() == M{{1, 2}, {0.5, 4}});
  CHECK(gs::pow(x, 2.0).to_matrix() == M{{1, 4}, {0.25, 16}});
  CHECK(gs::elu(x, 2.0).value()(0, 1) == Approx(2.0 * (std::exp(-2.0) - 1)));
  CHECK(gs::sigmoid(x).value()(0, 0) == Approx(1 / (1 + std::exp(-1.0))));
  CHECK(gs::transpose(x).to_matrix() == M{{1, 0.5}, {-2, 4}});
  CHECK(gs::matmul(x, x).to_matrix() == M{{0, -10}, {2.5, 15}});
  CHECK(gs::matmul(x, x, {.transpose_a = true}).to_matrix() == M{{1.25, 0}, {0, 20}});
}

TEST_CASE("reductions give the documented shapes and values", "[core][ops][reduce]") {
  const gs::Tensor<double> x{{1, 2, 3}, {4, 5, 6}};
  const auto all = gs::sum(x);
  CHECK(all.shape() == gs::Shape::scalar());
  CHECK(all.item() == 21);
  const auto rows = gs::mean(x, gs::Reduce::per_row);
  CHECK(rows.shape() == gs::Shape::matrix(2, 1));
  CHECK(rows.to_matrix() == M{{2}, {5}});
  const auto cols = gs::sum(x, gs::Reduce::per_column);
  CHECK(cols.shape() == gs::Shape::vector(3));
  CHECK(cols.to_matrix() == M{{5, 7, 9}});
  CHECK(gs::mean(x).item() == 3.5);
}

TEST_CASE("broadcasting gives the documented result shapes", "[core][ops][broadcast]") {
  const auto m = gs::Tensor<double>::zeros(3, 4);
  CHECK(gs::add(m, gs::Tensor<double>::scalar(1)).shape() == gs::Shape::matrix(3, 4));
  CHECK(gs::add(gs::Tensor<double>::scalar(1), gs::Tensor<double>::vector({1, 2})).shape() ==
        gs::Shape::vector(2));
  CHECK(gs::add(gs::Tensor<double>::zeros(3, 1), gs::Tensor<double>::vector({1, 2})).shape() ==
        gs::Shape::matrix(3, 2));
  CHECK(gs::add(gs::Tensor<double>::scalar(1), gs::Tensor<double>::scalar(2)).shape() ==
        gs::Shape::scalar());
}

TEST_CASE("softmax rows are distributions and log_softmax is their log", "[core][ops]") {
  gs::Rng rng(5);
  const gs::Tensor<double> x(gs::testing::uniform(4, 6, rng, -5, 5));
  const M p = gs::softmax(x).to_matrix();
  const M lp = gs::log_softmax(x).to_matrix();
  for (Index i = 0; i < p.rows(); ++i) CHECK(p.row(i).sum() == Approx(1.0));
  CHECK((p.array() > 0).all());
  CHECK(lp.isApprox(M(p.array().log().matrix()), 1e-12));
}

TEST_CASE("linear computes x W^T + b", "[core][ops][linear]") {
  const gs::Tensor<double> x{{1, 2}, {3, 4}, {5, 6}};
  const gs::Tensor<double> W{{1, 0}, {0, 1}, {1, 1}};
  const auto b = gs::Tensor<double>::vector({10, 20, 30});
  CHECK(gs::linear(x, W, b).to_matrix() == M{{11, 22, 33}, {13, 24, 37}, {15, 26, 41}});
  CHECK(gs::linear(x, W).to_matrix() == M{{1, 2, 3}, {3, 4, 7}, {5, 6, 11}});
}

TEMPLATE_TEST_CASE("softmax_cross_entropy is stable for logits of magnitude 1e4",
                   "[core][ops][loss][stability]", float, double) {
  using S = TestType;
  gs::Tape<S> tape;
  const auto logits =
      tape.variable(gs::Matrix<S>{{S(1e4), S(-1e4), S(0)}, {S(-1e4), S(1e4), S(5e3)}});
  const std::vector<int> labels = {0, 2};
  const auto loss = gs::softmax_cross_entropy(logits, labels);
  // Row 0 puts all mass on its label (loss 0); row 1 misses by 1e4 - 5e3. Mean: 2500.
  REQUIRE(std::isfinite(loss.item()));
  CHECK(loss.item() == Approx(2500).epsilon(1e-6));
  tape.backward(loss);
  const gs::Matrix<S> g = logits.grad();
  REQUIRE(g.allFinite());
  // d loss / d logits = (softmax - onehot) / batch.
  const gs::Matrix<S> expected{{S(0), S(0), S(0)}, {S(0), S(0.5), S(-0.5)}};
  CHECK(g.isApprox(expected, S(1e-6)));
  CHECK(gs::log_softmax(logits).value().allFinite());
  CHECK(gs::softmax(logits).value().allFinite());
}

TEMPLATE_TEST_CASE("binary_cross_entropy_with_logits is stable for large logits",
                   "[core][ops][loss][stability]", float, double) {
  using S = TestType;
  const gs::Tensor<S> logits{{S(1e4), S(-1e4)}};
  const gs::Tensor<S> targets{{S(1), S(1)}};
  const auto loss = gs::binary_cross_entropy_with_logits(logits, targets);
  // Element 0 is certain and right (loss 0), element 1 certain and wrong (loss 1e4).
  CHECK(loss.item() == Approx(5e3).epsilon(1e-6));
}

TEST_CASE("softmax_cross_entropy equals the mean of -log_softmax at the labels",
          "[core][ops][loss]") {
  gs::Rng rng(17);
  const gs::Tensor<double> x(gs::testing::uniform(5, 4, rng, -3, 3));
  const std::vector<int> labels = {0, 3, 1, 1, 2};
  const M lp = gs::log_softmax(x).to_matrix();
  double expected = 0;
  for (Index i = 0; i < 5; ++i) expected -= lp(i, labels[static_cast<std::size_t>(i)]);
  CHECK(gs::softmax_cross_entropy(x, labels).item() == Approx(expected / 5).epsilon(1e-12));
}

// ---- errors ----

TEST_CASE("shape errors name the op and both shapes", "[core][ops][errors]") {
  const auto a = gs::Tensor<double>::zeros(2, 3);
  const auto b = gs::Tensor<double>::zeros(4, 5);
  using Catch::Matchers::Contains;
  CHECK_THROWS_MATCHES(gs::matmul(a, b), gs::ShapeError,
                       Catch::Matchers::Predicate<gs::ShapeError>([](const gs::ShapeError& e) {
                         const std::string m = e.what();
                         return m.find("matmul") != std::string::npos &&
                                m.find("[2, 3]") != std::string::npos &&
                                m.find("[4, 5]") != std::string::npos;
                       }));
  CHECK_THROWS_WITH(gs::matmul(a, b), Contains("[2, 3]") && Contains("[4, 5]"));
  CHECK_THROWS_WITH(gs::matmul(a, b, {.transpose_b = true}),
                    Contains("[2, 3] x [4, 5]^T") && Contains("3 vs 5"));
  CHECK_THROWS_WITH(gs::matmul(a, a, {.transpose_a = true, .transpose_b = true}),
                    Contains("[2, 3]^T x [2, 3]^T") && Contains("2 vs 3"));
  CHECK_THROWS_WITH(gs::add(a, b), Contains("add") && Contains("[2, 3]") && Contains("[4, 5]"));
  CHECK_THROWS_WITH(gs::mul(a, gs::Tensor<double>::vector({1, 2})),
                    Contains("mul") && Contains("[2, 3]") && Contains("[2]"));
  CHECK_THROWS_AS(gs::div(a, b), gs::ShapeError);
  CHECK_THROWS_AS(gs::sub(a, b), gs::ShapeError);
  CHECK_THROWS_WITH(gs::linear(a, b),
                    Contains("linear") && Contains("[2, 3]") && Contains("[4, 5]"));
  CHECK_THROWS_WITH(
      gs::linear(a, gs::Tensor<double>::zeros(4, 3), gs::Tensor<double>::vector({1, 2})),
      Contains("bias") && Contains("[2]") && Contains("[4]"));
  CHECK_THROWS_WITH(gs::binary_cross_entropy_with_logits(a, b),
                    Contains("[2, 3]") && Contains("[4, 5]"));
  CHECK_THROWS_WITH(gs::matmul(a, b), Catch::Matchers::StartsWith("[gradscope.shape]"));
}

TEST_CASE("softmax_cross_entropy rejects bad labels naming the label and the class count",
          "[core][ops][loss][errors]") {
  const auto logits = gs::Tensor<double>::zeros(2, 5);
  using Catch::Matchers::Contains;
  const std::vector<int> too_big = {1, 7};
  CHECK_THROWS_AS(gs::softmax_cross_entropy(logits, too_big), gs::ValueError);
  CHECK_THROWS_WITH(
      gs::softmax_cross_entropy(logits, too_big),
      Contains("label 7") && Contains("5 classes") && Contains("softmax_cross_entropy"));
  const std::vector<int> negative = {-1, 0};
  CHECK_THROWS_WITH(gs::softmax_cross_entropy(logits, negative),
                    Contains("label -1") && Contains("5 classes"));
  const std::vector<int> edge = {4, 0};  // the last class is in range
  CHECK_NOTHROW(gs::softmax_cross_entropy(logits, edge));
  const std::vector<int> too_few = {1};
  CHECK_THROWS_AS(gs::softmax_cross_entropy(logits, too_few), gs::ShapeError);
}

TEST_CASE("ops reject non-finite or inverted scalar arguments", "[core][ops][errors]") {
  const auto x = gs::Tensor<double>::ones(2, 2);
  CHECK_THROWS_AS(gs::clamp(x, 1.0, -1.0), gs::ValueError);
  CHECK_THROWS_AS(gs::pow(x, std::nan("")), gs::ValueError);
  CHECK_THROWS_AS(gs::leaky_relu(x, INFINITY), gs::ValueError);
  CHECK_THROWS_AS(gs::elu(x, std::nan("")), gs::ValueError);
}
