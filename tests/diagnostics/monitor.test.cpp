// GradientMonitor: what it records per step (checked against the same numbers computed by hand),
// when it records (every N steps), the pre-clip total norm, hooks and their lifetime, and
// train/eval mode.

#include "diag_test_util.hpp"

using namespace diag_test;

namespace {

using Mat = gs::Matrix<double>;

/// Dense(10, 12) [0], ReLU [1], Dense(12, 4) [2].
std::shared_ptr<nn::Sequential<double>> small_net(std::uint64_t seed = 3) {
  return relu_mlp<double>({10, 12, 4}, seed);
}

/// A layer with a third parameter besides weight and bias: y = gain * (x W^T + b).
struct ScaledDense : nn::Module<double> {
  ScaledDense(gs::Index in, gs::Index out, gs::Rng& rng) {
    Mat w(out, in);
    for (gs::Index i = 0; i < w.size(); ++i) w.data()[i] = rng.normal(0, 0.3);
    weight = register_parameter("weight", gs::Tensor<double>::parameter(w));
    bias = register_parameter("bias", gs::Tensor<double>::parameter(Mat::Zero(1, out), 1));
    gain = register_parameter("gain", gs::Tensor<double>::parameter(Mat::Constant(1, out, 1.5), 1));
  }
  gs::Tensor<double> forward(const gs::Tensor<double>& x) override {
    return gs::mul(gs::linear(x, weight, bias), gain);
  }
  std::string kind() const override { return "ScaledDense"; }
  gs::Tensor<double> weight, bias, gain;
};

}  // namespace

TEST_CASE("record_gradients stores the numbers of the step it closes", "[diagnostics][monitor]") {
  auto net = small_net();
  auto dense = dense_layers(*net);
  dg::GradientMonitor<double> monitor(*net);
  REQUIRE(monitor.layers().size() == 2);
  CHECK(monitor.layers()[0].path == "0");
  CHECK(monitor.layers()[0].kind == "Dense(10 -> 12)");
  CHECK(monitor.layers()[0].shape == "[12, 10]");
  CHECK(monitor.layers()[0].activation == "ReLU");
  CHECK(monitor.layers()[1].path == "2");
  CHECK(monitor.layers()[1].activation.empty());

  // Our own hooks see the same tensors the monitor's hooks see.
  Mat relu_out;
  std::vector<Mat> deltas(2);
  net->at(1).register_forward_hook([&](nn::Module<double>&, const gs::Tensor<double>&,
                                       const gs::Tensor<double>& y) { relu_out = y.value(); });
  for (int k = 0; k < 2; ++k)
    dense[static_cast<std::size_t>(k)]->register_forward_hook(
        [&deltas, k](nn::Module<double>&, const gs::Tensor<double>&, const gs::Tensor<double>& y) {
          gs::Tensor<double> out = y;
          out.register_hook([&deltas, k](const gs::ConstMatrixMap<double>& g) {
            deltas[static_cast<std::size_t>(k)] = g;
          });
        });

  gs::optim::SGD<double> opt(net->parameters(), {.lr = 0.1});
  gs::Tape<double> tape;
  const auto x = pixels<double>(20, 10, 4);
  const auto y = labels(20, 4, 5);
  auto loss = nn::softmax_cross_entropy((*net)(x), y);
  tape.backward(loss);
  std::vector<Mat> w_before;
  for (auto* d : dense) w_before.emplace_back(d->weight().value());
  const double total = gs::optim::grad_norm(net->parameters());
  monitor.record_gradients(loss.item());
  opt.step();
  monitor.record_update();

  REQUIRE(monitor.history().size() == 1);
  CHECK(monitor.step() == 1);
  const auto& r = monitor.history().records().back();
  CHECK(r.step == 0);
  CHECK(r.loss == Approx(loss.item()));
  CHECK(r.total_norm == Approx(total).epsilon(1e-12));
  REQUIRE(r.layers.size() == 2);
  for (std::size_t k = 0; k < 2; ++k) {
    INFO("layer " << k);
    const auto& s = r.layers[k];
    const Mat gw = opt.parameters()[2 * k].grad();
    const Mat gb = opt.parameters()[2 * k + 1].grad();
    CHECK(s.weight_grad_norm == Approx(gw.norm()).epsilon(1e-12));
    CHECK(s.bias_grad_norm == Approx(gb.norm()).epsilon(1e-12));
    CHECK(s.grad_mean_abs == Approx(gw.cwiseAbs().mean()).epsilon(1e-12));
    CHECK(s.weight_norm == Approx(w_before[k].norm()).epsilon(1e-12));
    const Mat w_after = dense[k]->weight().value();
    CHECK(s.update_ratio ==
          Approx((w_after - w_before[k]).norm() / w_before[k].norm()).epsilon(1e-9));
    // Per-sample delta norm: mean over the batch of ||dL/dy_i||.
    REQUIRE(deltas[k].rows() == 20);
    CHECK(s.delta_norm == Approx(deltas[k].rowwise().norm().mean()).epsilon(1e-12));
    CHECK(s.flow_norm() == s.delta_norm);
    CHECK(s.nan_count == 0);
    CHECK(s.inf_count == 0);
  }
  // Activation statistics of the ReLU after layer 0.
  const auto& s0 = r.layers[0];
  const double mean = relu_out.mean();
  const double sd = std::sqrt((relu_out.array() - mean).square().mean());
  CHECK(s0.act_mean == Approx(mean).epsilon(1e-12));
  CHECK(s0.act_std == Approx(sd).epsilon(1e-9));
  int dead = 0;
  for (gs::Index j = 0; j < relu_out.cols(); ++j)
    dead += (relu_out.col(j).array() > 0).any() ? 0 : 1;
  CHECK(s0.dead_fraction == Approx(dead / 12.0));
  CHECK(std::isnan(s0.saturated_fraction));
  // The output layer has no activation: its activation numbers are not measured.
  CHECK(std::isnan(r.layers[1].act_mean));
  CHECK(std::isnan(r.layers[1].dead_fraction));
}

TEST_CASE("every = 3 records steps 0, 3, 6, ... and measures nothing in between",
          "[diagnostics][monitor]") {
  auto net = small_net();
  dg::GradientMonitor<double> monitor(*net, options([](auto& o) { o.every = 3; }));
  gs::optim::SGD<double> opt(net->parameters(), {.lr = 0.05});
  gs::Tape<double> tape;
  // The delta of layer 0 at each step, from our own hook.
  std::vector<double> delta_at_step;
  auto* d0 = dense_layers(*net)[0];
  d0->register_forward_hook(
      [&](nn::Module<double>&, const gs::Tensor<double>&, const gs::Tensor<double>& y) {
        gs::Tensor<double> out = y;
        out.register_hook([&](const gs::ConstMatrixMap<double>& g) {
          delta_at_step.push_back(g.rowwise().norm().mean());
        });
      });
  for (int s = 0; s < 11; ++s)
    train_step(tape, *net, opt, &monitor,
               pixels<double>(8, 10, 100 + static_cast<std::uint64_t>(s)),
               labels(8, 4, 200 + static_cast<std::uint64_t>(s)));
  CHECK(monitor.step() == 11);
  std::vector<std::int64_t> steps;
  for (const auto& r : monitor.history().records()) steps.push_back(r.step);
  CHECK(steps == std::vector<std::int64_t>{0, 3, 6, 9});
  REQUIRE(delta_at_step.size() == 11);
  for (const auto& r : monitor.history().records()) {
    INFO("step " << r.step);
    // Each record carries its own step's numbers, not a neighbour's.
    CHECK(r.layers[0].delta_norm == Approx(delta_at_step[static_cast<std::size_t>(r.step)]));
    CHECK(std::isfinite(r.layers[0].update_ratio));
    CHECK(std::isfinite(r.loss));
  }
  CHECK_THROWS_AS(dg::GradientMonitor<double>(*net, options([](auto& o) { o.every = 0; })),
                  gs::ValueError);
}

TEST_CASE("total_norm is the pre-clip global norm of every parameter gradient",
          "[diagnostics][monitor]") {
  gs::Rng rng(8);
  nn::Sequential<double> net;
  net.add<nn::Dense>(16, 32, gs::init::he_normal, true, &rng);
  net.add<nn::BatchNorm>(32);
  net.add<nn::ReLU>();
  net.add<nn::Dense>(32, 32, gs::init::he_normal, false, &rng);  // no bias
  net.add<nn::ReLU>();
  net.add<nn::Dense>(32, 5, gs::init::he_normal, true, &rng);
  dg::GradientMonitor<double> monitor(net);
  gs::optim::SGD<double> opt(net.parameters(), {.lr = 0.01});
  gs::Tape<double> tape;
  for (int s = 0; s < 3; ++s) {
    tape.reset();
    auto loss =
        nn::softmax_cross_entropy(net(pixels<double>(32, 16, 300 + static_cast<std::uint64_t>(s))),
                                  labels(32, 5, 400 + static_cast<std::uint64_t>(s)));
    tape.backward(loss);
    const double before = gs::optim::grad_norm(net.parameters());
    monitor.record_gradients(loss.item());
    const double pre_clip = gs::optim::clip_grad_norm(net.parameters(), 0.01);  // always clips
    const double after = gs::optim::grad_norm(net.parameters());
    opt.step();
    monitor.record_update();
    opt.zero_grad();
    const auto& r = monitor.history().records().back();
    INFO("step " << s);
    CHECK(r.total_norm == Approx(before).epsilon(1e-12));
    CHECK(r.total_norm == Approx(pre_clip).epsilon(1e-12));
    CHECK(after == Approx(0.01).epsilon(1e-4));
    CHECK(r.total_norm > 10 * after);
  }
  // The monitor reads each gradient as backward completes it (post-accumulate hooks), so even a
  // record_gradients called after clipping reports the pre-clip norm.
  tape.reset();
  auto loss = nn::softmax_cross_entropy(net(pixels<double>(32, 16, 9)), labels(32, 5, 10));
  tape.backward(loss);
  const double unclipped = gs::optim::clip_grad_norm(net.parameters(), 0.01);
  REQUIRE(unclipped > 0.1);
  monitor.record_gradients();
  CHECK(monitor.history().records().back().total_norm == Approx(unclipped).epsilon(1e-12));
  // Gradients no backward has produced since the last record (set by hand) are read at record
  // time: here the clipped ones, as they now are.
  monitor.record_gradients();
  CHECK(monitor.history().records().back().total_norm == Approx(0.01).epsilon(1e-4));
}

TEST_CASE("total_norm counts every parameter, not only those named weight and bias",
          "[diagnostics][monitor]") {
  gs::Rng rng(12);
  nn::Sequential<double> net;
  net.add<nn::Dense>(6, 8, gs::init::he_normal, true, &rng);
  net.add<nn::ReLU>();
  net.add(std::make_shared<ScaledDense>(8, 3, rng));
  dg::GradientMonitor<double> monitor(net);
  gs::Tape<double> tape;
  auto loss = nn::softmax_cross_entropy(net(pixels<double>(10, 6, 13)), labels(10, 3, 14));
  tape.backward(loss);
  monitor.record_gradients();
  const double all = gs::optim::grad_norm(net.parameters());
  INFO("gain gradient norm: " << dynamic_cast<ScaledDense&>(net.at(2)).gain.grad().norm());
  CHECK(monitor.history().records().back().total_norm == Approx(all).epsilon(1e-12));
}

TEST_CASE("destroying the monitor removes its hooks", "[diagnostics][monitor][hooks]") {
  auto net = small_net();
  const auto x = pixels<double>(8, 10, 20);
  const auto y = labels(8, 4, 21);
  gs::optim::SGD<double> opt(net->parameters(), {.lr = 0.05});
  gs::Tape<double> tape;
  {
    dg::GradientMonitor<double> monitor(*net);
    for (int s = 0; s < 3; ++s) train_step(tape, *net, opt, &monitor, x, y);
    CHECK(monitor.history().size() == 3);
  }
  // The model trains on without the monitor (under ASan: no use after free).
  for (int s = 0; s < 3; ++s) train_step<double>(tape, *net, opt, nullptr, x, y);
  // A new monitor starts from scratch.
  dg::GradientMonitor<double> again(*net);
  train_step(tape, *net, opt, &again, x, y);
  CHECK(again.history().size() == 1);
  CHECK(again.history().records().front().step == 0);
}

TEST_CASE("a monitor destroyed between forward and backward leaves no hook on the tape",
          "[diagnostics][monitor][hooks]") {
  auto net = small_net();
  gs::Tape<double> tape;
  gs::Tensor<double> loss;
  {
    dg::GradientMonitor<double> monitor(*net);
    loss = nn::softmax_cross_entropy((*net)(pixels<double>(8, 10, 22)), labels(8, 4, 23));
  }
  // The delta-norm hooks the monitor put on this step's tape nodes capture the monitor: if
  // they survive it, tape.backward(loss) writes into freed memory. (Not run here: it is UB.)
  std::size_t hooked = 0;
  for (std::uint32_t i = 0; i < tape.size(); ++i) hooked += tape.node(i).has_hooks;
  CHECK(hooked == 0);
}

TEST_CASE("a model destroyed before its monitor is not touched by the monitor's destructor",
          "[diagnostics][monitor][hooks]") {
  auto net = small_net();
  auto monitor = std::make_unique<dg::GradientMonitor<double>>(*net);
  gs::Tape<double> tape;
  auto loss = nn::softmax_cross_entropy((*net)(pixels<double>(8, 10, 24)), labels(8, 4, 25));
  tape.backward(loss);
  monitor->record_gradients();
  net.reset();      // the modules are gone
  monitor.reset();  // removing hooks from dead modules must do nothing (ASan checks this)
  SUCCEED();
}

TEST_CASE("eval-mode forwards do not overwrite the training step's statistics",
          "[diagnostics][monitor]") {
  gs::Rng rng(30);
  nn::Sequential<double> net;
  net.add<nn::Dense>(10, 12, gs::init::he_normal, true, &rng);
  net.add<nn::BatchNorm>(12);
  net.add<nn::Sigmoid>();
  net.add<nn::Dense>(12, 4, gs::init::he_normal, true, &rng);
  dg::GradientMonitor<double> monitor(net);
  REQUIRE(monitor.layers()[0].activation == "Sigmoid");
  std::vector<Mat> act;
  net.at(2).register_forward_hook(
      [&](nn::Module<double>&, const gs::Tensor<double>&, const gs::Tensor<double>& y) {
        act.emplace_back(y.value());
      });
  gs::Tape<double> tape;
  const auto x = pixels<double>(16, 10, 31);
  auto loss = nn::softmax_cross_entropy(net(x), labels(16, 4, 32));
  tape.backward(loss);
  // Validation in eval mode, with and without a tape, between backward and record_gradients.
  net.eval();
  const auto other =
      gs::Tensor<double>((pixels<double>(16, 10, 33).value().array() * 7.0 - 3.0).matrix());
  {
    gs::NoGrad no_grad;
    net(other);
  }
  net(other);
  net.train();
  monitor.record_gradients(loss.item());
  REQUIRE(act.size() == 3);
  REQUIRE_FALSE(act[0].isApprox(act[1]));
  const auto& s = monitor.history().records().back().layers[0];
  CHECK(s.act_mean == Approx(act[0].mean()).epsilon(1e-12));
  const double sat =
      static_cast<double>((act[0].array() * (1 - act[0].array()) < 0.0025).count()) / act[0].size();
  CHECK(s.saturated_fraction == Approx(sat));
  CHECK(std::isfinite(s.delta_norm));

  // An eval-only step (no training forward at all) records no activation numbers.
  net.eval();
  tape.reset();
  auto eval_loss = nn::softmax_cross_entropy(net(x), labels(16, 4, 32));
  tape.backward(eval_loss);
  net.train();
  monitor.record_gradients();
  const auto& e = monitor.history().records().back().layers[0];
  CHECK(std::isnan(e.act_mean));
  CHECK(std::isnan(e.delta_norm));
  CHECK(std::isfinite(e.weight_grad_norm));
}

TEST_CASE("update ratios: only after a recorded step, and not at all without track_updates",
          "[diagnostics][monitor]") {
  auto net = small_net();
  const auto x = pixels<double>(8, 10, 40);
  const auto y = labels(8, 4, 41);
  gs::optim::SGD<double> opt(net->parameters(), {.lr = 0.05});
  gs::Tape<double> tape;
  {
    dg::GradientMonitor<double> monitor(*net, options([](auto& o) { o.every = 2; }));
    monitor.record_update();  // nothing recorded yet: a no-op
    CHECK(monitor.history().empty());
    train_step(tape, *net, opt, &monitor, x, y);  // step 0: recorded
    const double u0 = monitor.history().records().back().layers[0].update_ratio;
    CHECK(std::isfinite(u0));
    train_step(tape, *net, opt, &monitor, x, y);  // step 1: skipped, must not touch record 0
    CHECK(monitor.history().size() == 1);
    CHECK(monitor.history().records().back().layers[0].update_ratio == u0);
    monitor.record_update();  // a second call after the same step changes nothing either
    CHECK(monitor.history().records().back().layers[0].update_ratio == u0);
  }
  {
    dg::GradientMonitor<double> monitor(*net, options([](auto& o) { o.track_updates = false; }));
    train_step(tape, *net, opt, &monitor, x, y);
    CHECK(std::isnan(monitor.history().records().back().layers[0].update_ratio));
    CHECK(std::isfinite(monitor.history().records().back().layers[0].weight_norm));
  }
  {
    dg::GradientMonitor<double> monitor(*net, options([](auto& o) {
      o.delta_norms = false;
      o.activation_stats = false;
    }));
    train_step(tape, *net, opt, &monitor, x, y);
    const auto& s = monitor.history().records().back().layers[0];
    CHECK(std::isnan(s.delta_norm));
    CHECK(std::isnan(s.act_mean));
    CHECK(s.flow_norm() == s.weight_grad_norm);  // falls back to the weight gradient norm
  }
}

TEST_CASE("float gradient norms are accumulated without overflow", "[diagnostics][monitor]") {
  // Every element is a finite float (1e20), but the sum of squares (2.4e42) is not: a norm
  // accumulated in float overflows to inf although the true norm (1.5e21) is a fine double.
  gs::Rng rng(90);
  nn::Sequential<float> net;
  auto& d = net.add<nn::Dense>(4, 6, gs::init::he_normal, true, &rng);
  net.add<nn::ReLU>();
  net.add<nn::Dense>(6, 2, gs::init::he_normal, true, &rng);
  dg::GradientMonitor<float> monitor(net);
  d.weight().mutable_grad().setConstant(1e20f);
  monitor.record_gradients();
  const auto& s = monitor.history().records().back().layers[0];
  CHECK(s.nan_count == 0);
  CHECK(s.inf_count == 0);
  CHECK(s.weight_grad_norm == Approx(1e20 * std::sqrt(24.0)).epsilon(1e-6));
  CHECK(std::isfinite(monitor.history().records().back().total_norm));
  // Exploding, for the size of the norm, but not for NaN/Inf values there are none of.
  const auto diag = monitor.diagnose();
  INFO(diag.str());
  CHECK(diag.verdict() == dg::Verdict::exploding);
  for (const auto& f : diag.findings) CHECK(f.summary.find("0 NaN and 0 Inf") == std::string::npos);
}

TEST_CASE("large weights: norm and update ratio from sampled rows, exact with update_sample 0",
          "[diagnostics][monitor]") {
  // Dense(300 -> 200): 60,000 weights, above the default sample of 8192 (about 27 rows of 200).
  const auto x = pixels<double>(32, 300, 18);
  const auto y = labels(32, 5, 19);
  auto run = [&](std::size_t sample) {
    auto copy = relu_mlp<double>({300, 200, 5}, 17);  // the same weights every time
    dg::GradientMonitor<double> monitor(*copy, options([&](auto& o) { o.update_sample = sample; }));
    gs::optim::Adam<double> opt(copy->parameters(), {.lr = 1e-3});
    gs::Tape<double> tape;
    const Mat before = dense_layers(*copy)[0]->weight().value();
    train_step(tape, *copy, opt, &monitor, x, y);
    const Mat after = dense_layers(*copy)[0]->weight().value();
    const auto& s = monitor.history().records().back().layers[0];
    return std::tuple{s.weight_norm, s.update_ratio, before.norm(),
                      (after - before).norm() / before.norm()};
  };
  const auto [norm_all, ratio_all, exact_norm, exact_ratio] = run(0);
  CHECK(norm_all == Approx(exact_norm).epsilon(1e-12));
  CHECK(ratio_all == Approx(exact_ratio).epsilon(1e-9));
  const auto [norm_sampled, ratio_sampled, n2, r2] = run(8192);
  CHECK(n2 == exact_norm);  // the same run
  // An estimate from 27 of 200 rows: within a few percent for weights drawn alike.
  CHECK(norm_sampled == Approx(exact_norm).epsilon(0.05));
  CHECK(ratio_sampled == Approx(exact_ratio).epsilon(0.10));
  CHECK(norm_sampled != exact_norm);  // it really is a sample
}
