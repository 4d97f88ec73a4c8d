#pragma once
/// Greedy layer-wise pre-training of a Sequential of Dense + activation layers with
/// auto-encoders (Bengio, Lamblin, Popovici and Larochelle 2007), optionally denoising (Vincent,
/// Larochelle, Bengio and Manzagol 2008). Each hidden layer in turn learns to reconstruct its own
/// input, the layers below it frozen; fine-tuning the whole network with the supervised loss is
/// then an ordinary training loop.
//
// A component of its own: the loop needs an optimiser, and nn must not depend on optim (the
// project's layering). It depends on core, nn and optim; nothing depends on it.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/core.hpp"
#include "../nn/layers.hpp"
#include "../nn/sequential.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/sgd.hpp"

namespace gradscope::pretrain {

/// Whether an auto-encoder's decoder has weights of its own.
enum class DecoderWeights {
  tied,    ///< the encoder's weight W [units, inputs] reused: logits z = h W + c
  untied,  ///< a decoder weight V [inputs, units] of its own: z = h V^T + c
};

/// The decoder's output function and the reconstruction loss.
enum class Reconstruction {
  automatic,      ///< greedy_layerwise picks cross_entropy for inputs in [0, 1], else squared_error
  cross_entropy,  ///< sigmoid output, binary cross-entropy (targets in [0, 1])
  squared_error,  ///< linear output, squared error
};

/// How a denoising auto-encoder corrupts its input (the target stays the clean input).
enum class Corruption {
  masking,   ///< each input set to 0 with probability `noise` (Vincent et al. 2008)
  gaussian,  ///< N(0, noise^2) added to each input
};

/// "tied", "untied"; "cross_entropy", ...; "masking", "gaussian".
inline const char* name(DecoderWeights w) { return w == DecoderWeights::tied ? "tied" : "untied"; }
inline const char* name(Reconstruction r) {
  constexpr const char* names[] = {"automatic", "cross_entropy", "squared_error"};
  return names[static_cast<int>(r)];
}
inline const char* name(Corruption c) { return c == Corruption::masking ? "masking" : "gaussian"; }

/// An auto-encoder on a network's Dense layer (the encoder, shared with the network, not
/// copied) and the activation after it: h = act(x W^T + b), reconstruction out(z) with z the
/// decoder's logits and out the sigmoid (cross_entropy) or the identity (squared_error).
/// Losses are per sample: summed over the input units, averaged over the batch, as in Bengio et
/// al. 2007 and Vincent et al. 2008 (so learning rates keep their classic scale).
template <Scalar T>
class AutoEncoder {
 public:
  /// The decoder bias starts at zero; an untied decoder weight is drawn with Xavier's uniform
  /// initialisation from `rng` (default: this thread's default_rng()). `loss` must be
  /// cross_entropy or squared_error.
  AutoEncoder(std::shared_ptr<nn::Dense<T>> encoder, std::shared_ptr<nn::Activation<T>> activation,
              DecoderWeights weights = DecoderWeights::tied,
              Reconstruction loss = Reconstruction::cross_entropy, Rng* rng = nullptr);

  /// The hidden code act(x W^T + b), through the network's own modules (hooks and labels).
  Tensor<T> encode(const Tensor<T>& x) { return (*activation_)((*encoder_)(x)); }
  /// The decoder's logits z of a code h.
  Tensor<T> decode_logits(const Tensor<T>& h) {
    if (weights_ == DecoderWeights::tied) return add(matmul(h, encoder_->weight()), bias_);
    return linear(h, weight_, bias_);
  }
  /// The reconstruction of x: sigmoid(z) or z.
  Tensor<T> reconstruct(const Tensor<T>& x) {
    Tensor<T> z = decode_logits(encode(x));
    return loss_ == Reconstruction::cross_entropy ? sigmoid(z) : z;
  }
  /// The loss of reconstructing `target` from `input` (a corrupted copy of it when denoising):
  /// per sample, the sum over input units of the binary cross-entropy or the squared error,
  /// averaged over the rows.
  Tensor<T> loss(const Tensor<T>& input, const Tensor<T>& target);
  /// loss(x, x) over every row of x without recording gradients, in chunks of `chunk` rows.
  double evaluate(const Eigen::Ref<const Matrix<T>>& x, Index chunk = 1024);

  /// The encoder's weight (and bias) and the decoder's weight (untied) and bias.
  std::vector<Tensor<T>> parameters() const;
  nn::Dense<T>& encoder() noexcept { return *encoder_; }
  nn::Activation<T>& activation() noexcept { return *activation_; }
  /// The untied decoder's weight [inputs, units]; undefined when tied.
  Tensor<T>& decoder_weight() noexcept { return weight_; }
  /// The decoder's bias [inputs].
  Tensor<T>& decoder_bias() noexcept { return bias_; }
  DecoderWeights weights() const noexcept { return weights_; }
  Reconstruction reconstruction() const noexcept { return loss_; }

 private:
  std::shared_ptr<nn::Dense<T>> encoder_;
  std::shared_ptr<nn::Activation<T>> activation_;
  DecoderWeights weights_;
  Reconstruction loss_;
  Tensor<T> weight_, bias_;
};

template <Scalar T>
AutoEncoder<T>::AutoEncoder(std::shared_ptr<nn::Dense<T>> encoder,
                            std::shared_ptr<nn::Activation<T>> activation, DecoderWeights weights,
                            Reconstruction loss, Rng* rng)
    : encoder_(std::move(encoder)),
      activation_(std::move(activation)),
      weights_(weights),
      loss_(loss) {
  if (!encoder_ || !activation_) throw UsageError("AutoEncoder: null encoder or activation");
  if (loss != Reconstruction::cross_entropy && loss != Reconstruction::squared_error)
    throw ValueError(
        "AutoEncoder: the reconstruction must be cross_entropy or squared_error (automatic is "
        "resolved by greedy_layerwise from the data)");
  const Index in = encoder_->in_features(), units = encoder_->out_features();
  const std::string prefix =
      (encoder_->path().empty() ? std::string("encoder") : encoder_->path()) + ".decoder.";
  if (weights == DecoderWeights::untied) {
    Matrix<T> V(in, units);
    init::xavier_uniform.weight(V, rng ? *rng : default_rng());
    weight_ = Tensor<T>::parameter(std::move(V));
    weight_.set_name(prefix + "weight");
  }
  bias_ = Tensor<T>::parameter(Matrix<T>::Zero(1, in), 1);
  bias_.set_name(prefix + "bias");
}

template <Scalar T>
Tensor<T> AutoEncoder<T>::loss(const Tensor<T>& input, const Tensor<T>& target) {
  const Tensor<T> z = decode_logits(encode(input));
  const T units = static_cast<T>(z.cols());
  if (loss_ == Reconstruction::cross_entropy)  // the op averages over every element
    return scale(binary_cross_entropy_with_logits(z, target), units);
  if (z.shape() != target.shape())
    throw ShapeError(gradscope::detail::cat("AutoEncoder::loss: reconstruction ", z.shape(),
                                            " and target ", target.shape(), " differ"));
  return scale(mean(square(sub(z, target))), units);
}

template <Scalar T>
double AutoEncoder<T>::evaluate(const Eigen::Ref<const Matrix<T>>& x, Index chunk) {
  if (x.rows() == 0) throw ValueError("AutoEncoder::evaluate: no rows");
  if (chunk <= 0) throw ValueError("AutoEncoder::evaluate: chunk must be > 0");
  NoGrad no_grad;
  Tape<T> tape;  // values only (NoGrad), freed chunk by chunk
  double total = 0;
  for (Index r = 0; r < x.rows(); r += chunk) {
    const Index n = std::min(chunk, x.rows() - r);
    tape.reset();
    const Tensor<T> xc(x.middleRows(r, n));
    total += static_cast<double>(loss(xc, xc).item()) * static_cast<double>(n);
  }
  return total / static_cast<double>(x.rows());
}

template <Scalar T>
std::vector<Tensor<T>> AutoEncoder<T>::parameters() const {
  std::vector<Tensor<T>> out{encoder_->weight()};
  if (encoder_->bias().defined()) out.push_back(encoder_->bias());
  if (weight_.defined()) out.push_back(weight_);
  out.push_back(bias_);
  return out;
}

/// Per-layer overrides of PretrainOptions; unset fields take the options' values.
struct LayerOptions {
  std::optional<int> epochs{};
  std::optional<double> lr{};
  std::optional<double> noise{};
};

/// One finished epoch of one layer, passed to PretrainOptions::on_epoch.
struct EpochProgress {
  std::size_t layer = 0;  ///< the hidden layer (0 is the first)
  std::string path;       ///< the encoder's path in the network ("0", "2", ...)
  int epoch = 0;          ///< 1 to epochs
  int epochs = 0;
  double loss = 0;  ///< mean training loss of the epoch (on corrupted inputs when denoising)
};

/// Settings of greedy_layerwise.
template <Scalar T>
struct PretrainOptions {
  int epochs = 10;      ///< passes over the data for each layer
  double lr = 0.1;      ///< learning rate of each layer's SGD
  double momentum = 0;  ///< momentum of each layer's SGD
  Index batch_size = 20;
  DecoderWeights weights = DecoderWeights::tied;
  Reconstruction loss = Reconstruction::automatic;
  Corruption corruption = Corruption::masking;
  double noise = 0;  ///< masking probability in [0, 1) or Gaussian std; 0: a plain auto-encoder
  /// Pre-train only the first this many hidden layers.
  std::size_t max_layers = std::numeric_limits<std::size_t>::max();
  std::vector<LayerOptions> layers{};  ///< overrides for hidden layer 0, 1, ...
  /// Seed of the shuffling, the corruption and untied decoders' initialisation; 0 draws one from
  /// default_rng().
  std::uint64_t seed = 0;
  /// Makes a layer's optimiser from its parameters (AutoEncoder::parameters()) and learning
  /// rate; unset: optim::SGD with lr and momentum.
  std::function<std::unique_ptr<optim::Optimizer<T>>(std::vector<Tensor<T>>, double)>
      make_optimizer{};
  std::function<void(const EpochProgress&)> on_epoch{};  ///< called after every epoch
};

/// What pre-training did to one hidden layer. Losses are per sample (see AutoEncoder::loss).
struct LayerReport {
  std::string path;  ///< the encoder's path in the network
  Index inputs = 0;
  Index units = 0;
  Reconstruction loss = Reconstruction::cross_entropy;
  DecoderWeights weights = DecoderWeights::tied;
  int epochs = 0;
  double lr = 0;
  double noise = 0;
  double initial_loss = 0;           ///< clean reconstruction loss over the data before training
  double final_loss = 0;             ///< the same after training
  std::vector<double> epoch_losses;  ///< mean training loss of each epoch
  double seconds = 0;
};

/// The outcome of greedy_layerwise: one report and one trained auto-encoder per hidden layer.
template <Scalar T>
struct PretrainResult {
  std::vector<LayerReport> layers;
  std::vector<std::shared_ptr<AutoEncoder<T>>> autoencoders;
  double seconds = 0;
};

/// The children of `net` greedy_layerwise pre-trains: each hidden layer is a Dense followed by an
/// activation, from the input on; the last Dense (and anything after it) is the output part.
/// Throws UsageError when the network is not of that form or has no hidden layer.
template <Scalar T>
std::vector<std::size_t> hidden_layers(const nn::Sequential<T>& net) {
  std::size_t last_dense = net.size();
  for (std::size_t i = 0; i < net.size(); ++i)
    if (dynamic_cast<const nn::Dense<T>*>(&net.at(i))) last_dense = i;
  if (last_dense == net.size())
    throw UsageError("greedy_layerwise: the network has no Dense layer");
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < last_dense; i += 2) {
    const bool dense = dynamic_cast<const nn::Dense<T>*>(&net.at(i)) != nullptr;
    const bool act = dynamic_cast<const nn::Activation<T>*>(&net.at(i + 1)) != nullptr;
    if (!dense || !act) {
      const std::size_t bad = dense ? i + 1 : i;
      throw UsageError(gradscope::detail::cat(
          "greedy_layerwise: module ", bad, " (", net.at(bad).describe(),
          ") is not where a hidden layer's ", dense ? "activation" : "Dense",
          " should be; the network must start with hidden layers, each a Dense followed by an "
          "activation, before its output Dense"));
    }
    out.push_back(i);
  }
  if (out.empty())
    throw UsageError(
        "greedy_layerwise: the network has no hidden layer (a Dense followed by an activation "
        "before the output Dense)");
  return out;
}

namespace detail {

/// Restores each tensor's requires_grad when it goes out of scope.
template <Scalar T>
struct RequiresGradGuard {
  std::vector<std::pair<Tensor<T>, bool>> saved;
  explicit RequiresGradGuard(const std::vector<Tensor<T>>& params) {
    for (const auto& p : params) saved.emplace_back(p, p.requires_grad());
  }
  ~RequiresGradGuard() {
    for (auto& [p, on] : saved) p.set_requires_grad(on);
  }
  RequiresGradGuard(const RequiresGradGuard&) = delete;
  RequiresGradGuard& operator=(const RequiresGradGuard&) = delete;
};

template <Scalar T>
void check_finite(const std::type_identity_t<Eigen::Ref<const Matrix<T>>>& x) {
  if (x.outerStride() == x.cols() && gradscope::detail::all_finite(x.data(), x.size())) return;
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j)
      if (!std::isfinite(static_cast<double>(x(i, j))))
        throw ValueError(gradscope::detail::cat("greedy_layerwise: input row ", i, ", column ", j,
                                                " is ", x(i, j)));
}

/// Copies `src` into `dst` with the corruption applied.
template <Scalar T>
void corrupt(const ConstMatrixMap<T>& src, MatrixMap<T> dst, Corruption kind, double noise,
             Rng& rng) {
  const Index n = src.size();
  const T* s = src.data();
  T* d = dst.data();
  if (kind == Corruption::masking) {
    for (Index i = 0; i < n; ++i) d[i] = rng.uniform() < noise ? T(0) : s[i];
  } else {
    for (Index i = 0; i < n; ++i) d[i] = s[i] + static_cast<T>(rng.normal(0.0, noise));
  }
}

/// Trains one auto-encoder on the rows of x; fills the report's losses.
template <Scalar T>
void train_layer(AutoEncoder<T>& ae, const std::type_identity_t<Eigen::Ref<const Matrix<T>>>& x,
                 std::size_t layer, const PretrainOptions<T>& opt, LayerReport& report, Rng& rng) {
  const Index rows = x.rows(), cols = x.cols();
  const Index b = std::min(opt.batch_size, rows);
  auto params = ae.parameters();
  std::unique_ptr<optim::Optimizer<T>> optimizer;
  if (opt.make_optimizer) {
    optimizer = opt.make_optimizer(params, report.lr);
    if (!optimizer) throw UsageError("greedy_layerwise: make_optimizer returned no optimiser");
  } else {
    optimizer = std::make_unique<optim::SGD<T>>(
        params, optim::SGDOptions<T>{.lr = static_cast<T>(report.lr),
                                     .momentum = static_cast<T>(opt.momentum)});
  }
  optimizer->zero_grad();
  // Batch buffers reused every step: a full batch, the smaller last one, and corrupted copies.
  Tensor<T> full = Tensor<T>::zeros(b, cols), tail;
  if (rows % b) tail = Tensor<T>::zeros(rows % b, cols);
  Tensor<T> full_in = Tensor<T>::zeros(b, cols), tail_in;
  if (rows % b) tail_in = Tensor<T>::zeros(rows % b, cols);
  std::vector<Index> order(static_cast<std::size_t>(rows));
  for (Index i = 0; i < rows; ++i) order[static_cast<std::size_t>(i)] = i;
  Tape<T> tape;
  for (int epoch = 1; epoch <= report.epochs; ++epoch) {
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    double total = 0;
    for (Index start = 0; start < rows; start += b) {
      const Index n = std::min(b, rows - start);
      Tensor<T>& target = n == b ? full : tail;
      Tensor<T>& input = n == b ? full_in : tail_in;
      auto tv = target.mutable_value();
      for (Index i = 0; i < n; ++i) tv.row(i) = x.row(order[static_cast<std::size_t>(start + i)]);
      const bool noisy = report.noise > 0;
      if (noisy)
        corrupt<T>(target.value(), input.mutable_value(), opt.corruption, report.noise, rng);
      tape.reset();
      const Tensor<T> loss = ae.loss(noisy ? input : target, target);
      tape.backward(loss);
      optimizer->step();
      optimizer->zero_grad();
      total += static_cast<double>(loss.item()) * static_cast<double>(n);
    }
    report.epoch_losses.push_back(total / static_cast<double>(rows));
    if (opt.on_epoch)
      opt.on_epoch(
          EpochProgress{layer, report.path, epoch, report.epochs, report.epoch_losses.back()});
  }
}

/// The code of every row of x under a trained layer, in chunks.
template <Scalar T>
Matrix<T> encode_all(AutoEncoder<T>& ae, const std::type_identity_t<Eigen::Ref<const Matrix<T>>>& x,
                     Index chunk = 1024) {
  Matrix<T> out(x.rows(), ae.encoder().out_features());
  NoGrad no_grad;
  Tape<T> tape;
  for (Index r = 0; r < x.rows(); r += chunk) {
    const Index n = std::min(chunk, x.rows() - r);
    tape.reset();
    out.middleRows(r, n) = ae.encode(Tensor<T>(x.middleRows(r, n))).value();
  }
  return out;
}

/// Pre-trains hidden layer `layer` (child `index` of net) on the rows of x, unless the user froze
/// it (`keep`), appends its report and auto-encoder to `result`, and returns the codes of x for
/// the next layer (empty after the last one).
template <Scalar T>
Matrix<T> pretrain_layer(nn::Sequential<T>& net,
                         const std::type_identity_t<Eigen::Ref<const Matrix<T>>>& x,
                         const PretrainOptions<T>& opt, std::size_t layer, std::size_t index,
                         bool keep, bool last, Rng& rng, PretrainResult<T>& result) {
  const auto start = std::chrono::steady_clock::now();
  auto dense = std::dynamic_pointer_cast<nn::Dense<T>>(net.children()[index].second);
  auto act = std::dynamic_pointer_cast<nn::Activation<T>>(net.children()[index + 1].second);
  if (dense->in_features() != x.cols())
    throw ShapeError(gradscope::detail::cat("greedy_layerwise: layer '", dense->path(), "' (",
                                            dense->describe(), ") gets inputs of ", x.cols(),
                                            " features"));
  const LayerOptions over = layer < opt.layers.size() ? opt.layers[layer] : LayerOptions{};
  LayerReport report;
  report.path = dense->path();
  report.inputs = dense->in_features();
  report.units = dense->out_features();
  report.weights = opt.weights;
  report.epochs = over.epochs.value_or(opt.epochs);
  report.lr = over.lr.value_or(opt.lr);
  report.noise = over.noise.value_or(opt.noise);
  const auto where = [&] { return gradscope::detail::cat(" for layer '", report.path, "'"); };
  if (report.epochs < 0)
    throw ValueError(gradscope::detail::cat("greedy_layerwise: epochs must be >= 0, got ",
                                            report.epochs, where()));
  if (!(report.lr > 0) || !std::isfinite(report.lr))
    throw ValueError(gradscope::detail::cat("greedy_layerwise: lr must be a positive finite ",
                                            "number, got ", report.lr, where()));
  const bool masking = opt.corruption == Corruption::masking;
  if (!(report.noise >= 0) || !std::isfinite(report.noise) || (masking && report.noise >= 1))
    throw ValueError(gradscope::detail::cat("greedy_layerwise: noise must be ",
                                            masking ? "in [0, 1) for masking" : "a finite std >= 0",
                                            ", got ", report.noise, where()));
  const double lo = static_cast<double>(x.minCoeff()), hi = static_cast<double>(x.maxCoeff());
  const bool unit_range = lo >= 0 && hi <= 1;
  report.loss = opt.loss;
  if (report.loss == Reconstruction::automatic)
    report.loss = unit_range ? Reconstruction::cross_entropy : Reconstruction::squared_error;
  if (report.loss == Reconstruction::cross_entropy && !unit_range)
    throw ValueError(gradscope::detail::cat(
        "greedy_layerwise: the cross-entropy reconstruction needs inputs in [0, 1]; the inputs",
        where(), " lie in [", lo, ", ", hi, "] (use squared_error or automatic)"));

  if (keep) report.epochs = 0;  // frozen by the user: left as it is
  auto ae = std::make_shared<AutoEncoder<T>>(dense, act, opt.weights, report.loss, &rng);
  if (!keep) dense->set_requires_grad(true);
  report.initial_loss = ae->evaluate(x);
  train_layer(*ae, x, layer, opt, report, rng);
  report.final_loss = ae->evaluate(x);
  dense->set_requires_grad(false);  // frozen while the layers above it train
  Matrix<T> codes;
  if (!last) codes = encode_all(*ae, x);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.layers.push_back(std::move(report));
  result.autoencoders.push_back(std::move(ae));
  return codes;
}

}  // namespace detail

/// Greedy layer-wise pre-training (Bengio et al. 2007): for each hidden layer of `net` in turn
/// (see hidden_layers), an AutoEncoder on that layer learns to reconstruct the layer's input
/// (the rows of `inputs` for the first layer, the codes of the layers below for the others),
/// with every other parameter of the network frozen. Plain or denoising (opt.noise > 0), tied
/// or untied decoder. The output layers, and hidden layers whose weight the caller froze, are
/// left untouched; every parameter's requires_grad is restored afterwards (gradients end up
/// zero). Fine-tune the whole network afterwards with the
/// supervised loss. Throws ValueError on bad options or non-finite inputs, UsageError when the
/// network is not a stack of Dense + activation layers, ShapeError when the widths do not fit.
template <Scalar T>
PretrainResult<T> greedy_layerwise(nn::Sequential<T>& net,
                                   const std::type_identity_t<Eigen::Ref<const Matrix<T>>>& inputs,
                                   const std::type_identity_t<PretrainOptions<T>>& opt = {}) {
  const auto start = std::chrono::steady_clock::now();
  auto hidden = hidden_layers(net);
  if (hidden.size() > opt.max_layers) hidden.resize(opt.max_layers);
  if (opt.layers.size() > hidden.size())
    throw ValueError(gradscope::detail::cat("greedy_layerwise: ", opt.layers.size(),
                                            " per-layer options for ", hidden.size(),
                                            " hidden layers to pre-train"));
  if (opt.batch_size <= 0)
    throw ValueError(
        gradscope::detail::cat("greedy_layerwise: batch_size must be > 0, got ", opt.batch_size));
  if (inputs.rows() == 0 || inputs.cols() == 0)
    throw ValueError(gradscope::detail::cat("greedy_layerwise: no inputs (", inputs.rows(), " x ",
                                            inputs.cols(), ")"));
  detail::check_finite<T>(inputs);
  std::vector<char> keep;  // hidden layers the user froze
  for (auto i : hidden)
    keep.push_back(!static_cast<nn::Dense<T>&>(net.at(i)).weight().requires_grad());
  detail::RequiresGradGuard<T> restore(net.parameters());
  net.set_requires_grad(false);
  Rng rng(opt.seed ? opt.seed : default_rng().next_u64());
  PretrainResult<T> result;
  Matrix<T> codes;  // the inputs of the next layer: the codes of the layers below
  for (std::size_t k = 0; k < hidden.size(); ++k) {
    const bool last = k + 1 == hidden.size();
    Matrix<T> next =
        k == 0 ? detail::pretrain_layer(net, inputs, opt, k, hidden[k], keep[k], last, rng, result)
               : detail::pretrain_layer(net, codes, opt, k, hidden[k], keep[k], last, rng, result);
    codes = std::move(next);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace gradscope::pretrain
