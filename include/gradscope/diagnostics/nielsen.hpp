#pragma once
/// Nielsen's per-layer "speed of learning": the quantity behind the classic table of gradient
/// norms in a deep sigmoid network (Neural Networks and Deep Learning, chapter 5).

#include <span>
#include <string>
#include <vector>

#include "../core/core.hpp"
#include "../nn/layers.hpp"
#include "../nn/sequential.hpp"

namespace gradscope::diagnostics {

/// The cost the gradients are taken of.
enum class NielsenCost {
  /// The book's: cross-entropy on sigmoid outputs summed over the output units, averaged over
  /// the samples; the model must end with a Sigmoid module (its input is used as logits).
  sigmoid_cross_entropy,
  /// Softmax cross-entropy on the model's output (logits); norms come out about 4.5x smaller.
  softmax_cross_entropy,
};

/// A number for one layer.
struct LayerValue {
  std::string path;
  double value = 0;
};

/// For each hidden dense layer (every dense layer but the last), in input-to-output order: the
/// L2 norm of the mean over the given samples of dC/db, the gradient of the cost with respect
/// to the layer's biases. Parameters' gradients are left as they were.
template <Scalar T>
std::vector<LayerValue> nielsen_gradient_norms(
    nn::Sequential<T>& model, const Tensor<T>& inputs, std::span<const int> labels,
    NielsenCost cost = NielsenCost::sigmoid_cross_entropy) {
  std::vector<nn::Dense<T>*> dense;
  model.visit([&](nn::Module<T>& m) {
    if (auto* d = dynamic_cast<nn::Dense<T>*>(&m)) dense.push_back(d);
  });
  if (dense.size() < 2)
    throw UsageError("nielsen_gradient_norms: the model needs at least one hidden dense layer");
  for (auto* d : dense)
    if (!d->bias().defined())
      throw UsageError("nielsen_gradient_norms: dense layer '" + d->path() + "' has no bias");
  auto params = model.parameters();
  std::vector<Matrix<T>> saved;
  for (auto& p : params) {
    saved.emplace_back(p.grad());
    p.zero_grad();
  }
  {
    Tape<T> tape;
    Tensor<T> loss;
    if (cost == NielsenCost::sigmoid_cross_entropy) {
      const std::size_t n = model.size();
      auto* last = n ? dynamic_cast<nn::Activation<T>*>(&model.at(n - 1)) : nullptr;
      if (!last || last->activation() != nn::ActivationKind::sigmoid)
        throw UsageError(
            "nielsen_gradient_norms: the sigmoid cross-entropy cost needs a model "
            "whose last module is a Sigmoid");
      Tensor<T> h = inputs;
      for (std::size_t i = 0; i + 1 < n; ++i) h = model.at(i)(h);
      gradscope::detail::check_labels("nielsen_gradient_norms", labels, h.rows(), h.cols());
      Matrix<T> onehot = Matrix<T>::Zero(h.rows(), h.cols());
      for (Index i = 0; i < h.rows(); ++i) onehot(i, labels[static_cast<std::size_t>(i)]) = T(1);
      // binary_cross_entropy_with_logits averages over samples and units; the book sums units.
      loss =
          scale(binary_cross_entropy_with_logits(h, Tensor<T>(onehot)), static_cast<T>(h.cols()));
    } else {
      loss = softmax_cross_entropy(model(inputs), labels);
    }
    tape.backward(loss);
  }
  std::vector<LayerValue> out;
  for (std::size_t k = 0; k + 1 < dense.size(); ++k)
    out.push_back({dense[k]->path(), static_cast<double>(dense[k]->bias().grad().norm())});
  for (std::size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = saved[i];
  return out;
}

}  // namespace gradscope::diagnostics
