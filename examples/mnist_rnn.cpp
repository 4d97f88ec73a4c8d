// mnist_rnn: a recurrent sequence classifier on an MNIST-format dataset (Fashion-MNIST, MNIST):
// it reads each image row by row, T = 28 steps of 28 pixels, and classifies it from its last
// state; gradscope's gradient monitor follows the gradient through the time steps as well as
// through the layers.
//
//   mnist_rnn --preset demo --data /usr/share/datasets/fashion-mnist
//   mnist_rnn --synthetic --model rnn --epochs 1          (a tanh RNN: watch the time profile)
//
// The same conventions as mnist_mlp: presets whose values explicit options override, a progress
// line, a verdict per epoch, reports in --report-dir (gradients.csv, gradients.jsonl,
// gradient_flow.svg with the time-profile panels, model.safetensors), --checkpoint and
// --resume. Exit codes: 0 success, 1 failure during training, 2 bad command line, bad or missing
// data, or a checkpoint that does not fit the run.

#include <gradscope/data/data.hpp>
#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>
#include <gradscope/util/cli.hpp>
#include <gradscope/util/progress.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace optim = gradscope::optim;
namespace dg = gradscope::diagnostics;
namespace fs = std::filesystem;
using T = float;

namespace {

struct Config {
  std::string data;
  bool synthetic = false;
  int synthetic_size = 12000;
  std::string model = "lstm";  // lstm, gru, rnn (tanh), irnn (ReLU, identity recurrent matrix)
  int hidden = 128;
  int layers = 1;
  T lr = T(2e-3);
  T clip_norm = T(1);
  std::string schedule = "cosine";
  int epochs = 6;
  int batch_size = 128;
  std::uint64_t seed = 1;
  int validation = 5000;
  int record_every = 10;
  std::string report_dir = "gradscope-report";
  std::string checkpoint;
  std::string resume;
  std::string preset;
};

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void apply_preset(Config& c, const std::string& name) {
  if (name == "demo") {  // one LSTM layer of 128: 88.7% on Fashion-MNIST in 6 epochs (80-90 s)
    c.model = "lstm", c.hidden = 128, c.layers = 1, c.lr = T(2e-3), c.clip_norm = T(1);
    c.schedule = "cosine", c.epochs = 6, c.batch_size = 128;
  } else if (name == "gru") {
    c.model = "gru", c.hidden = 128, c.layers = 1, c.lr = T(2e-3), c.clip_norm = T(1);
    c.schedule = "cosine", c.epochs = 6, c.batch_size = 128;
  } else if (name == "rnn") {  // a tanh RNN, for comparison: its time profile decays
    c.model = "rnn", c.hidden = 128, c.layers = 1, c.lr = T(1e-3), c.clip_norm = T(1);
    c.schedule = "cosine", c.epochs = 6, c.batch_size = 128;
  } else {
    throw gs::util::ArgError("--preset: unknown preset '" + name + "' (known: demo, gru, rnn)");
  }
}

std::shared_ptr<nn::Sequential<T>> build(const Config& c, gs::Index features, int classes) {
  nn::RecurrentOptions o{.num_layers = c.layers, .output = nn::RecurrentOutput::last_step};
  nn::CellKind kind = nn::CellKind::lstm;
  if (c.model == "gru") kind = nn::CellKind::gru;
  if (c.model == "rnn" || c.model == "irnn") kind = nn::CellKind::rnn;
  if (c.model == "irnn") {
    o.nonlinearity = gs::RnnNonlinearity::relu;
    o.recurrent_init = gs::init::identity();
    o.input_init = gs::init::normal(0.001);
  }
  auto net = std::make_shared<nn::Sequential<T>>();
  net->add(std::make_shared<nn::Recurrent<T>>(kind, features, c.hidden, o));
  net->add<nn::Dense>(c.hidden, classes, gs::init::xavier_uniform);
  return net;
}

optim::Schedule make_schedule(const Config& c, std::int64_t total_steps) {
  if (c.schedule == "cosine") return optim::schedule::cosine(total_steps, 0.01);
  return optim::schedule::constant();
}

struct Data {
  gs::data::Dataset<T> fit, val, test;
  std::string source;
};

Data load_data(const Config& c) {
  Data d;
  gs::data::Dataset<T> train;
  if (c.synthetic) {
    auto all = gs::data::synthetic_digits<T>(c.synthetic_size + c.synthetic_size / 5, c.seed);
    std::tie(train, d.test) = all.split(c.synthetic_size / 5, c.seed);
    d.source = "synthetic digits";
  } else {
    train = gs::data::load_idx_dataset<T>(c.data, "train");
    d.test = gs::data::load_idx_dataset<T>(c.data, "t10k");
    d.source = c.data;
  }
  if (train.size() == 0 || d.test.size() == 0)
    throw gs::DataError("'" + d.source + "' holds no images");
  if (d.test.image_rows != train.image_rows || d.test.image_cols != train.image_cols)
    throw gs::DataError("the test and training images of '" + d.source +
                        "' differ in size: both sets need the same image size");
  if (train.image_rows < 1 || train.image_cols < 1)
    throw gs::DataError("'" + d.source + "' has no image rows to read as time steps");
  const auto val_n = std::min<gs::Index>(c.validation, train.size() / 5);
  std::tie(d.fit, d.val) = train.split(val_n, c.seed);
  const auto [mean, stddev] = d.fit.mean_std();
  for (auto* s : {&d.fit, &d.val, &d.test}) s->standardize(mean, stddev);
  d.source += " (" + std::to_string(d.fit.size()) + " train, " + std::to_string(d.val.size()) +
              " validation, " + std::to_string(d.test.size()) + " test)";
  return d;
}

// Accuracy and mean cross-entropy on a dataset, in evaluation mode, without recording.
std::pair<double, double> evaluate(nn::Sequential<T>& net, const gs::data::Dataset<T>& d) {
  gs::NoGrad no_grad;
  net.eval();
  double correct = 0, loss = 0;
  const gs::Index chunk = 1000;
  for (gs::Index i = 0; i < d.size(); i += chunk) {
    const gs::Index n = std::min(chunk, d.size() - i);
    const gs::Tensor<T> x(d.images.middleRows(i, n));
    const std::span<const int> y(d.labels.data() + i, static_cast<std::size_t>(n));
    const auto logits = net(x);
    correct += nn::accuracy(logits, y) * static_cast<double>(n);
    loss += nn::softmax_cross_entropy(logits, y).item() * static_cast<double>(n);
  }
  net.train();
  return {correct / static_cast<double>(d.size()), loss / static_cast<double>(d.size())};
}

// The time profile of the recurrent layer's last recorded step, in a few words.
std::string time_summary(const dg::GradientMonitor<T>& monitor) {
  if (monitor.time_layers().empty() || monitor.time_records(0).empty()) return "";
  const auto& p = monitor.time_records(0).profiles().back();
  char buf[160];
  std::snprintf(buf, sizeof buf, "  through time: gain %.3g/step, reach %s, horizon %lld of %lld",
                p.gain, dg::time_figure(p.reach, p.underflow).c_str(),
                static_cast<long long>(p.horizon), static_cast<long long>(p.steps - 1));
  return buf;
}

int run(const Config& c) {
  gs::manual_seed(c.seed);
  if (!c.report_dir.empty()) {
    std::error_code ec;
    fs::create_directories(c.report_dir, ec);
    if (ec || !fs::is_directory(c.report_dir))
      throw ConfigError("--report-dir: cannot create directory '" + c.report_dir + "'");
  }
  if (!c.checkpoint.empty()) {  // found before training, not after the first epoch
    const fs::path dir = fs::path(c.checkpoint).parent_path();
    if (!dir.empty() && !fs::is_directory(dir))
      throw ConfigError("--checkpoint: directory '" + dir.string() + "' does not exist");
  }
  const Data d = load_data(c);
  const gs::Index steps = d.fit.image_rows, features = d.fit.image_cols;
  const auto model = build(c, features, d.fit.classes);
  nn::Sequential<T>& net = *model;
  optim::Adam<T> opt(net.parameters(), {.lr = c.lr});
  gs::data::DataLoader<T> loader(d.fit, {.batch_size = c.batch_size, .seed = c.seed});
  optim::LrScheduler<T> sched(opt, make_schedule(c, loader.batches() * c.epochs));
  dg::GradientMonitor<T> monitor(net, {.every = c.record_every});
  const gs::io::RunState<T> run_state{&sched, {}};
  int start_epoch = 0;
  if (!c.resume.empty()) {
    gs::io::Metadata meta;
    try {
      meta = gs::io::load_checkpoint(c.resume, net, &opt, run_state);
    } catch (const gs::ShapeError& e) {
      throw ConfigError(std::string("--resume: ") + e.what() +
                        " (the checkpoint is of another model: --model, --hidden, --layers)");
    }
    start_epoch = static_cast<int>(gs::io::metadata_integer(meta, "epoch", c.resume, 0, c.epochs));
    loader.set_epoch(start_epoch);
    std::printf("resumed from %s at epoch %d\n", c.resume.c_str(), start_epoch);
  }

  std::printf("gradscope %s | data: %s\n", gs::version(), d.source.c_str());
  std::printf("model: %s, %d x %d hidden, reads %lld steps of %lld pixels | %lld parameters\n",
              net.at(0).describe().c_str(), c.layers, c.hidden, static_cast<long long>(steps),
              static_cast<long long>(features), static_cast<long long>(net.parameter_count()));
  std::printf("training: adam lr %g, schedule %s, batch %d, %d epochs, clip norm %g\n\n",
              static_cast<double>(c.lr), c.schedule.c_str(), c.batch_size, c.epochs,
              static_cast<double>(c.clip_norm));

  gs::Tape<T> tape;
  const auto params = net.parameters();
  double total_seconds = 0;
  for (int epoch = start_epoch; epoch < c.epochs; ++epoch) {
    gs::util::Progress progress(d.fit.size(), "epoch " + std::to_string(epoch + 1));
    double loss_sum = 0;
    gs::Index seen = 0;
    for (auto& [x, y] : loader) {
      tape.reset();
      const auto loss = nn::softmax_cross_entropy(net(x), y);
      tape.backward(loss);
      monitor.record_gradients(loss.item());
      if (c.clip_norm > 0) optim::clip_grad_norm(params, static_cast<double>(c.clip_norm));
      opt.step();
      monitor.record_update();
      opt.zero_grad();
      sched.step();
      const auto n = static_cast<gs::Index>(y.size());
      loss_sum += loss.item() * static_cast<double>(n);
      seen += n;
      progress.field("loss", loss_sum / static_cast<double>(seen));
      progress.update(seen);
    }
    const double secs = progress.finish();
    total_seconds += secs;
    std::printf("epoch %2d  train loss %.4f", epoch + 1, loss_sum / static_cast<double>(seen));
    if (d.val.size() > 0) {
      const auto [acc, loss] = evaluate(net, d.val);
      std::printf("  val loss %.4f  val acc %.2f%%", loss, 100 * acc);
    }
    std::printf("  %5.0f samples/s  gradients: %s%s\n", static_cast<double>(seen) / secs,
                dg::verdict_name(monitor.diagnose().verdict()), time_summary(monitor).c_str());
    std::fflush(stdout);
    if (!c.checkpoint.empty()) {
      std::string path = c.checkpoint;
      if (const auto at = path.find("{epoch}"); at != std::string::npos)
        path.replace(at, 7, std::to_string(epoch + 1));
      gs::io::save_checkpoint(path, net, &opt, {{"epoch", std::to_string(epoch + 1)}}, run_state);
    }
  }
  const auto [test_acc, test_loss] = evaluate(net, d.test);
  std::printf("\ntest accuracy %.2f%% (test loss %.4f), %.1f s of training\n\n", 100 * test_acc,
              test_loss, total_seconds);
  std::printf("%s\n", monitor.report().c_str());
  if (c.report_dir.empty()) return 0;
  const fs::path dir(c.report_dir);
  monitor.write_csv((dir / "gradients.csv").string());
  monitor.write_jsonl((dir / "gradients.jsonl").string());
  monitor.write_svg((dir / "gradient_flow.svg").string(),
                    {.title = "Gradient flow: " + net.at(0).describe() + " on " + d.source});
  gs::io::save_checkpoint(
      dir / "model.safetensors", net, &opt,
      {{"epoch", std::to_string(c.epochs)}, {"test_accuracy", std::to_string(test_acc)}},
      run_state);
  std::printf(
      "reports: %s/{gradients.csv, gradients.jsonl, gradient_flow.svg, model.safetensors}\n",
      c.report_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  gs::util::ArgParser app(
      "mnist_rnn: a recurrent classifier reading MNIST-format images row by row, with its "
      "gradients through time (gradscope)");
  app.option("--preset", c.preset, "named configuration (options given with it override it)")
      .choices({"demo", "gru", "rnn"});
  app.option("--data", c.data, "directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
      .excludes("--synthetic");
  app.flag("--synthetic", c.synthetic, "use procedurally drawn digits instead of files");
  app.option("--synthetic-size", c.synthetic_size, "training images when --synthetic")
      .range(100, 1000000);
  app.option("--model", c.model,
             "recurrent layer: lstm, gru, rnn (tanh) or irnn (ReLU, identity recurrent matrix)")
      .choices({"lstm", "gru", "rnn", "irnn"});
  app.option("--hidden", c.hidden, "hidden units per layer").range(1, 8192);
  app.option("--layers", c.layers, "stacked recurrent layers").range(1, 64);
  app.option("--lr", c.lr, "Adam's learning rate").positive();
  app.option("--schedule", c.schedule, "learning-rate schedule").choices({"none", "cosine"});
  app.option("--clip-norm", c.clip_norm, "clip gradients to this global L2 norm (0: off)")
      .non_negative();
  app.option("--epochs", c.epochs, "training epochs").range(1, 10000);
  app.option("--batch-size", c.batch_size, "batch size").range(1, 1000000);
  app.option("--seed", c.seed, "random seed");
  app.option("--validation", c.validation,
             "training images held out for validation, at most a fifth (0: none)")
      .range(0, 1000000);
  app.option("--record-every", c.record_every, "record gradients every N steps").range(1, 1000000);
  app.option("--report-dir", c.report_dir, "where the CSV, JSON Lines, SVG and model go");
  app.option("--checkpoint", c.checkpoint,
             "save a checkpoint here after every epoch ({epoch} in the name: one per epoch)");
  app.option("--resume", c.resume, "resume from this checkpoint");
  try {
    if (!app.parse(argc, argv)) {
      std::fputs(app.help().c_str(), stdout);
      return 0;
    }
    if (!c.preset.empty()) {
      Config preset_config;
      apply_preset(preset_config, c.preset);
      preset_config.preset = c.preset;
      c = preset_config;
      app.parse(argc, argv);
    }
    if (c.data.empty() && !c.synthetic)
      throw gs::util::ArgError(
          "--data: give --data DIR (an MNIST-format directory) or --synthetic");
    if (!c.data.empty() && !fs::is_directory(c.data))
      throw gs::util::ArgError(
          "--data: data directory '" + c.data +
          "' not found (run scripts/get-data.sh fashion, or pass --synthetic)");
  } catch (const gs::util::ArgError& e) {
    std::fprintf(stderr, "mnist_rnn: %s\nRun with --help for the options.\n", e.what());
    return 2;
  }
  try {
    return run(c);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "mnist_rnn: %s\n", e.what());
    return 2;
  } catch (const gs::DataError& e) {
    std::fprintf(stderr, "mnist_rnn: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mnist_rnn: %s\n", e.what());
    return 1;
  }
}
