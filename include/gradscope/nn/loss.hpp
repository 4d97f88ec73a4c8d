#pragma once
/// Losses: softmax cross-entropy (integer labels), mean squared error, binary cross-entropy on
/// logits. Each returns a scalar tensor averaged over the batch.

#include <span>

#include "../core/core.hpp"

namespace gradscope::nn {

/// Mean over the batch of -log softmax(logits)[label]; a label outside [0, classes) throws
/// ValueError naming the label, its index and the class count.
template <Scalar T>
Tensor<T> softmax_cross_entropy(const Tensor<T>& logits, std::span<const int> labels) {
  return gradscope::softmax_cross_entropy(logits, labels);
}

/// Mean over all elements of (prediction - target)^2.
template <Scalar T>
Tensor<T> mse(const Tensor<T>& prediction, const Tensor<T>& target) {
  if (prediction.shape() != target.shape())
    throw ShapeError(gradscope::detail::cat("mse: prediction ", prediction.shape(), " and target ",
                                            target.shape(), " differ"));
  return mean(square(sub(prediction, target)));
}

/// Mean binary cross-entropy between sigmoid(logits) and targets in [0, 1], computed stably.
template <Scalar T>
Tensor<T> binary_cross_entropy_with_logits(const Tensor<T>& logits, const Tensor<T>& targets) {
  return gradscope::binary_cross_entropy_with_logits(logits, targets);
}

/// Fraction of rows whose largest logit is at the label's column.
template <Scalar T>
double accuracy(const Tensor<T>& logits, std::span<const int> labels) {
  const auto v = logits.value();
  if (static_cast<Index>(labels.size()) != v.rows())
    throw ShapeError(
        gradscope::detail::cat("accuracy: ", labels.size(), " labels for ", v.rows(), " rows"));
  Index correct = 0;
  for (Index i = 0; i < v.rows(); ++i) {
    Index arg;
    v.row(i).maxCoeff(&arg);
    correct += arg == labels[static_cast<std::size_t>(i)];
  }
  return v.rows() ? static_cast<double>(correct) / static_cast<double>(v.rows()) : 0.0;
}

}  // namespace gradscope::nn
