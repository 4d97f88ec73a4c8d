#pragma once
// Recorder: the one place that decides whether an op is recorded on a tape or evaluated eagerly,
// and that allocates its output.

#include <initializer_list>
#include <memory>
#include <new>
#include <sstream>
#include <vector>

#include "../mode.hpp"
#include "../tape.hpp"
#include "broadcast.hpp"

namespace gradscope::detail {

/// Used by every op: `Recorder r(Op::exp, {&x}, shape); r.out() = ...; return r.finish();`
///
/// An op is recorded on a tape when one of its inputs lives on that tape, or when an input
/// requires a gradient, gradients are enabled and a tape is alive on this thread. Otherwise it is
/// computed eagerly into a new persistent tensor, which records nothing.
template <Scalar T>
class Recorder {
 public:
  // `out` by reference, input indices in scalars: a Shape passed by value, or an index array
  // read back as wider words, was copied through the stack with loads spanning several stores,
  // and those store-forwarding stalls were a third of the cost of recording a 1x1 op.
  Recorder(Op op, std::initializer_list<const Tensor<T>*> inputs, const Shape& out) : op_(op) {
    init(inputs, out);
  }
  /// For an elementwise op of one input x: the output has x's shape. When x lives on a tape (the
  /// common case) its node is checked and read once, for the output's shape, the gradient flag
  /// and the input's map.
  Recorder(Op op, const Tensor<T>& x) : op_(op) {
    if (!x.tape_) {
      init({&x}, x.shape());  // a persistent or undefined x (shape() throws for the latter)
      return;
    }
    x.tape_->check_live(x, op_name(op));
    tape_ = x.tape_;
    const Node<T>& in = tape_->node(x.index_);
    // Copied before the append, which may move the node list.
    const T* in_value = in.value;
    const Index rows = in.rows, cols = in.cols;
    const std::uint8_t rank = in.rank;
    const bool grad = in.requires_grad && grad_enabled();
    append_elementwise(rows, cols, rank, grad, x.index_, in_value);
  }
  /// For an elementwise op of two inputs: the output has their broadcast shape. When both live
  /// on one tape and have the same shape (the common case), their nodes are checked and read
  /// once.
  Recorder(Op op, const Tensor<T>& a, const Tensor<T>& b) : op_(op) {
    if (a.tape_ && a.tape_ == b.tape_) {
      a.tape_->check_live(a, op_name(op));
      a.tape_->check_live(b, op_name(op));
      const Node<T>& na = a.tape_->node(a.index_);
      const Node<T>& nb = a.tape_->node(b.index_);
      if (na.rows == nb.rows && na.cols == nb.cols) {
        tape_ = a.tape_;
        // Copied before the append, which may move the node list.
        const T* va = na.value;
        const T* vb = nb.value;
        const Index rows = na.rows, cols = na.cols;
        const std::uint8_t rank = std::max(na.rank, nb.rank);
        const bool grad = (na.requires_grad || nb.requires_grad) && grad_enabled();
        append_elementwise(rows, cols, rank, grad, a.index_, va, b.index_, vb);
        same_shape_ = true;
        return;
      }
    }
    const Shape sa = a.shape(), sb = b.shape();  // throw for an undefined input
    same_shape_ = sa.rows == sb.rows && sa.cols == sb.cols;
    init({&a, &b}, same_shape_ ? Shape{sa.rows, sa.cols, std::max(sa.rank, sb.rank)}
                               : broadcast_shape(op_name(op), sa, sb));
  }
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  /// For the two-input constructor: whether the inputs have one shape (no broadcasting).
  bool same_shape() const { return same_shape_; }

  /// The value of input k.
  const ConstMatrixMap<T>& in(int k) const { return inputs_[k]; }
  /// The output to fill.
  MatrixMap<T>& out() { return out_; }
  /// True when backward information is kept (the output requires a gradient).
  bool recording() const { return recording_; }
  /// The output's node (for scalar arguments and saved data); only when recording().
  Node<T>& node() { return tape_->node(index_); }
  /// Memory that lives as long as the tape (when recording) or this recorder (otherwise).
  template <class U>
  U* scratch(std::size_t n) {
    if (tape_) return tape_->arena().template allocate_array<U>(n);
    eager_scratch_.emplace_back(new std::byte[std::max<std::size_t>(n, 1) * sizeof(U) + 64]);
    void* p = eager_scratch_.back().get();
    std::size_t space = std::max<std::size_t>(n, 1) * sizeof(U) + 64;
    return static_cast<U*>(std::align(alignof(U), n * sizeof(U), p, space));
  }
  /// Sets the op's scalar arguments and mode (kept on the node when recording).
  void set_args(T alpha, T beta = 0, std::uint8_t mode = 0) {
    if (tape_) {
      auto& n = node();
      n.alpha = alpha;
      n.beta = beta;
      n.mode = mode;
    }
  }
  void set_aux(void* aux) {
    if (tape_) node().aux = aux;
  }

  /// Checks the output in anomaly mode and returns the result tensor.
  Tensor<T> finish() {
    if (anomaly_enabled() && !all_finite(out_)) [[unlikely]]
      throw_non_finite();
    if (tape_) return Tensor<T>(tape_, index_, tape_->generation());
    Tensor<T> t;
    t.storage_ = std::move(storage_);
    return t;
  }

 private:
  // The fast paths' common tail: this op's node over inputs already on tape_, of its shape.
  void append_elementwise(Index rows, Index cols, std::uint8_t rank, bool grad, std::uint32_t i0,
                          const T* v0, std::uint32_t i1 = no_input, const T* v1 = nullptr) {
    T* value = tape_->arena().template allocate_array<T>(static_cast<std::size_t>(rows * cols));
    index_ = tape_->append(op_, rows, cols, rank, grad, value, current_label(), i0, i1);
    recording_ = grad;
    new (&inputs_[0]) ConstMatrixMap<T>(v0, rows, cols);
    if (v1) new (&inputs_[1]) ConstMatrixMap<T>(v1, rows, cols);
    new (&out_) MatrixMap<T>(value, rows, cols);
  }
  void init(std::initializer_list<const Tensor<T>*> inputs, const Shape& out) {
    const Op op = op_;
    bool any_grad = false;
    for (const Tensor<T>* t : inputs) {
      if (!t || !t->defined()) continue;
      if (t->tape_) {
        t->tape_->check_live(*t, op_name(op));
        if (tape_ && tape_ != t->tape_) throw_mixed_tapes(op);
        tape_ = t->tape_;
        any_grad = any_grad || t->tape_->node(t->index_).requires_grad;
      } else {
        any_grad = any_grad || t->storage_->requires_grad;
      }
    }
    const bool grad = any_grad && grad_enabled();
    if (!tape_ && grad) tape_ = current_tape<T>();
    const std::size_t count = inputs.size();
    const Tensor<T>* const* input = inputs.begin();
    if (tape_) {
      // Input leaves first (leaf_for may append nodes), then this op's node, filled in place.
      const std::uint32_t i0 = count > 0 ? index_of(input[0]) : no_input;
      const std::uint32_t i1 = count > 1 ? index_of(input[1]) : no_input;
      const std::uint32_t i2 = count > 2 ? index_of(input[2]) : no_input;
      T* value = tape_->arena().template allocate_array<T>(static_cast<std::size_t>(out.size()));
      index_ = tape_->append(op, out.rows, out.cols, static_cast<std::uint8_t>(out.rank), grad,
                             value, current_label(), i0, i1, i2);
      recording_ = grad;
      map_input(0, i0);
      map_input(1, i1);
      map_input(2, i2);
      new (&out_) MatrixMap<T>(value, out.rows, out.cols);
    } else {
      for (std::size_t k = 0; k < count; ++k)
        if (input[k] && input[k]->defined()) new (&inputs_[k]) ConstMatrixMap<T>(input[k]->value());
      storage_ = std::make_shared<Storage<T>>();
      storage_->value.resize(out.rows, out.cols);
      storage_->rank = out.rank;
      new (&out_) MatrixMap<T>(storage_->value.data(), out.rows, out.cols);
    }
  }

  std::uint32_t index_of(const Tensor<T>* t) {
    if (!t || !t->defined()) return no_input;
    return t->tape_ ? t->index_ : leaf_index(t);
  }
  // Out of line: keeps the common case (an input already on the tape) small enough to inline.
  [[gnu::noinline]] std::uint32_t leaf_index(const Tensor<T>* t) {
    return tape_->leaf_for(t->storage_);
  }
  void map_input(int k, std::uint32_t i) {
    if (i == no_input) return;
    const auto& in = tape_->node(i);
    new (&inputs_[k]) ConstMatrixMap<T>(in.value, in.rows, in.cols);
  }

  // Kept out of line: the message building would otherwise give every op a large stack frame.
  [[noreturn, gnu::cold, gnu::noinline]] void throw_non_finite() const {
    std::ostringstream os;
    os << "non-finite value in forward of '" << op_name(op_) << "'; input shapes";
    for (const auto& m : inputs_)
      if (m.data()) os << " [" << m.rows() << ", " << m.cols() << "]";
    os << ", output [" << out_.rows() << ", " << out_.cols() << "]";
    const char* label = current_label();
    if (label) os << ", at '" << label << "'";
    throw NumericalError(os.str(), op_name(op_), "forward", label ? label : "");
  }
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_mixed_tapes(Op op) {
    throw UsageError(cat(op_name(op), ": inputs were recorded on different tapes"));
  }

  Op op_;
  Tape<T>* tape_ = nullptr;
  std::uint32_t index_ = 0;
  bool recording_ = false;
  bool same_shape_ = false;
  std::shared_ptr<Storage<T>> storage_;
  ConstMatrixMap<T> inputs_[3] = {{nullptr, 0, 0}, {nullptr, 0, 0}, {nullptr, 0, 0}};
  MatrixMap<T> out_{nullptr, 0, 0};
  std::vector<std::unique_ptr<std::byte[]>> eager_scratch_;
};

}  // namespace gradscope::detail
