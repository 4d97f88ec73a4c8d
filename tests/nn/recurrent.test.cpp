// Recurrent layers (nn/recurrent.hpp): PyTorch's outputs for the same weights, backpropagation
// through time against finite differences, the module machinery, initialisation, learning inside
// Sequential, truncated BPTT and error messages.

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "nn_test_util.hpp"

namespace gs = gradscope;
namespace nn = gradscope::nn;
using gs::Index;
using M = gs::Matrix<double>;
using T = gs::Tensor<double>;

namespace {

/// t[k] = 0.5 sin(0.7 k + offset) over the row-major elements: the closed-form values
/// tests/nn/reference/recurrent_reference.py gives PyTorch's parameters and inputs.
M filled(Index rows, Index cols, double offset) {
  M m(rows, cols);
  for (Index k = 0; k < m.size(); ++k) m.data()[k] = 0.5 * std::sin(0.7 * double(k) + offset);
  return m;
}

void fill_parameters(nn::Module<double>& m) {
  int i = 0;
  for (auto& p : m.named_parameters()) {
    p.tensor.mutable_value() = filled(p.tensor.rows(), p.tensor.cols(), 0.1 * i++);
  }
}

/// A state [L, B, H] filled as above, split into one [B, H] tensor per layer.
std::vector<T> state_of(Index L, Index B, Index H, double offset) {
  const M all = filled(L * B, H, offset);
  std::vector<T> out;
  for (Index l = 0; l < L; ++l) out.emplace_back(M(all.middleRows(l * B, B)));
  return out;
}

M flat(std::initializer_list<double> v, Index rows) {
  M m(rows, static_cast<Index>(v.size()) / rows);
  std::copy(v.begin(), v.end(), m.data());
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

void require_close(const M& a, const M& b, double tol) {
  INFO("ours\n" << a << "\nreference\n" << b);
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  CHECK((a - b).cwiseAbs().maxCoeff() < tol);
}

}  // namespace

TEST_CASE("LSTM and GRU match PyTorch's outputs for the same weights to 1e-12",
          "[nn][recurrent][reference]") {
  // B 2, I 3, H 2, T 3, 2 layers; figures from tests/nn/reference/recurrent_reference.py
  // (PyTorch 1.13.1, float64).
  const Index B = 2, I = 3, H = 2, steps = 3, L = 2;
  const M x = filled(B, steps * I, 1.0);  // [B, T, I] row-major is our [B, T*I]
  SECTION("LSTM") {
    nn::LSTM<double> lstm(I, H, {.num_layers = L});
    fill_parameters(lstm);
    const gs::nn::RecurrentState<double> s0{state_of(L, B, H, 2.0), state_of(L, B, H, 3.0)};
    const auto one = lstm(T(M(x.leftCols(I))), s0);
    require_close(one.output.to_matrix(),
                  flat({-0.094290501465882734, -0.19955845541830822, 0.027527909535817324,
                        -0.069621812278225281},
                       B),
                  1e-12);
    const auto seq = lstm(T(x), s0);
    require_close(seq.output.to_matrix(),
                  flat({-0.094290501465882734, -0.19955845541830822, -0.12728538730003389,
                        -0.26989985285163759, -0.14470315678298029, -0.3201500676903935,
                        0.027527909535817324, -0.069621812278225281, -0.038524498858644639,
                        -0.21538773175431586, -0.085445715214326173, -0.29335995825221695},
                       B),
                  1e-12);
    const M hn = flat(
        {0.011820932090645992, -0.15379628853285696, -0.032704274597008857, -0.18417345534694635,
         -0.14470315678298029, -0.3201500676903935, -0.085445715214326173, -0.29335995825221695},
        L * B);
    const M cn = flat(
        {0.042803982551901057, -0.69940250541492233, -0.12040617835941243, -0.87705511141323877,
         -0.59505809372452378, -1.1087325282292992, -0.32470747782426995, -0.97328644994121283},
        L * B);
    for (Index l = 0; l < L; ++l) {
      require_close(seq.state.h[static_cast<std::size_t>(l)].to_matrix(), hn.middleRows(l * B, B),
                    1e-12);
      require_close(seq.state.c[static_cast<std::size_t>(l)].to_matrix(), cn.middleRows(l * B, B),
                    1e-12);
    }
  }
  SECTION("GRU") {
    nn::GRU<double> gru(I, H, {.num_layers = L});
    fill_parameters(gru);
    const gs::nn::RecurrentState<double> s0{state_of(L, B, H, 2.0), {}};
    require_close(gru(T(M(x.leftCols(I))), s0).output.to_matrix(),
                  flat({-0.45026806694048782, -0.47311178398227516, -0.10978413081395311,
                        -0.087396347573846511},
                       B),
                  1e-12);
    const auto seq = gru(T(x), s0);
    require_close(seq.output.to_matrix(),
                  flat({-0.45026806694048782, -0.47311178398227516, -0.41878881352915737,
                        -0.55704234484675674, -0.39573290791960752, -0.61946271450095192,
                        -0.10978413081395311, -0.087396347573846511, -0.16307340353562103,
                        -0.31635978470410808, -0.20279692748518319, -0.46485250521431853},
                       B),
                  1e-12);
    const M hn = flat(
        {0.19036254179020767, -0.12954580118608777, -0.0064432651623051174, -0.40348951298388325,
         -0.39573290791960752, -0.61946271450095192, -0.20279692748518319, -0.46485250521431853},
        L * B);
    for (Index l = 0; l < L; ++l)
      require_close(seq.state.h[static_cast<std::size_t>(l)].to_matrix(), hn.middleRows(l * B, B),
                    1e-12);
  }
}

TEST_CASE(
    "3-layer LSTM, GRU and RNN over 10 steps pass the gradient check in the inputs, the "
    "initial state and every parameter",
    "[nn][recurrent][gradcheck]") {
  const Index B = 2, I = 3, H = 3, steps = 10, L = 3;
  gs::Rng rng(42);
  for (const auto kind : {nn::CellKind::lstm, nn::CellKind::gru, nn::CellKind::rnn}) {
    nn::Recurrent<double> net(kind, I, H, {.num_layers = L, .rng = &rng});
    INFO(net.describe());
    const bool lstm = kind == nn::CellKind::lstm;
    std::vector<M> inputs = {nn_test::randn(B, steps * I, rng)};
    for (Index k = 0; k < (lstm ? 2 : 1) * L; ++k) inputs.push_back(nn_test::randn(B, H, rng, 0.5));
    const auto run = [&](const std::vector<T>& v) {
      nn::RecurrentState<double> s;
      for (Index l = 0; l < L; ++l) {
        s.h.push_back(v[static_cast<std::size_t>(1 + l)]);
        if (lstm) s.c.push_back(v[static_cast<std::size_t>(1 + L + l)]);
      }
      return net(v[0], s).output;
    };
    const auto inputs_report = gs::check_gradients(run, inputs);
    INFO("inputs and initial state: " << inputs_report.str());
    CHECK(inputs_report.ok);
    CHECK(inputs_report.max_rel_error < 1e-6);
    std::vector<T> fixed;
    for (const auto& m : inputs) fixed.emplace_back(m);
    const auto param_report =
        gs::check_parameter_gradients([&] { return run(fixed); }, net.parameters());
    INFO("parameters: " << param_report.str());
    CHECK(param_report.ok);
    CHECK(param_report.max_rel_error < 1e-6);
    CHECK(param_report.checked == static_cast<std::size_t>(net.parameter_count()));
  }
  // ReLU RNN, last step only, two layers with dropout off in eval.
  nn::RNN<double> relu(I, H,
                       {.num_layers = 2,
                        .output = nn::RecurrentOutput::last_step,
                        .nonlinearity = gs::RnnNonlinearity::relu,
                        .rng = &rng});
  // Nonzero biases: with zero biases, a unit of layer 1 whose inputs are all dead units of layer
  // 0 sits exactly at ReLU's kink, where finite differences are meaningless.
  nn_test::randomize_state(relu, rng);
  nn_test::check_module_gradients(relu, nn_test::randn(B, 4 * I, rng));
}

TEST_CASE("cells match the sequence layers step by step and pass the gradient check",
          "[nn][recurrent][gradcheck]") {
  gs::Rng rng(8);
  const Index B = 2, I = 3, H = 2;
  for (const auto kind : {nn::CellKind::lstm, nn::CellKind::gru, nn::CellKind::rnn}) {
    nn::Cell<double> cell(kind, I, H);
    nn::Recurrent<double> seq(kind, I, H);
    INFO(cell.describe());
    // The same parameters under the cell's names and the layer's names (_l0).
    const auto cp = cell.parameters();
    const auto sp = seq.parameters();
    REQUIRE(cp.size() == sp.size());
    nn_test::randomize_state(cell, rng);
    for (std::size_t i = 0; i < cp.size(); ++i)
      seq.named_parameters()[i].tensor.mutable_value() = cp[i].value();
    const M x = nn_test::randn(B, 2 * I, rng);
    const M y = seq(T(x)).to_matrix();
    const T x0(M(x.leftCols(I))), x1(M(x.rightCols(I)));
    const T zero = T::zeros(B, H);
    M h1, h2;
    if (kind == nn::CellKind::lstm) {
      const auto [h, c] = cell.step(x0, zero, zero);
      h1 = h.to_matrix();
      h2 = cell.step(x1, h, c).first.to_matrix();
    } else {
      const T h = cell.step(x0, zero);
      h1 = h.to_matrix();
      h2 = cell.step(x1, h).to_matrix();
    }
    require_close(y.leftCols(H), h1, 1e-14);
    require_close(y.rightCols(H), h2, 1e-14);
    nn_test::check_module_gradients(cell, nn_test::randn(B, I, rng));
  }
  nn::LSTMCell<double> c(I, H);
  CHECK_THAT(message_of([&] { c.step(T::zeros(B, I), T::zeros(B, H)); }),
             Catch::Contains("an LSTM cell's step needs c"));
  nn::GRUCell<double> g(I, H);
  CHECK_THAT(message_of([&] { g.step(T::zeros(B, I + 1), T::zeros(B, H)); }),
             Catch::Contains("x [2, 4] and h [2, 2] do not fit a cell of input 3 and hidden 2"));
}

TEST_CASE(
    "recurrent layers over a batch of data from a zero state pass the gradient check, and two "
    "batches on one tape keep their own inputs",
    "[nn][recurrent][gradcheck]") {
  // A persistent input without a gradient (a batch of data) is read as one row per step through
  // a buffer the layer keeps, and the first step from a zero state takes gh = b_hh without a
  // product: check_module_gradients' parameter check feeds such an input.
  gs::Rng rng(5);
  const Index B = 3, I = 2, H = 3, steps = 4;
  for (const auto kind : {nn::CellKind::lstm, nn::CellKind::gru, nn::CellKind::rnn}) {
    nn::Recurrent<double> net(kind, I, H, {.output = nn::RecurrentOutput::last_step, .rng = &rng});
    INFO(net.describe());
    nn_test::randomize_state(net, rng);
    nn_test::check_module_gradients(net, nn_test::randn(B, steps * I, rng));
    // Two batches on one tape: the tape holds the first batch's buffer, so the second forward
    // must not overwrite it (W_ih's gradient reads it in backward). The gradient of the sum of
    // both losses is then the sum of their gradients.
    const T x1(nn_test::randn(B, steps * I, rng)), x2(nn_test::randn(B, steps * I, rng));
    const auto gradients = [&](const std::vector<const T*>& batches) {
      for (auto& p : net.parameters()) p.zero_grad();
      gs::Tape<double> tape;
      T loss = T::zeros(1, 1);
      double k = 1;
      for (const T* x : batches) loss = loss + gs::sum(net(*x)) * (k++);
      tape.backward(gs::sum(loss));
      std::vector<M> g;
      for (auto& p : net.parameters()) g.push_back(p.grad());
      return g;
    };
    const auto g1 = gradients({&x1}), g2 = gradients({&x2}), both = gradients({&x1, &x2});
    for (std::size_t i = 0; i < both.size(); ++i) {
      INFO("parameter " << net.named_parameters()[i].name);
      require_close(both[i], g1[i] + 2 * g2[i], 1e-12);
    }
  }
}

TEST_CASE("recurrent layers have PyTorch's parameter names and layout, summaries and hooks",
          "[nn][recurrent]") {
  nn::Sequential<float> net;
  net.add<nn::LSTM>(5, 4, nn::RecurrentOptions{.num_layers = 2});
  net.add<nn::GRU>(4, 3, nn::RecurrentOptions{.bias = false});
  std::vector<std::string> names;
  for (const auto& p : net.named_parameters())
    names.push_back(p.name + " " + p.tensor.shape().str());
  CHECK(names == std::vector<std::string>{"0.weight_ih_l0 [16, 5]", "0.weight_hh_l0 [16, 4]",
                                          "0.bias_ih_l0 [16]", "0.bias_hh_l0 [16]",
                                          "0.weight_ih_l1 [16, 4]", "0.weight_hh_l1 [16, 4]",
                                          "0.bias_ih_l1 [16]", "0.bias_hh_l1 [16]",
                                          "1.weight_ih_l0 [9, 4]", "1.weight_hh_l0 [9, 3]"});
  const std::string summary = net.summary(5 * 7);  // 7 steps of 5 features
  CHECK_THAT(summary, Catch::Contains("LSTM(5 -> 4, 2 layers)") && Catch::Contains("[-, 28]") &&
                          Catch::Contains("GRU(4 -> 3, no bias)") && Catch::Contains("[-, 21]"));
  int calls = 0;
  auto handle = net[0].register_forward_hook(
      [&](nn::Module<float>&, const gs::Tensor<float>& in, const gs::Tensor<float>& out) {
        ++calls;
        CHECK(in.cols() == 10);
        CHECK(out.cols() == 8);
      });
  net(gs::Tensor<float>::zeros(3, 10));
  auto& lstm = dynamic_cast<nn::LSTM<float>&>(net[0]);
  lstm(gs::Tensor<float>::zeros(3, 10), {});  // the stateful call runs the hooks too
  CHECK(calls == 2);
  handle.remove();
  // The forget gate's bias is 1 (in bias_ih; bias_hh's forget block is 0), the rest 0.
  const auto b = lstm.bias_ih(0).value();
  CHECK(b.middleCols(4, 4).isConstant(1.0f));
  CHECK(b.leftCols(4).isZero());
  CHECK(b.rightCols(8).isZero());
  CHECK(lstm.bias_hh(0).value().isZero());
  // Each gate's block of weight_hh is orthogonal.
  for (Index g = 0; g < 4; ++g) {
    const gs::Matrix<double> W = lstm.weight_hh(1).value().middleRows(g * 4, 4).cast<double>();
    CHECK((W * W.transpose() - gs::Matrix<double>::Identity(4, 4)).cwiseAbs().maxCoeff() < 1e-6);
  }
}

TEST_CASE("orthogonal and identity initialisers", "[nn][init]") {
  gs::Rng rng(1);
  for (const auto& [r, c] : {std::pair<Index, Index>{5, 5}, {3, 7}, {7, 3}}) {
    M W(r, c);
    gs::init::orthogonal(1.5).weight(W, rng);
    const M gram = r <= c ? M(W * W.transpose()) : M(W.transpose() * W);
    const Index n = std::min(r, c);
    CHECK((gram - 2.25 * M::Identity(n, n)).cwiseAbs().maxCoeff() < 1e-12);
  }
  M I3(3, 4);
  gs::init::identity(0.5).weight(I3, rng);
  CHECK(I3 == 0.5 * M::Identity(3, 4));
  CHECK(gs::init::by_name("orthogonal").name() == "orthogonal(gain=1.000000)");
  CHECK_THROWS_AS(gs::init::orthogonal(std::nan("")), gs::ValueError);
}

TEST_CASE("an RNN classifier over [B, T*F] batches learns inside Sequential",
          "[nn][recurrent][learning]") {
  // Does the sequence's first step exceed its last? Only a net that carries the first step
  // through T steps can tell: the answer needs memory.
  gs::Rng rng(3);
  const Index B = 64, steps = 8;
  M x(B, steps);
  std::vector<int> y(B);
  for (Index i = 0; i < B; ++i) {
    for (Index t = 0; t < steps; ++t) x(i, t) = rng.uniform(-1.0, 1.0);
    y[static_cast<std::size_t>(i)] = x(i, 0) > x(i, steps - 1) ? 1 : 0;
  }
  for (const auto kind : {nn::CellKind::rnn, nn::CellKind::gru}) {
    gs::Rng init(11);
    nn::Sequential<double> net;
    net.add(std::make_shared<nn::Recurrent<double>>(
        kind, 1, 16, nn::RecurrentOptions{.output = nn::RecurrentOutput::last_step, .rng = &init}));
    net.add<nn::Dense>(16, 2, gs::init::xavier_uniform, true, &init);
    gs::optim::Adam<double> opt(net.parameters(), {.lr = 0.01});
    gs::Tape<double> tape;
    const T xt(x);
    double first = 0, loss = 0;
    for (int step = 0; step < 300; ++step) {
      tape.reset();
      auto l = gs::softmax_cross_entropy(net(xt), y);
      loss = l.item();
      if (step == 0) first = loss;
      tape.backward(l);
      opt.step();
      opt.zero_grad();
    }
    INFO(net.describe() << ": loss " << first << " -> " << loss);
    CHECK(loss < 0.1 * first);
    CHECK(gs::nn::accuracy(net(xt), y) > 0.95);
  }
}

TEST_CASE("truncated BPTT: the state carries across batches and its gradient stops there",
          "[nn][recurrent][bptt]") {
  gs::Rng rng(4);
  nn::LSTM<double> lstm(2, 3);
  const M a = nn_test::randn(2, 4 * 2, rng), b = nn_test::randn(2, 4 * 2, rng);
  M whole(2, 16);
  whole << a, b;
  const M full = lstm(T(whole)).to_matrix();
  // The same sequence in two chunks of 4 steps, the state carried over: the same outputs.
  const auto first = lstm(T(a), {});
  const auto second = lstm(T(b), first.state.detached());
  require_close(second.output.to_matrix(), full.rightCols(4 * 3), 1e-14);
  // In a training loop with Sequential: set_initial_state / final_state.
  gs::Tape<double> tape;
  lstm.set_initial_state(first.state.detached());
  auto out = lstm(T(b));
  require_close(out.to_matrix(), full.rightCols(4 * 3), 1e-14);
  tape.backward(gs::sum(out));
  // The carried state is a constant: the gradient stopped at the batch boundary.
  CHECK_FALSE(lstm.final_state().h[0].is_persistent());
  const auto carried = lstm.final_state().detached();
  CHECK(carried.h[0].is_persistent());
  CHECK_FALSE(carried.h[0].requires_grad());
  lstm.reset_state();
  require_close(lstm(T(a)).to_matrix(), full.leftCols(4 * 3), 1e-14);
  // Per-step outputs for hooks: dL/dh_t through the output and the recurrence.
  gs::Tape<double> tape2;
  auto y = lstm(T(a));
  const auto& steps = lstm.step_outputs();
  REQUIRE(steps.size() == 4);
  std::vector<gs::HookHandle> keep;
  for (auto h : steps) keep.push_back(h.retain_grad());
  tape2.backward(gs::sum(gs::slice_cols(y, 3 * 3, 3)));  // the loss reads only the last step
  CHECK(steps[3].grad().isOnes());
  CHECK(steps[0].grad().cwiseAbs().maxCoeff() > 0);  // reached through the recurrence
}

TEST_CASE("recurrent layers and Embedding report bad inputs", "[nn][recurrent][errors]") {
  nn::LSTM<double> lstm(3, 2, {.num_layers = 2});
  CHECK_THAT(message_of([&] { lstm(T::zeros(2, 7)); }),
             Catch::Contains("input [2, 7] is not a whole number of steps of 3 features"));
  CHECK_THAT(message_of([&] {
               lstm(T::zeros(2, 6), {{T::zeros(2, 2)}, {T::zeros(2, 2)}});
             }),
             Catch::Contains("the initial state has 1 h and 1 c tensors; expected 2 h and 2 c"));
  CHECK_THAT(
      message_of([&] {
        lstm(T::zeros(2, 6), {{T::zeros(2, 2), T::zeros(3, 2)}, {T::zeros(2, 2), T::zeros(2, 2)}});
      }),
      Catch::Contains("initial h of layer 1 has shape [3, 2]; expected [2, 2]"));
  CHECK_THROWS_AS(nn::GRU<double>(0, 2), gs::ValueError);
  CHECK_THROWS_AS(nn::GRU<double>(2, 2, {.num_layers = 0}), gs::ValueError);
  CHECK_THROWS_AS(nn::GRU<double>(2, 2, {.dropout = 1.0}), gs::ValueError);
  nn::Embedding<double> emb(4, 3);
  CHECK_THAT(message_of([&] {
               emb(T{{0, 1}, {2, 4}});
             }),
             Catch::Contains("input (1, 1) is 4; indices must be whole numbers in [0, 4)"));
  CHECK_THAT(message_of([&] { emb(T{{0.5}}); }), Catch::Contains("input (0, 0) is 0.5"));
  CHECK_THAT(message_of([&] { emb(T{{std::nan("")}}); }), Catch::Contains("is nan"));
  CHECK_THROWS_AS(nn::Embedding<double>(0, 3), gs::ValueError);
}

TEST_CASE("Embedding looks rows up and passes the gradient check", "[nn][recurrent][gradcheck]") {
  gs::Rng rng(2);
  nn::Embedding<double> emb(5, 3, gs::init::normal(1.0), &rng);
  const T idx{{4, 0, 4}, {1, 1, 2}};
  const M y = emb(idx).to_matrix();
  REQUIRE(y.rows() == 2);
  REQUIRE(y.cols() == 9);
  CHECK(y.block(0, 0, 1, 3) == emb.weight().value().row(4));
  CHECK(y.block(1, 6, 1, 3) == emb.weight().value().row(2));
  const auto report =
      gs::check_parameter_gradients([&] { return gs::tanh(emb(idx)); }, emb.parameters());
  INFO(report.str());
  CHECK(report.ok);
}

TEST_CASE(
    "time steps: the recurrent views carry dL/dh_t through the recurrence alone, the cells "
    "their gates",
    "[nn][recurrent][time]") {
  gs::Rng rng(12);
  const Index B = 3, I = 2, H = 4, steps = 5;
  for (const auto kind : {nn::CellKind::lstm, nn::CellKind::gru, nn::CellKind::rnn}) {
    nn::Recurrent<double> net(kind, I, H, {.rng = &rng});
    INFO(net.describe());
    gs::Tape<double> tape;
    const M w = nn_test::randn(B, steps * H, rng);
    const auto y = net(T(nn_test::randn(B, steps * I, rng)));
    const auto& ts = net.time_steps();
    REQUIRE(ts.outputs.size() == steps);
    REQUIRE(ts.recurrent.size() == steps - 1);
    REQUIRE(ts.cells.size() == steps);
    std::vector<M> total(steps), recurrent(steps - 1);
    std::vector<gs::HookHandle> hooks;
    for (std::size_t t = 0; t < steps; ++t) {
      auto h = ts.outputs[t];
      hooks.push_back(h.register_hook([&total, t](const auto& g) { total[t] = g; }));
      if (t + 1 < steps) {
        auto r = ts.recurrent[t];
        hooks.push_back(r.register_hook([&recurrent, t](const auto& g) { recurrent[t] = g; }));
      }
    }
    tape.backward(gs::sum(gs::mul(y, T(w))));  // dL/dy = w: every step's output is read
    for (std::size_t t = 0; t + 1 < steps; ++t) {
      // total = through the output (w's block of step t) + through the recurrence
      const M through_output = w.middleCols(static_cast<Index>(t) * H, H);
      CHECK((total[t] - recurrent[t] - through_output).cwiseAbs().maxCoeff() < 1e-12);
    }
    CHECK((total[steps - 1] - w.rightCols(H)).cwiseAbs().maxCoeff() < 1e-12);
    // The gates: the carried fraction is the mean of the forget gate (LSTM) or update gate (GRU).
    const double carry = net.carry_gate_mean();
    if (kind == nn::CellKind::rnn) {
      CHECK(std::isnan(carry));
      CHECK(gs::cell_gates(ts.cells[0]).size() == 0);
      continue;
    }
    double sum = 0;
    for (const auto& c : ts.cells) {
      const auto g = gs::cell_gates(c);
      REQUIRE(g.rows() == B);
      REQUIRE(g.cols() == (kind == nn::CellKind::lstm ? 5 : 3) * H);
      sum += g.middleCols(H, H).sum();
    }
    CHECK(carry == Approx(sum / double(steps * B * H)).epsilon(1e-12));
    CHECK(carry > 0);
    CHECK(carry < 1);
  }
  // Evaluated without a tape, the gates are not kept.
  nn::LSTM<double> lstm(I, H);
  lstm(T(nn_test::randn(B, steps * I, rng)));
  CHECK(std::isnan(lstm.carry_gate_mean()));
  CHECK_THROWS_AS(lstm.time_steps(1), gs::UsageError);
}

TEST_CASE("recurrent layers refuse sizes no array could hold", "[nn][recurrent][errors]") {
  const Index huge = Index(1) << 62;
  CHECK_THROWS_AS(nn::LSTM<float>(3, huge), gs::ValueError);
  CHECK_THROWS_AS(nn::GRU<float>(huge, 4), gs::ValueError);
  CHECK_THROWS_AS(nn::RNN<float>(-3, 4), gs::ValueError);
  CHECK_THROWS_AS(nn::LSTMCell<float>(3, huge), gs::ValueError);
  CHECK_THROWS_AS(nn::Embedding<float>(1000, huge), gs::ValueError);
  CHECK_THROWS_WITH(nn::GRU<float>(Index(1) << 40, Index(1) << 30),
                    Catch::Contains("GRU") && Catch::Contains("too large"));
}
