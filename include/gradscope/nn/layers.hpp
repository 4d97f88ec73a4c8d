#pragma once
/// Layers: Dense, the activations, BatchNorm and Dropout.

#include <cstdint>
#include <memory>
#include <string>

#include "../core/core.hpp"
#include "init.hpp"
#include "module.hpp"

namespace gradscope::nn {

namespace detail {
inline std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
}  // namespace detail

/// Fully connected layer: y = x W^T + b, W of shape [out, in] (PyTorch's layout), b of [out].
template <Scalar T>
class Dense : public Module<T> {
 public:
  /// Draws W (and b) with `init` from `rng` (default: this thread's default_rng()).
  Dense(Index in_features, Index out_features, const init::Initializer& init = init::xavier_uniform,
        bool bias = true, Rng* rng = nullptr);
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string kind() const override { return "Dense"; }
  bool in_gradient_flow() const override { return true; }
  std::string describe() const override;
  Index in_features() const noexcept { return in_; }
  Index out_features() const noexcept { return out_; }
  /// The weight [out, in].
  Tensor<T>& weight() noexcept { return weight_; }
  /// The bias [out], undefined when the layer has none.
  Tensor<T>& bias() noexcept { return bias_; }
  /// The initialiser's name, e.g. "he_normal(gain=1.414214)".
  const std::string& init_name() const noexcept { return init_name_; }

 private:
  Index in_, out_;
  std::string init_name_;
  Tensor<T> weight_, bias_;
};

template <Scalar T>
Dense<T>::Dense(Index in_features, Index out_features, const init::Initializer& init, bool bias,
                Rng* rng)
    : in_(in_features), out_(out_features), init_name_(init.name()) {
  if (in_features <= 0 || out_features <= 0)
    throw ValueError(gradscope::detail::cat("Dense: needs positive sizes, got ", in_features,
                                            " -> ", out_features));
  gradscope::detail::check_extent<T>("Dense (weight [out, in])", out_features, in_features);
  Rng& g = rng ? *rng : default_rng();
  Matrix<T> W(out_features, in_features);
  init.weight(W, g);
  weight_ = this->register_parameter("weight", Tensor<T>::parameter(std::move(W)));
  if (bias) {
    Matrix<T> b(1, out_features);
    init.bias(b, g);
    bias_ = this->register_parameter("bias", Tensor<T>::parameter(std::move(b), 1));
  }
}

template <Scalar T>
Tensor<T> Dense<T>::forward(const Tensor<T>& x) {
  return linear(x, weight_, bias_);
}

template <Scalar T>
std::string Dense<T>::describe() const {
  return "Dense(" + std::to_string(in_) + " -> " + std::to_string(out_) +
         (bias_.defined() ? "" : ", no bias") + ")";
}

/// Which elementwise function an Activation module applies.
enum class ActivationKind { identity, sigmoid, tanh, relu, leaky_relu, elu };

/// An elementwise activation layer (no parameters). Use the named aliases below.
template <Scalar T>
class Activation : public Module<T> {
 public:
  explicit Activation(ActivationKind kind, T parameter = 0) : kind_(kind), p_(parameter) {}
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string kind() const override {
    constexpr const char* names[] = {"Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU"};
    return names[static_cast<int>(kind_)];
  }
  std::string describe() const override;
  /// The function applied.
  ActivationKind activation() const noexcept { return kind_; }
  /// The slope of LeakyReLU or the alpha of ELU.
  T parameter() const noexcept { return p_; }

 private:
  ActivationKind kind_;
  T p_;
};

template <Scalar T>
Tensor<T> Activation<T>::forward(const Tensor<T>& x) {
  switch (kind_) {
    case ActivationKind::sigmoid:
      return sigmoid(x);
    case ActivationKind::tanh:
      return tanh(x);
    case ActivationKind::relu:
      return relu(x);
    case ActivationKind::leaky_relu:
      return leaky_relu(x, p_);
    case ActivationKind::elu:
      return elu(x, p_);
    default:
      return x;
  }
}

template <Scalar T>
std::string Activation<T>::describe() const {
  if (kind_ == ActivationKind::leaky_relu) return "LeakyReLU(" + detail::fmt(p_) + ")";
  if (kind_ == ActivationKind::elu) return "ELU(" + detail::fmt(p_) + ")";
  return kind();
}

/// 1 / (1 + e^-x).
template <Scalar T>
struct Sigmoid : Activation<T> {
  Sigmoid() : Activation<T>(ActivationKind::sigmoid) {}
};
/// tanh(x).
template <Scalar T>
struct Tanh : Activation<T> {
  Tanh() : Activation<T>(ActivationKind::tanh) {}
};
/// max(x, 0).
template <Scalar T>
struct ReLU : Activation<T> {
  ReLU() : Activation<T>(ActivationKind::relu) {}
};
/// x for x > 0, slope * x otherwise (default slope 0.01).
template <Scalar T>
struct LeakyReLU : Activation<T> {
  explicit LeakyReLU(T slope = T(0.01)) : Activation<T>(ActivationKind::leaky_relu, slope) {}
};
/// x for x > 0, alpha (e^x - 1) otherwise (default alpha 1).
template <Scalar T>
struct ELU : Activation<T> {
  explicit ELU(T alpha = T(1)) : Activation<T>(ActivationKind::elu, alpha) {}
};
/// y = x.
template <Scalar T>
struct Identity : Activation<T> {
  Identity() : Activation<T>(ActivationKind::identity) {}
};

/// Batch normalisation of each feature (column) over the batch, with PyTorch's conventions:
/// training normalises with the batch mean and biased variance and updates running_mean and the
/// unbiased running_var with `momentum` weighting the new batch; eval uses the running
/// statistics. Learnable weight (gamma, ones) and bias (beta, zeros). A batch of one in training
/// throws ValueError.
template <Scalar T>
class BatchNorm : public Module<T> {
 public:
  explicit BatchNorm(Index features, T momentum = T(0.1), T eps = T(1e-5));
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string kind() const override { return "BatchNorm"; }
  std::string describe() const override;
  Tensor<T>& weight() noexcept { return gamma_; }
  Tensor<T>& bias() noexcept { return beta_; }
  Tensor<T>& running_mean() noexcept { return running_mean_; }
  Tensor<T>& running_var() noexcept { return running_var_; }
  T momentum() const noexcept { return momentum_; }
  T eps() const noexcept { return eps_; }

 private:
  Index features_;
  T momentum_, eps_;
  Tensor<T> gamma_, beta_, running_mean_, running_var_;
};

template <Scalar T>
BatchNorm<T>::BatchNorm(Index features, T momentum, T eps)
    : features_(features), momentum_(momentum), eps_(eps) {
  if (features <= 0)
    throw ValueError(
        gradscope::detail::cat("BatchNorm: needs a positive number of features, got ", features));
  gradscope::detail::check_extent<T>("BatchNorm", 1, features);
  gamma_ =
      this->register_parameter("weight", Tensor<T>::parameter(Matrix<T>::Ones(1, features), 1));
  beta_ = this->register_parameter("bias", Tensor<T>::parameter(Matrix<T>::Zero(1, features), 1));
  running_mean_ = this->register_buffer("running_mean", Tensor<T>::zeros(Shape::vector(features)));
  running_var_ = this->register_buffer("running_var", Tensor<T>::ones(Shape::vector(features)));
}

template <Scalar T>
Tensor<T> BatchNorm<T>::forward(const Tensor<T>& x) {
  return batch_norm(x, gamma_, beta_, running_mean_, running_var_,
                    BatchNormOptions<T>{this->is_training(), momentum_, eps_});
}

template <Scalar T>
std::string BatchNorm<T>::describe() const {
  return "BatchNorm(" + std::to_string(features_) + ")";
}

/// Inverted dropout: in training, zeroes each element with probability p and scales the others
/// by 1 / (1 - p); identity in eval. Seeded: the mask stream is reproducible.
template <Scalar T>
class Dropout : public Module<T> {
 public:
  /// `seed` 0 draws the layer's seed from default_rng().
  explicit Dropout(double p, std::uint64_t seed = 0);
  Tensor<T> forward(const Tensor<T>& x) override;
  std::string kind() const override { return "Dropout"; }
  std::string describe() const override;
  double probability() const noexcept { return p_; }
  /// Restarts the mask stream.
  void seed(std::uint64_t s) { rng_.seed(s); }
  /// The mask stream (its state() is saved in checkpoints by io::RunState).
  Rng& rng() noexcept { return rng_; }
  const Rng& rng() const noexcept { return rng_; }

 private:
  double p_;
  Rng rng_;
};

template <Scalar T>
Dropout<T>::Dropout(double p, std::uint64_t seed)
    : p_(p), rng_(seed ? seed : default_rng().next_u64()) {
  if (!(p >= 0 && p <= 1))
    throw ValueError(gradscope::detail::cat("Dropout: probability must be in [0, 1], got ", p));
}

template <Scalar T>
Tensor<T> Dropout<T>::forward(const Tensor<T>& x) {
  if (!this->is_training() || p_ == 0) return x;
  return dropout(x, p_, rng_);
}

template <Scalar T>
std::string Dropout<T>::describe() const {
  return "Dropout(" + detail::fmt(p_) + ")";
}

}  // namespace gradscope::nn
