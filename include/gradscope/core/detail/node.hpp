#pragma once
// The records a Tape is made of, and the persistent storage behind parameters and data tensors.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../error.hpp"
#include "../types.hpp"

namespace gradscope::detail {

/// Every differentiable op. The backward rule of each lives in core/backward.hpp, one case each.
enum class Op : std::uint8_t {
  constant,   // leaf without gradient (data, or a value recorded under NoGrad)
  variable,   // leaf created by Tape::variable, gradient kept on the tape
  parameter,  // leaf standing for a persistent tensor with a gradient buffer
  add,
  sub,
  mul,
  div,
  neg,
  scale,
  add_scalar,
  pow,
  exp,
  log,
  sqrt,
  square,
  abs,
  clamp,
  sigmoid,
  tanh,
  relu,
  leaky_relu,
  elu,
  matmul,
  transpose,
  sum,
  mean,
  softmax,
  log_softmax,
  linear,
  softmax_cross_entropy,
  binary_cross_entropy_with_logits,
  batch_norm,
  dropout,
  softplus,
  log1p,
  reshape,
  slice_rows,
  slice_cols,
  concat_rows,  // inputs in an input list (see input_list)
  concat_cols,  // inputs in an input list
  gather_rows,
  max,
  logsumexp,
  where,
  custom,  // inputs in an input list; aux2 is the CustomEntry with the user's backward
  rnn_cell,
  lstm_cell,
  gru_cell,
  count_
};
static_assert(Op::constant < Op::variable && Op::variable < Op::parameter &&
              Op::parameter < Op::add);  // Node::is_leaf relies on it

inline const char* op_name(Op op) noexcept {
  static constexpr const char* names[] = {"constant",
                                          "variable",
                                          "parameter",
                                          "add",
                                          "sub",
                                          "mul",
                                          "div",
                                          "neg",
                                          "scale",
                                          "add_scalar",
                                          "pow",
                                          "exp",
                                          "log",
                                          "sqrt",
                                          "square",
                                          "abs",
                                          "clamp",
                                          "sigmoid",
                                          "tanh",
                                          "relu",
                                          "leaky_relu",
                                          "elu",
                                          "matmul",
                                          "transpose",
                                          "sum",
                                          "mean",
                                          "softmax",
                                          "log_softmax",
                                          "linear",
                                          "softmax_cross_entropy",
                                          "binary_cross_entropy_with_logits",
                                          "batch_norm",
                                          "dropout",
                                          "softplus",
                                          "log1p",
                                          "reshape",
                                          "slice_rows",
                                          "slice_cols",
                                          "concat_rows",
                                          "concat_cols",
                                          "gather_rows",
                                          "max",
                                          "logsumexp",
                                          "where",
                                          "custom",
                                          "rnn_cell",
                                          "lstm_cell",
                                          "gru_cell"};
  static_assert(sizeof(names) / sizeof(names[0]) == static_cast<std::size_t>(Op::count_));
  return names[static_cast<std::size_t>(op)];
}

inline constexpr std::uint32_t no_input = 0xFFFFFFFFu;

/// True for the ops whose inputs do not fit Node::in (any number of them): such a node keeps
/// them in an input list in the tape's arena, pointed to by aux (input_list), and its `in` holds
/// no_input.
constexpr bool has_input_list(Op op) noexcept {
  return op == Op::concat_rows || op == Op::concat_cols || op == Op::custom;
}

/// One entry of the Wengert list: an op, its inputs (node indices), its value and gradient.
template <class T>
struct Node {
  T* value = nullptr;
  T* grad = nullptr;  // allocated (zeroed) on first accumulation during backward
  Index rows = 1;
  Index cols = 1;
  std::uint32_t in[3] = {no_input, no_input, no_input};
  Op op = Op::constant;
  std::uint8_t rank = 0;
  std::uint8_t mode = 0;  // op-specific: reduction axis, transpose flags, ...
  bool requires_grad = false;
  bool has_hooks = false;
  bool retain = false;
  T alpha = 0;  // op-specific scalar arguments
  T beta = 0;
  void* aux = nullptr;  // op-specific saved data in the tape's arena, or the Storage of a leaf
  void* aux2 = nullptr;
  const char* label = nullptr;

  Node() = default;
  /// Every field set by a store of its own: value-initialising a Node and then filling it made
  /// g++ zero its 88 bytes with `rep stosq`, a third of the cost of recording an op.
  Node(Op op_, Index rows_, Index cols_, std::uint8_t rank_, bool requires_grad_, T* value_,
       const char* label_, std::uint32_t in0, std::uint32_t in1, std::uint32_t in2) noexcept
      : value(value_),
        grad(nullptr),
        rows(rows_),
        cols(cols_),
        in{in0, in1, in2},
        op(op_),
        rank(rank_),
        mode(0),
        requires_grad(requires_grad_),
        has_hooks(false),
        retain(false),
        alpha(0),
        beta(0),
        aux(nullptr),
        aux2(nullptr),
        label(label_) {}

  Shape shape() const { return Shape{rows, cols, rank}; }
  Index size() const { return rows * cols; }
  bool is_leaf() const { return op <= Op::parameter; }  // the leaves come first in Op
};

/// An index kept in a node's pointer field (aux, aux2): a slice's first row or column, a
/// recurrent cell's step.
inline void* index_tag(Index i) noexcept {
  return reinterpret_cast<void*>(static_cast<std::uintptr_t>(i));
}
inline Index index_of_tag(const void* tag) noexcept {
  return static_cast<Index>(reinterpret_cast<std::uintptr_t>(tag));
}

/// Step `step`'s block [B, width] of a recurrent cell's xg, the gate inputs of every step: xg's
/// memory read as [B, steps * width] (core/recurrent_ops.hpp, check_cell).
template <class P>
auto step_block(P* data, Index size, Index B, Index width, Index step) {
  using M =
      std::conditional_t<std::is_const_v<P>, ConstMatrixMap<std::remove_const_t<P>>, MatrixMap<P>>;
  return M(data, B, size / B).middleCols(step * width, width);
}
/// The input list of a node of an op with has_input_list: aux points to a count followed by
/// that many node indices.
template <class T>
std::span<const std::uint32_t> input_list(const Node<T>& n) noexcept {
  const auto* p = static_cast<const std::uint32_t*>(n.aux);
  return {p + 1, p[0]};
}

/// Every input of a node: its input list, or the used entries of `in`.
template <class T>
std::span<const std::uint32_t> inputs_of(const Node<T>& n) noexcept {
  if (has_input_list(n.op)) return input_list(n);
  std::size_t k = 0;
  while (k < 3 && n.in[k] != no_input) ++k;
  return {n.in, k};
}

/// The tape's list of nodes: a growable array whose append is a capacity check and the node's
/// stores. (With std::vector, emplace_back stayed out of line in some ops, and size() divided by
/// the node's 88 bytes; together a tenth of the cost of recording a 1x1 op.) Node indices are
/// 32-bit, as in Node::in, and no_input is never a valid one.
template <class T>
class NodeList {
  static_assert(std::is_trivially_copyable_v<Node<T>>);

 public:
  NodeList() = default;
  NodeList(const NodeList&) = delete;
  NodeList& operator=(const NodeList&) = delete;
  ~NodeList() { ::operator delete(data_); }

  std::uint32_t size() const noexcept { return size_; }
  Node<T>& operator[](std::uint32_t i) noexcept { return data_[i]; }
  const Node<T>& operator[](std::uint32_t i) const noexcept { return data_[i]; }
  Node<T>* begin() noexcept { return data_; }
  Node<T>* end() noexcept { return data_ + size_; }
  const Node<T>* begin() const noexcept { return data_; }
  const Node<T>* end() const noexcept { return data_ + size_; }

  /// Forgets every node and keeps the memory.
  void clear() noexcept { size_ = 0; }
  void reserve(std::uint32_t n) {
    if (n > capacity_) grow(n);
  }
  /// Appends a node built from `args` and returns its index.
  template <class... Args>
  GRADSCOPE_ALWAYS_INLINE std::uint32_t append(Args&&... args) {
    if (size_ == capacity_) [[unlikely]]
      grow_for_one_more();
    new (data_ + size_) Node<T>(std::forward<Args>(args)...);
    return size_++;
  }

 private:
  static constexpr std::uint32_t max_size = no_input - 1;

  [[gnu::noinline]] void grow_for_one_more() {
    if (size_ >= max_size)
      throw UsageError(cat("tape: cannot record more than ", max_size,
                           " nodes (node indices are 32-bit); reset() the tape between steps"));
    grow(capacity_ >= max_size / 2 ? max_size : std::max<std::uint32_t>(2 * capacity_, 256));
  }
  void grow(std::uint32_t capacity) {
    auto* p = static_cast<Node<T>*>(::operator new(sizeof(Node<T>) * capacity));
    if (size_) std::memcpy(static_cast<void*>(p), data_, sizeof(Node<T>) * size_);
    ::operator delete(data_);
    data_ = p;
    capacity_ = capacity;
  }

  Node<T>* data_ = nullptr;
  std::uint32_t size_ = 0;
  std::uint32_t capacity_ = 0;
};

template <class T>
struct HookEntry {
  std::uint64_t id;
  std::uint32_t node;  // for tape hooks: the node they watch
  std::function<void(const ConstMatrixMap<T>&)> fn;
};

/// Heap storage of a persistent tensor (data, parameters, eager results).
template <class T>
struct Storage {
  Matrix<T> value;
  Matrix<T> grad;  // empty unless requires_grad
  int rank = 2;
  bool requires_grad = false;
  bool parameter = false;  // requires_grad was on at some point: a parameter, maybe frozen now
  std::string name;        // set by the owning module ("3.weight"); used in error messages
  // The leaf node standing for this storage on the tape it was last recorded on.
  const void* leaf_tape = nullptr;
  std::uint64_t leaf_generation = 0;
  std::uint32_t leaf_index = 0;
  std::vector<HookEntry<T>> hooks;
  std::vector<HookEntry<T>> post_hooks;  // see Tensor::register_post_accumulate_hook
  std::uint64_t next_hook_id = 1;
};

}  // namespace gradscope::detail
