#pragma once
// Recorder: the one place that decides whether an op is recorded on a tape or evaluated eagerly,
// and that allocates its output.

#include <algorithm>
#include <initializer_list>
#include <memory>
#include <new>
#include <span>
#include <sstream>
#include <type_traits>
#include <vector>

#include "../mode.hpp"
#include "../tape.hpp"
#include "broadcast.hpp"
#include "eval.hpp"

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
  /// For an elementwise op of two inputs: the output has their broadcast shape.
  Recorder(Op op, const Tensor<T>& a, const Tensor<T>& b) : op_(op) {
    const Shape sa = a.shape(), sb = b.shape();  // throw for an undefined input
    same_shape_ = sa.rows == sb.rows && sa.cols == sb.cols;
    init({&a, &b}, same_shape_ ? Shape{sa.rows, sa.cols, std::max(sa.rank, sb.rank)}
                               : broadcast_shape(op_name(op), sa, sb));
  }

  /// The common case of the elementwise ops, recorded without a Recorder object: y = f(x...)
  /// for one or two inputs of one shape that live on one tape, outside anomaly mode. Sets y and
  /// returns true, or returns false having done nothing (the op then takes the general path).
  ///
  /// A Recorder's address escapes to its out-of-line paths (the eager and leaf cases, the
  /// anomaly message), so every field of it lives in memory; here everything stays in registers.
  /// Forced inline: in a build with the core's templates compiled once
  /// (GRADSCOPE_EXTERN_TEMPLATES) GCC kept the recording out of line, and a 1x1 op cost a third
  /// more instructions than with the headers alone.
  template <class F, class... In>
  GRADSCOPE_ALWAYS_INLINE static bool record_pointwise(Tensor<T>& y, Op op, T alpha, T beta,
                                                       const F& f, const In&... x) {
    static_assert(sizeof...(In) == 1 || sizeof...(In) == 2);
    const Tensor<T>* const xs[] = {&x...};
    Tape<T>* const tape = xs[0]->tape_;
    if (!tape || ((x.tape_ != tape) || ...) || anomaly_enabled()) return false;
    (tape->check_live(x, op_name(op)), ...);
    const Index rows = tape->node(xs[0]->index_).rows, cols = tape->node(xs[0]->index_).cols;
    if (((tape->node(x.index_).rows != rows || tape->node(x.index_).cols != cols) || ...))
      return false;  // broadcasting
    const std::uint8_t rank = std::max({tape->node(x.index_).rank...});
    const bool grad = (tape->node(x.index_).requires_grad || ...) && grad_enabled();
    const T* const in[] = {tape->node(x.index_).value...};  // before the append moves the nodes
    T* value = tape->arena().template allocate_array<T>(static_cast<std::size_t>(rows * cols));
    const std::uint32_t index =
        tape->append(op, rows, cols, rank, grad, value, current_label(), x.index_...);
    Node<T>& n = tape->node(index);
    n.alpha = alpha;
    n.beta = beta;
    MatrixMap<T> out(value, rows, cols);
    if constexpr (sizeof...(In) == 1)
      eval_pointwise(out, f, ConstMatrixMap<T>(in[0], rows, cols));
    else
      eval_pointwise(out, f, ConstMatrixMap<T>(in[0], rows, cols),
                     ConstMatrixMap<T>(in[1], rows, cols));
    y.tape_ = tape;
    y.index_ = index;
    y.generation_ = tape->generation();
    return true;
  }
  /// A view (reshape, slice_rows): y holds `shape` values of x from element `offset` on, sharing
  /// x's memory on the tape instead of a copy (values on a tape never change). Sets y and returns
  /// true when recorded; returns false, having done nothing, when the op is evaluated eagerly (x
  /// persistent and no gradient wanted).
  static bool record_view(Tensor<T>& y, Op op, const Tensor<T>& x, const Shape& shape, Index offset,
                          void* aux = nullptr) {
    Tape<T>* tape = x.tape_;
    std::uint32_t in = x.index_;
    if (tape) {
      tape->check_live(x, op_name(op));
    } else {
      if (!x.storage_ || !x.storage_->requires_grad || !grad_enabled() ||
          !(tape = current_tape<T>()))
        return false;
      in = tape->leaf_for(x.storage_);
    }
    const bool grad = tape->node(in).requires_grad && grad_enabled();
    T* value = tape->node(in).value + offset;  // read before the append may move the nodes
    const std::uint32_t index =
        tape->append(op, shape.rows, shape.cols, static_cast<std::uint8_t>(shape.rank), grad, value,
                     current_label(), in);
    tape->node(index).aux = aux;
    y.tape_ = tape;
    y.index_ = index;
    y.generation_ = tape->generation();
    return true;
  }

  /// For an op with an input list (has_input_list): any number of inputs, read by the op through
  /// their value() (in(k) is not mapped).
  Recorder(Op op, std::span<const Tensor<T>> inputs, const Shape& out) : op_(op) {
    init_list(inputs, out);
  }
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  /// For the two-input constructor: whether the inputs have one shape (no broadcasting).
  bool same_shape() const { return same_shape_; }

  /// The value of input k (only for an input the op was given: an absent one has no map).
  const ConstMatrixMap<T>& in(int k) const { return maps_.in[k]; }
  /// The output to fill.
  MatrixMap<T>& out() { return maps_.out; }
  /// True when backward information is kept (the output requires a gradient).
  bool recording() const { return recording_; }
  /// The output's node (for scalar arguments and saved data); only when recording() or tape().
  Node<T>& node() { return tape_->node(index_); }
  /// The tape the op is recorded on (also when its output needs no gradient), or nullptr when it
  /// is evaluated eagerly.
  Tape<T>* tape() const { return tape_; }
  /// Memory that lives as long as the tape (when recording) or this recorder (otherwise),
  /// 64-byte aligned either way: Eigen evaluates the unaligned head of an array in scalar code,
  /// whose tanh and exp round differently from the vectorised ones, so the alignment of scratch
  /// data must not vary from call to call (an eager op would not give the same bits twice).
  template <class U>
  U* scratch(std::size_t n) {
    if (tape_) return tape_->arena().template allocate_array<U>(n);
    auto& scratch = eager_->scratch;
    constexpr std::size_t align = Arena::alignment;
    std::size_t space = std::max<std::size_t>(n, 1) * sizeof(U) + align;
    scratch.emplace_back(new std::byte[space]);
    void* p = scratch.back().get();
    return static_cast<U*>(std::align(align, n * sizeof(U), p, space));
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
    if (anomaly_enabled() && !all_finite(maps_.out)) [[unlikely]]
      throw_non_finite();
    if (tape_) return Tensor<T>(tape_, index_, tape_->generation());
    Tensor<T> t;
    t.storage_ = std::move(eager_->storage);
    return t;
  }

 private:
  void init(std::initializer_list<const Tensor<T>*> inputs, const Shape& out) {
    const Op op = op_;
    bool any_grad = false;
    for (const Tensor<T>* t : inputs) {
      if (t && t->defined()) any_grad = adopt(*t) || any_grad;
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
      new (&maps_.out) MatrixMap<T>(value, out.rows, out.cols);
    } else {
      for (std::size_t k = 0; k < count; ++k)
        if (input[k] && input[k]->defined()) {
          const auto v = input[k]->value();
          map_in(static_cast<int>(k), v.data(), v.rows(), v.cols());
        }
      init_eager(out);
    }
  }

  // Takes note of a defined input: its tape (checked live, and the same for every input) becomes
  // the op's; returns whether it requires a gradient.
  GRADSCOPE_ALWAYS_INLINE bool adopt(const Tensor<T>& t) {
    if (!t.tape_) return t.storage_->requires_grad;
    t.tape_->check_live(t, op_name(op_));
    if (tape_ && tape_ != t.tape_) throw_mixed_tapes(op_);
    tape_ = t.tape_;
    return t.tape_->node(t.index_).requires_grad;
  }

  void init_list(std::span<const Tensor<T>> inputs, const Shape& out) {
    bool any_grad = false;
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      const Tensor<T>& t = inputs[k];
      if (!t.defined()) throw_undefined_input(op_, k);
      any_grad = adopt(t) || any_grad;
    }
    const bool grad = any_grad && grad_enabled();
    if (!tape_ && grad) tape_ = current_tape<T>();
    if (tape_) {
      // The list first (leaf_for may append nodes), then this op's node.
      auto* list = tape_->arena().template allocate_array<std::uint32_t>(inputs.size() + 1);
      list[0] = static_cast<std::uint32_t>(inputs.size());
      for (std::size_t k = 0; k < inputs.size(); ++k) list[k + 1] = index_of(&inputs[k]);
      T* value = tape_->arena().template allocate_array<T>(static_cast<std::size_t>(out.size()));
      index_ = tape_->append(op_, out.rows, out.cols, static_cast<std::uint8_t>(out.rank), grad,
                             value, current_label());
      tape_->node(index_).aux = list;
      recording_ = grad;
      new (&maps_.out) MatrixMap<T>(value, out.rows, out.cols);
    } else {
      init_eager(out);
    }
  }
  void init_eager(const Shape& out) {
    eager_ = std::make_unique<Eager>();
    auto& storage = eager_->storage;
    storage = std::make_shared<Storage<T>>();
    storage->value.resize(out.rows, out.cols);
    storage->rank = out.rank;
    new (&maps_.out) MatrixMap<T>(storage->value.data(), out.rows, out.cols);
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
    map_in(k, in.value, in.rows, in.cols);
  }
  GRADSCOPE_ALWAYS_INLINE void map_in(int k, const T* data, Index rows, Index cols) {
    new (&maps_.in[k]) ConstMatrixMap<T>(data, rows, cols);
    mapped_ = static_cast<std::uint8_t>(mapped_ | (1u << k));
  }

  // Kept out of line: the message building would otherwise give every op a large stack frame.
  [[noreturn, gnu::cold, gnu::noinline]] void throw_non_finite() const {
    std::ostringstream os;
    os << "non-finite value in forward of '" << op_name(op_) << "'; input shapes";
    for (int k = 0; k < 3; ++k)
      if (mapped_ & (1u << k)) os << " [" << in(k).rows() << ", " << in(k).cols() << "]";
    os << ", output [" << maps_.out.rows() << ", " << maps_.out.cols() << "]";
    const char* label = current_label();
    if (label) os << ", at '" << label << "'";
    throw NumericalError(os.str(), op_name(op_), "forward", label ? label : "");
  }
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_undefined_input(Op op, std::size_t k) {
    throw UsageError(cat(op_name(op), ": input ", k, " is an undefined tensor"));
  }
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_mixed_tapes(Op op) {
    throw UsageError(cat(op_name(op), ": inputs were recorded on different tapes"));
  }

  Op op_;
  Tape<T>* tape_ = nullptr;
  std::uint32_t index_ = 0;
  bool recording_ = false;
  bool same_shape_ = false;
  std::uint8_t mapped_ = 0;  // bit k: in(k) is constructed
  // The maps are constructed where the op's inputs and output are known, not zero-filled first:
  // a recorded 1x1 op spent a tenth of its instructions initialising state it then overwrote.
  // Input 0 alone starts as an empty map: every op has one, and GCC (12, -O3, the ops compiled
  // once with GRADSCOPE_EXTERN_TEMPLATES) could not see that init() always constructs it and
  // warned that it may be read uninitialised. Three stores, on the ops that take this path.
  struct Maps {
    Maps() noexcept { new (&in[0]) ConstMatrixMap<T>(nullptr, 0, 0); }
    union {
      ConstMatrixMap<T> in[3];
    };
    union {
      MatrixMap<T> out;
    };
  } maps_;
  static_assert(std::is_trivially_destructible_v<ConstMatrixMap<T>> &&
                std::is_trivially_destructible_v<MatrixMap<T>>);
  // What an eagerly evaluated op owns: its result and its scratch memory. Allocated only then, so
  // a recorded op neither constructs nor destroys it.
  struct Eager {
    std::shared_ptr<Storage<T>> storage;
    std::vector<std::unique_ptr<std::byte[]>> scratch;
  };
  std::unique_ptr<Eager> eager_;
};

}  // namespace gradscope::detail
