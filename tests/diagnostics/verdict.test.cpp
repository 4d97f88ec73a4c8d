// Verdicts of the gradient monitor on networks built to show each one: a healthy deep residual
// network, exploding weights, dead ReLUs, saturated sigmoids, bad update ratios, and NaN/Inf
// whose origin (op, module, forward or backward) anomaly mode names.

#include "diag_test_util.hpp"

#include <algorithm>
#include <limits>
#include <optional>

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

// ---- the report remembers; growth rules robust to batch noise ------------------------------

namespace {

const dg::Event* find_event(const dg::Diagnosis& d, dg::Verdict v, const std::string& rule) {
  for (const auto& e : d.events)
    if (e.verdict() == v && e.rule() == rule) return &e;
  return nullptr;
}

}  // namespace

TEST_CASE("an explosion during steps 1-9 stays in the report after 60 steps of Adam at lr 10",
          "[diagnostics][verdict][events]") {
  // Adam at lr 10 on a ReLU MLP: the loss jumps from about 3 to millions at step 1, the ReLUs
  // die, and the latest window calms down to `vanishing` / `dead_relu`. The report must still
  // tell of the explosion, with its steps and numbers.
  AdamExplosion run(60, {}, [&](int step, double) {
    if (step != 9) return;
    INFO(run.monitor->diagnose().str());
    CHECK(run.monitor->diagnose().verdict() == dg::Verdict::exploding);
  });
  auto& monitor = *run.monitor;
  const double first_loss = run.first_loss, peak_loss = run.peak_loss;
  REQUIRE(peak_loss > 1e4 * first_loss);  // the scenario: the loss did explode early on

  const auto d = monitor.diagnose();
  const auto report = monitor.report();
  INFO(report);
  CHECK(d.step == 59);
  // The latest window is calm about it ...
  CHECK_FALSE(d.has(dg::Verdict::exploding));
  // ... and the report remembers: on the verdict line and in the events, with steps and numbers.
  CHECK(report.find("earlier in the run: exploding (steps 1-") != std::string::npos);
  CHECK(report.find("events during the run") != std::string::npos);
  REQUIRE(d.happened(dg::Verdict::exploding));
  const auto* e = find_event(d, dg::Verdict::exploding, "divergence");
  REQUIRE(e != nullptr);
  CHECK(e->first_step == 1);
  CHECK(e->last_step >= 9);
  CHECK(e->last_step < 59);
  CHECK(e->occurrences >= 9);
  CHECK(e->worst_step >= 1);
  CHECK(e->worst_step <= e->last_step);
  CHECK(evidence(e->finding, "loss") > 1e3 * first_loss);
  CHECK(evidence(e->finding, "start_loss") == Approx(first_loss));
  CHECK(e->finding.summary.find("diverged") != std::string::npos);
  CHECK_FALSE(e->finding.hints.empty());
  CHECK_FALSE(d.ongoing(*e));
  CHECK(report.find(e->str()) != std::string::npos);
  // Merged, not one event per step: a handful at most for one explosion.
  CHECK(monitor.events().events().size() <= 4);
  CHECK(monitor.events().dropped() == 0);
}

TEST_CASE("a tanh net whose loss oscillates hundreds of times above its start is exploding",
          "[diagnostics][verdict][events]") {
  // SGD at lr 300 on a tanh MLP: the loss jumps to several hundred and oscillates there (the
  // gradients stay moderate: tanh saturates and softmax cross-entropy bounds dL/dlogits), so
  // the gradient-norm rules alone never call it.
  const auto data = blobs<float>(2000, 64, 10, 0.3, 7);
  gs::Rng rng(3);
  nn::Sequential<float> net;
  const auto init = gs::init::xavier_normal_with(5.0 / 3.0);
  net.add<nn::Dense>(64, 100, init, true, &rng);
  net.add<nn::Tanh>();
  net.add<nn::Dense>(100, 100, init, true, &rng);
  net.add<nn::Tanh>();
  net.add<nn::Dense>(100, 10, init, true, &rng);
  gs::optim::SGD<float> opt(net.parameters(), {.lr = 300.0f});
  dg::GradientMonitor<float> monitor(net);
  gs::Tape<float> tape;
  double first_loss = 0;
  int step = 0;
  for (int epoch = 0; epoch < 6; ++epoch) {
    double lo = 1e300, hi = 0;
    for (gs::Index at = 0; at + 32 <= 2000; at += 32, ++step) {
      const double l = train_step(tape, net, opt, &monitor, data.rows(at, 32), data.labels(at, 32));
      if (step == 0) first_loss = l;
      if (epoch > 0) lo = std::min(lo, l), hi = std::max(hi, l);
    }
    const auto d = monitor.diagnose();
    INFO("epoch " << epoch << ": " << d.str());
    if (epoch == 0) continue;
    CHECK(lo > 50 * first_loss);  // the scenario: large and unstable
    CHECK(hi > 1.3 * lo);
    CHECK(d.verdict() == dg::Verdict::exploding);
    const auto* f = d.find(dg::Verdict::exploding);
    REQUIRE(f != nullptr);
    CHECK(f->rule == "divergence");
    CHECK(evidence(*f, "loss_ratio") > 10);
    CHECK(evidence(*f, "start_loss") == Approx(first_loss));
    CHECK(f->summary.find("diverged") != std::string::npos);
    CHECK(f->hints.front().find("learning rate") != std::string::npos);
  }
}

TEST_CASE("a healthy sigmoid net at batch 10 is never called exploding from noisy batch norms",
          "[diagnostics][verdict][events]") {
  // One hidden sigmoid layer, SGD at lr 3 on batches of 10 (the setting of Nielsen's chapter 1):
  // the loss falls steadily, while the gradient norm of a batch of easy samples is tiny and the
  // next batch's large, so the norm jumps by 100x and more from one step to the next. Medians
  // over windows must not take that noise for an explosion, at any epoch or any recorded step.
  const auto data = blobs<float>(2000, 64, 10, 0.3, 7);
  gs::Rng rng(3);
  nn::Sequential<float> net;
  net.add<nn::Dense>(64, 30, gs::init::xavier_uniform, true, &rng);
  net.add<nn::Sigmoid>();
  net.add<nn::Dense>(30, 10, gs::init::xavier_uniform, true, &rng);
  gs::optim::SGD<float> opt(net.parameters(), {.lr = 3.0f});
  dg::GradientMonitor<float> monitor(net);
  gs::Tape<float> tape;
  double first_epoch = 0, last_epoch = 0, max_jump = 0, previous_norm = 0;
  for (int epoch = 0; epoch < 25; ++epoch) {
    double sum = 0;
    for (gs::Index at = 0; at + 10 <= 2000; at += 10) {
      sum += train_step(tape, net, opt, &monitor, data.rows(at, 10), data.labels(at, 10));
      const double norm = monitor.history().records().back().total_norm;
      if (previous_norm > 0) max_jump = std::max(max_jump, norm / previous_norm);
      previous_norm = norm;
    }
    (epoch == 0 ? first_epoch : last_epoch) = sum / 200;
    const auto d = monitor.diagnose();
    INFO("epoch " << epoch << ": " << d.str());
    CHECK_FALSE(d.has(dg::Verdict::exploding));
  }
  // The scenario: it learns, with noisy small-batch norms.
  CHECK(last_epoch < 0.5 * first_epoch);
  CHECK(max_jump > 100);
  gs::NoGrad no_grad;
  CHECK(nn::accuracy(net(data.rows(0, 2000)), data.labels(0, 2000)) > 0.85);
  // No exploding event at any recorded step either.
  const auto d = monitor.diagnose();
  INFO(d.str());
  CHECK_FALSE(d.happened(dg::Verdict::exploding));
}

TEST_CASE("a refused optimiser step, noted, names the parameter, the optimiser and the growth",
          "[diagnostics][verdict][nan][events]") {
  // A two-layer linear regression trained by SGD at a stable learning rate for 30 steps, then
  // at one too large for it: the loss and the gradients grow geometrically until a gradient
  // overflows; the optimiser refuses that step (NonFinite::error) and the user passes the
  // exception to monitor.note.
  gs::Rng rng(5);
  nn::Sequential<float> net;
  net.add<nn::Dense>(16, 32, gs::init::he_normal, true, &rng);
  net.add<nn::Dense>(32, 4, gs::init::he_normal, true, &rng);
  gs::Rng data(11);
  const auto x = gs::Tensor<float>::uniform(64, 16, data, 0.0f, 1.0f);
  const auto target = gs::Tensor<float>::uniform(64, 4, data, 0.0f, 1.0f);
  gs::optim::SGD<float> opt(net.parameters(), {.lr = 0.02f});
  dg::GradientMonitor<float> monitor(net);
  gs::Tape<float> tape;
  std::optional<gs::NumericalError> refused;
  int step = 0;
  for (; step < 300 && !refused; ++step) {
    if (step == 30) opt.set_lr(0.2f);
    tape.reset();
    auto loss = nn::mse(net(x), target);
    tape.backward(loss);
    monitor.record_gradients(loss.item());
    try {
      opt.step();
    } catch (const gs::NumericalError& e) {
      refused = e;
      monitor.note(e);
    }
    monitor.record_update();
    opt.zero_grad();
  }
  REQUIRE(refused.has_value());
  // The error itself carries the origin in its fields.
  CHECK(refused->op() == "SGD.step");
  CHECK(refused->phase() == "update");
  CHECK_FALSE(refused->label().empty());

  const auto d = monitor.diagnose();
  const auto report = monitor.report();
  INFO(report);
  REQUIRE(monitor.nan_origin().has_value());
  const auto& o = *monitor.nan_origin();
  // The step of the refusal is the step whose gradients were recorded, the report's step.
  CHECK(o.step == step - 1);
  CHECK(o.step == d.step);
  CHECK(o.step == monitor.history().records().back().step);
  CHECK(report.find("gradient report: step " + std::to_string(o.step)) != std::string::npos);
  const auto* f = d.find(dg::Verdict::exploding);
  REQUIRE(f != nullptr);
  CHECK(f->rule == "nan_origin");
  // Named: the optimiser and the parameter, and the parameter's layer; no empty fields.
  const std::string param = refused->label();
  const std::string layer = param.substr(0, param.rfind('.'));
  CHECK(f->summary.find("SGD.step refused the update of step " + std::to_string(o.step)) == 0);
  CHECK(f->summary.find("parameter '" + param + "'") != std::string::npos);
  CHECK(f->summary.find("(layer " + layer + ", Dense(") != std::string::npos);
  CHECK(f->summary.find("''") == std::string::npos);
  CHECK(f->summary.find(" of ''") == std::string::npos);
  CHECK(f->layers == std::vector<std::string>{layer});
  // The growth of the loss and the norms before it.
  CHECK(f->summary.find("Before it, the loss went from") != std::string::npos);
  CHECK(f->summary.find("the total gradient norm went from") != std::string::npos);
  CHECK(evidence(*f, "loss_growth") > 10);
  CHECK(evidence(*f, "total_norm_growth") > 10);
  CHECK(evidence(*f, "total_norm_last") > evidence(*f, "total_norm_low"));
  // Hints that fit: the growth, not an op's domain.
  std::string hints;
  for (const auto& h : f->hints) hints += h + "\n";
  CHECK(hints.find("sqrt") == std::string::npos);
  CHECK(hints.find("domain") == std::string::npos);
  CHECK(hints.find("lower the learning rate") != std::string::npos);
  CHECK(hints.find("NonFinite::skip") != std::string::npos);
  // And it is an event of the run.
  const auto* e = find_event(d, dg::Verdict::exploding, "nan_origin");
  REQUIRE(e != nullptr);
  CHECK(e->first_step == o.step);
}

TEST_CASE("a sudden non-finite gradient gets the hint about the batch, not about growth",
          "[diagnostics][verdict][nan][events]") {
  auto net = relu_mlp<double>({8, 16, 4}, 9);
  gs::optim::Adam<double> opt(net->parameters(), {.lr = 1e-3});
  dg::GradientMonitor<double> monitor(*net);
  gs::Tape<double> tape;
  for (int step = 0; step < 6; ++step) {
    auto x = pixels<double>(16, 8, 80 + static_cast<std::uint64_t>(step));
    if (step == 5) x.mutable_value()(3, 2) = std::numeric_limits<double>::quiet_NaN();
    tape.reset();
    auto loss = nn::softmax_cross_entropy((*net)(x), labels(16, 4, 90));
    tape.backward(loss);
    monitor.record_gradients(loss.item());
    if (step < 5) {
      opt.step();
    } else {
      try {
        opt.step();
        FAIL("Adam.step accepted a NaN gradient");
      } catch (const gs::NumericalError& e) {
        monitor.note(e);
      }
    }
    opt.zero_grad();
  }
  const auto d = monitor.diagnose();
  INFO(d.str());
  const auto* f = d.find(dg::Verdict::exploding);
  REQUIRE(f != nullptr);
  CHECK(f->rule == "nan_origin");
  CHECK(monitor.nan_origin()->step == 5);
  CHECK(f->summary.find("Adam.step refused the update of step 5 at parameter '0.") == 0);
  CHECK(f->summary.find("nothing grew") != std::string::npos);
  CHECK(f->hints.front().find("in that batch") != std::string::npos);
  for (const auto& h : f->hints) CHECK(h.find("sqrt") == std::string::npos);
  // The non-finite values of the latest record are explained by the origin, not repeated.
  CHECK_FALSE(std::any_of(d.findings.begin(), d.findings.end(),
                          [](const dg::Finding& g) { return g.rule == "non_finite"; }));
}

TEST_CASE("a non-finite step the optimiser skipped stays in the report as an event",
          "[diagnostics][verdict][nan][events]") {
  // NonFinite::skip: one batch with a NaN at step 5, then 40 healthy steps. The latest window
  // is calm; the skipped step is an event of the run.
  auto net = relu_mlp<double>({8, 16, 4}, 9);
  gs::optim::Adam<double> opt(net->parameters(),
                              {.lr = 1e-3, .non_finite = gs::optim::NonFinite::skip});
  dg::GradientMonitor<double> monitor(*net);
  gs::Tape<double> tape;
  for (int step = 0; step < 45; ++step) {
    auto x = pixels<double>(16, 8, 80 + static_cast<std::uint64_t>(step % 7));
    if (step == 5) x.mutable_value()(3, 2) = std::numeric_limits<double>::infinity();
    train_step(tape, *net, opt, &monitor, x, labels(16, 4, 90));
  }
  CHECK(opt.skipped_steps() == 1);
  const auto d = monitor.diagnose();
  const auto report = monitor.report();
  INFO(report);
  CHECK_FALSE(d.has(dg::Verdict::exploding));
  CHECK(report.find("earlier in the run: exploding (step 5)") != std::string::npos);
  const auto* e = find_event(d, dg::Verdict::exploding, "non_finite");
  REQUIRE(e != nullptr);
  CHECK(e->first_step == 5);
  CHECK(e->last_step == 5);
  CHECK(e->finding.summary.find("at step 5") != std::string::npos);
  CHECK(evidence(e->finding, "nan") + evidence(e->finding, "inf") > 0);
}
