// Verdicts of the gradient monitor on networks built to show each one: a healthy deep residual
// network, exploding weights, dead ReLUs, saturated sigmoids, bad update ratios, and NaN/Inf
// whose origin (op, module, forward or backward) anomaly mode names.

#include "diag_test_util.hpp"

using namespace diag_test;

namespace {

/// log(x): NaN for a negative input (forward).
template <gs::Scalar T>
struct Log : nn::Module<T> {
  gs::Tensor<T> forward(const gs::Tensor<T>& x) override { return gs::log(x); }
  std::string kind() const override { return "Log"; }
};

/// sqrt(x): finite for x >= 0, but its derivative 1 / (2 sqrt(x)) is infinite at 0 (backward).
template <gs::Scalar T>
struct Sqrt : nn::Module<T> {
  gs::Tensor<T> forward(const gs::Tensor<T>& x) override { return gs::sqrt(x); }
  std::string kind() const override { return "Sqrt"; }
};

double evidence(const dg::Finding& f, const std::string& name) {
  for (const auto& [k, v] : f.evidence)
    if (k == name) return v;
  FAIL("finding has no evidence '" << name << "'");
  return 0;
}

bool names(const dg::Finding& f, const std::string& path) {
  return std::find(f.layers.begin(), f.layers.end(), path) != f.layers.end();
}

}  // namespace

TEST_CASE("a 20-layer pre-activation residual ReLU network with He init and BN is healthy",
          "[diagnostics][verdict]") {
  gs::Rng rng(42);
  gs::manual_seed(42);  // residual_block draws from default_rng()
  nn::Sequential<float> net;
  net.add<nn::Dense>(784, 64, gs::init::he_normal, true, &rng);
  for (int i = 0; i < 10; ++i) net.add(nn::residual_block<float>(64));
  net.add<nn::BatchNorm>(64);
  net.add<nn::ReLU>();
  net.add<nn::Dense>(64, 10, gs::init::he_normal, true, &rng);

  dg::GradientMonitor<float> monitor(net);
  // 22 dense layers in the flow (1 + 10 x 2 + 1) and 21 batch-norm layers reported beside them.
  std::size_t flow = 0, bn = 0;
  for (const auto& l : monitor.layers()) {
    flow += l.in_flow;
    bn += l.kind.rfind("BatchNorm", 0) == 0;
  }
  CHECK(flow == 22);
  CHECK(bn == 21);

  gs::optim::SGD<float> opt(net.parameters(), {.lr = 0.01f, .momentum = 0.9f});
  gs::Tape<float> tape;
  for (int step = 0; step < 6; ++step) {
    const auto x = pixels<float>(128, 784, 1000 + static_cast<std::uint64_t>(step));
    const auto y = labels(128, 10, 2000 + static_cast<std::uint64_t>(step));
    train_step(tape, net, opt, &monitor, x, y);
  }
  REQUIRE(monitor.history().size() == 6);
  const auto d = monitor.diagnose();
  INFO(d.str());
  INFO(monitor.report());
  CHECK(d.healthy());
  CHECK(d.verdict() == dg::Verdict::healthy);
  CHECK(d.step == 5);
  CHECK(d.str().find("healthy") != std::string::npos);
  // Every number the verdicts use was measured.
  const auto& r = monitor.history().records().back();
  for (std::size_t l = 0; l < r.layers.size(); ++l) {
    INFO("layer " << monitor.layers()[l].path);
    CHECK(std::isfinite(r.layers[l].weight_grad_norm));
    CHECK(std::isfinite(r.layers[l].update_ratio));
    if (monitor.layers()[l].in_flow) CHECK(std::isfinite(r.layers[l].delta_norm));
  }
}

TEST_CASE("a plain ReLU network with weights scaled by 10 is exploding", "[diagnostics][verdict]") {
  auto net = relu_mlp<double>({32, 64, 64, 64, 64, 64, 10}, 5);
  for (auto* d : dense_layers(*net)) d->weight().mutable_value() *= 10.0;
  dg::GradientMonitor<double> monitor(*net);
  gs::Tape<double> tape;
  const auto x = pixels<double>(64, 32, 6);
  const auto y = labels(64, 10, 7);
  auto loss = nn::softmax_cross_entropy((*net)(x), y);
  tape.backward(loss);
  monitor.record_gradients(loss.item());

  const auto d = monitor.diagnose();
  INFO(d.str());
  CHECK(d.verdict() == dg::Verdict::exploding);
  const auto* f = d.find(dg::Verdict::exploding);
  REQUIRE(f != nullptr);
  CHECK(names(*f, "0"));
  CHECK(names(*f, "10"));  // the output layer
  CHECK(evidence(*f, "ratio") > 1e2);
  CHECK(evidence(*f, "gain") > 3);
  CHECK_FALSE(d.has(dg::Verdict::vanishing));
  // The same network at He scale is not exploding.
  auto ok = relu_mlp<double>({32, 64, 64, 64, 64, 64, 10}, 5);
  dg::GradientMonitor<double> ok_monitor(*ok);
  tape.reset();
  auto ok_loss = nn::softmax_cross_entropy((*ok)(x), y);
  tape.backward(ok_loss);
  ok_monitor.record_gradients(ok_loss.item());
  INFO(ok_monitor.diagnose().str());
  CHECK_FALSE(ok_monitor.diagnose().has(dg::Verdict::exploding));
}

TEST_CASE("a total gradient norm above the threshold is exploding", "[diagnostics][verdict]") {
  auto net = relu_mlp<double>({8, 16, 4}, 9);
  dg::MonitorOptions opt;
  opt.thresholds.exploding_norm = 1e-6;  // any real gradient is "huge" now
  dg::GradientMonitor<double> monitor(*net, opt);
  gs::Tape<double> tape;
  auto loss = nn::softmax_cross_entropy((*net)(pixels<double>(16, 8, 1)), labels(16, 4, 2));
  tape.backward(loss);
  monitor.record_gradients();
  const auto d = monitor.diagnose();
  INFO(d.str());
  const auto* f = d.find(dg::Verdict::exploding);
  REQUIRE(f != nullptr);
  CHECK(evidence(*f, "total_norm") == Approx(monitor.history().records().back().total_norm));
}

TEST_CASE("a ReLU layer with most units dead gets the dead_relu verdict",
          "[diagnostics][verdict]") {
  auto net = relu_mlp<double>({20, 32, 32, 5}, 11);
  auto dense = dense_layers(*net);
  // 24 of the 32 units of the second layer get a bias no input can overcome.
  auto b = dense[1]->bias().mutable_value();
  for (int j = 0; j < 24; ++j) b(0, j) = -100;
  dg::GradientMonitor<double> monitor(*net);
  gs::Tape<double> tape;
  auto loss = nn::softmax_cross_entropy((*net)(pixels<double>(64, 20, 12)), labels(64, 5, 13));
  tape.backward(loss);
  monitor.record_gradients(loss.item());

  const auto& r = monitor.history().records().back();
  CHECK(r.layers[1].dead_fraction >= 0.75);  // the 24 forced ones, maybe a few more
  CHECK(r.layers[0].dead_fraction < 0.5);
  CHECK(std::isnan(r.layers[2].dead_fraction));  // the output layer has no activation
  const auto d = monitor.diagnose();
  INFO(d.str());
  CHECK(d.verdict() == dg::Verdict::dead_relu);
  const auto* f = d.find(dg::Verdict::dead_relu);
  REQUIRE(f != nullptr);
  CHECK(f->layers == std::vector<std::string>{dense[1]->path()});
  CHECK(evidence(*f, "dead_fraction") == Approx(r.layers[1].dead_fraction));
  CHECK(monitor.report().find("D") != std::string::npos);
}

TEST_CASE("sigmoid units pushed far from zero by huge weights get the saturated verdict",
          "[diagnostics][verdict]") {
  gs::Rng rng(21);
  nn::Sequential<double> net;
  auto& big = net.add<nn::Dense>(20, 32, gs::init::xavier_uniform, true, &rng);
  net.add<nn::Sigmoid>();
  net.add<nn::Dense>(32, 5, gs::init::xavier_uniform, true, &rng);
  big.weight().mutable_value() *= 100.0;
  dg::GradientMonitor<double> monitor(net);
  gs::Tape<double> tape;
  auto loss = nn::softmax_cross_entropy(net(pixels<double>(64, 20, 22)), labels(64, 5, 23));
  tape.backward(loss);
  monitor.record_gradients(loss.item());

  const auto d = monitor.diagnose();
  INFO(d.str());
  const auto* f = d.find(dg::Verdict::saturated);
  REQUIRE(f != nullptr);
  CHECK(f->layers == std::vector<std::string>{"0"});
  CHECK(evidence(*f, "saturated_fraction") > 0.8);
  CHECK(f->summary.find("Sigmoid") != std::string::npos);
  // Unscaled, the same layer is not saturated.
  big.weight().mutable_value() /= 100.0;
  dg::GradientMonitor<double> again(net);
  tape.reset();
  auto loss2 = nn::softmax_cross_entropy(net(pixels<double>(64, 20, 22)), labels(64, 5, 23));
  tape.backward(loss2);
  again.record_gradients();
  CHECK(again.history().records().back().layers[0].saturated_fraction < 0.1);
  CHECK_FALSE(again.diagnose().has(dg::Verdict::saturated));
}

TEST_CASE("tanh saturation is measured too", "[diagnostics][verdict]") {
  gs::Rng rng(31);
  nn::Sequential<double> net;
  auto& big = net.add<nn::Dense>(10, 16, gs::init::xavier_uniform, true, &rng);
  net.add<nn::Tanh>();
  net.add<nn::Dense>(16, 3, gs::init::xavier_uniform, true, &rng);
  big.weight().mutable_value() *= 100.0;
  dg::GradientMonitor<double> monitor(net);
  gs::Tape<double> tape;
  auto loss = nn::softmax_cross_entropy(net(pixels<double>(32, 10, 1)), labels(32, 3, 2));
  tape.backward(loss);
  monitor.record_gradients();
  CHECK(monitor.layers()[0].activation == "Tanh");
  CHECK(monitor.diagnose().has(dg::Verdict::saturated));
}

TEST_CASE("a huge learning rate gets the update_ratio verdict, a tiny one too",
          "[diagnostics][verdict]") {
  const auto x = pixels<double>(32, 16, 41);
  const auto y = labels(32, 4, 42);
  for (const double lr : {100.0, 1e-9}) {
    INFO("lr " << lr);
    auto net = relu_mlp<double>({16, 16, 16, 4}, 43);
    dg::GradientMonitor<double> monitor(*net);
    gs::optim::SGD<double> opt(net->parameters(), {.lr = lr});
    gs::Tape<double> tape;
    train_step(tape, *net, opt, &monitor, x, y);
    const auto d = monitor.diagnose();
    INFO(d.str());
    const auto* f = d.find(dg::Verdict::update_ratio);
    REQUIRE(f != nullptr);
    CHECK(f->layers.size() == 3);  // every dense layer
    const double u = evidence(*f, "update_ratio[0]");
    const auto& r = monitor.history().records().back();
    CHECK(u == Approx(r.layers[0].update_ratio));
    if (lr > 1) {
      CHECK(u > 0.1);
      CHECK(f->hints.front().find("too large") != std::string::npos);
    } else {
      CHECK(u < 1e-5);
      CHECK(f->hints.front().find("too small") != std::string::npos);
    }
  }
}

TEST_CASE("anomaly mode names a NaN made in forward by a module's log",
          "[diagnostics][verdict][nan]") {
  gs::Rng rng(51);
  nn::Sequential<double> net;
  net.add<nn::Dense>(6, 8, gs::init::xavier_uniform, true, &rng);
  net.add<nn::ReLU>();
  auto inner = std::make_shared<nn::Sequential<double>>();
  inner->add<nn::Dense>(8, 8, gs::init::xavier_uniform, true, &rng);  // outputs of both signs
  auto log = std::make_shared<Log<double>>();
  inner->add(log);
  net.add(inner);
  net.add<nn::Dense>(8, 3, gs::init::xavier_uniform, true, &rng);
  REQUIRE(log->path() == "2.1");

  dg::GradientMonitor<double> monitor(net, options([](auto& o) { o.detect_nan_origin = true; }));
  gs::Tape<double> tape;
  const auto x = pixels<double>(16, 6, 52);
  const auto y = labels(16, 3, 53);
  auto step = [&] {
    tape.reset();
    auto loss = nn::softmax_cross_entropy(net(x), y);
    tape.backward(loss);
    return loss.item();
  };
  CHECK_FALSE(gs::anomaly_enabled());
  CHECK_THROWS_AS(monitor.guard(step), gs::NumericalError);
  CHECK_FALSE(gs::anomaly_enabled());  // the guard's anomaly mode ends with it
  REQUIRE(monitor.nan_origin().has_value());
  const auto& o = *monitor.nan_origin();
  CHECK(o.op == "log");
  CHECK(o.phase == "forward");
  CHECK(o.label.find(log->path()) != std::string::npos);
  CHECK(o.label == log->label());
  CHECK(o.step == 0);
  CHECK(o.message.find("[gradscope.numerical]") == 0);

  const auto d = monitor.diagnose();
  INFO(d.str());
  CHECK(d.verdict() == dg::Verdict::exploding);
  const auto* f = d.find(dg::Verdict::exploding);
  REQUIRE(f != nullptr);
  REQUIRE_FALSE(f->layers.empty());
  CHECK(f->layers.front().find("2.1") != std::string::npos);
  CHECK(f->summary.find("'log'") != std::string::npos);
  CHECK(f->summary.find("forward") != std::string::npos);
  CHECK(f->summary.find("2.1") != std::string::npos);
  CHECK(monitor.report().find("exploding") != std::string::npos);
}

TEST_CASE("anomaly mode names an Inf made in backward by sqrt at 0",
          "[diagnostics][verdict][nan]") {
  gs::Rng rng(61);
  nn::Sequential<double> net;
  auto& first = net.add<nn::Dense>(6, 8, gs::init::xavier_uniform, true, &rng);
  net.add<nn::ReLU>();
  auto sq = std::make_shared<Sqrt<double>>();
  net.add(sq);
  net.add<nn::Dense>(8, 3, gs::init::xavier_uniform, true, &rng);
  first.bias().mutable_value()(0, 0) = -100;  // unit 0 is 0 after the ReLU for every input

  dg::GradientMonitor<double> monitor(net, options([](auto& o) { o.detect_nan_origin = true; }));
  gs::Tape<double> tape;
  const auto x = pixels<double>(16, 6, 62);
  const auto y = labels(16, 3, 63);
  double forward_loss = 0;
  auto step = [&] {
    tape.reset();
    auto loss = nn::softmax_cross_entropy(net(x), y);
    forward_loss = loss.item();  // forward is finite: sqrt(0) = 0
    tape.backward(loss);
  };
  CHECK_THROWS_AS(monitor.guard(step), gs::NumericalError);
  CHECK(std::isfinite(forward_loss));
  REQUIRE(monitor.nan_origin().has_value());
  const auto& o = *monitor.nan_origin();
  CHECK(o.op == "sqrt");
  CHECK(o.phase == "backward");
  CHECK(o.label.find(sq->path()) != std::string::npos);
  CHECK(o.label == sq->label());

  const auto d = monitor.diagnose();
  INFO(d.str());
  CHECK(d.verdict() == dg::Verdict::exploding);
  const auto* f = d.find(dg::Verdict::exploding);
  REQUIRE(f != nullptr);
  CHECK(f->layers.front() == sq->label());
  CHECK(f->summary.find("'sqrt'") != std::string::npos);
  CHECK(f->summary.find("backward") != std::string::npos);

  // The first origin wins: a later, different failure does not replace it.
  const gs::NumericalError other("later", "exp", "forward", "9 (Exp)");
  monitor.note(other);
  CHECK(monitor.nan_origin()->op == "sqrt");
}

TEST_CASE("without detect_nan_origin, guard runs the step as is and NaNs are counted",
          "[diagnostics][verdict][nan]") {
  gs::Rng rng(71);
  nn::Sequential<double> net;
  net.add<nn::Dense>(6, 8, gs::init::xavier_uniform, true, &rng);
  net.add<nn::ReLU>();
  net.add(std::make_shared<Log<double>>());  // log(0) = -inf, then NaN downstream
  net.add<nn::Dense>(8, 3, gs::init::xavier_uniform, true, &rng);
  dense_layers(net)[0]->bias().mutable_value()(0, 0) = -100;

  dg::GradientMonitor<double> monitor(net);
  gs::Tape<double> tape;
  const auto x = pixels<double>(16, 6, 72);
  const auto y = labels(16, 3, 73);
  const double l = monitor.guard([&] {
    auto loss = nn::softmax_cross_entropy(net(x), y);
    tape.backward(loss);
    return loss.item();
  });
  CHECK(std::isnan(l));
  CHECK_FALSE(monitor.nan_origin().has_value());
  monitor.record_gradients(l);
  const auto& r = monitor.history().records().back();
  CHECK(r.layers[0].nan_count > 0);  // NaN reached the first layer's gradients
  CHECK(r.layers[1].nan_count > 0);
  CHECK_FALSE(std::isfinite(r.total_norm));
  const auto d = monitor.diagnose();
  INFO(d.str());
  CHECK(d.verdict() == dg::Verdict::exploding);
  const auto* f = d.find(dg::Verdict::exploding);
  REQUIRE(f != nullptr);
  CHECK(names(*f, "0"));
  CHECK(f->summary.find("first in layer 0") != std::string::npos);
  CHECK(f->hints.front().find("detect_nan_origin") != std::string::npos);
  // The table flags the layers with NaN/Inf.
  const auto report = monitor.report();
  INFO(report);
  CHECK(report.find("N\n") != std::string::npos);
  // A measured NaN must not look like "not measured" ("-" in the table, a missing CSV row):
  // diagnostics never hide trouble.
  const auto table = parse_table(report);
  CHECK(std::isnan(r.layers[0].weight_grad_norm));
  CHECK(table.at("0").dW != "-");
  CHECK(report.find("pre-clip total norm -") == std::string::npos);
  std::ostringstream csv;
  dg::write_csv(csv, monitor.layers(), monitor.history());
  bool nan_row = false, total_row = false;
  for (const auto& row : parse_csv(csv.str())) {
    nan_row = nan_row || (row.layer == "0" && row.metric == "weight_grad_norm");
    total_row = total_row || row.metric == "total_norm";
  }
  CHECK(nan_row);
  CHECK(total_row);
}

TEST_CASE("verdict names and severity order", "[diagnostics][verdict]") {
  CHECK(std::string(dg::verdict_name(dg::Verdict::exploding)) == "exploding");
  CHECK(std::string(dg::verdict_name(dg::Verdict::vanishing)) == "vanishing");
  CHECK(std::string(dg::verdict_name(dg::Verdict::dead_relu)) == "dead_relu");
  CHECK(std::string(dg::verdict_name(dg::Verdict::saturated)) == "saturated");
  CHECK(std::string(dg::verdict_name(dg::Verdict::update_ratio)) == "update_ratio");
  CHECK(std::string(dg::verdict_name(dg::Verdict::healthy)) == "healthy");
  dg::Diagnosis d;
  CHECK(d.healthy());
  d.findings.push_back({dg::Verdict::dead_relu, "d", {}, {}, {}});
  d.findings.push_back({dg::Verdict::vanishing, "v", {}, {}, {}});
  CHECK(d.verdict() == dg::Verdict::vanishing);
  CHECK_FALSE(d.healthy());
  CHECK(d.has(dg::Verdict::dead_relu));
  CHECK_FALSE(d.has(dg::Verdict::exploding));
  CHECK(d.find(dg::Verdict::saturated) == nullptr);
}

TEST_CASE("an empty history diagnoses as healthy and says nothing was recorded",
          "[diagnostics][verdict]") {
  auto net = relu_mlp<double>({4, 4, 2}, 1);
  dg::GradientMonitor<double> monitor(*net);
  CHECK(monitor.diagnose().healthy());
  CHECK(monitor.report().find("no gradients recorded yet") != std::string::npos);
}
