// Anomaly mode: the first op whose forward value or backward gradient is not finite throws a
// NumericalError naming the op, the direction, the shapes and the label.

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <cmath>
#include <string>

namespace gs = gradscope;
using Catch::Matchers::Contains;
using M = gs::Matrix<double>;

TEST_CASE("anomaly mode is off by default and scoped by DetectAnomaly", "[core][anomaly]") {
  CHECK_FALSE(gs::anomaly_enabled());
  {
    gs::DetectAnomaly on;
    CHECK(gs::anomaly_enabled());
    {
      gs::DetectAnomaly off(false);
      CHECK_FALSE(gs::anomaly_enabled());
    }
    CHECK(gs::anomaly_enabled());
  }
  CHECK_FALSE(gs::anomaly_enabled());
}

TEST_CASE("without anomaly mode non-finite values pass silently", "[core][anomaly]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{-1, 0}});
  const auto y = gs::log(x);
  CHECK(std::isnan(y.value()(0, 0)));
  CHECK(std::isinf(y.value()(0, 1)));
  CHECK_NOTHROW(tape.backward(gs::sum(gs::sqrt(gs::square(x)))));
}

TEST_CASE("anomaly mode names the op that made the first NaN in forward", "[core][anomaly]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{1, -1, 2}});
  gs::DetectAnomaly anomaly;
  const auto ok = gs::exp(x);
  CHECK(ok.value().allFinite());
  // log(-1) is the first NaN; exp downstream of it is never reached.
  CHECK_THROWS_AS(gs::exp(gs::log(x)), gs::NumericalError);
  CHECK_THROWS_WITH(gs::exp(gs::log(x)), Contains("'log'") && Contains("forward") &&
                                             Contains("[1, 3]") &&
                                             Catch::Matchers::StartsWith("[gradscope.numerical]"));
}

TEST_CASE("anomaly mode checks eager ops too", "[core][anomaly]") {
  gs::DetectAnomaly anomaly;
  const auto c = gs::Tensor<double>::vector({1, 0});
  CHECK_THROWS_WITH(gs::div(c, gs::Tensor<double>::scalar(0)),
                    Contains("'div'") && Contains("forward"));
}

TEST_CASE("anomaly mode names the op that made the first non-finite gradient in backward",
          "[core][anomaly]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{0, 1}});
  // sqrt(0) = 0 is finite, but its derivative 1 / (2 sqrt(0)) is infinite. The ops after sqrt
  // (exp, sum) have finite gradients, so sqrt is the one to blame.
  const auto loss = gs::sum(gs::exp(gs::sqrt(x)));
  gs::DetectAnomaly anomaly;
  CHECK_THROWS_AS(tape.backward(loss), gs::NumericalError);
  CHECK_THROWS_WITH(tape.backward(loss),
                    Contains("'sqrt'") && Contains("backward") && Contains("[1, 2]"));
}

TEST_CASE("anomaly messages carry the label of the LabelScope", "[core][anomaly]") {
  CHECK(gs::current_label() == nullptr);
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{0, 4}});
  gs::Tensor<double> loss;
  {
    gs::LabelScope outer("encoder");
    {
      gs::LabelScope label("encoder.2.dense");
      CHECK(std::string(gs::current_label()) == "encoder.2.dense");
      loss = gs::sum(gs::sqrt(x));
    }
    CHECK(std::string(gs::current_label()) == "encoder");
  }
  CHECK(gs::current_label() == nullptr);

  gs::DetectAnomaly anomaly;
  // Backward runs after the scope closed: the label was recorded on the node.
  CHECK_THROWS_WITH(tape.backward(loss), Contains("'sqrt'") && Contains("encoder.2.dense"));
  {
    gs::LabelScope label("head.softmax");
    CHECK_THROWS_WITH(gs::log(gs::neg(x)),
                      Contains("'log'") && Contains("forward") && Contains("head.softmax"));
  }
}

TEST_CASE("anomaly mode reports infinities as well as NaNs", "[core][anomaly]") {
  gs::Tape<double> tape;
  const auto x = tape.variable(M{{800}});
  gs::DetectAnomaly anomaly;
  CHECK_THROWS_WITH(gs::exp(x), Contains("'exp'") && Contains("forward"));
}

TEST_CASE("anomaly errors are gradscope errors", "[core][anomaly][errors]") {
  gs::DetectAnomaly anomaly;
  try {
    (void)gs::log(gs::Tensor<double>::scalar(-1));
    FAIL("log(-1) did not throw in anomaly mode");
  } catch (const gs::Error& e) {
    CHECK(dynamic_cast<const gs::NumericalError*>(&e) != nullptr);
  }
}
