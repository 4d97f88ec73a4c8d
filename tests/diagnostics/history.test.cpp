// The bounded history: when full it drops every other record and doubles the stride, so it stays
// within its capacity and still spans the whole run evenly; the report says so.

#include "diag_test_util.hpp"

#include <regex>

using namespace diag_test;

namespace {

dg::StepRecord record(std::int64_t step) {
  dg::StepRecord r;
  r.step = step;
  r.total_norm = static_cast<double>(step);
  return r;
}

/// Runs `steps` recorded-or-not training steps of a small network under a monitor with the
/// given options, checking the history's invariants after every step.
void run_and_check(const dg::MonitorOptions& opt, int steps) {
  auto net = relu_mlp<double>({6, 8, 3}, 1);
  dg::GradientMonitor<double> monitor(*net, opt);
  gs::optim::SGD<double> sgd(net->parameters(), {.lr = 0.01});
  gs::Tape<double> tape;
  const auto x = pixels<double>(4, 6, 2);
  const auto y = labels(4, 3, 3);
  const auto& h = monitor.history();
  std::int64_t last_stride = 1;
  int last_downsamplings = 0;
  for (int s = 0; s < steps; ++s) {
    const bool recorded = s % (opt.every * h.stride()) == 0;  // decided before the step
    train_step(tape, *net, sgd, &monitor, x, y);
    INFO("after step " << s);
    REQUIRE(h.size() <= h.capacity());
    if (recorded) {
      // The step just recorded is the latest record, and record_update wrote into it.
      REQUIRE_FALSE(h.empty());
      CHECK(h.records().back().step == s);
      CHECK(std::isfinite(h.records().back().layers[0].update_ratio));
    }
    // The stride doubles exactly when a downsampling happens.
    if (h.downsamplings() != last_downsamplings) {
      CHECK(h.downsamplings() == last_downsamplings + 1);
      CHECK(h.stride() == 2 * last_stride);
    } else {
      CHECK(h.stride() == last_stride);
    }
    last_stride = h.stride();
    last_downsamplings = h.downsamplings();
  }
  const auto& recs = h.records();
  REQUIRE(recs.size() >= 2);
  INFO("capacity " << h.capacity() << ", every " << opt.every << ", stride " << h.stride());
  const std::int64_t spacing = opt.every * h.stride();
  // The records span the run: the first step and one of the last `spacing` steps.
  CHECK(recs.front().step == 0);
  CHECK(recs.back().step > steps - 1 - spacing);
  CHECK(h.downsamplings() > 0);
  // Evenly: every kept step is a multiple of every x stride, in increasing order.
  for (std::size_t i = 0; i < recs.size(); ++i) {
    INFO("record " << i << " is step " << recs[i].step);
    CHECK(recs[i].step % spacing == 0);
    if (i) CHECK(recs[i].step == recs[i - 1].step + spacing);
  }
  // The report says the history was downsampled, and to what spacing in training steps.
  const auto report = monitor.report();
  INFO(report);
  std::smatch m;
  REQUIRE(std::regex_search(report, m, std::regex("history downsampled: every ([0-9]+) steps")));
  CHECK(std::stoll(m[1].str()) == recs[1].step - recs[0].step);
}

}  // namespace

TEST_CASE("History keeps at most its capacity by dropping every other record",
          "[diagnostics][history]") {
  dg::History h(8);
  CHECK(h.capacity() == 8);
  CHECK(h.empty());
  CHECK(h.stride() == 1);
  for (std::int64_t s = 0; s < 8; ++s) h.push(record(s));
  CHECK(h.size() == 8);
  CHECK(h.downsamplings() == 0);
  h.push(record(8));  // full: keeps 0, 2, 4, 6 and adds 8
  CHECK(h.downsamplings() == 1);
  CHECK(h.stride() == 2);
  std::vector<std::int64_t> steps;
  for (const auto& r : h.records()) steps.push_back(r.step);
  CHECK(steps == std::vector<std::int64_t>{0, 2, 4, 6, 8});
  CHECK(h.records()[2].total_norm == 4.0);  // records move whole
  CHECK(h.wants(10));
  CHECK_FALSE(h.wants(11));
  CHECK(dg::History(1).capacity() == 4);  // the floor
}

TEST_CASE("the monitor's history stays bounded and spans the run (every = 1)",
          "[diagnostics][history]") {
  dg::MonitorOptions opt;
  opt.max_history = 4;
  run_and_check(opt, 100);
  opt.max_history = 16;
  run_and_check(opt, 300);
}

TEST_CASE("the monitor's history stays bounded and spans the run (every = 3)",
          "[diagnostics][history]") {
  dg::MonitorOptions opt;
  opt.every = 3;
  opt.max_history = 4;
  run_and_check(opt, 100);
}

TEST_CASE("the monitor's history stays evenly spaced with an odd capacity",
          "[diagnostics][history]") {
  dg::MonitorOptions opt;
  opt.max_history = 5;
  run_and_check(opt, 100);
}

TEST_CASE("the verdicts use the latest records of a downsampled history",
          "[diagnostics][history][verdict]") {
  // Records whose total norm is large only at the end: with window 3 only those are seen.
  std::vector<dg::LayerInfo> layers(1);
  layers[0].path = std::string("0");  // not = "0": GCC 12 -O3 warns (-Wrestrict) there, falsely
  layers[0].in_flow = true;
  dg::History h(4);
  for (std::int64_t s = 0; s < 40; ++s) {
    if (s % h.stride() != 0) continue;
    dg::StepRecord r = record(s);
    r.total_norm = s >= 32 ? 1e6 : 1.0;
    r.layers.resize(1);
    r.layers[0].weight_grad_norm = r.total_norm;
    h.push(r);
  }
  dg::Thresholds t;
  t.window = 1;
  const auto d = dg::diagnose(layers, h, t);
  CHECK(d.step == h.records().back().step);
  CHECK(d.has(dg::Verdict::exploding));
}
