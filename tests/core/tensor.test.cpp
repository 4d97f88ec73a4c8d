// Tensor<T>: construction, shapes and ranks, persistent storage and parameters, eager evaluation
// without a tape, and the errors of misuse.

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <limits>
#include <sstream>
#include <string>
#include <utility>

namespace gs = gradscope;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;

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

TEST_CASE("negative sizes and sizes no array can hold are a ValueError everywhere sizes enter",
          "[core][tensor][errors]") {
  using F = gs::Tensor<float>;
  using D = gs::Tensor<double>;
  gs::Rng rng(1);
  // Before the check, zeros(-1, 5) made a -1 x 5 tensor without storage that later ops read
  // through a null pointer.
  CHECK_THROWS_WITH(F::zeros(-1, 5), Equals("[gradscope.value] Tensor::zeros: negative size -1 x "
                                            "5 (sizes must be >= 0)"));
  CHECK_THROWS_WITH(F::zeros(gs::Shape::matrix(3, -2)), Contains("Tensor::zeros: negative size"));
  CHECK_THROWS_WITH(D::ones(2, -1), Contains("Tensor::ones: negative size 2 x -1"));
  CHECK_THROWS_WITH(D::ones(gs::Shape::vector(-4)), Contains("Tensor::ones: negative size 1 x -4"));
  CHECK_THROWS_WITH(D::full(-1, -1, 2.0), Contains("Tensor::full: negative size -1 x -1"));
  CHECK_THROWS_WITH(D::randn(-3, 2, rng), Contains("Tensor::randn: negative size"));
  CHECK_THROWS_WITH(F::uniform(gs::Shape::vector(-1), rng), Contains("Tensor::uniform: negative"));

  // Products that overflow Index, or whose bytes exceed what any array can address: refused
  // before allocating (they were std::bad_alloc, or a wrapped-around size).
  const gs::Index big = gs::Index{1} << 32;
  const gs::Index max = std::numeric_limits<gs::Index>::max();
  for (const auto& [r, c] : {std::pair{big, big}, std::pair{max, gs::Index{2}},
                             std::pair{gs::Index{2}, max}, std::pair{max, max}}) {
    INFO(r << " x " << c);
    CHECK_THROWS_WITH(F::zeros(r, c), Contains("Tensor::zeros: size ") && Contains("is too large"));
    CHECK_THROWS_AS(D::randn(r, c, rng), gs::ValueError);
  }
  // The limit is in bytes: 2^61 floats need 2^63 bytes (one more than PTRDIFF_MAX), 2^60
  // doubles as well; both pass the element count alone.
  CHECK_THROWS_WITH(F::full(gs::Index{1} << 31, gs::Index{1} << 30, 0.f), Contains("too large"));
  CHECK_THROWS_WITH(D::ones(gs::Index{1} << 30, gs::Index{1} << 30), Contains("8-byte elements"));
  CHECK_THROWS_AS(F::zeros(gs::Shape::vector(max)), gs::ValueError);

  // Zero sizes are valid: an empty tensor, as in Eigen and PyTorch.
  CHECK(F::zeros(0, 5).size() == 0);
  CHECK(D::ones(gs::Shape::vector(0)).shape() == gs::Shape::vector(0));
  CHECK(F::zeros(big, 0).size() == 0);

  // Nested braces with rows of different lengths: Eigen only asserts, and wrote past the end
  // of the storage in a release build.
  CHECK_THROWS_WITH((D{{1, 2}, {3, 4, 5}}),
                    Equals("[gradscope.value] tensor: row 1 of the braces has 3 values, row 0 has "
                           "2 (rows must have equal lengths)"));
  CHECK_THROWS_AS((F{{1, 2, 3}, {4}}), gs::ValueError);
  CHECK((D{{1, 2}, {3, 4}}).to_matrix() == gs::Matrix<double>{{1, 2}, {3, 4}});

#ifdef NDEBUG  // Eigen asserts on a negative size in a debug build; a release build makes one
  // An Eigen matrix with a negative size given to the constructor (moved in: copying it is
  // std::bad_alloc already) or to the tape.
  CHECK_THROWS_WITH(D(gs::Matrix<double>(-1, 3), 2, false), Contains("negative size -1 x 3"));
  CHECK_THROWS_AS(D::parameter(gs::Matrix<double>(-2, 3)), gs::ValueError);
  const gs::Matrix<double> negative(-1, 3);
  gs::Tape<double> tape;
  CHECK_THROWS_WITH(tape.variable(negative), Contains("negative size -1 x 3"));
  CHECK_THROWS_AS(tape.constant(negative), gs::ValueError);
  CHECK(tape.size() == 0);
#endif
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
