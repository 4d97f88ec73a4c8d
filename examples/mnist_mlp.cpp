// mnist_mlp: train a deep MLP on an MNIST-format dataset (Fashion-MNIST, MNIST) and show what
// its gradients do, layer by layer, with gradscope's gradient monitor.
//
//   mnist_mlp --preset demo --data /usr/share/datasets/fashion-mnist
//   mnist_mlp --synthetic --depth 10 --activation sigmoid --init nielsen --epochs 1
//
// Run with --help for every option; docs/training.md ("Command-line checks") lists what is
// checked before training. Exit codes: 0 success, 1 failure during training, 2 bad command line,
// bad or missing data, or a configuration that cannot run (not enough memory, an unwritable
// report directory, a checkpoint that does not fit the run).

#include <gradscope/data/data.hpp>
#include <gradscope/gradscope.hpp>
#include <gradscope/io/io.hpp>
#include <gradscope/util/cli.hpp>
#include <gradscope/util/progress.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>

#include "mnist_mlp_dist.hpp"  // mpiexec -n N mnist_mlp_mpi: the distributed hooks

namespace gs = gradscope;
namespace nn = gradscope::nn;
namespace optim = gradscope::optim;
namespace dg = gradscope::diagnostics;
namespace fs = std::filesystem;
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
  std::string output = "softmax";
  std::string loss = "auto";
  bool standardize = true;
  std::string optimizer = "adam";
  // The training hyper-parameters are floats, as the model: a value beyond float's range is a
  // command-line error, not an infinity in the optimiser.
  T lr = T(1e-3);
  std::string schedule = "cosine";
  T weight_decay = 0;
  T l1 = 0;
  T clip_norm = 0;
  T clip_value = 0;
  int epochs = 10;
  int batch_size = 128;
  std::uint64_t seed = 1;
  int threads = 1;
  int validation = 5000;
  bool validation_given = false;  // --validation on the command line (a cap is then worth a note)
  int record_every = 10;
  std::string report_dir = "gradscope-report";
  std::string checkpoint;
  std::string resume;
  std::string preset;
  double max_memory_gb = 0;  // 0: MemAvailable from /proc/meminfo
};

// A configuration that cannot run (exit code 2, like a bad command line).
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Named configurations. Options given on the command line override a preset's values.
void apply_preset(Config& c, const std::string& name) {
  if (name == "demo") {  // a deep, well-conditioned MLP: finishes in about a minute on 2 cores
    c.depth = 4, c.width = 256, c.activation = "relu", c.init = "he_normal", c.batchnorm = true;
    c.dropout = 0.1, c.optimizer = "adamw", c.lr = T(2e-3), c.weight_decay = T(1e-4);
    c.schedule = "cosine", c.epochs = 8, c.batch_size = 128;
  } else if (name == "best") {  // wider, longer, more regularised
    c.depth = 3, c.width = 1024, c.activation = "relu", c.init = "he_normal", c.batchnorm = true;
    c.dropout = 0.3, c.optimizer = "adamw", c.lr = T(1e-3), c.weight_decay = T(1e-4);
    c.schedule = "warmup-cosine", c.epochs = 40, c.batch_size = 128;
  } else if (name == "nielsen") {  // chapter 5's deep sigmoid network: watch gradients vanish
    c.depth = 4, c.width = 30, c.activation = "sigmoid", c.init = "nielsen", c.batchnorm = false;
    c.dropout = 0, c.optimizer = "sgd", c.lr = T(0.1), c.weight_decay = 0, c.schedule = "none";
    c.epochs = 5, c.batch_size = 10, c.record_every = 50;
  } else {
    throw gs::util::ArgError("--preset: unknown preset '" + name +
                             "' (known: demo, best, nielsen)");
  }
}

gs::init::Initializer initializer(const Config& c) {
  if (c.init == "normal") return gs::init::normal(1.0);  // Nielsen's chapter 1: N(0, 1)
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

// Residual blocks replacing depth - 1 hidden layers (two dense layers each).
int residual_blocks(const Config& c) { return std::max(1, (c.depth - 1) / 2); }

// depth counts hidden dense layers. With residual blocks, the first hidden layer maps the input
// to the width and each block adds two dense layers. With a sigmoid output the model ends with a
// Sigmoid, and its output layer is initialised like the hidden ones (as in Nielsen's networks).
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
    for (int b = 0; b < residual_blocks(c); ++b)
      net.add(nn::residual_block<T>(
          c.width, {pre ? nn::ResidualKind::pre : nn::ResidualKind::post, c.batchnorm, init}));
    if (pre) {  // He et al. 2016 end the stack with BN and ReLU
      if (c.batchnorm) net.add<nn::BatchNorm>(c.width);
      net.add<nn::ReLU>();
    }
  }
  if (c.dropout > 0) net.add<nn::Dropout>(c.dropout, c.seed + 1000);
  if (c.output == "sigmoid") {
    net.add<nn::Dense>(c.width, classes, init);
    net.add<nn::Sigmoid>();
  } else {
    net.add<nn::Dense>(c.width, classes, gs::init::xavier_uniform);
  }
  return ptr;
}

std::unique_ptr<optim::Optimizer<T>> make_optimizer(const Config& c,
                                                    std::vector<gs::Tensor<T>> params) {
  if (c.optimizer == "sgd" || c.optimizer == "momentum" || c.optimizer == "nesterov") {
    optim::SGDOptions<T> o{.lr = c.lr, .weight_decay = c.weight_decay, .l1 = c.l1};
    if (c.optimizer != "sgd") o.momentum = T(0.9);
    o.nesterov = c.optimizer == "nesterov";
    return std::make_unique<optim::SGD<T>>(std::move(params), o);
  }
  optim::AdamOptions<T> o{.lr = c.lr, .weight_decay = c.weight_decay, .l1 = c.l1};
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

// ---- the objective: output layer and cost -----------------------------------------------------

// The cost of a batch and the scores whose argmax is the prediction. "ce": softmax cross-entropy
// on the logits. With a sigmoid output, Nielsen's costs summed over the output units and averaged
// over the batch: "mse", the quadratic cost (1/n) sum_x ||y - a||^2 / 2; "bce", the cross-entropy
// -(1/n) sum_x sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)], computed stably from the logits (the
// input of the final Sigmoid).
class Objective {
 public:
  Objective(const Config& c, int classes, gs::Index max_rows)
      : loss_(c.loss), classes_(classes), onehot_(gs::Matrix<T>::Zero(max_rows, classes)) {}

  std::pair<gs::Tensor<T>, gs::Tensor<T>> operator()(nn::Sequential<T>& net, const gs::Tensor<T>& x,
                                                     std::span<const int> y) {
    if (loss_ == "ce") {
      auto logits = net(x);
      return {nn::softmax_cross_entropy(logits, y), logits};
    }
    const auto target = targets(y);
    const auto units = static_cast<T>(classes_);
    if (loss_ == "mse") {
      auto a = net(x);
      return {gs::scale(nn::mse(a, target), units / 2), a};
    }
    gs::Tensor<T> logits = x;  // every module but the final Sigmoid
    for (std::size_t i = 0; i + 1 < net.size(); ++i) logits = net.at(i)(logits);
    return {gs::scale(nn::binary_cross_entropy_with_logits(logits, target), units), logits};
  }

  // "cross-entropy", "quadratic cost", "cross-entropy on sigmoid outputs".
  std::string describe() const {
    if (loss_ == "ce") return "softmax output, cross-entropy";
    if (loss_ == "mse") return "sigmoid output, quadratic cost";
    return "sigmoid output, cross-entropy on sigmoid outputs";
  }

 private:
  // One-hot targets of the labels, on the tape when one is recording.
  gs::Tensor<T> targets(std::span<const int> y) {
    const auto n = static_cast<gs::Index>(y.size());
    if (n > onehot_.rows()) onehot_.resize(n, classes_);
    onehot_.topRows(n).setZero();
    for (gs::Index i = 0; i < n; ++i) {
      const int label = y[static_cast<std::size_t>(i)];
      if (label < 0 || label >= classes_)
        throw gs::ValueError("label " + std::to_string(label) + " outside [0, " +
                             std::to_string(classes_) + ")");
      onehot_(i, label) = T(1);
    }
    if (auto* tape = gs::Tape<T>::current()) return tape->constant(onehot_.topRows(n));
    return gs::Tensor<T>(gs::Matrix<T>(onehot_.topRows(n)));
  }

  std::string loss_;
  int classes_;
  gs::Matrix<T> onehot_;
};

// Accuracy and mean loss of the model on a dataset, in evaluation mode, without recording.
std::pair<double, double> evaluate(nn::Sequential<T>& net, Objective& objective,
                                   const gs::data::Dataset<T>& d) {
  gs::NoGrad no_grad;
  net.eval();
  double correct = 0, loss = 0;
  const gs::Index chunk = 1000;
  for (gs::Index i = 0; i < d.size(); i += chunk) {
    const gs::Index n = std::min(chunk, d.size() - i);
    gs::Tensor<T> x(d.images.middleRows(i, n));
    const std::span<const int> y(d.labels.data() + i, static_cast<std::size_t>(n));
    const auto [l, scores] = objective(net, x, y);
    correct += nn::accuracy(scores, y) * static_cast<double>(n);
    loss += l.item() * static_cast<double>(n);
  }
  net.train();
  return {correct / static_cast<double>(d.size()), loss / static_cast<double>(d.size())};
}

// ---- data --------------------------------------------------------------------------------------

// The file of an IDX data set, as load_idx_dataset finds it (gzip first), for messages.
std::string idx_file(const std::string& dir, const std::string& stem) {
  for (const char* ext : {".gz", ""})
    if (fs::exists(fs::path(dir) / (stem + ext))) return (fs::path(dir) / (stem + ext)).string();
  return (fs::path(dir) / stem).string();
}

struct Data {
  gs::data::Dataset<T> fit, val, test;
  std::string source;        // for the header line and the chart title
  std::string train_images;  // the file the training images came from (for messages)
  std::string test_images;
  std::string validation_note;  // why the validation split is smaller than asked, or absent
};

// Loads the training and test sets, checks them against each other, splits off the validation
// set and standardises (with the training split's statistics) unless --no-standardize.
Data load_data(const Config& c) {
  Data d;
  gs::data::Dataset<T> train;
  if (c.synthetic) {
    auto all = gs::data::synthetic_digits<T>(c.synthetic_size + c.synthetic_size / 5, c.seed);
    std::tie(train, d.test) = all.split(c.synthetic_size / 5, c.seed);
    d.train_images = "synthetic training digits";
    d.test_images = "synthetic test digits";
    d.source = "synthetic digits (" + std::to_string(train.size()) + " train, " +
               std::to_string(d.test.size()) + " test)";
  } else {
    train = gs::data::load_idx_dataset<T>(c.data, "train");
    d.test = gs::data::load_idx_dataset<T>(c.data, "t10k");
    d.train_images = idx_file(c.data, "train-images-idx3-ubyte");
    d.test_images = idx_file(c.data, "t10k-images-idx3-ubyte");
    d.source = c.data + " (" + std::to_string(train.size()) + " train, " +
               std::to_string(d.test.size()) + " test)";
  }
  if (train.size() == 0) throw gs::DataError("'" + d.train_images + "' holds no images");
  if (d.test.size() == 0) throw gs::DataError("'" + d.test_images + "' holds no images");
  if (d.test.features() != train.features() || d.test.image_rows != train.image_rows)
    throw gs::DataError("the test images in '" + d.test_images + "' are " +
                        std::to_string(d.test.image_rows) + "x" +
                        std::to_string(d.test.image_cols) + " pixels but the training images in '" +
                        d.train_images + "' are " + std::to_string(train.image_rows) + "x" +
                        std::to_string(train.image_cols) + ": both sets need the same image size");
  // At most a fifth of the training images is held out, so that most of them train.
  const auto cap = train.size() / 5;
  const auto val_n = std::min<gs::Index>(c.validation, cap);
  if (c.validation > 0 && val_n == 0)
    d.validation_note = "no validation split: " + std::to_string(train.size()) +
                        (train.size() == 1 ? " training image is" : " training images are") +
                        " too few to hold any out (at most a fifth is)";
  else if (val_n < c.validation && c.validation_given)
    d.validation_note = "validation capped at a fifth of the " + std::to_string(train.size()) +
                        " training images (--validation " + std::to_string(c.validation) + ")";
  std::tie(d.fit, d.val) = train.split(val_n, c.seed);
  if (c.standardize) {
    const auto [mean, stddev] = d.fit.mean_std();
    for (auto* s : {&d.fit, &d.val, &d.test}) s->standardize(mean, stddev);
  }
  return d;
}

// ---- memory ------------------------------------------------------------------------------------

// What a configuration needs, in bytes, estimated from the sizes alone before anything is
// allocated: the data already loaded plus what training will allocate.
struct MemoryEstimate {
  double data = 0, parameters = 0, gradients = 0, optimizer = 0, activations = 0, evaluation = 0,
         checkpoint = 0;
  std::int64_t parameter_count = 0;
  // What is still to be allocated when the data is loaded.
  double to_allocate() const {
    return parameters + gradients + optimizer + activations + evaluation + checkpoint;
  }
  double total() const { return data + to_allocate(); }
  std::string breakdown(const Config& c) const {
    std::ostringstream os;
    os << "parameters " << size(parameters) << " (" << parameter_count << "), gradients "
       << size(gradients) << ", " << c.optimizer << " state " << size(optimizer)
       << ", activations and their gradients at batch " << c.batch_size << " " << size(activations)
       << ", evaluation " << size(evaluation);
    if (checkpoint > 0) os << ", reading the checkpoint " << size(checkpoint);
    os << ", data " << size(data);
    return os.str();
  }
  static std::string size(double bytes) {
    char buf[32];
    if (bytes >= 1e9)
      std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
    else if (bytes >= 1e6)
      std::snprintf(buf, sizeof buf, "%.0f MB", bytes / 1e6);
    else
      std::snprintf(buf, sizeof buf, "%.0f kB", std::ceil(bytes / 1e3));
    return buf;
  }
};

MemoryEstimate estimate_memory(const Config& c, const Data& d, int classes) {
  const double f = static_cast<double>(d.fit.features()), w = c.width, k = classes,
               b = std::min<double>(c.batch_size, static_cast<double>(d.fit.size()));
  const double bytes = sizeof(T);
  const bool residual = c.residual != "none";
  const double hidden = residual ? 1 + 2.0 * residual_blocks(c) : c.depth;  // dense layers
  double batchnorms = c.batchnorm ? hidden : 0;
  if (c.batchnorm && c.residual == "pre") batchnorms += 1;  // the final BN of a pre-act stack
  const double params = (f * w + w) + (hidden - 1) * (w * w + w) + (w * k + k) + batchnorms * 2 * w;
  MemoryEstimate m;
  m.parameter_count = static_cast<std::int64_t>(params);
  m.parameters = (params + batchnorms * 2 * w) * bytes;  // + running mean and variance
  m.gradients = params * bytes;
  const double state = c.optimizer == "adam" || c.optimizer == "adamw" ? 2
                       : c.optimizer == "sgd"                          ? 0
                                                                       : 1;
  m.optimizer = state * params * bytes + 6 * 1024 * bytes;
  // The tape keeps each op's output and its gradient: per hidden layer the dense output, the
  // activation, and the batch norm's and dropout's outputs (with their masks and statistics);
  // the batch itself in the loader's two buffers; the output layer and the cost. The arena
  // grows in blocks: a quarter more for its slack.
  double per_layer = 2 + 2;  // dense and activation: value + gradient each
  if (c.batchnorm) per_layer += 3;
  if (c.dropout > 0) per_layer += 3;
  if (residual) per_layer += 1;  // the block's sum
  m.activations = 1.25 * (hidden * per_layer * b * w + 2 * b * f + 8 * b * k) * bytes;
  m.evaluation =
      4 * std::min<double>(1000, static_cast<double>(d.fit.size())) * std::max(w, f) * bytes;
  if (!c.resume.empty()) {
    std::error_code ec;
    const auto file = fs::file_size(c.resume, ec);
    if (!ec) m.checkpoint = 2 * static_cast<double>(file);  // the file's bytes and staged copies
  }
  for (const auto* s : {&d.fit, &d.val, &d.test})
    m.data += static_cast<double>(s->images.size()) * bytes +
              static_cast<double>(s->labels.size()) * sizeof(int);
  return m;
}

// A number read from a file (a cgroup's limit or usage), if the file holds one.
std::optional<double> read_number(const char* path) {
  std::ifstream in(path);
  double v = 0;
  if (in >> v) return v;
  return std::nullopt;
}

// Bytes the system can give this process without swapping: MemAvailable in /proc/meminfo, or
// less when the process's control group (a container) has a lower limit.
std::optional<double> memory_available() {
  std::optional<double> available;
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  double kb = 0;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") available = kb * 1024;
  // cgroup v2, then v1 ("max" or a huge number: no limit).
  for (const auto& [limit, usage] :
       {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        std::pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                  "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const auto l = read_number(limit), u = read_number(usage);
    if (l && u && *l < 1e18) {
      const double left = std::max(0.0, *l - *u);
      available = available ? std::min(*available, left) : left;
      break;
    }
  }
  return available;
}

// The limit: --max-memory, else MemAvailable; a configuration above it is refused.
// The limit: --max-memory, else MemAvailable (or the cgroup's); none when neither is known.
std::optional<double> memory_limit(const Config& c, std::string& from) {
  if (c.max_memory_gb > 0) {
    from = "--max-memory";
    return c.max_memory_gb * 1e9;
  }
  from = "available (MemAvailable, or the control group's limit)";
  return memory_available();
}

// A configuration estimated above the limit is refused.
void check_memory(const Config& c, const MemoryEstimate& m) {
  std::string from;
  const auto limit = memory_limit(c, from);
  if (limit && m.to_allocate() > *limit)
    throw ConfigError("this configuration needs about " + MemoryEstimate::size(m.to_allocate()) +
                      " more memory (" + m.breakdown(c) + ") but " + MemoryEstimate::size(*limit) +
                      " is " + from + ": reduce --width, --depth or --batch-size" +
                      (c.max_memory_gb > 0 ? ", or raise --max-memory" : ""));
}

// Synthetic digits are drawn before the rest can be estimated: their own memory first (the
// drawn set, its train/test split and the fit/validation split, 784 floats per image).
void check_synthetic_memory(const Config& c) {
  const double images = c.synthetic_size + c.synthetic_size / 5.0;
  const double bytes = 3 * images * 784 * sizeof(T);
  std::string from;
  const auto limit = memory_limit(c, from);
  if (limit && bytes > *limit)
    throw ConfigError("--synthetic-size " + std::to_string(c.synthetic_size) + ": drawing " +
                      std::to_string(static_cast<long long>(images)) + " digits needs about " +
                      MemoryEstimate::size(bytes) + " but " + MemoryEstimate::size(*limit) +
                      " is " + from);
}

// Peak resident memory of this process so far (VmHWM), in bytes; 0 when unknown.
double peak_resident() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) * 1024;
  return 0;
}

// ---- output paths ------------------------------------------------------------------------------

// Whether `dir` exists as a writable directory, or could be created (its nearest existing
// ancestor is one). Checked before training, so that a long run does not end without its report.
void check_writable_dir(const fs::path& dir, const std::string& option) {
  std::error_code ec;
  fs::path p = dir.empty() ? fs::path(".") : dir;
  while (!fs::exists(p, ec)) {
    if (!p.has_parent_path() || p.parent_path() == p) break;
    p = p.parent_path();
  }
  if (!fs::exists(p, ec)) p = ".";
  if (!fs::is_directory(p, ec))
    throw ConfigError(option + ": '" + p.string() + "' is not a directory");
  if (::access(p.c_str(), W_OK | X_OK) != 0)
    throw ConfigError(option + ": directory '" + p.string() + "' is not writable");
}

void check_output_paths(const Config& c) {
  if (c.report_dir.empty()) throw ConfigError("--report-dir: empty (give a directory)");
  check_writable_dir(c.report_dir, "--report-dir");
  if (!c.checkpoint.empty()) {
    if (fs::path(c.checkpoint).filename().empty())
      throw ConfigError("--checkpoint: '" + c.checkpoint + "' names a directory, not a file");
    check_writable_dir(fs::path(c.checkpoint).parent_path(), "--checkpoint");
  }
}

// The checkpoint of an epoch: "{epoch}" in --checkpoint is replaced by the epoch number.
std::string checkpoint_path(const Config& c, int epoch) {
  std::string p = c.checkpoint;
  const auto at = p.find("{epoch}");
  if (at != std::string::npos) p.replace(at, 7, std::to_string(epoch));
  return p;
}

// ---- resume ------------------------------------------------------------------------------------

// Loads --resume into the model, optimiser, schedule and dropout streams and puts the loader at
// the checkpoint's epoch; returns that epoch. Every metadata field read is checked first, with a
// message naming the field and the file.
int resume(const Config& c, const Data& d, nn::Sequential<T>& net, optim::Optimizer<T>& opt,
           optim::LrScheduler<T>& sched, gs::data::DataLoader<T>& loader) {
  const auto file = gs::io::read_safetensors(c.resume);
  const auto& meta = file.metadata();
  const std::string src = "'" + c.resume + "'";
  const auto epoch = gs::io::metadata_integer(meta, "epoch", src, 0, 10000);
  if (epoch > c.epochs)
    throw ConfigError("--resume: " + src + " is at epoch " + std::to_string(epoch) +
                      ", beyond --epochs " + std::to_string(c.epochs) +
                      " (give --epochs with the total number of epochs to reach)");
  const auto kind = meta.find("gradscope.optimizer");
  if (kind == meta.end())
    throw gs::DataError(src +
                        ": metadata 'gradscope.optimizer' is missing (a checkpoint without "
                        "optimiser state cannot resume training)");
  if (kind->second != opt.kind())
    throw ConfigError("--resume: " + src + " holds " + kind->second + " state but this run uses " +
                      opt.kind() + " (--optimizer " + c.optimizer + ")");
  // The model must take the images' pixels: its first layer's weight is [width, features].
  const auto* first = file.find("0.weight");
  const auto features = static_cast<std::uint64_t>(d.fit.features());
  if (first && first->shape.size() == 2 && first->shape[1] != features)
    throw ConfigError("--resume: the model in " + src + " takes " +
                      std::to_string(first->shape[1]) + " inputs but the images in '" +
                      d.train_images + "' have " + std::to_string(features) + " pixels");
  if (meta.count("gradscope.schedule.count")) {
    gs::io::load_checkpoint(file, net, &opt, gs::io::RunState<T>{&sched, {}});
  } else {  // a checkpoint of an older mnist_mlp: no run state to restore
    gs::io::load_checkpoint(file, net, &opt);
    sched.set_count(opt.steps());
    std::printf(
        "note: %s holds no run state (schedule position, dropout streams): the resumed "
        "run will not repeat the uninterrupted one exactly\n",
        src.c_str());
  }
  loader.set_epoch(epoch);
  return static_cast<int>(epoch);
}

// ---- training ----------------------------------------------------------------------------------

// A hyper-parameter as %g prints it.
std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

int run(const Config& c) {
  gs::manual_seed(c.seed);
  Eigen::setNbThreads(c.threads);
  check_output_paths(c);
  if (c.synthetic) check_synthetic_memory(c);
  const Data d = load_data(c);
  const int classes = d.fit.classes;
  if (c.batchnorm && d.fit.size() < 2)
    throw ConfigError(
        "--batchnorm: batch norm needs batches of 2 or more samples; the training "
        "split has " +
        std::to_string(d.fit.size()) + " image");
  const auto memory = estimate_memory(c, d, classes);
  check_memory(c, memory);

  // Model, optimiser, schedule, monitor.
  const auto model = build(c, d.fit.features(), classes);
  nn::Sequential<T>& net = *model;
  if (net.parameter_count() != memory.parameter_count)  // the estimate must describe this model
    throw std::logic_error("memory estimate counted " + std::to_string(memory.parameter_count) +
                           " parameters, the model has " + std::to_string(net.parameter_count()));
  auto opt = make_optimizer(c, net.parameters());
  // Batch norm cannot normalise a batch of one sample: drop a last batch of one (the shuffle
  // puts another sample there each epoch).
  const bool drop_last = c.batchnorm && d.fit.size() % c.batch_size == 1;
  auto loader = mnist_dist::loader(
      d.fit, {.batch_size = c.batch_size, .shuffle = true, .seed = c.seed, .drop_last = drop_last});
  const std::int64_t total_steps = loader.batches() * c.epochs;
  optim::LrScheduler<T> sched(*opt, make_schedule(c, total_steps));
  dg::GradientMonitor<T> monitor(net, {.every = c.record_every});
  Objective objective(c, classes, c.batch_size);
  int start_epoch = 0;
  if (!c.resume.empty()) {
    start_epoch = resume(c, d, net, *opt, sched, loader);
    std::printf("resumed from %s at epoch %d (step %lld)\n", c.resume.c_str(), start_epoch,
                static_cast<long long>(opt->steps()));
  }
  const bool validate = d.val.size() > 0;
  const std::string distributed = mnist_dist::attach(net, c.batch_size);

  std::printf("gradscope %s | data: %s | validation %lld%s\n%s", gs::version(), d.source.c_str(),
              static_cast<long long>(d.val.size()), c.standardize ? "" : " | not standardised",
              distributed.c_str());
  if (!d.validation_note.empty()) std::printf("note: %s\n", d.validation_note.c_str());
  if (drop_last)
    std::printf(
        "note: batch norm needs 2+ samples per batch: the last batch of 1 sample is "
        "dropped each epoch (%lld images, batch %d)\n",
        static_cast<long long>(d.fit.size()), c.batch_size);
  std::printf(
      "model: %d hidden layers of %d, %s, init %s%s%s%s, %s | %lld parameters\n", c.depth, c.width,
      c.activation.c_str(), initializer(c).name().c_str(), c.batchnorm ? ", batch norm" : "",
      c.residual == "none" ? "" : (", " + c.residual + "-activation residual blocks").c_str(),
      c.dropout > 0 ? (", dropout " + std::to_string(c.dropout).substr(0, 4)).c_str() : "",
      objective.describe().c_str(), static_cast<long long>(net.parameter_count()));
  std::printf("training: %s lr %g, schedule %s, batch %d, %d epochs%s%s\n", c.optimizer.c_str(),
              static_cast<double>(c.lr), c.schedule.c_str(), c.batch_size, c.epochs,
              c.clip_norm > 0 ? (", clip norm " + number(c.clip_norm)).c_str() : "",
              c.weight_decay > 0 ? (", weight decay " + number(c.weight_decay)).c_str() : "");
  std::printf("memory: about %s estimated (%s)\n\n", MemoryEstimate::size(memory.total()).c_str(),
              memory.breakdown(c).c_str());

  gs::Tape<T> tape;
  const auto params = net.parameters();
  const long long per_epoch = loader.batches() * c.batch_size < d.fit.size()
                                  ? loader.batches() * c.batch_size
                                  : d.fit.size();
  const gs::io::RunState<T> run_state{&sched, {}};
  double total_seconds = 0;
  for (int epoch = start_epoch; epoch < c.epochs; ++epoch) {
    gs::util::Progress progress(std::min<long long>(per_epoch * mnist_dist::ranks(), d.fit.size()),
                                "epoch " + std::to_string(epoch + 1),
                                mnist_dist::progress_stream());
    mnist_dist::set_epoch(epoch);
    double loss_sum = 0;
    gs::Index seen = 0;
    for (auto& [x, y] : loader) {
      tape.reset();
      auto loss = objective(net, x, y).first;
      tape.backward(loss);
      const auto [l, n] = mnist_dist::average_gradients(loss.item(), y.size(), monitor);
      monitor.record_gradients(l);
      if (c.clip_value > 0) optim::clip_grad_value(params, c.clip_value);
      if (c.clip_norm > 0) optim::clip_grad_norm(params, static_cast<double>(c.clip_norm));
      opt->step();  // a non-finite gradient or result throws (NonFinite::error)
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
    const auto diagnosis = monitor.diagnose();
    std::printf("epoch %2d  train loss %.4f", epoch + 1, loss_sum / static_cast<double>(seen));
    if (validate) {
      const auto [val_acc, val_loss] = evaluate(net, objective, d.val);
      std::printf("  val loss %.4f  val acc %.2f%%", val_loss, 100 * val_acc);
    }
    std::printf("  %6.0f samples/s  gradients: %s\n", static_cast<double>(seen) / secs,
                dg::verdict_name(diagnosis.verdict()));
    std::fflush(stdout);
    if (!c.checkpoint.empty() && mnist_dist::is_root())
      gs::io::save_checkpoint(checkpoint_path(c, epoch + 1), net, opt.get(),
                              {{"epoch", std::to_string(epoch + 1)}, {"preset", c.preset}},
                              run_state);
  }
  const auto [test_acc, test_loss] = evaluate(net, objective, d.test);
  std::printf("\ntest accuracy %.2f%% (test loss %.4f), %.1f s of training\n\n", 100 * test_acc,
              test_loss, total_seconds);
  std::printf("%s\n", monitor.report().c_str());
  if (!mnist_dist::is_root()) return 0;
  fs::create_directories(c.report_dir);
  const auto dir = fs::path(c.report_dir);
  monitor.write_csv((dir / "gradients.csv").string());
  monitor.write_jsonl((dir / "gradients.jsonl").string());
  monitor.write_svg((dir / "gradient_flow.svg").string(), {.title = "Gradient flow: " + d.source});
  gs::io::save_checkpoint(
      dir / "model.safetensors", net, opt.get(),
      {{"epoch", std::to_string(c.epochs)}, {"test_accuracy", std::to_string(test_acc)}},
      run_state);
  std::printf(
      "reports: %s/{gradients.csv, gradients.jsonl, gradient_flow.svg, model.safetensors}\n",
      c.report_dir.c_str());
  std::printf("memory: peak %s resident (estimated %s)\n",
              MemoryEstimate::size(peak_resident()).c_str(),
              MemoryEstimate::size(memory.total()).c_str());
  return 0;
}

// Combinations of options that cannot work, found before any data is read.
void check_config(const Config& c) {
  if (c.data.empty() && !c.synthetic)
    throw gs::util::ArgError("--data: give --data DIR (an MNIST-format directory) or --synthetic");
  if (!c.data.empty() && !fs::is_directory(c.data))
    throw gs::util::ArgError("--data: data directory '" + c.data +
                             "' not found (run scripts/get-data.sh fashion, or pass --synthetic)");
  if (c.batchnorm && c.batch_size < 2)
    throw gs::util::ArgError(
        "--batch-size: batch norm (--batchnorm) needs batches of 2 or more samples, got 1");
  if (c.output == "softmax" && (c.loss == "mse" || c.loss == "bce"))
    throw gs::util::ArgError("--loss " + c.loss +
                             ": the quadratic and binary cross-entropy costs are on sigmoid "
                             "outputs: add --output sigmoid");
  if (c.output == "sigmoid" && c.loss == "ce")
    throw gs::util::ArgError(
        "--loss ce: softmax cross-entropy needs --output softmax (with --output sigmoid use "
        "--loss bce or mse)");
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
  app.option("--init", c.init,
             "weight initialisation (auto: from the activation; normal: N(0, 1) weights and "
             "biases, Nielsen's chapter 1)")
      .choices({"auto", "zeros", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
                "lecun_normal", "nielsen", "normal"});
  app.flag("--batchnorm", c.batchnorm, "batch normalisation after each hidden dense layer",
           /*negatable=*/true);
  app.option("--residual", c.residual, "residual blocks").choices({"none", "post", "pre"});
  app.option("--dropout", c.dropout, "dropout probability").range(0.0, 0.95);
  app.option("--output", c.output,
             "output layer: softmax (logits), or sigmoid units as in Nielsen's book")
      .choices({"softmax", "sigmoid"});
  app.option("--loss", c.loss,
             "cost: ce (softmax cross-entropy), bce (cross-entropy on sigmoid outputs), mse "
             "(quadratic cost on sigmoid outputs); auto: ce or bce from --output")
      .choices({"auto", "ce", "bce", "mse"});
  app.flag("--standardize", c.standardize,
           "standardise pixels with the training set's mean and deviation (--no-standardize: "
           "pixels in [0, 1], as in Nielsen's book)",
           /*negatable=*/true);
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
  app.option("--validation", c.validation,
             "training images held out for validation, at most a fifth (0: none)")
      .range(0, 1000000);
  app.option("--record-every", c.record_every, "record gradients every N steps").range(1, 1000000);
  app.option("--report-dir", c.report_dir, "where the CSV, JSON Lines, SVG and checkpoint go");
  app.option("--checkpoint", c.checkpoint,
             "save a checkpoint here after every epoch ({epoch} in the name: one per epoch)");
  app.option("--resume", c.resume, "resume from this checkpoint");
  app.option("--max-memory", c.max_memory_gb,
             "refuse configurations estimated to need more than this many GB (0: the memory "
             "available, MemAvailable)")
      .non_negative();
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
    if (c.loss == "auto") c.loss = c.output == "sigmoid" ? "bce" : "ce";
    c.validation_given = app.given("--validation");
    check_config(c);
  } catch (const gs::util::ArgError& e) {
    std::fprintf(stderr, "mnist_mlp: %s\nRun with --help for the options.\n", e.what());
    return 2;
  }
  try {
    return run(c);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "mnist_mlp: %s\n", e.what());
    return 2;
  } catch (const gs::DataError& e) {
    return dist.fail(e, 2);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "mnist_mlp: out of memory (std::bad_alloc) although the estimate fitted: "
                 "reduce --width, --depth or --batch-size, or lower --max-memory\n");
    return 1;
  } catch (const std::exception& e) {
    return dist.fail(e, 1);
  }
}
