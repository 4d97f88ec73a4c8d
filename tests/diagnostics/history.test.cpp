// The bounded history: when full it drops every other record and doubles the stride, so it stays
// within its capacity and still spans the whole run evenly; the report says so.

#include "diag_test_util.hpp"

#include <limits>
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

// ---- the event log -------------------------------------------------------------------------

namespace {

dg::Finding finding(dg::Verdict v, const std::string& rule, const std::string& summary) {
  dg::Finding f;
  f.verdict = v;
  f.rule = rule;
  f.summary = summary;
  return f;
}

}  // namespace

TEST_CASE("the event log merges consecutive occurrences and keeps the worst",
          "[diagnostics][history][events]") {
  dg::EventLog log;
  CHECK(log.empty());
  const auto E = dg::Verdict::exploding;
  // Steps 3..7: one event; its finding is the worst occurrence's (step 5).
  for (std::int64_t s = 3; s <= 7; ++s)
    log.record(s, finding(E, "divergence", "at " + std::to_string(s)), s == 5 ? 9.0 : 1.0, 2);
  // Another rule at the same steps: an event of its own.
  log.record(4, finding(E, "flow_ratio", "flow"), 1.0, 2);
  // The first rule again after a gap of more than merge_gap steps: a new event.
  log.record(20, finding(E, "divergence", "again"), 1.0, 2);
  // Within the gap of its last step: merged.
  log.record(22, finding(E, "divergence", "again, worse"), 3.0, 2);
  REQUIRE(log.events().size() == 3);
  const auto& a = log.events()[0];
  CHECK(a.first_step == 3);
  CHECK(a.last_step == 7);
  CHECK(a.occurrences == 5);
  CHECK(a.worst_step == 5);
  CHECK(a.severity == 9.0);
  CHECK(a.finding.summary == "at 5");
  CHECK(a.steps() == "steps 3-7");
  CHECK(a.str() == "[exploding] steps 3-7 (5 recorded steps, worst at step 5): at 5");
  CHECK(log.events()[1].rule() == "flow_ratio");
  CHECK(log.events()[1].steps() == "step 4");
  CHECK(log.events()[1].str() == "[exploding] step 4: flow");
  const auto& c = log.events()[2];
  CHECK(c.first_step == 20);
  CHECK(c.last_step == 22);
  CHECK(c.finding.summary == "again, worse");
  CHECK(log.dropped() == 0);
  CHECK(log.dropped_note().empty());
}

TEST_CASE("the event log is bounded: a full log counts the events it does not keep",
          "[diagnostics][history][events]") {
  dg::EventLog log(4);
  const auto E = dg::Verdict::exploding;
  // 10 separate events (each 100 steps apart), each lasting 3 steps.
  for (std::int64_t k = 0; k < 10; ++k)
    for (std::int64_t s = 0; s < 3; ++s)
      log.record(100 * k + s, finding(E, "divergence", "event " + std::to_string(k)), 1.0, 5);
  // The earliest are kept, each merged over its 3 steps.
  REQUIRE(log.events().size() == 4);
  for (std::size_t k = 0; k < 4; ++k) {
    CHECK(log.events()[k].first_step == static_cast<std::int64_t>(100 * k));
    CHECK(log.events()[k].occurrences == 3);
  }
  // The 6 others are counted once each, with their step range, and the note says so.
  CHECK(log.dropped() == 6);
  CHECK(log.dropped_first_step() == 400);
  CHECK(log.dropped_last_step() == 902);
  CHECK(log.dropped_note() ==
        "(and 6 more events between steps 400 and 902 that the log, capped at 4 events, did not "
        "keep)");
  // A dropped event that goes on is not counted again.
  log.record(905, finding(E, "divergence", "event 9, later"), 1.0, 5);
  CHECK(log.dropped() == 6);
  CHECK(log.dropped_last_step() == 905);

  // A kept event that goes on still merges when the log is full.
  dg::EventLog small(2);
  small.record(0, finding(E, "divergence", "a"), 1.0, 5);
  small.record(1, finding(E, "flow_ratio", "b"), 1.0, 5);
  small.record(2, finding(E, "non_finite", "c"), 1.0, 5);  // full: counted
  small.record(3, finding(E, "divergence", "a, later"), 2.0, 5);
  REQUIRE(small.events().size() == 2);
  CHECK(small.events()[0].last_step == 3);
  CHECK(small.events()[0].finding.summary == "a, later");
  CHECK(small.dropped() == 1);
}

TEST_CASE("the monitor's event log stays bounded over a long run of repeated explosions",
          "[diagnostics][history][events]") {
  // Every 7th step an explosion of the total-norm threshold: 60 short events over 420 steps,
  // with a log of 8. Memory stays bounded and the reports say how many were not kept.
  auto net = relu_mlp<double>({4, 8, 3}, 1);
  dg::MonitorOptions opt;
  opt.max_events = 8;
  opt.thresholds.window = 1;
  dg::GradientMonitor<double> monitor(*net, opt);
  gs::Tape<double> tape;
  for (int step = 0; step < 420; ++step) {
    tape.reset();
    const double scale = step % 7 == 3 ? 1e6 : 1.0;
    auto loss = nn::softmax_cross_entropy((*net)(pixels<double>(8, 4, 5)), labels(8, 3, 6));
    tape.backward(gs::scale(loss, scale));
    monitor.record_gradients(loss.item() * scale);
    net->zero_grad();
  }
  const auto& log = monitor.events();
  REQUIRE(log.events().size() == 8);
  CHECK(log.dropped() == 52);
  const auto d = monitor.diagnose();
  CHECK(d.events.size() == 8);
  CHECK(d.events_note == log.dropped_note());
  CHECK(monitor.report().find("(and 52 more events between steps") != std::string::npos);
  for (std::size_t k = 0; k < 8; ++k) {
    CHECK(log.events()[k].first_step == static_cast<std::int64_t>(7 * k + 3));
    CHECK(log.events()[k].last_step == static_cast<std::int64_t>(7 * k + 3));
  }
}

TEST_CASE("a non-finite loss at a step the monitor does not record is still an event",
          "[diagnostics][history][events]") {
  auto net = relu_mlp<double>({4, 8, 3}, 1);
  dg::GradientMonitor<double> monitor(*net, options([](auto& o) { o.every = 5; }));
  for (int step = 0; step < 20; ++step)
    monitor.record_gradients(step == 7 || step == 8 ? std::numeric_limits<double>::quiet_NaN()
                                                    : 1.0);
  const auto& events = monitor.events().events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].rule() == "non_finite");
  CHECK(events[0].first_step == 7);
  CHECK(events[0].last_step == 8);
  CHECK(events[0].finding.summary ==
        "the loss is nan at step 7 (a step the monitor did not record)");
  CHECK(monitor.report().find("earlier in the run: exploding (steps 7-8)") != std::string::npos);
}
