// The ops for sequences (core/sequence_ops.hpp, softplus and log1p in core/ops.hpp) and custom
// ops (core/custom_op.hpp): finite-difference checks in double over several shapes and seeds,
// then values, stability and error messages.

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "support.hpp"

namespace gs = gradscope;
using gs::Index;
using M = gs::Matrix<double>;
using T = gs::Tensor<double>;
using Inputs = std::vector<T>;
using Fn = std::function<T(const Inputs&)>;

namespace {

void require_gradients(const Fn& f, const std::vector<M>& inputs, std::vector<int> ranks = {}) {
  const gs::GradCheckReport report = gs::check_gradients(f, inputs, {}, std::move(ranks));
  INFO(report.str());
  CHECK(report.ok);
  CHECK(report.max_rel_error < 1e-6);
  CHECK(report.checked > 0);
}

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

/// A matrix whose entries are pairwise at least 0.05 apart (max and argmax stay differentiable
/// under the finite-difference step).
M distinct(Index rows, Index cols, gs::Rng& rng) {
  M m(rows, cols);
  std::vector<double> v(static_cast<std::size_t>(m.size()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.05 * static_cast<double>(i) - 1.0;
  for (std::size_t i = v.size(); i-- > 1;) std::swap(v[i], v[rng.below(i + 1)]);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = v[static_cast<std::size_t>(i)];
  return m;
}

template <class E>
std::string message_of(E&& f) {
  try {
    f();
  } catch (const gs::Error& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST_CASE("softplus and log1p pass the gradient check and are stable", "[core][ops][gradcheck]") {
  const Fn softplus = [](const Inputs& v) { return gs::softplus(v[0]); };
  const Fn log1p = [](const Inputs& v) { return gs::log1p(v[0]); };
  for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
    require_gradients(softplus, {gs::testing::uniform(d.rows, d.cols, rng, -4, 4)});
    require_gradients(log1p, {gs::testing::uniform(d.rows, d.cols, rng, -0.5, 3)});
  });
  for (const int rank : {0, 2}) {
    gs::Rng rng(7);
    require_gradients(softplus, {gs::testing::uniform(1, 1, rng)}, {rank});
    require_gradients(log1p, {gs::testing::uniform(1, 1, rng, 0, 1)}, {rank});
  }
  const T x{{1e4, -1e4, 0.0, -40.0}};
  const M y = gs::softplus(x).value();  // a copy: value() is a view into the temporary result
  CHECK(y(0, 0) == 1e4);
  CHECK(y(0, 1) == 0.0);
  CHECK(y(0, 2) == Approx(std::log(2.0)).epsilon(1e-15));
  CHECK(y(0, 3) == Approx(std::exp(-40.0)).epsilon(1e-12));  // log(1 + e^-40), not 0
  CHECK(gs::log1p(T{{1e-12}}).item() == Approx(1e-12).epsilon(1e-12));
}

TEST_CASE("reshape, slices and concatenation pass the gradient check", "[core][ops][gradcheck]") {
  for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
    const M x = gs::testing::uniform(d.rows, d.cols, rng);
    const Index R = d.rows, C = d.cols;
    // tanh after each op: its gradient is then not a constant the rule could get right by luck.
    require_gradients([C](const Inputs& v) { return gs::tanh(gs::reshape(v[0], C, -1)); }, {x});
    require_gradients([](const Inputs& v) { return gs::tanh(gs::reshape(v[0], 1, -1)); }, {x});
    // Overlapping slices of one input: their gradients add up.
    require_gradients(
        [R](const Inputs& v) {
          return gs::tanh(gs::slice_rows(v[0], R - 1, 1)) * gs::slice_rows(v[0], 0, 1);
        },
        {x});
    require_gradients(
        [C](const Inputs& v) {
          return gs::square(gs::slice_cols(v[0], 0, C)) + gs::tanh(gs::slice_cols(v[0], C / 2, 1));
        },
        {x});
    // Three inputs of different widths / heights, one of them twice.
    const M b = gs::testing::uniform(R, 3, rng), c = gs::testing::uniform(2, C, rng);
    require_gradients(
        [](const Inputs& v) {
          return gs::tanh(gs::concat_cols({v[0], v[1], v[0]}));
        },
        {x, b});
    require_gradients(
        [](const Inputs& v) {
          return gs::tanh(gs::concat_rows({v[1], v[0], v[1]}));
        },
        {x, c});
  });
}

TEST_CASE("split, stack and unstack of time steps round-trip and pass the gradient check",
          "[core][ops][gradcheck]") {
  gs::Rng rng(3);
  const Index B = 3, F = 2, steps = 4;
  const M x = gs::testing::uniform(B, steps * F, rng);
  const T xt(x);
  const auto parts = gs::unstack(xt, steps);
  REQUIRE(parts.size() == static_cast<std::size_t>(steps));
  for (Index t = 0; t < steps; ++t)
    CHECK(parts[static_cast<std::size_t>(t)].to_matrix() == x.middleCols(t * F, F));
  CHECK(gs::stack(parts).to_matrix() == x);
  const auto gates = gs::split_cols(xt, 2);
  CHECK(gates[1].to_matrix() == x.rightCols(steps * F / 2));
  // The last step first: reversing the steps is a permutation whose gradient must follow it.
  require_gradients(
      [steps](const Inputs& v) {
        auto s = gs::unstack(v[0], steps);
        std::reverse(s.begin(), s.end());
        return gs::tanh(gs::stack(s));
      },
      {x});
  CHECK_THAT(message_of([&] { gs::split_cols(xt, 3); }),
             Catch::Contains("cannot cut the 8 columns") && Catch::Contains("[3, 8]"));
  CHECK_THAT(
      message_of([&] {
        gs::stack({parts[0], xt});
      }),
      Catch::Contains("step 1 has shape [3, 8]") && Catch::Contains("step 0 has shape [3, 2]"));
}

TEST_CASE("gather_rows picks rows and scatters repeated gradients back", "[core][ops][gradcheck]") {
  gs::Rng rng(5);
  const M table = gs::testing::uniform(5, 3, rng);
  const std::vector<int> idx = {4, 0, 4, 2, 4};
  const T t(table);
  const M y = gs::gather_rows(t, idx).value();  // a copy (value() views the temporary)
  for (Index i = 0; i < 5; ++i) CHECK(y.row(i) == table.row(idx[static_cast<std::size_t>(i)]));
  require_gradients([&](const Inputs& v) { return gs::tanh(gs::gather_rows(v[0], idx)); }, {table});
  // The gradient of row 4, used three times, is the sum of its three uses; row 1 and 3 get none.
  gs::Tape<double> tape;
  auto w = tape.variable(table);
  tape.backward(gs::sum(gs::gather_rows(w, idx)));
  CHECK(w.grad().row(4) == M::Constant(1, 3, 3.0));
  CHECK(w.grad().row(1) == M::Zero(1, 3));
  CHECK(w.grad().row(0) == M::Ones(1, 3));
  CHECK_THAT(message_of([&] {
               gs::gather_rows(t, std::vector<int>{0, 5});
             }),
             Catch::Contains("index 5 at position 1 is out of range") && Catch::Contains("[5, 3]"));
  CHECK_THAT(message_of([&] { gs::gather_rows(t, std::vector<int>{-1}); }),
             Catch::Contains("index -1 at position 0"));
}

TEST_CASE("max and logsumexp pass the gradient check over every axis",
          "[core][ops][gradcheck][reduce]") {
  for (const auto axis : {gs::Reduce::all, gs::Reduce::per_row, gs::Reduce::per_column}) {
    INFO("axis " << static_cast<int>(axis));
    for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
      require_gradients([axis](const Inputs& v) { return gs::square(gs::max(v[0], axis)); },
                        {distinct(d.rows, d.cols, rng)});
      require_gradients([axis](const Inputs& v) { return gs::square(gs::logsumexp(v[0], axis)); },
                        {gs::testing::uniform(d.rows, d.cols, rng)});
    });
  }
}

TEST_CASE("max, argmax and logsumexp values: ties, NaN, large and infinite inputs",
          "[core][ops][reduce]") {
  const T x{{1, 7, 7}, {-3, -2, -9}};
  CHECK(gs::max(x).item() == 7);
  CHECK(gs::argmax(x) == std::vector<Index>{1});  // the first of the tied maxima
  CHECK(gs::argmax(x, gs::Reduce::per_row) == std::vector<Index>{1, 1});
  CHECK(gs::argmax(x, gs::Reduce::per_column) == std::vector<Index>{0, 0, 0});
  CHECK(gs::max(x, gs::Reduce::per_row).shape() == gs::Shape::matrix(2, 1));
  CHECK(gs::max(x, gs::Reduce::per_column).to_matrix() == (M(1, 3) << 1, 7, 7).finished());
  {  // the gradient of a tie goes to the first maximum only
    gs::Tape<double> tape;
    auto v = tape.variable(x.to_matrix());
    tape.backward(gs::max(v));
    CHECK(v.grad() == (M(2, 3) << 0, 1, 0, 0, 0, 0).finished());
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(std::isnan(gs::max(T{{1, nan, 3}}).item()));
  CHECK(gs::argmax(T{{1, nan, 3}}) == std::vector<Index>{1});
  // logsumexp of 1e4: no overflow; of -inf lanes: -inf, and no gradient (not NaN).
  CHECK(gs::logsumexp(T{{1e4, 1e4}}).item() == Approx(1e4 + std::log(2.0)).epsilon(1e-15));
  CHECK(gs::logsumexp(T{{-1e4, -1e4 - 1}}).item() ==
        Approx(-1e4 + std::log1p(std::exp(-1.0))).epsilon(1e-15));
  {
    gs::Tape<double> tape;
    auto v = tape.variable((M(2, 2) << -inf, -inf, 0, -inf).finished());
    auto y = gs::logsumexp(v, gs::Reduce::per_row);
    CHECK(y.value()(0, 0) == -inf);
    CHECK(y.value()(1, 0) == 0.0);
    tape.backward(gs::sum(gs::where(T{{0}, {1}}, y, T{{0}, {0}})));
    CHECK(v.grad() == (M(2, 2) << 0, 0, 1, 0).finished());
  }
  CHECK(gs::logsumexp(T{{inf, 1}}).item() == inf);
}

TEST_CASE("where selects, broadcasts and passes no gradient to the unchosen side",
          "[core][ops][gradcheck][broadcast]") {
  for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
    M mask(d.rows, d.cols);
    for (Index i = 0; i < mask.size(); ++i) mask.data()[i] = rng.bernoulli(0.5) ? 1.0 : 0.0;
    const M a = gs::testing::uniform(d.rows, d.cols, rng);
    const M b = gs::testing::uniform(d.rows, d.cols, rng);
    const Fn f = [&mask](const Inputs& v) {
      return gs::tanh(gs::where(T(mask), v[0], v[1] * v[1]));
    };
    require_gradients(f, {a, b});
    // Broadcast: a row-vector mask, a scalar a.
    const M row_mask = mask.topRows(1);
    const Fn g = [&row_mask](const Inputs& v) {
      return gs::where(T(row_mask.row(0)), v[0], gs::tanh(v[1]));
    };
    require_gradients(g, {gs::testing::uniform(1, 1, rng), b}, {0, 2});
  });
  // A NaN or inf in the unchosen branch gets a zero gradient, not NaN (a multiplicative mask,
  // a * m + b * (1 - m), would give 0 * NaN = NaN). As in PyTorch, an op *before* where still
  // computes its own rule: log's g / x at x = 0 is 0 / 0 even when where passed it g = 0.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  gs::Tape<double> tape;
  auto a = tape.variable((M(1, 3) << 1, nan, 2).finished());
  auto y = gs::where(T{{1, 0, 1}}, a, T{{5, 5, 5}});
  CHECK(y.to_matrix() == (M(1, 3) << 1, 5, 2).finished());
  tape.backward(gs::sum(y));
  CHECK(a.grad() == (M(1, 3) << 1, 0, 1).finished());
  CHECK_THAT(message_of([] {
               gs::where(T{{1, 0}}, T{{1, 2, 3}}, T{{1}});
             }),
             Catch::Contains("where: shapes [1, 2] and [1, 3] cannot be broadcast"));
}

TEST_CASE("shape ops report bad ranges and shapes", "[core][ops][errors]") {
  const T x = T::zeros(3, 4);
  CHECK_THAT(message_of([&] { gs::slice_cols(x, 2, 3); }),
             Catch::Contains("slice_cols: columns [2, 5) is outside an input of shape [3, 4]"));
  CHECK_THAT(message_of([&] { gs::slice_rows(x, -1, 1); }),
             Catch::Contains("slice_rows: rows [-1, 0) is outside"));
  CHECK_THAT(message_of([&] { gs::slice_rows(x, 0, 0); }), Catch::Contains("count of at least 1"));
  CHECK_THAT(
      message_of([&] { gs::reshape(x, 5, -1); }),
      Catch::Contains("reshape: cannot view an input of shape [3, 4] (12 elements) as [5, -1]"));
  CHECK_THAT(message_of([&] {
               gs::concat_cols({x, T::zeros(2, 4)});
             }),
             Catch::Contains("concat_cols: input 1 has shape [2, 4] but input 0 has shape [3, 4]"));
  CHECK_THAT(message_of([&] { gs::concat_rows(std::vector<T>{}); }),
             Catch::Contains("needs at least one tensor"));
  CHECK_THAT(message_of([&] { gs::concat_rows({x, T()}); }), Catch::Contains("undefined"));
  CHECK(gs::concat_cols({T::vector({1, 2}), T::vector({3})}).rank() == 1);
}

namespace {
// x^3 as a custom op, with a correct or a deliberately wrong backward.
T cube(const T& x, double factor) {
  return gs::custom_op(
      "cube", {x}, x.shape(),
      [](std::span<const gs::ConstMatrixMap<double>> in, gs::MatrixMap<double>& out) {
        out.array() = in[0].array().cube();
      },
      [factor](const gs::CustomGradient<double>& g) {
        if (g.needs_grad(0))
          g.grad_inputs[0].array() += factor * g.inputs[0].array().square() * g.grad_output.array();
      });
}
// a * b^T + c (three inputs of different shapes), as a custom op.
T outer_plus(const T& a, const T& b, const T& c) {
  return gs::custom_op(
      "outer_plus", {a, b, c}, gs::Shape::matrix(a.cols(), b.cols()),
      [](std::span<const gs::ConstMatrixMap<double>> in, gs::MatrixMap<double>& out) {
        out = in[0].transpose() * in[1];
        out.array() += in[2](0, 0);
      },
      [](const gs::CustomGradient<double>& g) {
        const auto& G = g.grad_output;
        if (g.needs_grad(0)) g.grad_inputs[0] += g.inputs[1] * G.transpose();
        if (g.needs_grad(1)) g.grad_inputs[1] += g.inputs[0] * G;
        if (g.needs_grad(2)) g.grad_inputs[2](0, 0) += G.sum();
      });
}
}  // namespace

TEST_CASE("a custom op with a hand-written backward passes the gradient check; a wrong one fails",
          "[core][ops][gradcheck][custom]") {
  for_shapes_and_seeds([&](const gs::testing::Dims& d, gs::Rng& rng) {
    const M x = gs::testing::uniform(d.rows, d.cols, rng, -1, 1);
    require_gradients([](const Inputs& v) { return gs::tanh(cube(v[0], 3.0)); }, {x});
    // Used twice, and composed with other ops.
    require_gradients([](const Inputs& v) { return cube(v[0], 3.0) * gs::exp(cube(v[0], 3.0)); },
                      {x});
    const M a = gs::testing::uniform(1, d.rows, rng), b = gs::testing::uniform(1, d.cols, rng);
    require_gradients([](const Inputs& v) { return gs::tanh(outer_plus(v[0], v[1], v[2])); },
                      {a, b, gs::testing::uniform(1, 1, rng)}, {2, 2, 0});
    // The checker catches a wrong backward (2x^2 instead of 3x^2).
    const auto report = gs::check_gradients([](const Inputs& v) { return cube(v[0], 2.0); }, {x});
    CHECK_FALSE(report.ok);
  });
  // An input that needs no gradient gets an empty block; the op is named in listings; without a
  // tape it is evaluated eagerly.
  gs::Tape<double> tape;
  auto v = tape.variable(M::Constant(1, 2, 2.0));
  auto c = tape.constant(M::Constant(1, 2, 1.0));
  auto y = outer_plus(v, c, T::scalar(0.5));
  CHECK(y.to_matrix() == M::Constant(2, 2, 2.5));
  tape.backward(gs::sum(y));
  CHECK(v.grad() == M::Constant(1, 2, 2.0));
  CHECK_THAT(tape.listing(), Catch::Contains("custom:outer_plus [2, 2]"));
  CHECK(cube(T{{2.0}}, 3.0).item() == 8.0);
  CHECK(cube(T{{2.0}}, 3.0).is_persistent());
}
