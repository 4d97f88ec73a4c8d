// Tape<T>: recording, the reverse sweep, reset and reuse, parameters' gradient accumulation,
// NoGrad, retain_grad, seeded backward, the errors of misuse, and the check for a training loop
// that forgets reset().

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gs = gradscope;
using Catch::Matchers::Contains;
using M = gs::Matrix<double>;

TEMPLATE_TEST_CASE("a reused node receives the sum of its gradients", "[core][tape]", float,
                   double) {
  using S = TestType;
  gs::Tape<S> tape;
  // Dyadic values, so 2x + 1 is exact in floating point whatever the order of accumulation.
  const gs::Matrix<S> v{{S(0.5), S(-1.25), S(3)}, {S(2.75), S(0), S(-8)}};
  const auto x = tape.variable(v);
  const auto y = gs::add(gs::mul(x, x), x);  // x*x + x: x is used three times
  tape.backward(gs::sum(y));
  const gs::Matrix<S> expected = (S(2) * v.array() + S(1)).matrix();
  CHECK(gs::Matrix<S>(x.grad()) == expected);
}

TEST_CASE("a 100,000-op chain runs backward without recursion", "[core][tape]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{1.5}});
  auto y = x;
  const double k = 1.00001;
  double value = 1.5, slope = 1;
  for (int i = 0; i < 50'000; ++i) {
    y = gs::add_scalar(gs::scale(y, k), 0.5);  // two ops per step
    value = value * k + 0.5;
    slope = slope * k;
  }
  CHECK(tape.size() == 100'001);
  CHECK(y.item() == Approx(value).epsilon(1e-12));
  tape.backward(y);
  // d y / d x = k^50000.
  CHECK(x.grad()(0, 0) == Approx(slope).epsilon(1e-12));
  CHECK(x.grad()(0, 0) == Approx(std::pow(k, 50'000)).epsilon(1e-9));
}

TEST_CASE("a reset tape is reused: values stay right and the arena stops growing",
          "[core][tape][reset]") {
  gs::Tape<double> tape;
  auto W = gs::Tensor<double>::parameter(M{{1, 2}, {3, 4}});
  std::size_t capacity_after_first = 0;
  for (int step = 0; step < 5; ++step) {
    tape.reset();
    CHECK(tape.size() == 0);
    CHECK(tape.arena_used() == 0);
    const double s = step + 1;
    const auto x = tape.variable(M{{s, -s}});
    const auto y = gs::sum(gs::matmul(x, W));  // [s, -s] W = [-2s, -2s]
    CHECK(y.item() == -4 * s);
    W.zero_grad();
    tape.backward(y);
    CHECK(M(W.grad()) == M{{s, s}, {-s, -s}});
    CHECK(M(x.grad()) == M{{3, 7}});
    if (step == 0)
      capacity_after_first = tape.arena_capacity();
    else
      CHECK(tape.arena_capacity() == capacity_after_first);
  }
  CHECK(capacity_after_first > 0);
}

TEST_CASE("tensors from before a reset throw UsageError", "[core][tape][reset][errors]") {
  gs::Tape<double> tape;
  auto x = tape.variable(M{{1, 2}});
  auto y = gs::exp(x);
  auto loss = gs::sum(y);
  const auto generation = tape.generation();
  tape.reset();
  CHECK(tape.generation() != generation);
  CHECK_THROWS_AS(x.value(), gs::UsageError);
  CHECK_THROWS_WITH(y.value(), Contains("reset"));
  CHECK_THROWS_AS(y.shape(), gs::UsageError);
  CHECK_THROWS_AS(x.grad(), gs::UsageError);
  CHECK_THROWS_AS(gs::add(x, x), gs::UsageError);
  CHECK_THROWS_AS(tape.backward(loss), gs::UsageError);
  CHECK_THROWS_AS(y.register_hook([](const auto&) {}), gs::UsageError);
  CHECK_THROWS_AS(y.retain_grad(), gs::UsageError);
  // Recording again after the reset works, and the new node may reuse the old index.
  const auto x2 = tape.variable(M{{3}});
  CHECK(x2.item() == 3);
  CHECK_THROWS_AS(x.item(), gs::UsageError);
}

TEST_CASE("tensors of a tape destroyed and rebuilt in place throw UsageError",
          "[core][tape][errors]") {
  std::optional<gs::Tape<double>> tape;
  tape.emplace();
  const auto x = tape->variable(M{{1}});
  CHECK(x.item() == 1);
  const auto generation = tape->generation();
  tape.reset();
  tape.emplace();  // a new tape at the same address: the generation tells them apart
  CHECK(tape->generation() != generation);
  CHECK_THROWS_AS(x.item(), gs::UsageError);
  CHECK_THROWS_AS(gs::add(tape->variable(M{{1}}), x), gs::UsageError);
}

TEST_CASE("parameter gradients accumulate over backward calls until zero_grad",
          "[core][tape][parameter]") {
  auto w = gs::Tensor<double>::parameter(M{{1, -2, 3}});
  const M x{{0.5, 0.25, 2}};
  auto step = [&] {
    gs::Tape<double> tape;
    tape.backward(gs::sum(gs::mul(w, gs::Tensor<double>(x))));
  };
  step();
  CHECK(M(w.grad()) == x);
  step();
  CHECK(M(w.grad()) == 2 * x);

  // Two backward calls on one tape accumulate too.
  {
    gs::Tape<double> tape;
    const auto loss = gs::sum(gs::square(w));
    tape.backward(loss);
    tape.backward(loss);
  }
  CHECK(M(w.grad()) == (2 * x + 4 * M{{1, -2, 3}}));

  w.zero_grad();
  CHECK(w.grad().isZero());
  step();
  CHECK(M(w.grad()) == x);
}

TEST_CASE("a parameter used twice in one graph gets one leaf and the summed gradient",
          "[core][tape][parameter]") {
  auto w = gs::Tensor<double>::parameter(M{{2}});
  gs::Tape<double> tape;
  const auto y = gs::add(gs::mul(w, w), gs::scale(w, 3));  // w^2 + 3 w
  CHECK(tape.size() == 4);                                 // leaf, mul, scale, add
  tape.backward(y);
  CHECK(w.grad()(0, 0) == 7);
}

TEST_CASE("NoGrad: nothing is recorded and no gradient flows", "[core][tape][nograd]") {
  auto w = gs::Tensor<double>::parameter(M{{1, 2}});
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{3, 4}});
  CHECK(gs::grad_enabled());
  gs::Tensor<double> detached_w, detached_x;
  {
    gs::NoGrad no_grad;
    CHECK_FALSE(gs::grad_enabled());
    detached_w = gs::mul(w, w);
    detached_x = gs::mul(x, x);
    {
      gs::NoGrad nested;
      CHECK_FALSE(gs::grad_enabled());
    }
    CHECK_FALSE(gs::grad_enabled());
  }
  CHECK(gs::grad_enabled());

  // On a parameter with no tape input: an eager constant.
  CHECK(detached_w.is_persistent());
  CHECK_FALSE(detached_w.requires_grad());
  CHECK(detached_w.to_matrix() == M{{1, 4}});
  CHECK_THROWS_WITH(tape.backward(gs::sum(detached_w)), Contains("not recorded on a tape"));
  // On a tape variable: a tape node without gradient.
  CHECK_FALSE(detached_x.requires_grad());
  CHECK_THROWS_AS(tape.backward(gs::sum(detached_x)), gs::UsageError);
  CHECK_THROWS_WITH(tape.backward(gs::sum(detached_x)), Contains("does not depend"));

  // Mixed: the NoGrad'd path contributes no gradient.
  const auto loss = gs::sum(gs::add(gs::mul(w, detached_w), gs::mul(x, detached_x)));
  tape.backward(loss);
  CHECK(M(w.grad()) == M{{1, 4}});   // d(w * c)/dw = c, not 3 w^2
  CHECK(M(x.grad()) == M{{9, 16}});  // d(x * c)/dx = c, not 3 x^2
}

TEST_CASE("retain_grad keeps the gradient of an intermediate", "[core][tape][retain]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{1, 2}, {3, 4}});
  auto h = gs::scale(x, 3);
  auto kept = gs::square(h);
  const auto handle = kept.retain_grad();
  CHECK(handle.active());
  tape.backward(gs::sum(kept));
  CHECK_THROWS_AS(h.grad(), gs::UsageError);
  CHECK_THROWS_WITH(h.grad(), Contains("retain_grad") && Contains("scale"));
  CHECK((kept.grad().array() == 1).all());
  CHECK(M(x.grad()) == (18 * M{{1, 2}, {3, 4}}));

  // Removing the handle before backward forgets it again.
  gs::Tape<double> tape2;
  const auto x2 = tape2.variable(M{{1}});
  auto h2 = gs::exp(x2);
  auto handle2 = h2.retain_grad();
  handle2.remove();
  CHECK_FALSE(handle2.active());
  tape2.backward(gs::sum(h2));
  CHECK_THROWS_AS(h2.grad(), gs::UsageError);
}

TEST_CASE("retain_grad on a parameter is a no-op handle", "[core][tape][retain]") {
  auto w = gs::Tensor<double>::parameter(M{{1}});
  auto handle = w.retain_grad();
  CHECK(handle.active());
  handle.remove();
  CHECK(w.grad().isZero());
}

TEST_CASE("grad() of a tensor that needs no gradient throws", "[core][tape][errors]") {
  gs::Tape<double> tape;
  const auto c = tape.constant(M{{1, 2}});
  CHECK_FALSE(c.requires_grad());
  CHECK_THROWS_AS(c.grad(), gs::UsageError);
  CHECK_THROWS_AS(gs::Tensor<double>::zeros(1, 1).grad(), gs::UsageError);
}

TEST_CASE("a variable the loss does not reach has a zero gradient", "[core][tape]") {
  gs::Tape<double> tape;
  const auto used = tape.variable(M{{2}});
  const auto unused = tape.variable(M{{5, 6}});
  tape.backward(gs::square(used));
  CHECK(used.grad()(0, 0) == 4);
  CHECK(unused.grad().isZero());
}

TEST_CASE("backward(y, seed) back-propagates a non-scalar output", "[core][tape][seed]") {
  gs::Tape<double> tape;
  const M v{{1, 2, 3}, {4, 5, 6}};
  const auto x = tape.variable(v);
  const auto y = gs::square(x);
  const M seed{{1, 0, -1}, {0.5, 2, 0}};
  tape.backward(y, seed);
  CHECK(M(x.grad()) == (2 * v.array() * seed.array()).matrix());

  // backward(y) without a seed needs a scalar.
  CHECK_THROWS_AS(tape.backward(y), gs::UsageError);
  CHECK_THROWS_WITH(tape.backward(y), Contains("[2, 3]") && Contains("seed"));
  // The seed must have y's shape.
  CHECK_THROWS_AS(tape.backward(y, M::Ones(3, 2)), gs::ShapeError);
  CHECK_THROWS_WITH(tape.backward(y, M::Ones(3, 2)), Contains("[3, 2]") && Contains("[2, 3]"));
}

TEST_CASE("backward(y, seed) reads a strided seed by its coefficients", "[core][tape][seed]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{1, 1}, {1, 1}});
  const auto y = gs::scale(x, 1.0);
  const M big{{1, 2, 3}, {4, 5, 6}};
  tape.backward(y, big.leftCols(2));  // a view with an outer stride of 3
  CHECK(M(x.grad()) == M{{1, 2}, {4, 5}});
}

TEST_CASE("backward on a loss computed without a tape throws a clear UsageError",
          "[core][tape][errors]") {
  auto w = gs::Tensor<double>::parameter(M{{1, 2}});
  REQUIRE(gs::Tape<double>::current() == nullptr);
  const auto loss = gs::sum(gs::square(w));  // no tape alive: evaluated eagerly
  CHECK(loss.is_persistent());
  gs::Tape<double> tape;
  CHECK_THROWS_AS(tape.backward(loss), gs::UsageError);
  CHECK_THROWS_WITH(tape.backward(loss),
                    Contains("not recorded on a tape") && Contains("no gradscope::Tape was alive"));
  CHECK(w.grad().isZero());
  const gs::Tensor<double> undefined;
  CHECK_THROWS_WITH(tape.backward(undefined), Contains("undefined"));
}

TEST_CASE("tensors of different tapes cannot be mixed", "[core][tape][errors]") {
  gs::Tape<double> a;
  const auto xa = a.variable(M{{1}});
  gs::Tape<double> b;
  const auto xb = b.variable(M{{2}});
  CHECK_THROWS_AS(gs::add(xa, xb), gs::UsageError);
  CHECK_THROWS_WITH(gs::mul(xa, xb), Contains("different tapes") && Contains("mul"));
  const auto yb = gs::square(xb);
  CHECK_THROWS_WITH(a.backward(yb), Contains("not recorded on this tape"));
  CHECK_NOTHROW(b.backward(yb));
  CHECK(xb.grad()(0, 0) == 4);
}

TEST_CASE("the current tape is the innermost live one", "[core][tape]") {
  CHECK(gs::Tape<double>::current() == nullptr);
  {
    gs::Tape<double> outer;
    CHECK(gs::Tape<double>::current() == &outer);
    CHECK(gs::Tape<float>::current() == nullptr);  // one current tape per scalar type
    auto w = gs::Tensor<double>::parameter(M{{1}});
    {
      gs::Tape<double> inner;
      CHECK(gs::Tape<double>::current() == &inner);
      const auto y = gs::exp(w);
      CHECK(y.tape() == &inner);
    }
    CHECK(gs::Tape<double>::current() == &outer);
    CHECK(gs::exp(w).tape() == &outer);
  }
  CHECK(gs::Tape<double>::current() == nullptr);
}

TEST_CASE("tapes destroyed out of order leave no dangling current tape", "[core][tape]") {
  auto first = std::make_unique<gs::Tape<double>>();
  auto second = std::make_unique<gs::Tape<double>>();
  CHECK(gs::Tape<double>::current() == second.get());
  first.reset();  // not the current tape
  CHECK(gs::Tape<double>::current() == second.get());
  second.reset();
  CHECK(gs::Tape<double>::current() == nullptr);

  auto a = std::make_unique<gs::Tape<double>>();
  auto b = std::make_unique<gs::Tape<double>>();
  auto c = std::make_unique<gs::Tape<double>>();
  b.reset();  // from the middle
  CHECK(gs::Tape<double>::current() == c.get());
  c.reset();
  CHECK(gs::Tape<double>::current() == a.get());
  a.reset();
  CHECK(gs::Tape<double>::current() == nullptr);
}

TEST_CASE("the listing names every node, its inputs and its label", "[core][tape]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{1, 2}});
  gs::Tensor<double> y;
  {
    gs::LabelScope label("block.0");
    y = gs::relu(x);
  }
  const std::string listing = tape.listing();
  CHECK_THAT(listing, Contains("0 variable [1, 2]"));
  CHECK_THAT(listing, Contains("1 relu [1, 2] <- 0  @block.0"));
}

TEST_CASE("gradients of a variable come from the last backward call", "[core][tape]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{3}});
  const auto first = gs::square(x);  // d/dx = 6
  const auto x2 = tape.variable(M{{5}});
  const auto second = gs::square(x2);  // d/dx2 = 10
  tape.backward(second);
  CHECK(x2.grad()(0, 0) == 10);
  tape.backward(first);
  CHECK(x.grad()(0, 0) == 6);
  CHECK(x2.grad()(0, 0) == 0);  // the last loss does not depend on x2
}

// ---- the sweep's buffer economy: first contributions assign, add passes its gradient buffer
// ---- through, and dead gradient buffers are recycled. None of it may change a gradient.

TEST_CASE("a retained add output keeps its own gradient when an input takes the buffer",
          "[core][tape][retain]") {
  gs::Tape<double> tape;
  const auto a = tape.variable(M{{1, -2}, {0.5, 3}});
  const auto b = tape.variable(M{{2, 1}, {-1, 4}});
  auto z = gs::add(a, b);
  const auto handle = z.retain_grad();
  // a is used again downstream of z's gradient: if z's buffer were handed to a, the retained
  // gradient of z would pick up a's other contribution.
  const auto y = gs::add(gs::scale(z, 2), gs::square(a));
  tape.backward(gs::sum(y));
  CHECK((z.grad().array() == 2).all());
  CHECK(M(a.grad()) == (2 + 2 * M{{1, -2}, {0.5, 3}}.array()).matrix());
  CHECK((b.grad().array() == 2).all());
}

TEST_CASE("x + x and chains of adds give the summed gradients", "[core][tape]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{1.5, -2}});
  const auto s = gs::add(x, x);                                 // both inputs are one node
  const auto t = gs::add(gs::add(s, x), gs::add_scalar(x, 1));  // x reaches t four ways
  tape.backward(gs::sum(gs::mul(t, t)));
  // t = 4x + 1, d sum(t^2) / dx = 2 t * 4
  const M expected = (8 * (4 * M{{1.5, -2}}.array() + 1)).matrix();
  CHECK(M(x.grad()).isApprox(expected, 1e-15));
}

TEST_CASE("hooks see every intermediate gradient although the buffers are recycled",
          "[core][tape][hooks]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{0.25, -0.5, 1}});
  auto y = x;
  std::vector<gs::Tensor<double>> chain;
  std::vector<M> seen(20);
  std::vector<gs::HookHandle> handles;
  for (int i = 0; i < 20; ++i) {
    y = gs::tanh(gs::scale(y, 1.5));
    auto yi = y;
    handles.push_back(yi.register_hook([&seen, i](const gs::ConstMatrixMap<double>& g) {
      seen[static_cast<std::size_t>(i)] = g;
    }));
    chain.push_back(y);
  }
  tape.backward(gs::sum(y));
  // Recompute by hand: g_19 = 1, g_{i-1} = g_i * (1 - y_i^2) * 1.5.
  M g = M::Ones(1, 3);
  for (int i = 19; i >= 0; --i) {
    INFO("op " << i);
    CHECK(seen[static_cast<std::size_t>(i)].isApprox(g, 1e-14));
    const M yi = chain[static_cast<std::size_t>(i)].value();
    g = (g.array() * (1 - yi.array().square()) * 1.5).matrix();
  }
  CHECK(M(x.grad()).isApprox(g, 1e-14));
}

TEST_CASE("a long chain's backward reuses gradient buffers instead of one per node",
          "[core][tape]") {
  gs::Tape<float> tape;
  const gs::Index n = 32;
  const auto x = tape.variable(gs::Matrix<float>::Constant(n, n, 0.1f));
  auto y = x;
  const int ops = 200;
  for (int i = 0; i < ops; ++i) y = gs::tanh(gs::add_scalar(y, 0.01f));
  const std::size_t before = tape.arena_used();
  tape.backward(y, gs::Matrix<float>::Ones(n, n));
  const std::size_t buffer = static_cast<std::size_t>(n * n) * sizeof(float);
  // One buffer per node would be 2 * ops buffers; a few suffice.
  INFO("arena bytes for the backward: " << tape.arena_used() - before << ", one buffer " << buffer);
  CHECK(tape.arena_used() - before <= 4 * buffer);
  CHECK(x.grad().allFinite());
  CHECK(x.grad()(0, 0) > 0);
}

TEST_CASE("an elementwise rule hands its gradient buffer to its input only when it is dead",
          "[core][tape][retain]") {
  // 1x1 takes the scalar path of the elementwise rules, 2x3 the array path.
  for (const gs::Index cols : {1, 3}) {
    INFO("shape [" << (cols == 1 ? 1 : 2) << ", " << cols << "]");
    const gs::Index rows = cols == 1 ? 1 : 2;
    M x0(rows, cols);
    for (gs::Index i = 0; i < x0.size(); ++i) x0.data()[i] = 0.2 + 0.15 * static_cast<double>(i);
    gs::Tape<double> tape;
    const auto x = tape.variable(x0);
    const auto a = gs::tanh(x);  // used twice: by a * a and by exp
    const auto d = gs::mul(a, a);
    // b is swept before d, while a has no gradient yet, and b is retained: b's buffer must not
    // become a's (c's buffer does become b's).
    auto b = gs::exp(a);
    const auto keep = b.retain_grad();
    const auto c = gs::sigmoid(b);
    tape.backward(gs::sum(gs::add(c, gs::scale(d, 0.5))));
    // y = sigmoid(e^a) + a^2 / 2: dy/db = s (1 - s), dy/da = s (1 - s) e^a + a, dx = da (1 - a^2)
    const Eigen::ArrayXXd av = x0.array().tanh();
    const Eigen::ArrayXXd bv = av.exp();
    const Eigen::ArrayXXd s = 1 / (1 + (-bv).exp());
    const Eigen::ArrayXXd db = s * (1 - s);
    const Eigen::ArrayXXd dx = (db * bv + av) * (1 - av.square());
    CHECK(M(b.grad()).isApprox(db.matrix(), 1e-14));
    CHECK(M(x.grad()).isApprox(dx.matrix(), 1e-14));
    // c handed its buffer to b: retained only after backward, c has no gradient to show.
    auto c_late = c;
    const auto late = c_late.retain_grad();
    CHECK((c_late.grad().array() == 0).all());
  }
}

// ---- a training loop that forgets tape.reset() ----

namespace {

/// Captures what the process writes to stderr (file descriptor 2) while alive.
class StderrCapture {
 public:
  StderrCapture() : file_(std::tmpfile()) {
    REQUIRE(file_ != nullptr);
    std::fflush(stderr);
    saved_ = ::dup(2);
    ::dup2(::fileno(file_), 2);
  }
  ~StderrCapture() {
    restore();
    std::fclose(file_);
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  /// Everything written so far (stops the capture).
  std::string text() {
    restore();
    std::string out;
    std::rewind(file_);
    for (int c; (c = std::fgetc(file_)) != EOF;) out += static_cast<char>(c);
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  std::FILE* file_;
  int saved_ = -1;
};

/// One training step of a loop: forward of a small model from the parameter w, backward; no
/// reset unless asked.
void train_step(gs::Tape<double>& tape, const gs::Tensor<double>& w, int step, bool reset) {
  if (reset) tape.reset();
  const gs::Tensor<double> x(M{{0.5 + step, 0.25, -1}});
  tape.backward(gs::sum(gs::tanh(gs::mul(w, x))));
}

constexpr int limit = static_cast<int>(gs::Tape<double>::fresh_backward_limit);

}  // namespace

TEST_CASE("a loop that never resets its tape gets a UsageError (ResetCheck::error)",
          "[core][tape][reset][errors]") {
  auto w = gs::Tensor<double>::parameter(M{{1, -2, 3}});
  gs::Tape<double> tape;
  tape.set_reset_check(gs::ResetCheck::error);
  int failed_at = -1;
  std::string message;
  M grad_before;
  for (int step = 0; step < 100 && failed_at < 0; ++step) {
    grad_before = w.grad();
    try {
      train_step(tape, w, step, false);
    } catch (const gs::UsageError& e) {
      failed_at = step;
      message = e.what();
    }
  }
  // The first backward is normal; each later one runs on a graph recorded after the previous
  // backward; after `limit` of those the next one is refused.
  CHECK(failed_at == limit);
  INFO(message);
  CHECK(message.rfind("[gradscope.usage] backward:", 0) == 0);
  CHECK_THAT(message, Contains("tape.reset()"));
  CHECK_THAT(message, Contains("set_reset_check(gs::ResetCheck::off)"));
  CHECK_THAT(message, Contains(std::to_string(tape.size()) + " nodes"));
  // The refused backward did not touch the gradients.
  CHECK(M(w.grad()) == grad_before);
  // With reset() at the start of each step the loop runs on.
  for (int step = 0; step < 100; ++step) REQUIRE_NOTHROW(train_step(tape, w, step, true));
}

TEST_CASE("ResetCheck::warn warns once per tape on stderr and goes on", "[core][tape][reset]") {
  auto w = gs::Tensor<double>::parameter(M{{1, -2, 3}});
  std::string text;
  {
    StderrCapture capture;
    gs::Tape<double> tape;
    tape.set_reset_check(gs::ResetCheck::warn);
    for (int step = 0; step < 3 * limit; ++step) train_step(tape, w, step, false);
    text = capture.text();
  }
  INFO(text);
  CHECK(text.rfind("gradscope warning: backward:", 0) == 0);
  CHECK_THAT(text, Contains("tape.reset()"));
  std::size_t count = 0;
  for (auto p = text.find("gradscope warning"); p != std::string::npos;
       p = text.find("gradscope warning", p + 1))
    ++count;
  CHECK(count == 1);
  // The default: an error in builds without NDEBUG, a warning with it.
  gs::Tape<double> tape;
#ifdef NDEBUG
  CHECK(tape.reset_check() == gs::ResetCheck::warn);
#else
  CHECK(tape.reset_check() == gs::ResetCheck::error);
#endif
}

TEST_CASE("legitimate uses of several backward passes per tape do not trip the reset check",
          "[core][tape][reset]") {
  auto w = gs::Tensor<double>::parameter(M{{1, -2, 3}});
  gs::Tape<double> tape;
  tape.set_reset_check(gs::ResetCheck::error);
  // Backward twice (or many times) on one loss.
  const auto loss = gs::sum(gs::square(w));
  for (int k = 0; k < 4 * limit; ++k) REQUIRE_NOTHROW(tape.backward(loss));
  // Many losses from one recorded intermediate (rows of a Jacobian, several heads): each new
  // graph reuses what was recorded before the previous backward.
  tape.reset();
  const auto y = gs::tanh(gs::mul(w, gs::Tensor<double>(M{{0.5, 0.25, 2}})));
  for (int k = 0; k < 4 * limit; ++k)
    REQUIRE_NOTHROW(tape.backward(gs::sum(gs::scale(y, static_cast<double>(k + 1)))));
  for (int k = 0; k < 4 * limit; ++k) {
    M seed = M::Zero(1, 3);
    seed(0, k % 3) = 1;
    REQUIRE_NOTHROW(tape.backward(y, seed));
  }
  // Gradient accumulation over micro-batches, with a reset per optimiser step.
  for (int step = 0; step < 10; ++step) {
    tape.reset();
    for (int micro = 0; micro < limit; ++micro) REQUIRE_NOTHROW(train_step(tape, w, micro, false));
  }
  // ResetCheck::off: the user takes charge.
  tape.reset();
  tape.set_reset_check(gs::ResetCheck::off);
  for (int step = 0; step < 4 * limit; ++step) REQUIRE_NOTHROW(train_step(tape, w, step, false));
}
