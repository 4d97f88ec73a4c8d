// Tensor<T>: construction, shapes and ranks, persistent storage and parameters, eager evaluation
// without a tape, and the errors of misuse.

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <limits>
#include <sstream>
#include <string>

namespace gs = gradscope;
using Catch::Matchers::Contains;

TEST_CASE("Shape prints [] for scalars, [n] for vectors and [r, c] for matrices",
          "[core][tensor]") {
  CHECK(gs::Shape::scalar().str() == "[]");
  CHECK(gs::Shape::vector(7).str() == "[7]");
  CHECK(gs::Shape::matrix(2, 3).str() == "[2, 3]");
  CHECK(gs::Shape::matrix(2, 3).size() == 6);
  std::ostringstream os;
  os << gs::Shape::matrix(4, 1);
  CHECK(os.str() == "[4, 1]");
  CHECK(gs::Shape::vector(1) != gs::Shape::scalar());  // same 1 x 1 extent, different rank
}

TEST_CASE("tensors are built with the documented shapes and ranks", "[core][tensor]") {
  const gs::Tensor<double> m{{1, 2, 3}, {4, 5, 6}};
  CHECK(m.defined());
  CHECK(m.shape() == gs::Shape::matrix(2, 3));
  CHECK(m.rows() == 2);
  CHECK(m.cols() == 3);
  CHECK(m.size() == 6);
  CHECK(m.rank() == 2);
  CHECK(m.value()(1, 2) == 6);
  CHECK(m.is_persistent());
  CHECK_FALSE(m.requires_grad());
  CHECK(std::string(m.op_name()) == "constant");
  CHECK(m.tape() == nullptr);

  const auto s = gs::Tensor<float>::scalar(2.5f);
  CHECK(s.rank() == 0);
  CHECK(s.item() == 2.5f);

  const auto v = gs::Tensor<double>::vector({1, 2, 3, 4});
  CHECK(v.shape() == gs::Shape::vector(4));
  CHECK(v.to_matrix() == gs::Matrix<double>{{1, 2, 3, 4}});

  CHECK(gs::Tensor<double>::zeros(2, 2).to_matrix().isZero());
  CHECK((gs::Tensor<double>::ones(gs::Shape::vector(3)).to_matrix().array() == 1).all());
  CHECK(gs::Tensor<double>::full(3, 1, 7.0).value().sum() == 21);

  const gs::Tensor<double> from_eigen(gs::Matrix<double>::Identity(3, 3));
  CHECK(from_eigen.shape() == gs::Shape::matrix(3, 3));

  const gs::Tensor<double> undefined;
  CHECK_FALSE(undefined.defined());
  CHECK_THROWS_AS(undefined.value(), gs::UsageError);
}

TEST_CASE("tensor ranks are checked against their values", "[core][tensor][errors]") {
  CHECK_THROWS_AS(gs::Tensor<double>(gs::Matrix<double>::Zero(2, 2), 0, false), gs::ShapeError);
  CHECK_THROWS_AS(gs::Tensor<double>(gs::Matrix<double>::Zero(2, 3), 1, false), gs::ShapeError);
  CHECK_THROWS_AS(gs::Tensor<double>(gs::Matrix<double>::Zero(1, 1), 3, false), gs::ShapeError);
  CHECK_THROWS_WITH(gs::Tensor<double>(gs::Matrix<double>::Zero(2, 3), 1, false),
                    Contains("rank 1") && Contains("2 x 3"));
  gs::Tape<double> tape;
  CHECK_THROWS_AS(tape.variable(gs::Matrix<double>::Zero(2, 2), 0), gs::ShapeError);
}

TEST_CASE("item() needs exactly one element", "[core][tensor][errors]") {
  CHECK(gs::Tensor<double>{{4}}.item() == 4);
  CHECK_THROWS_AS(gs::Tensor<double>::zeros(2, 1).item(), gs::UsageError);
  CHECK_THROWS_WITH(gs::Tensor<double>::zeros(2, 1).item(), Contains("[2, 1]"));
}

TEST_CASE("random tensors are reproducible from their generator", "[core][tensor][rng]") {
  gs::Rng a(99), b(99);
  const auto x = gs::Tensor<double>::randn(3, 4, a);
  const auto y = gs::Tensor<double>::randn(3, 4, b);
  CHECK(x.to_matrix() == y.to_matrix());
  const auto u = gs::Tensor<float>::uniform(gs::Shape::vector(50), a, -1.0f, 1.0f);
  CHECK(u.rank() == 1);
  CHECK((u.value().array() >= -1.0f).all());
  CHECK((u.value().array() < 1.0f).all());
}

TEST_CASE("persistent tensors share storage between copies", "[core][tensor]") {
  auto a = gs::Tensor<double>::zeros(2, 2);
  auto b = a;  // a handle copy
  b.mutable_value()(0, 0) = 3;
  CHECK(a.value()(0, 0) == 3);
  CHECK(a.same_as(b));
  const auto c = a.detach();  // a value copy
  CHECK_FALSE(c.same_as(a));
  a.mutable_value()(0, 0) = 4;
  CHECK(c.value()(0, 0) == 3);
}

TEST_CASE("parameters own a zeroed gradient buffer", "[core][tensor][parameter]") {
  auto p = gs::Tensor<double>::parameter(gs::Matrix<double>{{1, 2}, {3, 4}});
  CHECK(p.requires_grad());
  CHECK(std::string(p.op_name()) == "parameter");
  CHECK(p.grad().rows() == 2);
  CHECK(p.grad().isZero());
  p.mutable_grad().setConstant(5);
  p.zero_grad();
  CHECK(p.grad().isZero());

  p.set_requires_grad(false);
  CHECK_FALSE(p.requires_grad());
  CHECK_THROWS_AS(p.grad(), gs::UsageError);
  CHECK_THROWS_AS(p.mutable_grad(), gs::UsageError);
  p.set_requires_grad(true);
  CHECK(p.grad().isZero());

  const auto bias = gs::Tensor<double>::parameter(gs::Matrix<double>::Zero(1, 3), 1);
  CHECK(bias.shape() == gs::Shape::vector(3));
}

TEST_CASE("tape tensors are not persistent and refuse persistent-only access",
          "[core][tensor][errors]") {
  gs::Tape<double> tape;
  auto x = tape.variable(gs::Matrix<double>{{1, 2}});
  CHECK_FALSE(x.is_persistent());
  CHECK(x.tape() == &tape);
  CHECK(std::string(x.op_name()) == "variable");
  CHECK(x.requires_grad());
  CHECK_THROWS_WITH(x.mutable_value(), Contains("persistent"));
  CHECK_THROWS_AS(x.mutable_grad(), gs::UsageError);
  CHECK_THROWS_AS(x.set_requires_grad(false), gs::UsageError);
  const auto y = gs::exp(x);
  CHECK(std::string(y.op_name()) == "exp");
  const auto d = y.detach();
  CHECK(d.is_persistent());
  CHECK_FALSE(d.requires_grad());
  CHECK(d.to_matrix() == y.to_matrix());
}

TEMPLATE_TEST_CASE("ops on constants are evaluated eagerly into persistent results",
                   "[core][tensor][eager]", float, double) {
  using S = TestType;
  gs::Tensor<S> result;
  {
    const gs::Tensor<S> a{{S(1), S(2)}, {S(3), S(4)}};
    const auto b = gs::Tensor<S>::vector({S(10), S(20)});
    result = gs::sum(gs::relu(gs::add(gs::matmul(a, a), b)), gs::Reduce::per_column);
  }  // the inputs are gone; the result owns its values
  CHECK(result.is_persistent());
  CHECK_FALSE(result.requires_grad());
  CHECK(result.tape() == nullptr);
  CHECK(result.shape() == gs::Shape::vector(2));
  // a a = [[7, 10], [15, 22]], + [10, 20] = [[17, 30], [25, 42]], column sums [42, 72].
  CHECK(result.to_matrix() == gs::Matrix<S>{{S(42), S(72)}});

  // A live tape does not record ops whose inputs need no gradient.
  gs::Tape<S> tape;
  const auto c = gs::exp(gs::Tensor<S>::zeros(1, 3));
  CHECK(c.is_persistent());
  CHECK(tape.size() == 0);
  CHECK((c.value().array() == S(1)).all());
}

TEST_CASE("ops on parameters with no tape alive are evaluated eagerly as constants",
          "[core][tensor][eager]") {
  auto p = gs::Tensor<double>::parameter(gs::Matrix<double>{{1, 2}});
  const auto y = gs::mul(p, p);
  CHECK(y.is_persistent());
  CHECK_FALSE(y.requires_grad());
  CHECK(y.to_matrix() == gs::Matrix<double>{{1, 4}});
}

TEMPLATE_TEST_CASE("all_finite finds a NaN or an infinity anywhere, in any tail position",
                   "[core][tensor]", float, double) {
  using S = TestType;
  // Sizes around the vector widths, so the non-finite value falls in the packets and in the
  // scalar tail of the reduction.
  for (const gs::Index n : {1, 7, 8, 15, 16, 17, 31, 33, 100, 1000}) {
    gs::Matrix<S> m = gs::Matrix<S>::Constant(1, n, S(1e30));  // large but finite: x * 0 is 0
    INFO("size " << n);
    CHECK(gs::detail::all_finite(m));
    for (const gs::Index at : {gs::Index{0}, n / 2, n - 1}) {
      for (const S bad : {std::numeric_limits<S>::quiet_NaN(), std::numeric_limits<S>::infinity(),
                          -std::numeric_limits<S>::infinity()}) {
        gs::Matrix<S> b = m;
        b(0, at) = bad;
        INFO("at " << at << ": " << bad);
        CHECK_FALSE(gs::detail::all_finite(b));
      }
    }
  }
}
