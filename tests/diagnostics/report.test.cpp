// Reports: the console table, CSV, JSON Lines and SVG are well formed (each parsed here by a
// small independent parser) and carry the same numbers; the gain column is the ratio of
// neighbouring flow norms.

#include "diag_test_util.hpp"

#include <limits>
#include <map>
#include <set>
#include <tuple>

using namespace diag_test;

namespace {

/// A container whose child has a name full of characters every format must escape.
struct Wrapper : nn::Module<double> {
  static constexpr const char* child_name = "in\"ner<&>,x";
  explicit Wrapper(gs::Rng& rng) {
    inner = register_module(child_name, std::make_shared<nn::Dense<double>>(
                                            16, 16, gs::init::xavier_uniform, false, &rng));
  }
  gs::Tensor<double> forward(const gs::Tensor<double>& x) override { return (*inner)(x); }
  std::string kind() const override { return "Wrapper"; }
  std::shared_ptr<nn::Module<double>> inner;
};

/// Dense [0], BatchNorm [1], ReLU [2], Wrapper [3] holding a bias-free Dense, Tanh [4], Dense [5].
struct Fixture {
  gs::Rng rng{77};
  nn::Sequential<double> net;
  std::unique_ptr<dg::GradientMonitor<double>> monitor;
  std::string weird_path;

  explicit Fixture(int steps = 5) {
    net.add<nn::Dense>(12, 16, gs::init::he_normal, true, &rng);
    net.add<nn::BatchNorm>(16);
    net.add<nn::ReLU>();
    auto w = std::make_shared<Wrapper>(rng);
    net.add(w);
    net.add<nn::Tanh>();
    net.add<nn::Dense>(16, 5, gs::init::xavier_uniform, true, &rng);
    weird_path = w->inner->path();
    monitor = std::make_unique<dg::GradientMonitor<double>>(net);
    gs::optim::SGD<double> opt(net.parameters(), {.lr = 0.05});
    gs::Tape<double> tape;
    for (int s = 0; s < steps; ++s)
      train_step(tape, net, opt, monitor.get(),
                 pixels<double>(24, 12, 500 + static_cast<std::uint64_t>(s)),
                 labels(24, 5, 600 + static_cast<std::uint64_t>(s)));
  }
  const std::vector<dg::LayerInfo>& layers() const { return monitor->layers(); }
  const dg::StepRecord& last() const { return monitor->history().records().back(); }
};

/// The metrics every CSV row and JSON layer object may carry, in the documented order.
const std::vector<std::pair<std::string, double (*)(const dg::LayerStats&)>> kMetrics = {
    {"weight_grad_norm", [](const dg::LayerStats& s) { return s.weight_grad_norm; }},
    {"bias_grad_norm", [](const dg::LayerStats& s) { return s.bias_grad_norm; }},
    {"delta_norm", [](const dg::LayerStats& s) { return s.delta_norm; }},
    {"grad_mean_abs", [](const dg::LayerStats& s) { return s.grad_mean_abs; }},
    {"weight_norm", [](const dg::LayerStats& s) { return s.weight_norm; }},
    {"update_ratio", [](const dg::LayerStats& s) { return s.update_ratio; }},
    {"act_mean", [](const dg::LayerStats& s) { return s.act_mean; }},
    {"act_std", [](const dg::LayerStats& s) { return s.act_std; }},
    {"saturated_fraction", [](const dg::LayerStats& s) { return s.saturated_fraction; }},
    {"dead_fraction", [](const dg::LayerStats& s) { return s.dead_fraction; }},
    {"nan_count", [](const dg::LayerStats& s) { return static_cast<double>(s.nan_count); }},
    {"inf_count", [](const dg::LayerStats& s) { return static_cast<double>(s.inf_count); }},
};

/// The table's text for a value: sci, or "-" when not measured.
std::string shown(double v) { return std::isnan(v) ? "-" : sci(v); }

}  // namespace

TEST_CASE("the fixture has the layers the format tests rely on", "[diagnostics][report]") {
  Fixture fx;
  const auto& L = fx.layers();
  REQUIRE(L.size() == 4);
  CHECK(L[0].path == "0");
  CHECK(L[1].path == "1");
  CHECK(L[1].kind == "BatchNorm(16)");
  CHECK_FALSE(L[1].in_flow);
  CHECK(L[2].path == "3.in\"ner<&>,x");
  CHECK(L[2].path == fx.weird_path);
  CHECK(L[2].kind == "Dense(16 -> 16, no bias)");
  CHECK(L[2].activation == "Tanh");
  CHECK(L[3].path == "5");
  CHECK(fx.monitor->history().size() == 5);
}

TEST_CASE("the table shows the latest record with %.2e", "[diagnostics][report]") {
  Fixture fx;
  const auto report = fx.monitor->report();
  INFO(report);
  CHECK(report.rfind("gradient report: step 4, loss " + sci(fx.last().loss) +
                         ", pre-clip total norm " + sci(fx.last().total_norm) +
                         ", 5 recorded steps",
                     0) == 0);
  const auto table = parse_table(report);
  REQUIRE(table.size() == fx.layers().size());
  for (std::size_t l = 0; l < fx.layers().size(); ++l) {
    const auto& s = fx.last().layers[l];
    const auto& row = table.at(fx.layers()[l].path);
    INFO("layer " << fx.layers()[l].path);
    CHECK(row.dW == shown(s.weight_grad_norm));
    CHECK(row.db == shown(s.bias_grad_norm));
    CHECK(row.delta == shown(s.delta_norm));
    CHECK(row.upd == shown(s.update_ratio));
  }
  CHECK(table.at(fx.weird_path).db == "-");  // no bias
  CHECK(table.at("1").delta == "-");         // batch norm: not in the flow
  CHECK(report.find(fx.monitor->diagnose().str()) != std::string::npos);
}

TEST_CASE("gains are ratios of neighbouring flow norms, shown with %.3f", "[diagnostics][report]") {
  Fixture fx;
  const auto& r = fx.last();
  const auto table = parse_table(fx.monitor->report());
  // Flow layers in order: 0, the wrapped Dense, 5 (batch norm is not in the chain).
  const std::vector<std::size_t> flow = {0, 2, 3};
  double product = 1;
  for (std::size_t k = 0; k < flow.size(); ++k) {
    const auto& path = fx.layers()[flow[k]].path;
    INFO("layer " << path);
    if (k + 1 == flow.size()) {
      CHECK(table.at(path).gain == "-");
      break;
    }
    const double g = r.layers[flow[k]].flow_norm() / r.layers[flow[k + 1]].flow_norm();
    product *= g;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", g);
    CHECK(table.at(path).gain == buf);
  }
  CHECK(table.at("1").gain == "-");
  CHECK(product == Approx(r.layers[0].flow_norm() / r.layers[3].flow_norm()));
}

TEST_CASE("the gain column keeps small and large gains readable", "[diagnostics][report]") {
  // Gains of 1e-6 and 1e16: "%.3f" prints the first as 0.000, and the second needs 20
  // characters, more than its column (9) and its buffer (16): the digits are cut to
  // "100000000000000" (1e14) and run into the |delta| column.
  std::vector<dg::LayerInfo> layers(3);
  for (int i = 0; i < 3; ++i) {
    layers[static_cast<std::size_t>(i)].path = std::to_string(i);
    layers[static_cast<std::size_t>(i)].in_flow = true;
  }
  dg::History h;
  dg::StepRecord rec;
  rec.total_norm = 1;
  rec.layers.resize(3);
  rec.layers[0].delta_norm = 1e-7;
  rec.layers[1].delta_norm = 1e-1;
  rec.layers[2].delta_norm = 1e-17;
  h.push(rec);
  const auto report = dg::format_report(layers, h, dg::diagnose(layers, h));
  INFO(report);
  // Rows are: path, |dW|, |db|, |delta|, gain, upd/W, ... (kind and shape are empty here).
  std::map<std::string, std::vector<std::string>> tokens;
  for (const auto& line : lines_of(report)) {
    std::istringstream is(line);
    std::vector<std::string> t;
    for (std::string w; is >> w;) t.push_back(w);
    if (t.size() >= 6 && (t[0] == "0" || t[0] == "1")) tokens[t[0]] = t;
  }
  REQUIRE(tokens.size() == 2);
  CHECK(tokens["0"][3] == "1.00e-07");
  CHECK(tokens["1"][3] == "1.00e-01");  // its own column, not merged with the gain
  INFO("gain 0: '" << tokens["0"][4] << "', gain 1: '" << tokens["1"][4] << "'");
  CHECK(tokens["0"][4] != "0.000");  // a gain of 1e-6 must not print as zero
  double g0 = 0, g1 = 0;
  CHECK_NOTHROW(g0 = to_double(tokens["0"][4]));
  CHECK_NOTHROW(g1 = to_double(tokens["1"][4]));
  CHECK(g0 == Approx(1e-6).epsilon(1e-2));
  CHECK(g1 == Approx(1e16).epsilon(1e-2));
}

TEST_CASE("CSV output parses and carries the table's numbers", "[diagnostics][report]") {
  Fixture fx;
  TempDir dir;
  fx.monitor->write_csv(dir.file("g.csv"));
  const auto text = read_file(dir.file("g.csv"));
  std::vector<CsvRow> rows;
  REQUIRE_NOTHROW(rows = parse_csv(text));
  const auto& recs = fx.monitor->history().records();
  // (step, layer, metric) -> value; every row names a known layer with its kind.
  std::map<std::tuple<std::int64_t, std::string, std::string>, double> v;
  std::set<std::string> metric_names;
  for (const auto& m : kMetrics) metric_names.insert(m.first);
  for (const auto& row : rows) {
    INFO("row " << row.step << "," << row.layer << "," << row.metric);
    if (row.layer.empty()) {
      CHECK(row.kind.empty());
      CHECK((row.metric == "loss" || row.metric == "total_norm"));
    } else {
      bool known = false;
      for (const auto& l : fx.layers())
        if (l.path == row.layer) known = known || l.kind == row.kind;
      CHECK(known);
      CHECK(metric_names.count(row.metric) == 1);
    }
    CHECK(v.emplace(std::make_tuple(row.step, row.layer, row.metric), row.value).second);
  }
  // Every record, every measured number, to 9 significant digits.
  std::size_t expected_rows = 0;
  for (const auto& r : recs) {
    CHECK(v.at({r.step, "", "loss"}) == Approx(r.loss).epsilon(1e-8));
    CHECK(v.at({r.step, "", "total_norm"}) == Approx(r.total_norm).epsilon(1e-8));
    expected_rows += 2;
    for (std::size_t l = 0; l < fx.layers().size(); ++l)
      for (const auto& [name, get] : kMetrics) {
        const double x = get(r.layers[l]);
        const auto key = std::make_tuple(r.step, fx.layers()[l].path, name);
        if (std::isnan(x)) {
          CHECK(v.count(key) == 0);
          continue;
        }
        ++expected_rows;
        REQUIRE(v.count(key) == 1);
        CHECK(v.at(key) == Approx(x).epsilon(1e-8).margin(1e-300));
      }
  }
  CHECK(rows.size() == expected_rows);
  // The table's |dW|, |db|, |delta| and upd/W are the CSV's numbers at the last step, in %.2e.
  const auto table = parse_table(fx.monitor->report());
  const auto step = recs.back().step;
  auto csv_shown = [&](const std::string& path, const char* metric) {
    const auto it = v.find({step, path, metric});
    return it == v.end() ? std::string("-") : sci(it->second);
  };
  for (const auto& l : fx.layers()) {
    INFO("layer " << l.path);
    CHECK(table.at(l.path).dW == csv_shown(l.path, "weight_grad_norm"));
    CHECK(table.at(l.path).db == csv_shown(l.path, "bias_grad_norm"));
    CHECK(table.at(l.path).delta == csv_shown(l.path, "delta_norm"));
    CHECK(table.at(l.path).upd == csv_shown(l.path, "update_ratio"));
  }
  // The kind with a comma is quoted, the path with a quote and a comma too.
  CHECK(text.find("\"Dense(16 -> 16, no bias)\"") != std::string::npos);
  CHECK(text.find("\"3.in\"\"ner<&>,x\"") != std::string::npos);
}

TEST_CASE("machine-readable outputs round-trip the recorded doubles exactly",
          "[diagnostics][report]") {
  Fixture fx(2);
  std::ostringstream csv;
  dg::write_csv(csv, fx.layers(), fx.monitor->history());
  std::size_t inexact = 0, total = 0;
  std::string example;
  const auto& r = fx.last();
  for (const auto& row : parse_csv(csv.str())) {
    if (row.step != r.step || row.layer != "0" || row.metric != "weight_grad_norm") continue;
    ++total;
    if (row.value != r.layers[0].weight_grad_norm) {
      ++inexact;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", r.layers[0].weight_grad_norm);
      char csv_buf[64];
      std::snprintf(csv_buf, sizeof csv_buf, "%.17g", row.value);
      example = "recorded " + std::string(buf) + ", CSV " + csv_buf;
    }
  }
  INFO(example);
  REQUIRE(total == 1);
  CHECK(inexact == 0);
}

TEST_CASE("JSON Lines output parses and carries the table's numbers", "[diagnostics][report]") {
  Fixture fx;
  TempDir dir;
  fx.monitor->write_jsonl(dir.file("g.jsonl"));
  const auto lines = lines_of(read_file(dir.file("g.jsonl")));
  const auto& recs = fx.monitor->history().records();
  REQUIRE(lines.size() == recs.size());
  const auto table = parse_table(fx.monitor->report());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    INFO("line " << i + 1 << ": " << lines[i]);
    Json j;
    REQUIRE_NOTHROW(j = parse_json(lines[i]));
    REQUIRE(j.type == Json::Type::object);
    const auto& r = recs[i];
    CHECK(j["step"].type == Json::Type::number);
    CHECK(j["step"].num == static_cast<double>(r.step));
    CHECK(j["loss"].num == Approx(r.loss).epsilon(1e-8));
    CHECK(j["total_norm"].num == Approx(r.total_norm).epsilon(1e-8));
    const auto& layers = j["layers"];
    REQUIRE(layers.type == Json::Type::array);
    REQUIRE(layers.arr.size() == fx.layers().size());
    for (std::size_t l = 0; l < layers.arr.size(); ++l) {
      const auto& o = layers.arr[l];
      const auto& info = fx.layers()[l];
      CHECK(o["path"].str == info.path);
      CHECK(o["kind"].str == info.kind);
      CHECK(o["shape"].str == info.shape);
      CHECK(o["activation"].str == info.activation);
      CHECK(o["in_flow"].type == Json::Type::boolean);
      CHECK(o["in_flow"].b == info.in_flow);
      for (const auto& [name, get] : kMetrics) {
        INFO("metric " << name);
        REQUIRE(o.has(name));
        const double x = get(r.layers[l]);
        if (std::isnan(x)) {
          CHECK(o[name].is_null());
        } else {
          REQUIRE(o[name].type == Json::Type::number);
          CHECK(o[name].num == Approx(x).epsilon(1e-8).margin(1e-300));
        }
      }
      CHECK(o.obj.size() == 5 + kMetrics.size());  // path, kind, shape, activation, in_flow
      if (i + 1 == lines.size()) {                 // the table's row, from the JSON numbers
        const auto& row = table.at(info.path);
        auto js = [&](const char* k) { return o[k].is_null() ? std::string("-") : sci(o[k].num); };
        CHECK(row.dW == js("weight_grad_norm"));
        CHECK(row.db == js("bias_grad_norm"));
        CHECK(row.delta == js("delta_norm"));
        CHECK(row.upd == js("update_ratio"));
      }
    }
  }
}

TEST_CASE("SVG output is well-formed XML whose bars carry the table's numbers",
          "[diagnostics][report]") {
  Fixture fx;
  TempDir dir;
  fx.monitor->write_svg(dir.file("g.svg"));
  const auto text = read_file(dir.file("g.svg"));
  std::vector<XmlElement> elements;
  REQUIRE_NOTHROW(elements = parse_xml(text));
  REQUIRE_FALSE(elements.empty());
  CHECK(elements[0].name == "svg");
  CHECK(elements[0].attrs.at("xmlns") == "http://www.w3.org/2000/svg");

  const auto table = parse_table(fx.monitor->report());
  const std::string escaped = "3.in&quot;ner&lt;&amp;&gt;,x";
  std::vector<std::string> bar_layers, line_layers;
  for (const auto& e : elements) {
    if (e.name == "rect" && e.attrs.count("data-layer")) {
      bar_layers.push_back(e.attrs.at("data-layer"));
      const std::string path =
          e.attrs.at("data-layer") == escaped ? fx.weird_path : e.attrs.at("data-layer");
      INFO("bar " << path);
      REQUIRE(e.attrs.count("data-value") == 1);
      const double v = to_double(e.attrs.at("data-value"));
      // The flow norm is the delta norm, measured for every dense layer.
      CHECK(sci(v) == table.at(path).delta);
      CHECK(to_double(e.attrs.at("height")) >= 0);
    }
    if (e.name == "polyline" && e.attrs.count("data-layer")) {
      line_layers.push_back(e.attrs.at("data-layer"));
      // One point per recorded step.
      std::istringstream pts(e.attrs.at("points"));
      int n = 0;
      for (std::string p; pts >> p;) ++n;
      CHECK(n == static_cast<int>(fx.monitor->history().size()));
    }
  }
  const std::vector<std::string> flow = {"0", escaped, "5"};
  CHECK(bar_layers == flow);
  CHECK(line_layers == flow);
  CHECK(text.find("verdict: " + std::string(dg::verdict_name(fx.monitor->diagnose().verdict()))) !=
        std::string::npos);
}

TEST_CASE("SVG bar_step picks the record of that step", "[diagnostics][report]") {
  Fixture fx;
  const auto& recs = fx.monitor->history().records();
  std::ostringstream os;
  dg::SvgOptions opt;
  opt.bar_step = 2;
  opt.title = "a <title> & more";
  dg::write_svg(os, fx.layers(), fx.monitor->history(), fx.monitor->diagnose(), opt);
  std::vector<XmlElement> elements;
  REQUIRE_NOTHROW(elements = parse_xml(os.str()));
  CHECK(os.str().find("a &lt;title&gt; &amp; more") != std::string::npos);
  CHECK(os.str().find("per-layer norm at step 2 ") != std::string::npos);
  std::vector<double> values;
  for (const auto& e : elements)
    if (e.name == "rect" && e.attrs.count("data-value"))
      values.push_back(to_double(e.attrs.at("data-value")));
  REQUIRE(values.size() == 3);
  CHECK(values[0] == Approx(recs[2].layers[0].flow_norm()).epsilon(1e-8));
  CHECK(values[2] == Approx(recs[2].layers[3].flow_norm()).epsilon(1e-8));
}

TEST_CASE("reports of an empty history and of a NaN are still well formed",
          "[diagnostics][report]") {
  auto net = relu_mlp<double>({4, 4, 2}, 1);
  dg::GradientMonitor<double> monitor(*net);
  std::ostringstream svg, csv, jsonl;
  dg::write_svg(svg, monitor.layers(), monitor.history(), monitor.diagnose());
  CHECK_NOTHROW(parse_xml(svg.str()));
  dg::write_csv(csv, monitor.layers(), monitor.history());
  CHECK(csv.str() == "step,layer,kind,metric,value\n");
  dg::write_jsonl(jsonl, monitor.layers(), monitor.history());
  CHECK(jsonl.str().empty());

  // A record with non-finite numbers: JSON stays valid (null), the SVG too.
  dg::History h;
  dg::StepRecord r;
  r.total_norm = std::numeric_limits<double>::infinity();
  r.layers.resize(monitor.layers().size());
  r.layers[0].weight_grad_norm = std::numeric_limits<double>::infinity();
  r.layers[0].delta_norm = std::numeric_limits<double>::quiet_NaN();
  r.layers[0].nan_count = 3;
  h.push(r);
  std::ostringstream j2, s2;
  dg::write_jsonl(j2, monitor.layers(), h);
  Json j;
  REQUIRE_NOTHROW(j = parse_json(trim(j2.str())));
  CHECK(j["total_norm"].is_null());
  CHECK(j["layers"].arr[0]["nan_count"].num == 3);
  dg::write_svg(s2, monitor.layers(), h, dg::diagnose(monitor.layers(), h));
  CHECK_NOTHROW(parse_xml(s2.str()));
}

TEST_CASE("writing to a path that cannot be opened throws gradscope::Error",
          "[diagnostics][report]") {
  auto net = relu_mlp<double>({4, 4, 2}, 1);
  dg::GradientMonitor<double> monitor(*net);
  const std::string bad = "/nonexistent-gradscope-dir/x/out";
  CHECK_THROWS_AS(monitor.write_csv(bad + ".csv"), gs::Error);
  CHECK_THROWS_AS(monitor.write_jsonl(bad + ".jsonl"), gs::Error);
  CHECK_THROWS_AS(monitor.write_svg(bad + ".svg"), gs::Error);
}

TEST_CASE("the SVG's step axis has numbered ticks where the lines put those steps",
          "[diagnostics][report][svg]") {
  Fixture fx;  // steps 0-4
  std::ostringstream os;
  dg::write_svg(os, fx.layers(), fx.monitor->history(), fx.monitor->diagnose());
  std::vector<XmlElement> elements;
  REQUIRE_NOTHROW(elements = parse_xml(os.str()));
  std::vector<double> tick_x, tick_step;
  std::vector<double> line_x;
  for (const auto& e : elements) {
    if (e.name == "text" && e.attrs.count("class") && e.attrs.at("class") == "step-tick") {
      tick_x.push_back(to_double(e.attrs.at("x")));
      tick_step.push_back(to_double(e.attrs.at("data-step")));
    }
    if (e.name == "polyline" && line_x.empty()) {
      std::istringstream pts(e.attrs.at("points"));
      for (std::string p; pts >> p;) line_x.push_back(to_double(p.substr(0, p.find(','))));
    }
  }
  // Steps 0..4: a tick at each, at the x of that step's point on the lines.
  REQUIRE(tick_step == std::vector<double>{0, 1, 2, 3, 4});
  REQUIRE(line_x.size() == 5);
  for (std::size_t k = 0; k < 5; ++k) CHECK(tick_x[k] == Approx(line_x[k]));
  // The tick texts are the step numbers.
  for (int s = 0; s < 5; ++s)
    CHECK(os.str().find("data-step=\"" + std::to_string(s) + "\"") != std::string::npos);
}

TEST_CASE("the SVG's step ticks are round numbers spanning a long run",
          "[diagnostics][report][svg]") {
  // A downsampled history of 12,345 steps: records every 64 steps from 0 to 12,288 and more.
  std::vector<dg::LayerInfo> layers(2);
  layers[0].path = std::string("0");
  layers[1].path = std::string("1");
  layers[0].in_flow = layers[1].in_flow = true;
  dg::History h(256);
  for (std::int64_t s = 0; s < 12345; ++s) {
    if (!h.wants(s)) continue;
    dg::StepRecord r;
    r.step = s;
    r.total_norm = 1.0;
    r.layers.resize(2);
    r.layers[0].weight_grad_norm = 0.5;
    r.layers[1].weight_grad_norm = 1.0;
    h.push(r);
  }
  const double s0 = static_cast<double>(h.records().front().step);
  const double s1 = static_cast<double>(h.records().back().step);
  std::ostringstream os;
  dg::write_svg(os, layers, h, dg::diagnose(layers, h));
  std::vector<XmlElement> elements;
  REQUIRE_NOTHROW(elements = parse_xml(os.str()));
  std::vector<double> xs, steps;
  for (const auto& e : elements)
    if (e.name == "text" && e.attrs.count("class") && e.attrs.at("class") == "step-tick") {
      xs.push_back(to_double(e.attrs.at("x")));
      steps.push_back(to_double(e.attrs.at("data-step")));
    }
  INFO("s0 " << s0 << ", s1 " << s1);
  REQUIRE(steps.size() >= 4);
  CHECK(steps.size() <= 8);
  // Equally spaced by 1, 2 or 5 times a power of ten, inside the recorded range.
  const double d = steps[1] - steps[0];
  const double p = std::pow(10.0, std::floor(std::log10(d)));
  CHECK((d == p || d == 2 * p || d == 5 * p));
  for (std::size_t k = 0; k < steps.size(); ++k) {
    CHECK(steps[k] == Approx(steps[0] + d * static_cast<double>(k)));
    CHECK(std::fmod(steps[k], d) == 0);
    CHECK(steps[k] >= s0);
    CHECK(steps[k] <= s1);
  }
  CHECK(steps.front() - s0 < d);
  CHECK(s1 - steps.back() < d);
  // x is linear in the step.
  const double per_step = (xs.back() - xs.front()) / (steps.back() - steps.front());
  CHECK(per_step > 0);
  for (std::size_t k = 0; k < steps.size(); ++k)
    CHECK(xs[k] == Approx(xs[0] + per_step * (steps[k] - steps[0])));
}

TEST_CASE("the events of the run appear in the table, CSV, JSON Lines and SVG",
          "[diagnostics][report][events]") {
  AdamExplosion run(60);
  auto& monitor = *run.monitor;
  const auto d = monitor.diagnose();
  REQUIRE(d.happened(dg::Verdict::exploding));
  const dg::Event* e = nullptr;
  for (const auto& x : d.events)
    if (x.rule() == "divergence") e = &x;
  REQUIRE(e != nullptr);
  INFO(d.str());
  TempDir dir;

  // The console report: the verdict line and the list of events.
  const auto report = monitor.report();
  CHECK(report.find(e->str()) != std::string::npos);

  // CSV: rows of kind event:exploding/divergence with the steps and the evidence.
  monitor.write_csv(dir.file("g.csv"));
  std::map<std::string, double> csv;
  std::int64_t csv_step = -1;
  for (const auto& row : parse_csv(read_file(dir.file("g.csv"))))
    if (row.kind == "event:exploding/divergence") {
      csv[row.metric] = row.value;
      csv_step = row.step;
    }
  CHECK(csv_step == e->first_step);
  CHECK(csv.at("first_step") == static_cast<double>(e->first_step));
  CHECK(csv.at("last_step") == static_cast<double>(e->last_step));
  CHECK(csv.at("worst_step") == static_cast<double>(e->worst_step));
  CHECK(csv.at("occurrences") == static_cast<double>(e->occurrences));
  CHECK(csv.at("loss") == evidence(e->finding, "loss"));

  // JSON Lines: the step lines, then one line per event.
  monitor.write_jsonl(dir.file("g.jsonl"));
  std::size_t step_lines = 0, event_lines = 0;
  bool found = false;
  for (const auto& line : lines_of(read_file(dir.file("g.jsonl")))) {
    Json j;
    REQUIRE_NOTHROW(j = parse_json(line));
    if (j.has("step")) {
      CHECK(event_lines == 0);  // events come after every step line
      ++step_lines;
      continue;
    }
    REQUIRE(j.has("event"));
    ++event_lines;
    if (j["rule"].str != "divergence") continue;
    found = true;
    CHECK(j["event"].str == "exploding");
    CHECK(j["first_step"].num == static_cast<double>(e->first_step));
    CHECK(j["last_step"].num == static_cast<double>(e->last_step));
    CHECK(j["summary"].str == e->finding.summary);
    CHECK(j["evidence"]["loss"].num == evidence(e->finding, "loss"));
    CHECK(j["hints"].arr.size() == e->finding.hints.size());
  }
  CHECK(found);
  CHECK(step_lines == monitor.history().size());
  CHECK(event_lines == d.events.size());

  // SVG: a band over the event's steps, the finding in its title, and the verdict line.
  monitor.write_svg(dir.file("g.svg"));
  const auto svg = read_file(dir.file("g.svg"));
  std::vector<XmlElement> elements;
  REQUIRE_NOTHROW(elements = parse_xml(svg));
  bool band = false;
  for (const auto& x : elements)
    if (x.name == "rect" && x.attrs.count("class") && x.attrs.at("class") == "event" &&
        x.attrs.at("data-rule") == "divergence") {
      band = true;
      CHECK(x.attrs.at("data-verdict") == "exploding");
      CHECK(x.attrs.at("data-first-step") == std::to_string(e->first_step));
      CHECK(x.attrs.at("data-last-step") == std::to_string(e->last_step));
      CHECK(to_double(x.attrs.at("width")) > 0);
    }
  CHECK(band);
  CHECK(svg.find("earlier in the run: exploding (steps " + std::to_string(e->first_step)) !=
        std::string::npos);
}
