// The adding problem (Hochreiter and Schmidhuber 1997, set up as in Le, Jaitly and Hinton 2015):
// each sequence has T steps of two inputs, a random number in [0, 1] and a marker that is 1 at
// exactly two steps (one among the first 10, one in the second half); the target is the sum of
// the two marked numbers. Predicting 1 always gives an MSE of about 0.167. A network solves it
// only if the gradient of the last step reaches the first marked one: the memory problem of
// recurrent networks in its simplest form.
//
// Compares a tanh RNN (orthogonal recurrent matrix), Le et al.'s IRNN (ReLU units, identity
// recurrent matrix), an LSTM (forget bias 1) and a GRU, with the same step budget, Adam and
// gradient clipping, over several sequence lengths and seeds; prints the test MSE, the steps each
// model needed to get below 0.01, and the gradient monitor's verdict through time and memory
// horizon; writes an SVG of the test MSE curves.
//
// --study clipping: Pascanu, Mikolov and Bengio's exploding gradients instead: a tanh RNN with a
// large recurrent matrix (spectral radius 3) and a high learning rate, trained with and without
// clip_grad_norm; loss curves, pre-clip norms, the verdicts, and whether it diverges.
//
//   ./adding_problem --quick            T = 50, 2 seeds (minutes)
//   ./adding_problem                    T = 50, 100 and 200, 3 seeds (docs/examples.md has tables)
//   ./adding_problem --study clipping

#include <gradscope/gradscope.hpp>
#include <gradscope/util/util.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace diag = gradscope::diagnostics;
using Mat = gs::Matrix<float>;

namespace {

/// n sequences of T steps: x [n, 2T] (value, marker at each step), y [n, 1].
void make_batch(gs::Rng& rng, gs::Index n, gs::Index T, Mat& x, Mat& y) {
  x.resize(n, 2 * T);
  y.resize(n, 1);
  for (gs::Index b = 0; b < n; ++b) {
    for (gs::Index t = 0; t < T; ++t) {
      x(b, 2 * t) = static_cast<float>(rng.uniform());
      x(b, 2 * t + 1) = 0;
    }
    const auto first = static_cast<gs::Index>(
        rng.below(static_cast<std::uint64_t>(std::min<gs::Index>(10, T / 2))));
    const auto second =
        T / 2 + static_cast<gs::Index>(rng.below(static_cast<std::uint64_t>(T - T / 2)));
    x(b, 2 * first + 1) = 1;
    x(b, 2 * second + 1) = 1;
    y(b, 0) = x(b, 2 * first) + x(b, 2 * second);
  }
}

struct Model {
  const char* key;   // for --models
  const char* name;  // for the table
  nn::CellKind kind;
  nn::RecurrentOptions options;
};

/// Every model of the study, in the table's order.
std::vector<Model> all_models() {
  std::vector<Model> m;
  nn::RecurrentOptions xavier;
  xavier.recurrent_init = gs::init::xavier_uniform;  // each gate block [H, H]: U(+-sqrt(3/H))
  m.push_back({"rnn", "tanh RNN", nn::CellKind::rnn, xavier});
  m.push_back({"rnn-orth", "tanh orth", nn::CellKind::rnn, {}});  // orthogonal: the default
  nn::RecurrentOptions irnn;
  irnn.nonlinearity = gs::RnnNonlinearity::relu;
  irnn.recurrent_init = gs::init::identity();
  irnn.input_init = gs::init::normal(0.001);  // Le et al.: input weights N(0, 0.001^2)
  m.push_back({"irnn", "IRNN", nn::CellKind::rnn, irnn});
  m.push_back({"lstm", "LSTM", nn::CellKind::lstm, {}});
  m.push_back({"gru", "GRU", nn::CellKind::gru, {}});
  return m;
}

struct Run {
  std::string model;
  gs::Index T = 0;
  std::uint64_t seed = 0;
  double final_mse = 0;
  long solved_at = -1;  // the first evaluation step with test MSE < 0.01, or -1
  std::vector<std::pair<long, double>> curve;
  std::string verdict;  // the time verdict of the recurrent layer at the end
  long horizon = 0;
  double reach = 0;
  bool underflow = false;
  double seconds = 0;
};

struct Settings {
  gs::Index hidden = 100, batch = 50, test_size = 1000;
  long steps = 3000, eval_every = 100;
  double lr = 3e-3, clip = 1.0;
};

Run train(const Model& model, gs::Index T, std::uint64_t seed, const Settings& s) {
  const auto start = std::chrono::steady_clock::now();
  Run run;
  run.model = model.name;
  run.T = T;
  run.seed = seed;
  gs::Rng init(seed);
  nn::RecurrentOptions opt = model.options;
  opt.output = nn::RecurrentOutput::last_step;
  opt.rng = &init;
  nn::Sequential<float> net;
  net.add(std::make_shared<nn::Recurrent<float>>(model.kind, 2, s.hidden, opt));
  net.add<nn::Dense>(s.hidden, 1, gs::init::xavier_uniform, true, &init);
  gs::optim::Adam<float> adam(net.parameters(), {.lr = static_cast<float>(s.lr)});
  diag::GradientMonitor<float> monitor(net, {.every = 10});
  gs::Rng data(seed * 7919 + 1), test_rng(12345);
  Mat tx, ty, x, y;
  make_batch(test_rng, s.test_size, T, tx, ty);
  const gs::Tensor<float> test_x(tx), test_y(ty);
  gs::Tape<float> tape;
  for (long step = 1; step <= s.steps; ++step) {
    make_batch(data, s.batch, T, x, y);
    tape.reset();
    const auto loss = nn::mse(net(gs::Tensor<float>(x)), gs::Tensor<float>(y));
    tape.backward(loss);
    monitor.record_gradients(loss.item());
    gs::optim::clip_grad_norm(net.parameters(), s.clip);
    adam.step();
    monitor.record_update();
    adam.zero_grad();
    if (step % s.eval_every == 0 || step == s.steps) {
      gs::NoGrad no_grad;
      const double mse = nn::mse(net(test_x), test_y).item();
      run.curve.emplace_back(step, mse);
      if (run.solved_at < 0 && mse < 0.01) run.solved_at = step;
      run.final_mse = mse;
    }
  }
  const diag::Diagnosis d = monitor.diagnose();
  run.verdict = d.has(diag::Verdict::vanishing_through_time)   ? "vanishing_through_time"
                : d.has(diag::Verdict::exploding_through_time) ? "exploding_through_time"
                                                               : "healthy through time";
  if (!monitor.time_layers().empty() && !monitor.time_records(0).empty()) {
    const auto& p = monitor.time_records(0).profiles().back();
    run.horizon = static_cast<long>(p.horizon);
    run.reach = p.reach;
    run.underflow = p.underflow;
  }
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

/// Test MSE against steps, one panel per sequence length, log scale.
void write_svg(const std::string& path, const std::vector<Run>& runs,
               const std::vector<gs::Index>& lengths, long steps) {
  const char* colors[] = {"#d62728", "#ff7f0e", "#9467bd", "#1f77b4", "#2ca02c"};
  std::vector<std::string> names;
  for (const auto& m : all_models()) names.push_back(m.name);
  const double w = 360, h = 240, left = 55, top = 30, gap = 30;
  const double lo = std::log10(1e-4), hi = std::log10(0.5);
  std::ofstream os(path);
  if (!os) throw gs::Error("[gradscope.io] cannot open '" + path + "' for writing");
  const double width = left + static_cast<double>(lengths.size()) * (w + gap);
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\""
     << h + top + 60 << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
     << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (std::size_t k = 0; k < lengths.size(); ++k) {
    const double x0 = left + static_cast<double>(k) * (w + gap);
    os << "<text x=\"" << x0 + w / 2 << "\" y=\"18\" text-anchor=\"middle\" font-size=\"13\">"
       << "adding problem, T = " << lengths[k] << "</text>\n"
       << "<rect x=\"" << x0 << "\" y=\"" << top << "\" width=\"" << w << "\" height=\"" << h
       << "\" fill=\"none\" stroke=\"#333\"/>\n";
    for (double e = -4; e <= -1; e += 1) {
      const double y = top + h * (hi - e) / (hi - lo);
      os << "<line x1=\"" << x0 << "\" x2=\"" << x0 + w << "\" y1=\"" << y << "\" y2=\"" << y
         << "\" stroke=\"#ddd\"/><text x=\"" << x0 - 4 << "\" y=\"" << y + 4
         << "\" text-anchor=\"end\">1e" << e << "</text>\n";
    }
    const double base = top + h * (hi - std::log10(1.0 / 6.0)) / (hi - lo);
    os << "<line x1=\"" << x0 << "\" x2=\"" << x0 + w << "\" y1=\"" << base << "\" y2=\"" << base
       << "\" stroke=\"#999\" stroke-dasharray=\"4 3\"/><text x=\"" << x0 + w - 4 << "\" y=\""
       << base - 4 << "\" text-anchor=\"end\" fill=\"#666\">baseline 0.167</text>\n";
    for (long s = 0; s <= steps; s += std::max(1L, steps / 5)) {
      const double x = x0 + w * static_cast<double>(s) / static_cast<double>(steps);
      os << "<text x=\"" << x << "\" y=\"" << top + h + 14 << "\" text-anchor=\"middle\">" << s
         << "</text>\n";
    }
    for (const auto& r : runs) {
      if (r.T != lengths[k]) continue;
      const auto c =
          static_cast<std::size_t>(std::find(names.begin(), names.end(), r.model) - names.begin());
      os << "<polyline fill=\"none\" stroke-width=\"1.5\" stroke-opacity=\"0.8\" stroke=\""
         << colors[c % 5] << "\" points=\"";
      for (const auto& [s, mse] : r.curve) {
        const double v = std::clamp(std::log10(std::max(mse, 1e-12)), lo, hi);
        os << x0 + w * static_cast<double>(s) / static_cast<double>(steps) << ','
           << top + h * (hi - v) / (hi - lo) << ' ';
      }
      os << "\"><title>" << r.model << ", seed " << r.seed << "</title></polyline>\n";
    }
  }
  for (std::size_t c = 0; c < names.size(); ++c)
    os << "<rect x=\"" << left + 110.0 * static_cast<double>(c) << "\" y=\"" << top + h + 30
       << "\" width=\"12\" height=\"12\" fill=\"" << colors[c] << "\"/><text x=\""
       << left + 110.0 * static_cast<double>(c) + 16 << "\" y=\"" << top + h + 40 << "\">"
       << names[c] << "</text>\n";
  os << "<text x=\"" << left << "\" y=\"" << top + h + 58
     << "\" fill=\"#666\">test MSE against training steps (log scale)</text>\n</svg>\n";
}

int adding_study(const Settings& s, const std::vector<Model>& models,
                 const std::vector<gs::Index>& lengths, int seeds, const std::string& svg) {
  std::vector<Run> runs;
  std::printf("%-9s %4s %4s %10s %12s %-24s %8s %10s %7s\n", "model", "T", "seed", "test MSE",
              "MSE < 0.01", "verdict", "horizon", "reach", "time");
  for (const gs::Index T : lengths)
    for (const auto& m : models)
      for (int k = 0; k < seeds; ++k) {
        const Run r = train(m, T, static_cast<std::uint64_t>(k + 1), s);
        std::printf("%-9s %4ld %4llu %10.4f %12s %-24s %8ld %10s %6.0fs\n", r.model.c_str(),
                    static_cast<long>(T), static_cast<unsigned long long>(r.seed), r.final_mse,
                    r.solved_at < 0 ? "not reached" : std::to_string(r.solved_at).c_str(),
                    r.verdict.c_str(), r.horizon, diag::time_figure(r.reach, r.underflow).c_str(),
                    r.seconds);
        std::fflush(stdout);
        runs.push_back(r);
      }
  std::printf(
      "\nper model and length (medians over %d seeds): test MSE, seeds that reached MSE "
      "< 0.01\n",
      seeds);
  for (const gs::Index T : lengths)
    for (const auto& m : models) {
      std::vector<double> mses;
      int solved = 0;
      for (const auto& r : runs)
        if (r.T == T && r.model == m.name) {
          mses.push_back(r.final_mse);
          solved += r.solved_at >= 0;
        }
      std::sort(mses.begin(), mses.end());
      std::printf("  T = %4ld  %-9s  median test MSE %.4f  solved %d/%zu\n", static_cast<long>(T),
                  m.name, mses[mses.size() / 2], solved, mses.size());
    }
  if (!svg.empty()) {
    write_svg(svg, runs, lengths, s.steps);
    std::printf("wrote %s\n", svg.c_str());
  }
  return 0;
}

int clipping_study(const Settings& base, long steps) {
  // A tanh RNN whose recurrent matrix has every singular value 3 (orthogonal, gain 3), on the
  // adding problem at T = 50, trained with plain SGD as Pascanu et al. did (lr 0.01): the
  // gradient through time grows by up to 3x per step, and SGD's step grows with it (Adam would
  // normalise it away).
  std::printf("tanh RNN, recurrent matrix orthogonal x 3, SGD lr 0.01, T = 50, %ld steps\n", steps);
  std::printf("%-12s %6s %12s %14s  %s\n", "clipping", "step", "loss", "pre-clip norm", "verdict");
  for (const bool clip : {false, true}) {
    gs::Rng init(1);
    nn::RecurrentOptions opt;
    opt.output = nn::RecurrentOutput::last_step;
    opt.recurrent_init = gs::init::orthogonal(3.0);
    opt.rng = &init;
    nn::Sequential<float> net;
    net.add<nn::RNN>(2, base.hidden, opt);
    net.add<nn::Dense>(base.hidden, 1, gs::init::xavier_uniform, true, &init);
    gs::optim::SGD<float> sgd(net.parameters(), {.lr = 0.01f});
    diag::GradientMonitor<float> monitor(net);
    gs::Rng data(2);
    Mat x, y;
    gs::Tape<float> tape;
    bool diverged = false;
    for (long step = 1; step <= steps && !diverged; ++step) {
      make_batch(data, base.batch, 50, x, y);
      tape.reset();
      const auto loss = nn::mse(net(gs::Tensor<float>(x)), gs::Tensor<float>(y));
      tape.backward(loss);
      monitor.record_gradients(loss.item());
      const double norm = clip ? gs::optim::clip_grad_norm(net.parameters(), 1.0)
                               : gs::optim::grad_norm(net.parameters());
      try {
        sgd.step();
      } catch (const gs::NumericalError& e) {
        monitor.note(e);
        diverged = true;
      }
      monitor.record_update();
      sgd.zero_grad();
      if (!std::isfinite(loss.item())) diverged = true;
      if (step % (steps / 10) == 0 || diverged)
        std::printf("%-12s %6ld %12.4g %14.4g  %s\n", clip ? "norm 1.0" : "none", step, loss.item(),
                    norm, diag::verdict_name(monitor.diagnose().verdict()));
    }
    const auto d = monitor.diagnose();
    std::printf("%s: %s; final verdict %s%s\n\n", clip ? "with clipping" : "without clipping",
                diverged ? "diverged (non-finite)" : "finished", diag::verdict_name(d.verdict()),
                d.earlier().empty() ? "" : ("; earlier: " + d.earlier()).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gs::util::ArgParser args("The adding problem: tanh RNN, IRNN, LSTM and GRU over long sequences");
  Settings s;
  bool quick = false;
  std::string study = "adding", svg = "adding_problem.svg";
  std::vector<long> lengths = {50, 100, 200};
  int seeds = 3;
  long steps = -1;
  args.flag("--quick", quick, "T = 50 only, 2 seeds, 1500 steps");
  args.option("--study", study, "adding or clipping").choices({"adding", "clipping"});
  std::vector<std::string> model_keys = {"rnn", "rnn-orth", "irnn", "lstm", "gru"};
  args.option("--models", model_keys,
              "models to train: rnn (tanh, Xavier recurrent matrix), rnn-orth (tanh, "
              "orthogonal), irnn, lstm, gru")
      .choices({"rnn", "rnn-orth", "irnn", "lstm", "gru"});
  args.option("--lengths", lengths, "sequence lengths").range(4, 100000);
  args.option("--seeds", seeds, "seeds per model and length").range(1, 100);
  args.option("--steps", steps, "training steps per run (default 3000, quick 1500)").range(1, 1e9);
  args.option("--hidden", s.hidden, "hidden units").range(1, 4096);
  args.option("--lr", s.lr, "Adam's learning rate").range(1e-8, 1);
  args.option("--svg", svg, "the chart of the test MSE curves ('' for none)");
  try {
    if (!args.parse(argc, argv)) {
      std::fputs(args.help().c_str(), stdout);
      return 0;
    }
  } catch (const gs::util::ArgError& e) {
    std::fprintf(stderr, "adding_problem: %s\n", e.what());
    return 2;
  }
  if (quick) {
    lengths = {50};
    seeds = 2;
    s.steps = 1500;
  }
  if (steps > 0) s.steps = steps;
  try {
    if (study == "clipping") return clipping_study(s, steps > 0 ? steps : 300);
    std::vector<gs::Index> ts(lengths.begin(), lengths.end());
    std::vector<Model> models;
    for (const auto& m : all_models())
      if (std::find(model_keys.begin(), model_keys.end(), m.key) != model_keys.end())
        models.push_back(m);
    return adding_study(s, models, ts, seeds, svg);
  } catch (const gs::Error& e) {
    std::fprintf(stderr, "adding_problem: %s\n", e.what());
    return 1;
  }
}
