// The time profile of a recurrent layer's gradients (diagnostics/time.hpp): gain, reach and
// memory horizon from the norms of every step, underflow, binning of long sequences, and the
// bounded record of profiles.

#include <catch2/catch.hpp>

#include <gradscope/diagnostics/time.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace diag = gradscope::diagnostics;

namespace {
constexpr double float_min = std::numeric_limits<float>::min();
}

TEST_CASE(
    "a geometric decay gives its ratio as the gain, its product as the reach and the "
    "steps above 1% as the horizon",
    "[diagnostics][time]") {
  // The loss reads the last step only: recurrent[t] == total[t], total[t] = 0.5^(T-1-t).
  const std::size_t T = 20;
  std::vector<double> total(T), recurrent(T - 1);
  for (std::size_t t = 0; t < T; ++t) total[t] = std::pow(0.5, double(T - 1 - t));
  for (std::size_t t = 0; t + 1 < T; ++t) recurrent[t] = total[t];
  const auto p = diag::make_time_profile(7, total, recurrent, 0.9, 256, float_min);
  CHECK(p.step == 7);
  CHECK(p.steps == 20);
  CHECK(p.gain == Approx(0.5).epsilon(1e-12));
  CHECK(p.reach == Approx(std::pow(0.5, 19)).epsilon(1e-12));
  CHECK(p.horizon == 6);  // 0.5^6 = 1.6% >= 1%, 0.5^7 = 0.8% < 1%
  CHECK(p.carry_gate == 0.9);
  CHECK_FALSE(p.underflow);
  CHECK(p.bin == 1);
  CHECK(p.total == total);
  REQUIRE(p.recurrent.size() == T);
  CHECK_FALSE(diag::measured(p.recurrent.back()));
}

TEST_CASE("with the loss on every step, the ratios follow the recurrence, not the totals",
          "[diagnostics][time]") {
  // Every step gets 1 from the output; the recurrence carries 0.1 of the next step's total: the
  // totals stay near 1 (the output dominates) but the gradient of the last step dies within
  // two steps.
  const std::size_t T = 30;
  std::vector<double> total(T), recurrent(T - 1);
  total[T - 1] = 1;
  for (std::size_t t = T - 1; t-- > 0;) {
    recurrent[t] = 0.1 * total[t + 1];
    total[t] = 1 + recurrent[t];
  }
  const auto p = diag::make_time_profile(0, total, recurrent, diag::not_measured, 256, float_min);
  CHECK(p.horizon == 2);  // 0.1 * ~1.1 >= 1%, then below
  CHECK(p.gain < 0.11);
  CHECK(p.reach < 1e-25);
}

TEST_CASE(
    "a gradient that underflows to 0 in float is below the smallest normal number, not an "
    "error or a NaN",
    "[diagnostics][time]") {
  std::vector<double> total = {0.0, 0.0, 1e-30, 1.0}, recurrent = {0.0, 0.0, 1e-30};
  const auto p = diag::make_time_profile(3, total, recurrent, diag::not_measured, 256, float_min);
  CHECK(p.underflow);
  CHECK(std::isfinite(p.gain));
  CHECK(p.gain < 1e-10);
  CHECK(p.reach == Approx(float_min).epsilon(1e-9));  // reported at the bound
  CHECK(p.horizon == 0);
  CHECK(diag::time_figure(p.reach, p.underflow) == "< 1.2e-38");
  CHECK(diag::time_figure(3.14e-9, false) == "3.1e-09");
}

TEST_CASE("a growing gradient has a gain above 1 and the full horizon", "[diagnostics][time]") {
  const std::size_t T = 10;
  std::vector<double> total(T), recurrent(T - 1);
  for (std::size_t t = 0; t < T; ++t) total[t] = std::pow(1.5, double(T - 1 - t));
  for (std::size_t t = 0; t + 1 < T; ++t) recurrent[t] = total[t];
  const auto p = diag::make_time_profile(0, total, recurrent, diag::not_measured, 256, float_min);
  CHECK(p.gain == Approx(1.5));
  CHECK(p.reach == Approx(std::pow(1.5, 9)));
  CHECK(p.horizon == 9);
  // One step: nothing to compare.
  const auto one = diag::make_time_profile(0, std::vector<double>{2.0}, std::vector<double>{},
                                           diag::not_measured, 256, float_min);
  CHECK_FALSE(diag::measured(one.gain));
  CHECK(one.horizon == 0);
}

TEST_CASE("long sequences are kept in bins, the measures from every step", "[diagnostics][time]") {
  const std::size_t T = 1000;
  std::vector<double> total(T), recurrent(T - 1);
  for (std::size_t t = 0; t < T; ++t) total[t] = std::pow(0.99, double(T - 1 - t));
  for (std::size_t t = 0; t + 1 < T; ++t) recurrent[t] = total[t];
  const auto p = diag::make_time_profile(0, total, recurrent, diag::not_measured, 100, float_min);
  CHECK(p.bin == 10);
  CHECK(p.total.size() == 100);
  CHECK(p.recurrent.size() == 100);
  // The geometric mean of a bin of a geometric sequence is its middle value.
  CHECK(p.total.back() == Approx(std::pow(0.99, 4.5)).epsilon(1e-9));
  CHECK(p.horizon == 458);  // 0.99^458 >= 0.01 > 0.99^459
  CHECK(p.gain == Approx(0.99).epsilon(1e-12));
}

TEST_CASE("the record of profiles stays bounded, spans the run and keeps the latest",
          "[diagnostics][time]") {
  diag::TimeRecords records(8);
  for (std::int64_t s = 0; s < 100; ++s) {
    diag::TimeProfile p;
    p.step = s;
    records.push(p);
    REQUIRE(records.profiles().size() <= 8);
    CHECK(records.profiles().back().step == s);
  }
  CHECK(records.profiles().front().step == 0);
  CHECK(records.downsamplings() > 0);
}

// ---------------------------------------------------------------------------------------------
// The monitor follows recurrent layers through time.

#include <gradscope/gradscope.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

namespace {
namespace gs = gradscope;
namespace nn = gradscope::nn;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A few SGD steps of `net` on a regression of the last step's output, recorded by `monitor`.
template <class Net>
void train_steps(Net& net, diag::GradientMonitor<double>& monitor, gs::Index B, gs::Index steps,
                 gs::Index features, int n, gs::Rng& rng, bool positive = false, double lr = 0.01) {
  gs::optim::SGD<double> opt(net.parameters(), {.lr = lr > 0 ? lr : 1e-300});
  for (int i = 0; i < n; ++i) {
    gs::Tape<double> tape;
    gs::Matrix<double> x(B, steps * features);
    for (gs::Index r = 0; r < x.rows(); ++r)
      for (gs::Index c = 0; c < x.cols(); ++c)
        x(r, c) = positive ? rng.uniform(0.1, 1.0) : rng.normal();
    const auto y = net(gs::Tensor<double>(x));
    const auto loss = gs::mean(gs::square(y));
    tape.backward(loss);
    monitor.record_gradients(loss.item());
    opt.step();
    monitor.record_update();
    opt.zero_grad();
  }
}
}  // namespace

TEST_CASE("a tanh RNN with small recurrent weights over 50 steps is vanishing through time",
          "[diagnostics][time][monitor]") {
  gs::Rng rng(3);
  nn::Sequential<double> net;
  net.add(std::make_shared<nn::RNN<double>>(
      2, 16,
      nn::RecurrentOptions{.output = nn::RecurrentOutput::last_step,
                           .recurrent_init = gs::init::orthogonal(0.4),
                           .rng = &rng}));
  net.add(std::make_shared<nn::Dense<double>>(16, 1, gs::init::xavier_uniform, true, &rng));
  diag::GradientMonitor<double> monitor(net);
  REQUIRE(monitor.time_layers().size() == 1);
  CHECK(monitor.time_layers()[0].name() == "0");
  train_steps(net, monitor, 8, 50, 2, 3, rng);
  const auto& profiles = monitor.time_records(0).profiles();
  REQUIRE(profiles.size() == 3);
  CHECK(profiles.back().steps == 50);
  CHECK(profiles.back().horizon < 10);
  const auto d = monitor.diagnose();
  const auto* f = d.find(diag::Verdict::vanishing_through_time);
  REQUIRE(f != nullptr);
  INFO(f->summary);
  CHECK(f->layers == std::vector<std::string>{"0.weight_hh_l0"});
  CHECK_THAT(f->summary,
             Catch::Contains("layer 0 (RNN(2 -> 16, last step)): the gradient reaching step 1 is"));
  CHECK_THAT(f->summary, Catch::Contains("of the one at step 50"));
  double horizon = -1;
  for (const auto& [k, v] : f->evidence)
    if (k == "memory_horizon") horizon = v;
  CHECK(horizon >= 0);
  CHECK(horizon < 10);
  // The rows: the RNN's two weights with their biases, and the dense layer.
  std::vector<std::string> paths;
  for (const auto& l : monitor.layers()) paths.push_back(l.path);
  CHECK(paths == std::vector<std::string>{"0.weight_ih_l0", "0.weight_hh_l0", "1"});
  CHECK(monitor.layers()[0].in_flow);
  CHECK_FALSE(monitor.layers()[1].in_flow);
  const std::string report = monitor.report();
  CHECK_THAT(report, Catch::Contains("[vanishing_through_time] layer 0 (RNN(2 -> 16, last step))"));
  CHECK_THAT(report, Catch::Contains("gradient through time"));
}

TEST_CASE("an orthogonal LSTM over 20 steps is not vanishing through time; its gate is reported",
          "[diagnostics][time][monitor]") {
  gs::Rng rng(4);
  nn::Sequential<double> net;
  net.add(std::make_shared<nn::LSTM<double>>(
      2, 8,
      nn::RecurrentOptions{.num_layers = 2,
                           .output = nn::RecurrentOutput::last_step,
                           .forget_bias = 3.0,
                           .rng = &rng}));
  diag::GradientMonitor<double> monitor(net);
  REQUIRE(monitor.time_layers().size() == 2);
  CHECK(monitor.time_layers()[1].name() == "0, layer 2");
  CHECK(monitor.time_layers()[1].carry_gate == "forget gate");
  train_steps(net, monitor, 4, 20, 2, 2, rng);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& p = monitor.time_records(i).profiles().back();
    INFO(i);
    CHECK(p.carry_gate > 0.9);  // sigmoid(3 + small) ~ 0.95
    CHECK(p.reach > 1e-2);
    CHECK(p.steps == 20);
  }
  CHECK_FALSE(monitor.diagnose().has(diag::Verdict::vanishing_through_time));
  CHECK_FALSE(monitor.diagnose().has(diag::Verdict::exploding_through_time));
}

TEST_CASE("a linear RNN with recurrent spectral radius 1.5 is exploding through time",
          "[diagnostics][time][monitor]") {
  // ReLU with positive inputs and weights: every unit stays active, h_t = 1.5 h_{t-1} + W x_t.
  gs::Rng rng(5);
  nn::Sequential<double> net;
  net.add(std::make_shared<nn::RNN<double>>(
      3, 6,
      nn::RecurrentOptions{.bias = false,
                           .nonlinearity = gs::RnnNonlinearity::relu,
                           .input_init = gs::init::uniform(0.1, 0.5),
                           .recurrent_init = gs::init::identity(1.5),
                           .rng = &rng}));
  diag::GradientMonitor<double> monitor(net);
  train_steps(net, monitor, 4, 30, 3, 2, rng, /*positive=*/true, /*lr=*/0);
  const auto& p = monitor.time_records(0).profiles().back();
  CHECK(p.gain == Approx(1.5).epsilon(1e-9));  // the recurrence alone: its Jacobian is 1.5 I
  const auto d = monitor.diagnose();
  const auto* f = d.find(diag::Verdict::exploding_through_time);
  REQUIRE(f != nullptr);
  INFO(f->summary);
  CHECK_THAT(f->summary, Catch::Contains("a gain of 1.5 per step"));
  CHECK_THAT(f->hints.front(), Catch::Contains("clip_grad_norm"));
  // Kept as an event of the run, in every report.
  const auto& events = monitor.events().events();
  CHECK(std::any_of(events.begin(), events.end(), [](const auto& e) {
    return e.verdict() == diag::Verdict::exploding_through_time;
  }));
  const std::string dir = "time_monitor_test";
  monitor.write_csv(dir + ".csv");
  monitor.write_jsonl(dir + ".jsonl");
  monitor.write_svg(dir + ".svg");
  const auto csv = read_file(dir + ".csv"), jsonl = read_file(dir + ".jsonl"),
             svg = read_file(dir + ".svg");
  CHECK_THAT(csv, Catch::Contains(",0,\"RNN(3 -> 6, relu, no bias)\",time_gain,1.4999"));
  CHECK_THAT(csv, Catch::Contains(",0,\"RNN(3 -> 6, relu, no bias)\",grad_h_total:29,"));
  CHECK_THAT(csv, Catch::Contains("event:exploding_through_time/time_reach"));
  CHECK_THAT(jsonl, Catch::Contains("{\"time_profile\":\"0\",\"path\":\"0\",\"layer\":0"));
  CHECK_THAT(jsonl, Catch::Contains("\"event\":\"exploding_through_time\""));
  CHECK_THAT(svg, Catch::Contains("class=\"time-profile\" data-layer=\"0\" data-step=\"1\""));
}

namespace {
gs::Tensor<double> param(const gs::Tensor<double>& t) {
  return gs::Tensor<double>::parameter(t.to_matrix(), t.rank());
}
/// A module of one's own with a gated weight: y = sigmoid(x G + g) * (x W) * scale.
struct Gated : nn::Module<double> {
  gs::Tensor<double> gate_weight, gate_bias, weight, scale;
  explicit Gated(gs::Rng& rng) {
    gate_weight = register_parameter("gate_weight", param(gs::Tensor<double>::randn(3, 3, rng)));
    gate_bias = register_parameter("gate_bias", param(gs::Tensor<double>::zeros(1, 3)));
    weight = register_parameter("weight", param(gs::Tensor<double>::randn(3, 3, rng)));
    scale = register_parameter("scale", param(gs::Tensor<double>::ones(1, 3)));
  }
  gs::Tensor<double> forward(const gs::Tensor<double>& x) override {
    return gs::mul(
        gs::mul(gs::sigmoid(gs::add(gs::matmul(x, gate_weight), gate_bias)), gs::matmul(x, weight)),
        scale);
  }
  std::string kind() const override { return "Gated"; }
  bool in_gradient_flow() const override { return true; }
};
}  // namespace

TEST_CASE("every parameter of a module of one's own appears in every report",
          "[diagnostics][time][monitor]") {
  gs::Rng rng(6);
  nn::Sequential<double> net;
  net.add(std::make_shared<nn::Dense<double>>(4, 3, gs::init::xavier_uniform, true, &rng));
  net.add(std::make_shared<Gated>(rng));
  diag::GradientMonitor<double> monitor(net);
  std::vector<std::string> paths;
  for (const auto& l : monitor.layers()) paths.push_back(l.path);
  CHECK(paths == std::vector<std::string>{"0", "1.gate_weight", "1.weight", "1.scale"});
  CHECK(monitor.layers()[1].in_flow);  // its opt-in: the first row carries the output gradient
  gs::optim::SGD<double> opt(net.parameters(), {.lr = 0.01});
  for (int i = 0; i < 2; ++i) {
    gs::Tape<double> tape;
    const auto loss = gs::mean(gs::square(net(gs::Tensor<double>::randn(5, 4, rng))));
    tape.backward(loss);
    monitor.record_gradients(loss.item());
    const auto& r = monitor.history().records().back();
    // gate_weight's row holds gate_bias's gradient too; scale has a row of its own.
    const auto g = net.parameters();
    CHECK(r.layers[1].weight_grad_norm == Approx(g[2].grad().norm()));
    CHECK(r.layers[1].bias_grad_norm == Approx(g[3].grad().norm()));
    CHECK(r.layers[2].weight_grad_norm == Approx(g[4].grad().norm()));
    CHECK(r.layers[3].weight_grad_norm == Approx(g[5].grad().norm()));
    CHECK(r.layers[1].delta_norm > 0);
    opt.step();
    monitor.record_update();
    opt.zero_grad();
  }
  const std::string report = monitor.report();
  monitor.write_csv("custom_module_test.csv");
  monitor.write_jsonl("custom_module_test.jsonl");
  const auto csv = read_file("custom_module_test.csv"),
             jsonl = read_file("custom_module_test.jsonl");
  for (const std::string p : {"1.gate_weight", "1.weight", "1.scale"}) {
    INFO(p);
    CHECK_THAT(report, Catch::Contains(p));
    CHECK_THAT(csv, Catch::Contains("," + p + ",Gated,weight_grad_norm,"));
    CHECK_THAT(jsonl, Catch::Contains("{\"path\":\"" + p + "\",\"kind\":\"Gated\""));
  }
}
