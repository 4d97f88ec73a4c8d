// mnist_mlp: train a deep MLP on an MNIST-format dataset (Fashion-MNIST, MNIST) and show what
// its gradients do, layer by layer, with gradscope's gradient monitor.
//
//   mnist_mlp --preset demo --data /usr/share/datasets/fashion-mnist
//   mnist_mlp --synthetic --depth 10 --activation sigmoid --init nielsen --epochs 1
//
// Run with --help for every option. Exit codes: 0 success, 1 failure during training,
// 2 bad command line or missing data.

#include <gradscope/data/data.hpp>
#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>
#include <gradscope/util/cli.hpp>
#include <gradscope/util/progress.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>

#include "mnist_mlp_dist.hpp"  // mpiexec -n N mnist_mlp_mpi: the distributed hooks

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace optim = gradscope::optim;
namespace dg = gradscope::diagnostics;
using T = float;

struct Config {
  std::string data;
  bool synthetic = false;
  int synthetic_size = 12000;
  int depth = 3;
  int width = 256;
  std::string activation = "relu";
  std::string init = "auto";
  bool batchnorm = false;
  std::string residual = "none";
  double dropout = 0;
  std::string optimizer = "adam";
  double lr = 1e-3;
  std::string schedule = "cosine";
  double weight_decay = 0;
  double l1 = 0;
  double clip_norm = 0;
  double clip_value = 0;
  int epochs = 10;
  int batch_size = 128;
  std::uint64_t seed = 1;
  int threads = 1;
  int validation = 5000;
  int record_every = 10;
  std::string report_dir = "gradscope-report";
  std::string checkpoint;
  std::string resume;
  std::string preset;
};

// Named configurations. Options given on the command line override a preset's values.
void apply_preset(Config& c, const std::string& name) {
  if (name == "demo") {  // a deep, well-conditioned MLP: finishes in about a minute on 2 cores
    c.depth = 4, c.width = 256, c.activation = "relu", c.init = "he_normal", c.batchnorm = true;
    c.dropout = 0.1, c.optimizer = "adamw", c.lr = 2e-3, c.weight_decay = 1e-4;
    c.schedule = "cosine", c.epochs = 8, c.batch_size = 128;
  } else if (name == "best") {  // wider, longer, more regularised
    c.depth = 3, c.width = 1024, c.activation = "relu", c.init = "he_normal", c.batchnorm = true;
    c.dropout = 0.3, c.optimizer = "adamw", c.lr = 1e-3, c.weight_decay = 1e-4;
    c.schedule = "warmup-cosine", c.epochs = 40, c.batch_size = 128;
  } else if (name == "nielsen") {  // chapter 5's deep sigmoid network: watch gradients vanish
    c.depth = 4, c.width = 30, c.activation = "sigmoid", c.init = "nielsen", c.batchnorm = false;
    c.dropout = 0, c.optimizer = "sgd", c.lr = 0.1, c.weight_decay = 0, c.schedule = "none";
    c.epochs = 5, c.batch_size = 10, c.record_every = 50;
  } else {
    throw gs::util::ArgError("--preset: unknown preset '" + name +
                             "' (known: demo, best, nielsen)");
  }
}

gs::init::Initializer initializer(const Config& c) {
  if (c.init != "auto") return gs::init::by_name(c.init);
  if (c.activation == "relu") return gs::init::he_normal;
  if (c.activation == "leaky_relu")
    return gs::init::he_normal_with(gs::init::gain(gs::init::Activation::leaky_relu, 0.01));
  if (c.activation == "elu") return gs::init::he_normal_with(1.0);
  if (c.activation == "tanh") return gs::init::xavier_normal_with(5.0 / 3.0);
  return gs::init::xavier_uniform;
}

std::shared_ptr<nn::Module<T>> activation(const std::string& name) {
  if (name == "sigmoid") return std::make_shared<nn::Sigmoid<T>>();
  if (name == "tanh") return std::make_shared<nn::Tanh<T>>();
  if (name == "leaky_relu") return std::make_shared<nn::LeakyReLU<T>>();
  if (name == "elu") return std::make_shared<nn::ELU<T>>();
  return std::make_shared<nn::ReLU<T>>();
}

// depth counts hidden dense layers. With residual blocks, the first hidden layer maps the input
// to the width and each block adds two dense layers.
std::shared_ptr<nn::Sequential<T>> build(const Config& c, gs::Index features, int classes) {
  auto ptr = std::make_shared<nn::Sequential<T>>();
  auto& net = *ptr;
  const auto init = initializer(c);
  net.add<nn::Dense>(features, c.width, init);
  if (c.batchnorm) net.add<nn::BatchNorm>(c.width);
  net.add(activation(c.activation));
  if (c.residual == "none") {
    for (int i = 1; i < c.depth; ++i) {
      if (c.dropout > 0) net.add<nn::Dropout>(c.dropout, c.seed + static_cast<std::uint64_t>(i));
      net.add<nn::Dense>(c.width, c.width, init);
      if (c.batchnorm) net.add<nn::BatchNorm>(c.width);
      net.add(activation(c.activation));
    }
  } else {
    const bool pre = c.residual == "pre";
    for (int b = 0; b < std::max(1, (c.depth - 1) / 2); ++b)
      net.add(nn::residual_block<T>(
          c.width, {pre ? nn::ResidualKind::pre : nn::ResidualKind::post, c.batchnorm, init}));
    if (pre) {  // He et al. 2016 end the stack with BN and ReLU
      if (c.batchnorm) net.add<nn::BatchNorm>(c.width);
      net.add<nn::ReLU>();
    }
  }
  if (c.dropout > 0) net.add<nn::Dropout>(c.dropout, c.seed + 1000);
  net.add<nn::Dense>(c.width, classes, gs::init::xavier_uniform);
  return ptr;
}

std::unique_ptr<optim::Optimizer<T>> make_optimizer(const Config& c,
                                                    std::vector<gs::Tensor<T>> params) {
  const T lr = static_cast<T>(c.lr), wd = static_cast<T>(c.weight_decay), l1 = static_cast<T>(c.l1);
  if (c.optimizer == "sgd" || c.optimizer == "momentum" || c.optimizer == "nesterov") {
    optim::SGDOptions<T> o{.lr = lr, .weight_decay = wd, .l1 = l1};
    if (c.optimizer != "sgd") o.momentum = T(0.9);
    o.nesterov = c.optimizer == "nesterov";
    return std::make_unique<optim::SGD<T>>(std::move(params), o);
  }
  optim::AdamOptions<T> o{.lr = lr, .weight_decay = wd, .l1 = l1};
  if (c.optimizer == "adamw") return std::make_unique<optim::AdamW<T>>(std::move(params), o);
  return std::make_unique<optim::Adam<T>>(std::move(params), o);
}

optim::Schedule make_schedule(const Config& c, std::int64_t total_steps) {
  if (c.schedule == "cosine") return optim::schedule::cosine(total_steps, 0.01);
  if (c.schedule == "warmup-cosine")
    return optim::schedule::warmup(std::max<std::int64_t>(1, total_steps / 40), 0.1) *
           optim::schedule::cosine(total_steps, 0.01);
  if (c.schedule == "step")
    return optim::schedule::step(std::max<std::int64_t>(1, total_steps / 3), 0.1);
  return optim::schedule::constant();
}

// Accuracy and mean loss of the model on a dataset, in evaluation mode, without recording.
std::pair<double, double> evaluate(nn::Sequential<T>& net, const gs::data::Dataset<T>& d) {
  gs::NoGrad no_grad;
  net.eval();
  double correct = 0, loss = 0;
  const gs::Index chunk = 1000;
  for (gs::Index i = 0; i < d.size(); i += chunk) {
    const gs::Index n = std::min(chunk, d.size() - i);
    gs::Tensor<T> x(d.images.middleRows(i, n));
    const std::span<const int> y(d.labels.data() + i, static_cast<std::size_t>(n));
    auto logits = net(x);
    correct += nn::accuracy(logits, y) * static_cast<double>(n);
    loss += nn::softmax_cross_entropy(logits, y).item() * static_cast<double>(n);
  }
  net.train();
  return {correct / static_cast<double>(d.size()), loss / static_cast<double>(d.size())};
}

int run(const Config& c) {
  namespace fs = std::filesystem;
  gs::manual_seed(c.seed);
  Eigen::setNbThreads(c.threads);
  // Data.
  gs::data::Dataset<T> train, test;
  std::string source;
  if (c.synthetic) {
    auto all = gs::data::synthetic_digits<T>(c.synthetic_size + c.synthetic_size / 5, c.seed);
    std::tie(train, test) = all.split(c.synthetic_size / 5, c.seed);
    source = "synthetic digits (" + std::to_string(train.size()) + " train, " +
             std::to_string(test.size()) + " test)";
  } else {
    train = gs::data::load_idx_dataset<T>(c.data, "train");
    test = gs::data::load_idx_dataset<T>(c.data, "t10k");
    source = c.data + " (" + std::to_string(train.size()) + " train, " +
             std::to_string(test.size()) + " test)";
  }
  const int val_n = static_cast<int>(std::min<gs::Index>(c.validation, train.size() / 5));
  auto [fit, val] = train.split(val_n, c.seed);
  const auto [mean, stddev] = fit.mean_std();
  for (auto* d : {&fit, &val, &test}) d->standardize(mean, stddev);

  // Model, optimiser, schedule, monitor.
  const auto model = build(c, fit.features(), fit.classes);
  nn::Sequential<T>& net = *model;
  auto opt = make_optimizer(c, net.parameters());
  auto loader =
      mnist_dist::loader(fit, {.batch_size = c.batch_size, .shuffle = true, .seed = c.seed});
  const std::int64_t total_steps = loader.batches() * c.epochs;
  optim::LrScheduler<T> sched(*opt, make_schedule(c, total_steps));
  dg::GradientMonitor<T> monitor(net, {.every = c.record_every});
  int start_epoch = 0;
  if (!c.resume.empty()) {
    const auto meta = gs::io::load_checkpoint(c.resume, net, opt.get());
    start_epoch = meta.count("epoch") ? std::stoi(meta.at("epoch")) : 0;
    sched.set_count(opt->steps());
    std::printf("resumed from %s at epoch %d (step %lld)\n", c.resume.c_str(), start_epoch,
                static_cast<long long>(opt->steps()));
  }
  const std::string distributed = mnist_dist::attach(net, c.batch_size);

  std::printf("gradscope %s | data: %s | validation %d\n%s", gs::version(), source.c_str(), val_n,
              distributed.c_str());
  std::printf(
      "model: %d hidden layers of %d, %s, init %s%s%s%s | %lld parameters\n", c.depth, c.width,
      c.activation.c_str(), initializer(c).name().c_str(), c.batchnorm ? ", batch norm" : "",
      c.residual == "none" ? "" : (", " + c.residual + "-activation residual blocks").c_str(),
      c.dropout > 0 ? (", dropout " + std::to_string(c.dropout).substr(0, 4)).c_str() : "",
      static_cast<long long>(net.parameter_count()));
  std::printf(
      "training: %s lr %g, schedule %s, batch %d, %d epochs%s%s\n\n", c.optimizer.c_str(), c.lr,
      c.schedule.c_str(), c.batch_size, c.epochs,
      c.clip_norm > 0 ? (", clip norm " + std::to_string(c.clip_norm)).c_str() : "",
      c.weight_decay > 0 ? (", weight decay " + std::to_string(c.weight_decay)).c_str() : "");

  gs::Tape<T> tape;
  const auto params = net.parameters();
  double total_seconds = 0;
  for (int epoch = start_epoch; epoch < c.epochs; ++epoch) {
    gs::util::Progress progress(fit.size(), "epoch " + std::to_string(epoch + 1),
                                mnist_dist::progress_stream());
    mnist_dist::set_epoch(epoch);
    double loss_sum = 0;
    gs::Index seen = 0;
    for (auto& [x, y] : loader) {
      tape.reset();
      auto loss = nn::softmax_cross_entropy(net(x), y);
      tape.backward(loss);
      const auto [l, n] = mnist_dist::average_gradients(loss.item(), y.size(), monitor);
      monitor.record_gradients(l);
      if (c.clip_value > 0) optim::clip_grad_value(params, static_cast<T>(c.clip_value));
      if (c.clip_norm > 0) optim::clip_grad_norm(params, c.clip_norm);
      if (!opt->step())
        std::fprintf(stderr, "\nwarning: step %lld had non-finite gradients\n",
                     static_cast<long long>(opt->steps()));
      monitor.record_update();
      opt->zero_grad();
      sched.step();
      loss_sum += l * static_cast<double>(n);
      seen += n;
      progress.field("loss", loss_sum / static_cast<double>(seen));
      progress.update(seen);
    }
    const double secs = progress.finish();
    total_seconds += secs;
    mnist_dist::end_epoch();
    const auto [val_acc, val_loss] = evaluate(net, val);
    const auto diagnosis = monitor.diagnose();
    std::printf(
        "epoch %2d  train loss %.4f  val loss %.4f  val acc %.2f%%  %6.0f samples/s  gradients: "
        "%s\n",
        epoch + 1, loss_sum / static_cast<double>(seen), val_loss, 100 * val_acc,
        static_cast<double>(seen) / secs, dg::verdict_name(diagnosis.verdict()));
    std::fflush(stdout);
    if (!c.checkpoint.empty() && mnist_dist::is_root())
      gs::io::save_checkpoint(c.checkpoint, net, opt.get(),
                              {{"epoch", std::to_string(epoch + 1)}, {"preset", c.preset}});
  }
  const auto [test_acc, test_loss] = evaluate(net, test);
  std::printf("\ntest accuracy %.2f%% (test loss %.4f), %.1f s of training\n\n", 100 * test_acc,
              test_loss, total_seconds);
  std::printf("%s\n", monitor.report().c_str());
  if (!mnist_dist::is_root()) return 0;
  fs::create_directories(c.report_dir);
  const auto dir = fs::path(c.report_dir);
  monitor.write_csv((dir / "gradients.csv").string());
  monitor.write_jsonl((dir / "gradients.jsonl").string());
  monitor.write_svg((dir / "gradient_flow.svg").string(), {.title = "Gradient flow: " + source});
  gs::io::save_checkpoint(
      dir / "model.safetensors", net, opt.get(),
      {{"epoch", std::to_string(c.epochs)}, {"test_accuracy", std::to_string(test_acc)}});
  std::printf(
      "reports: %s/{gradients.csv, gradients.jsonl, gradient_flow.svg, model.safetensors}\n",
      c.report_dir.c_str());
  return 0;
}

int main(int argc, char** argv) {
  mnist_dist::Scope dist(argc, argv);
  Config c;
  gs::util::ArgParser app(
      "mnist_mlp: train a deep MLP on MNIST-format data and diagnose its gradients (gradscope)");
  app.option("--preset", c.preset,
             "named configuration (options given with it override its values)")
      .choices({"demo", "best", "nielsen"});
  app.option("--data", c.data, "directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
      .excludes("--synthetic");
  app.flag("--synthetic", c.synthetic, "use procedurally drawn digits instead of files");
  app.option("--synthetic-size", c.synthetic_size, "training images when --synthetic")
      .range(100, 1000000);
  app.option("--depth", c.depth, "hidden dense layers").range(1, 1000);
  app.option("--width", c.width, "units per hidden layer").range(1, 100000);
  app.option("--activation", c.activation, "hidden activation")
      .choices({"sigmoid", "tanh", "relu", "leaky_relu", "elu"});
  app.option("--init", c.init, "weight initialisation (auto: from the activation)")
      .choices({"auto", "zeros", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
                "lecun_normal", "nielsen"});
  app.flag("--batchnorm", c.batchnorm, "batch normalisation after each hidden dense layer",
           /*negatable=*/true);
  app.option("--residual", c.residual, "residual blocks").choices({"none", "post", "pre"});
  app.option("--dropout", c.dropout, "dropout probability").range(0.0, 0.95);
  app.option("--optimizer", c.optimizer, "optimiser")
      .choices({"sgd", "momentum", "nesterov", "adam", "adamw"});
  app.option("--lr", c.lr, "learning rate").positive();
  app.option("--schedule", c.schedule, "learning-rate schedule")
      .choices({"none", "cosine", "warmup-cosine", "step"});
  app.option("--weight-decay", c.weight_decay, "L2 weight decay (decoupled for adamw)")
      .non_negative();
  app.option("--l1", c.l1, "L1 regularisation strength").non_negative();
  app.option("--clip-norm", c.clip_norm, "clip gradients to this global L2 norm (0: off)")
      .non_negative();
  app.option("--clip-value", c.clip_value, "clip gradient elements to +-value (0: off)")
      .non_negative();
  app.option("--epochs", c.epochs, "training epochs").range(1, 10000);
  app.option("--batch-size", c.batch_size, "batch size").range(1, 1000000);
  app.option("--seed", c.seed, "random seed");
  app.option("--threads", c.threads, "Eigen threads (effective when built with OpenMP)")
      .range(1, 256);
  app.option("--validation", c.validation, "training images held out for validation")
      .range(1, 1000000);
  app.option("--record-every", c.record_every, "record gradients every N steps").range(1, 1000000);
  app.option("--report-dir", c.report_dir, "where the CSV, JSON Lines, SVG and checkpoint go");
  app.option("--checkpoint", c.checkpoint, "save a checkpoint here after every epoch");
  app.option("--resume", c.resume, "resume from this checkpoint");
  try {
    // First pass: find a preset, so that explicit options override it in the second pass.
    if (!app.parse(argc, argv)) {
      std::fputs(app.help().c_str(), stdout);
      return 0;
    }
    if (!c.preset.empty()) {
      Config preset_config;
      preset_config.data = c.data;
      preset_config.synthetic = c.synthetic;
      apply_preset(preset_config, c.preset);
      preset_config.preset = c.preset;
      c = preset_config;
      app.parse(argc, argv);
    }
    if (c.data.empty() && !c.synthetic)
      throw gs::util::ArgError(
          "--data: give --data DIR (an MNIST-format directory) or --synthetic");
    if (!c.data.empty() && !std::filesystem::is_directory(c.data))
      throw gs::util::ArgError(
          "--data: data directory '" + c.data +
          "' not found (run scripts/get-data.sh fashion, or pass --synthetic)");
  } catch (const gs::util::ArgError& e) {
    std::fprintf(stderr, "mnist_mlp: %s\nRun with --help for the options.\n", e.what());
    return 2;
  }
  try {
    return run(c);
  } catch (const gs::DataError& e) {
    return dist.fail(e, 2);
  } catch (const std::exception& e) {
    return dist.fail(e, 1);
  }
}
