#pragma once
// The five benchmark networks (A to E of issue 8), each built twice from one description: as a
// gradscope Sequential and as its hand-written Eigen twin (mlp_reference.hpp), with the same
// initial weights when both are built from the same Rng state.
//
//   A  [784, 30, 30, 30, 30, 10], sigmoid, Xavier-uniform          (Nielsen's deep sigmoid net)
//   B  [784, 8 x 256, 10], ReLU, He-normal
//   C  [784, 1024, 1024, 10], ReLU, He-normal
//   D  B with BatchNorm after every hidden Dense (Dense, BatchNorm, ReLU)
//   E  Dense 784 -> 256, 8 residual blocks h + W2 relu(W1 h + b1) + b2 of width 256, Dense 256 ->
//   10
#include <cmath>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <gradscope/gradscope.hpp>

#include "mlp_reference.hpp"

namespace gradscope_bench {

/// A network description both builders understand.
struct NetShape {
  reference::Index in = 784;
  std::vector<reference::Index> hidden;  ///< widths of the hidden layers (residual: one width)
  reference::Index classes = 10;
  reference::Activation activation = reference::Activation::relu;
  bool batch_norm = false;
  int residual_blocks = 0;  ///< > 0: net E's shape, hidden[0] is the width
  gradscope::init::Initializer init = gradscope::init::he_normal;
  /// Net E: initialiser of the second Dense of each residual block (W2, b2).
  gradscope::init::Initializer block_out_init = gradscope::init::he_normal;
};

/// The benchmark's nets by letter.
inline NetShape net_shape(char net) {
  using reference::Activation;
  NetShape s;
  switch (net) {
    case 'A':
      s.hidden = {30, 30, 30, 30};
      s.activation = Activation::sigmoid;
      s.init = gradscope::init::xavier_uniform;
      return s;
    case 'B':
      s.hidden.assign(8, 256);
      return s;
    case 'C':
      s.hidden = {1024, 1024};
      return s;
    case 'D':
      s.hidden.assign(8, 256);
      s.batch_norm = true;
      return s;
    case 'E':
      s.hidden = {256};
      s.residual_blocks = 8;
      // He-normal everywhere would double the variance of h at every block (2^8 in all) and SGD
      // diverges within a few hundred steps; scaling W2 by 1 / sqrt(blocks) keeps the growth to
      // (1 + 1/8)^8, about 2.6 (the idea behind Fixup and SkipInit initialisation).
      s.block_out_init = gradscope::init::he_normal_with(std::sqrt(2.0 / 8.0));
      return s;
    default:
      throw std::invalid_argument(std::string("net_shape: unknown net ") + net);
  }
}

/// The gradscope network of `s`, weights drawn from `rng`.
template <class T>
std::shared_ptr<gradscope::nn::Sequential<T>> make_gradscope_net(const NetShape& s,
                                                                 gradscope::Rng& rng) {
  namespace nn = gradscope::nn;
  auto net = std::make_shared<nn::Sequential<T>>();
  if (s.residual_blocks > 0) {
    const auto w = s.hidden.at(0);
    net->template add<nn::Dense>(s.in, w, s.init, true, &rng);
    for (int k = 0; k < s.residual_blocks; ++k) {
      auto inner = std::make_shared<nn::Sequential<T>>();
      inner->template add<nn::Dense>(w, w, s.init, true, &rng);
      inner->template add<nn::ReLU>();
      inner->template add<nn::Dense>(w, w, s.block_out_init, true, &rng);
      net->add(std::make_shared<nn::Residual<T>>(inner));
    }
    net->template add<nn::Dense>(w, s.classes, s.init, true, &rng);
    return net;
  }
  auto prev = s.in;
  for (auto h : s.hidden) {
    net->template add<nn::Dense>(prev, h, s.init, true, &rng);
    if (s.batch_norm) net->template add<nn::BatchNorm>(h);
    if (s.activation == reference::Activation::relu)
      net->template add<nn::ReLU>();
    else
      net->template add<nn::Sigmoid>();
    prev = h;
  }
  net->template add<nn::Dense>(prev, s.classes, s.init, true, &rng);
  return net;
}

/// The hand-written twin behind one interface (one virtual call per step).
template <class T>
class Twin {
 public:
  virtual ~Twin() = default;
  /// Forward, loss and backward; returns the loss.
  virtual T forward_backward(const reference::Mat<T>& x, std::span<const int> labels) = 0;
  /// p -= lr * grad.
  virtual void sgd_step(T lr) = 0;
  virtual const std::vector<reference::Param<T>>& parameters() const = 0;
  virtual const reference::Mat<T>& logits() const = 0;
  /// GEMM flops of one step.
  virtual double step_flops() const = 0;
  /// One training step: forward_backward and sgd_step.
  T step(const reference::Mat<T>& x, std::span<const int> labels, T lr) {
    const T loss = forward_backward(x, labels);
    sgd_step(lr);
    return loss;
  }
};

namespace detail {
template <class T, class R>
class TwinOf final : public Twin<T> {
 public:
  template <class... Args>
  explicit TwinOf(Args&&... args) : r_(std::forward<Args>(args)...) {}
  T forward_backward(const reference::Mat<T>& x, std::span<const int> labels) override {
    return r_.forward_backward(x, labels);
  }
  void sgd_step(T lr) override { r_.sgd_step(lr); }
  const std::vector<reference::Param<T>>& parameters() const override { return r_.parameters(); }
  const reference::Mat<T>& logits() const override { return r_.logits(); }
  double step_flops() const override { return r_.step_flops(); }

 private:
  R r_;
};
}  // namespace detail

/// The hand-written twin of `s` for a fixed batch size, weights drawn from `rng`.
template <class T>
std::unique_ptr<Twin<T>> make_reference_net(const NetShape& s, reference::Index batch,
                                            gradscope::Rng& rng) {
  if (s.residual_blocks > 0)
    return std::make_unique<detail::TwinOf<T, reference::ResidualReference<T>>>(
        s.in, s.hidden.at(0), s.residual_blocks, s.classes, batch, s.init, s.block_out_init, rng);
  std::vector<reference::Index> sizes{s.in};
  sizes.insert(sizes.end(), s.hidden.begin(), s.hidden.end());
  sizes.push_back(s.classes);
  return std::make_unique<detail::TwinOf<T, reference::MlpReference<T>>>(
      sizes, s.activation, s.batch_norm, batch, s.init, rng);
}

}  // namespace gradscope_bench
