// The fused recurrent cells (core/recurrent_ops.hpp) against central finite differences in
// double: every input (xg of several steps, gh, the previous state), single steps and chains of
// steps that pass the state on, the way the layers of nn/recurrent.hpp use them.

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <functional>
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

void require_gradients(const Fn& f, const std::vector<M>& inputs) {
  const gs::GradCheckReport report = gs::check_gradients(f, inputs);
  INFO(report.str());
  CHECK(report.ok);
  CHECK(report.max_rel_error < 1e-6);
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

double sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

}  // namespace

TEST_CASE("rnn, lstm and gru cells pass the gradient check in every input",
          "[core][recurrent][gradcheck]") {
  for (const auto seed : gs::testing::seeds) {
    gs::Rng rng(seed);
    for (const Index B : {1, 3}) {
      for (const Index H : {1, 4}) {
        INFO("seed " << seed << ", B " << B << ", H " << H);
        const Index steps = 3, step = 1;
        for (const auto act : {gs::RnnNonlinearity::tanh, gs::RnnNonlinearity::relu}) {
          INFO("rnn_cell " << (act == gs::RnnNonlinearity::tanh ? "tanh" : "relu"));
          // relu: pre-activations kept away from the kink at 0.
          M xg = gs::testing::away_from_zero(B, steps * H, rng, 0.3, 1.5);
          M gh = gs::testing::uniform(B, H, rng, -0.1, 0.1);
          require_gradients([act](const Inputs& v) { return gs::rnn_cell(v[0], v[1], act, step); },
                            {xg, gh});
        }
        // Pre-activations in [-2, 2]: saturated gates would give gradients too small for a
        // relative comparison with finite differences.
        const M xg4 = gs::testing::uniform(B, steps * 4 * H, rng, -1, 1);
        const M gh4 = gs::testing::uniform(B, 4 * H, rng, -1, 1);
        INFO("lstm_cell with c_prev [B, H]");
        require_gradients([](const Inputs& v) { return gs::lstm_cell(v[0], v[1], v[2], step); },
                          {xg4, gh4, gs::testing::uniform(B, H, rng)});
        INFO("lstm_cell with a previous state [2B, H]");
        require_gradients([](const Inputs& v) { return gs::lstm_cell(v[0], v[1], v[2], 2); },
                          {xg4, gh4, gs::testing::uniform(2 * B, H, rng)});
        INFO("gru_cell");
        require_gradients(
            [](const Inputs& v) { return gs::gru_cell(v[0], v[1], v[2], step); },
            {gs::testing::uniform(B, steps * 3 * H, rng, -1, 1),
             gs::testing::uniform(B, 3 * H, rng, -1, 1), gs::testing::uniform(B, H, rng)});
      }
    }
  }
}

TEST_CASE("chains of cell steps pass the gradient check through the recurrence",
          "[core][recurrent][gradcheck]") {
  // Three steps of each cell, unrolled as the layers do: x projected once for all steps, the
  // recurrent product per step, the state passed on, every step's output used.
  gs::Rng rng(17);
  const Index B = 2, I = 3, H = 2, steps = 3;
  const M x = gs::testing::uniform(B * steps, I, rng);  // [B*steps, I]: one row per (b, t)
  const auto unroll = [&](Index gates, const auto& step_fn) {
    return [=](const Inputs& v) {
      // v: x, W_ih [g*H, I], W_hh [g*H, H], h0 [B, H] (LSTM: c0 too)
      const T xg = gs::reshape(gs::linear(v[0], v[1]), B, steps * gates * H);
      T h = v[3], state = v.size() > 4 ? v[4] : T();
      std::vector<T> outs;
      for (Index t = 0; t < steps; ++t) {
        const T gh = gs::linear(h, v[2]);
        h = step_fn(xg, gh, h, state, t);
        outs.push_back(h);
      }
      return gs::tanh(gs::stack(outs));
    };
  };
  const auto weights = [&](Index gates) {
    return std::vector<M>{x, gs::testing::uniform(gates * H, I, rng),
                          gs::testing::uniform(gates * H, H, rng), gs::testing::uniform(B, H, rng)};
  };
  INFO("rnn");
  require_gradients(
      unroll(1, [](const T& xg, const T& gh, const T&, T&,
                   Index t) { return gs::rnn_cell(xg, gh, gs::RnnNonlinearity::tanh, t); }),
      weights(1));
  INFO("gru");
  require_gradients(unroll(3, [](const T& xg, const T& gh, const T& h, T&,
                                 Index t) { return gs::gru_cell(xg, gh, h, t); }),
                    weights(3));
  INFO("lstm");
  auto lstm_inputs = weights(4);
  lstm_inputs.push_back(gs::testing::uniform(B, H, rng));  // c0
  require_gradients(unroll(4,
                           [](const T& xg, const T& gh, const T& h, T& state, Index t) {
                             state = gs::lstm_cell(xg, gh, state, t);
                             return gs::slice_rows(state, 0, h.rows());
                           }),
                    lstm_inputs);
}

TEST_CASE("cell values follow the gate equations", "[core][recurrent]") {
  // One batch row, H = 1: the equations by hand.
  const double xi = 0.3, xf = -0.2, xg = 0.5, xo = 0.1, hi = 0.05, hf = 0.4, hg = -0.3, ho = 0.2;
  const double c0 = 0.7;
  const T state = gs::lstm_cell(T{{xi, xf, xg, xo}}, T{{hi, hf, hg, ho}}, T{{c0}});
  const double c = sigmoid(xf + hf) * c0 + sigmoid(xi + hi) * std::tanh(xg + hg);
  const double h = sigmoid(xo + ho) * std::tanh(c);
  CHECK(state.value()(0, 0) == Approx(h).epsilon(1e-14));
  CHECK(state.value()(1, 0) == Approx(c).epsilon(1e-14));
  const double r = sigmoid(xi + hi), z = sigmoid(xf + hf), n = std::tanh(xg + r * hg);
  CHECK(gs::gru_cell(T{{xi, xf, xg}}, T{{hi, hf, hg}}, T{{c0}}).item() ==
        Approx((1 - z) * n + z * c0).epsilon(1e-14));
  CHECK(gs::rnn_cell(T{{xi, -4.0}}, T{{hi}}, gs::RnnNonlinearity::relu, 1).item() == 0.0);
  // xg of several steps in its two layouts, [B, steps*G*H] and [steps*B, G*H] (row b*steps + t):
  // the same memory, the same step blocks.
  gs::Rng rng(9);
  const M wide = gs::testing::uniform(2, 3 * 8, rng), gh = gs::testing::uniform(2, 8, rng);
  const M tall = Eigen::Map<const M>(wide.data(), 6, 8);
  for (Index t = 0; t < 3; ++t)
    CHECK(gs::lstm_cell(T(wide), T(gh), T::zeros(2, 2), t).to_matrix() ==
          gs::lstm_cell(T(tall), T(gh), T::zeros(2, 2), t).to_matrix());
  require_gradients([](const Inputs& v) { return gs::lstm_cell(v[0], v[1], v[2], 2); },
                    {tall, gh, gs::testing::uniform(2, 2, rng)});
}

TEST_CASE("cells report mismatched shapes", "[core][recurrent][errors]") {
  const T xg = T::zeros(2, 8), gh = T::zeros(2, 8);
  CHECK_THAT(message_of([&] { gs::lstm_cell(xg, T::zeros(2, 6), T::zeros(2, 2)); }),
             Catch::Contains("lstm_cell: gh has shape [2, 6]; its width must be 4 x the hidden"));
  CHECK_THAT(message_of([&] { gs::lstm_cell(xg, gh, T::zeros(3, 2)); }),
             Catch::Contains("lstm_cell: prev has shape [3, 2]; expected c_prev [2, 2]"));
  CHECK_THAT(message_of([&] { gs::lstm_cell(xg, gh, T::zeros(2, 2), 1); }),
             Catch::Contains("lstm_cell: step 1 is outside xg [2, 8] (1 steps of width 8)"));
  CHECK_THAT(message_of([&] { gs::gru_cell(T::zeros(3, 6), T::zeros(2, 6), T::zeros(2, 2)); }),
             Catch::Contains("gru_cell: xg [3, 6] does not fit gh [2, 6]"));
  CHECK_THAT(message_of([&] { gs::gru_cell(T::zeros(2, 6), T::zeros(2, 6), T::zeros(2, 3)); }),
             Catch::Contains("gru_cell: h_prev has shape [2, 3]; expected [2, 2]"));
}
