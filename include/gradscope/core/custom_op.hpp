#pragma once
/// custom_op: an op defined by the user, with a forward and a hand-written backward, recorded on
/// the tape like any other (one node), checked by check_gradients like any other.

#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ops.hpp"

namespace gradscope {

/// What the backward of a custom op receives.
template <Scalar T>
struct CustomGradient {
  ConstMatrixMap<T> grad_output;              ///< dL/dy, of the output's shape
  ConstMatrixMap<T> output;                   ///< y, as the forward computed it
  std::span<const ConstMatrixMap<T>> inputs;  ///< x_0, x_1, ... as given to the forward
  /// dL/dx_k, to ADD the op's contribution to (+=: it may already hold other contributions);
  /// 0 x 0 when x_k needs no gradient.
  std::span<MatrixMap<T>> grad_inputs;
  /// True when x_k needs a gradient.
  bool needs_grad(std::size_t k) const { return grad_inputs[k].size() > 0; }
};

namespace detail {
template <Scalar T, class Backward>
struct CustomEntry final : CustomEntryBase<T> {
  CustomEntry(std::string name, Backward b)
      : CustomEntryBase<T>(std::move(name)), fn(std::move(b)) {}
  void backward(Tape<T>& tape, Node<T>& n) override {
    const auto list = input_list(n);
    std::vector<ConstMatrixMap<T>> xs;
    std::vector<MatrixMap<T>> gxs;
    xs.reserve(list.size());
    gxs.reserve(list.size());
    for (const std::uint32_t k : list) {
      const auto& in = tape.node(k);
      xs.emplace_back(in.value, in.rows, in.cols);
      if (in.requires_grad)
        gxs.emplace_back(tape.grad_buffer(k), in.rows, in.cols);
      else
        gxs.emplace_back(nullptr, 0, 0);
    }
    fn(CustomGradient<T>{ConstMatrixMap<T>(n.grad, n.rows, n.cols),
                         ConstMatrixMap<T>(n.value, n.rows, n.cols), xs, gxs});
  }
  Backward fn;
};
}  // namespace detail

/// An op of the user's: y = forward(x_0, x_1, ...) with a hand-written backward.
///
///   forward(std::span<const ConstMatrixMap<T>> x, MatrixMap<T>& y)  fills y, of shape `output`;
///   backward(const CustomGradient<T>& g)  adds dL/dx_k to g.grad_inputs[k] for each k that
///                                          needs it (g.needs_grad(k)).
///
/// The op is one tape node named "custom:<name>" in listings; the backward is kept by the tape
/// until reset() (a custom op allocates: the callables are copied, and the backward builds its
/// argument lists). Check a new op with check_gradients.
template <Scalar T, class Forward, class Backward>
Tensor<T> custom_op(std::string name, std::span<const Tensor<T>> inputs, Shape output,
                    Forward&& forward, Backward&& backward) {
  if (inputs.empty()) throw ValueError(detail::cat("custom_op '", name, "': needs an input"));
  if (output.rows < 1 || output.cols < 1 || output.rank < 0 || output.rank > 2 ||
      (output.rank < 2 && output.rows != 1) || (output.rank == 0 && output.cols != 1))
    throw ShapeError(detail::cat("custom_op '", name, "': invalid output shape [", output.rows,
                                 ", ", output.cols, "] of rank ", output.rank));
  detail::Recorder<T> r(detail::Op::custom, inputs, output);
  if (r.tape()) {  // the entry first: the node is complete even if the forward throws
    using Entry = detail::CustomEntry<T, std::decay_t<Backward>>;
    r.node().aux2 = r.tape()->keep_custom(
        std::make_unique<Entry>(std::move(name), std::forward<Backward>(backward)));
  }
  std::vector<ConstMatrixMap<T>> xs;
  xs.reserve(inputs.size());
  for (const auto& x : inputs) xs.push_back(x.value());
  forward(std::span<const ConstMatrixMap<T>>(xs), r.out());
  return r.finish();
}
template <Scalar T, class Forward, class Backward>
Tensor<T> custom_op(std::string name, const std::vector<Tensor<T>>& inputs, Shape output,
                    Forward&& forward, Backward&& backward) {
  return custom_op(std::move(name), std::span<const Tensor<T>>(inputs), output,
                   std::forward<Forward>(forward), std::forward<Backward>(backward));
}
template <Scalar T, class Forward, class Backward>
Tensor<T> custom_op(std::string name, std::initializer_list<Tensor<T>> inputs, Shape output,
                    Forward&& forward, Backward&& backward) {
  return custom_op(std::move(name), std::span<const Tensor<T>>(inputs.begin(), inputs.size()),
                   output, std::forward<Forward>(forward), std::forward<Backward>(backward));
}

}  // namespace gradscope
