#pragma once
/// Tensor<T>: a handle to a value recorded on a Tape, or to persistent storage (data, parameters).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>

#include "detail/node.hpp"
#include "error.hpp"
#include "rng.hpp"
#include "types.hpp"

namespace gradscope {

template <Scalar T>
class Tape;
template <Scalar T>
class Tensor;

namespace detail {
template <Scalar T>
class Recorder;
template <Scalar T>
Tape<T>*& current_tape() noexcept {
  static thread_local Tape<T>* tape = nullptr;
  return tape;
}

[[noreturn, gnu::cold, gnu::noinline]] inline void throw_bad_extent(const char* what, Index rows,
                                                                    Index cols,
                                                                    std::size_t element_bytes) {
  if (rows < 0 || cols < 0)
    throw ValueError(cat(what, ": negative size ", rows, " x ", cols, " (sizes must be >= 0)"));
  throw ValueError(cat(what, ": size ", rows, " x ", cols, " is too large (the ", element_bytes,
                       "-byte elements would need more than ", PTRDIFF_MAX,
                       " bytes, the largest array this platform can address)"));
}

/// Throws ValueError unless `rows` x `cols` elements of T can exist: both sizes non-negative and
/// their byte count representable (rows * cols * sizeof(T) <= PTRDIFF_MAX, which also keeps
/// rows * cols within Index). `what` names the caller in the message ("Tensor::zeros",
/// "Dense"). Zero sizes are valid (an empty tensor); callers that need positive sizes check
/// that themselves. Sizes that pass may still exceed the memory of the machine (std::bad_alloc).
template <Scalar T>
void check_extent(const char* what, Index rows, Index cols) {
  constexpr Index max_elements = static_cast<Index>(PTRDIFF_MAX / sizeof(T));
  if (rows < 0 || cols < 0 || (cols != 0 && rows > max_elements / cols)) [[unlikely]]
    throw_bad_extent(what, rows, cols, sizeof(T));
}
}  // namespace detail

/// Removes a hook registered on a tensor or a module. Removing twice, or after the tape was
/// reset, does nothing.
class HookHandle {
 public:
  HookHandle() = default;
  explicit HookHandle(std::function<void()> remover) : remover_(std::move(remover)) {}
  /// Unregisters the hook.
  void remove() {
    if (remover_) {
      auto r = std::move(remover_);
      remover_ = nullptr;
      r();
    }
  }
  /// True until remove() was called.
  bool active() const noexcept { return static_cast<bool>(remover_); }

 private:
  std::function<void()> remover_;
};

/// A dense row-major array of rank 0 to 2 (rows are the batch), float or double.
///
/// A Tensor is a cheap handle. Either it refers to a node of a Tape (results of ops recorded
/// while a tape is alive, and Tape::variable) and is valid until that tape is reset, or it owns
/// persistent storage shared by its copies (data, parameters, results computed with no tape).
/// Parameters are persistent tensors with requires_grad: their gradient buffer accumulates over
/// backward calls until zero_grad().
template <Scalar T>
class Tensor {
 public:
  using value_type = T;
  using HookFn = std::function<void(const ConstMatrixMap<T>&)>;

  /// An undefined tensor (defined() is false).
  Tensor() = default;
  // Copies and moves touch the shared storage only when there is one. A tape tensor's storage is
  // empty, written as two 8-byte zeros when an op returns it; the default members would copy it
  // with one 16-byte load, which cannot be forwarded from those two stores and stalled every
  // `y = op(y)` until they reached the cache (a quarter of the forward time of a 1x1 op).
  Tensor(const Tensor& o) noexcept : tape_(o.tape_), index_(o.index_), generation_(o.generation_) {
    if (o.storage_) storage_ = o.storage_;
  }
  Tensor(Tensor&& o) noexcept : tape_(o.tape_), index_(o.index_), generation_(o.generation_) {
    if (o.storage_) storage_ = std::move(o.storage_);
  }
  Tensor& operator=(const Tensor& o) noexcept {
    tape_ = o.tape_;
    index_ = o.index_;
    generation_ = o.generation_;
    if (storage_ || o.storage_) storage_ = o.storage_;
    return *this;
  }
  Tensor& operator=(Tensor&& o) noexcept {
    tape_ = o.tape_;
    index_ = o.index_;
    generation_ = o.generation_;
    if (storage_ || o.storage_) storage_ = std::move(o.storage_);
    return *this;
  }
  ~Tensor() = default;

  /// A rank-2 constant from nested braces: Tensor<double>{{1, 2}, {3, 4}}. ValueError when the
  /// rows differ in length.
  Tensor(std::initializer_list<std::initializer_list<T>> rows)
      : Tensor(from_rows(rows), 2, false) {}

  /// A rank-2 constant copied from any Eigen matrix expression.
  template <class Derived>
  explicit Tensor(const Eigen::MatrixBase<Derived>& m) : Tensor(Matrix<T>(m), 2, false) {}

  /// A persistent tensor holding `value`, of the given rank (0, 1 or 2), with a gradient buffer
  /// when `requires_grad`.
  Tensor(Matrix<T> value, int rank, bool requires_grad) {
    check_rank(value.rows(), value.cols(), rank);
    storage_ = std::make_shared<detail::Storage<T>>();
    storage_->value = std::move(value);
    storage_->rank = rank;
    set_requires_grad(requires_grad);
  }

  /// A persistent tensor of `shape` filled with `fill`. The factories that take sizes throw
  /// ValueError for a negative size or one whose bytes no array could hold.
  static Tensor full(Shape shape, T fill) { return filled("Tensor::full", shape, fill); }
  static Tensor full(Index rows, Index cols, T fill) {
    return filled("Tensor::full", Shape::matrix(rows, cols), fill);
  }
  static Tensor zeros(Index rows, Index cols) {
    return filled("Tensor::zeros", Shape::matrix(rows, cols), T(0));
  }
  static Tensor zeros(Shape shape) { return filled("Tensor::zeros", shape, T(0)); }
  static Tensor ones(Index rows, Index cols) {
    return filled("Tensor::ones", Shape::matrix(rows, cols), T(1));
  }
  static Tensor ones(Shape shape) { return filled("Tensor::ones", shape, T(1)); }
  /// A rank-0 tensor.
  static Tensor scalar(T v) { return full(Shape::scalar(), v); }
  /// A rank-1 tensor (a row vector).
  static Tensor vector(std::initializer_list<T> values) {
    Matrix<T> m(1, static_cast<Index>(values.size()));
    Index j = 0;
    for (T v : values) m(0, j++) = v;
    return Tensor(std::move(m), 1, false);
  }
  /// Normal draws with the given mean and standard deviation, from `rng`.
  static Tensor randn(Shape shape, Rng& rng, T mean = 0, T stddev = 1) {
    check_shape("Tensor::randn", shape);
    Matrix<T> m(shape.rows, shape.cols);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(rng.normal(mean, stddev));
    return Tensor(std::move(m), shape.rank, false);
  }
  static Tensor randn(Index rows, Index cols, Rng& rng, T mean = 0, T stddev = 1) {
    return randn(Shape::matrix(rows, cols), rng, mean, stddev);
  }
  /// Uniform draws in [a, b), from `rng`.
  static Tensor uniform(Shape shape, Rng& rng, T a = 0, T b = 1) {
    check_shape("Tensor::uniform", shape);
    Matrix<T> m(shape.rows, shape.cols);
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(rng.uniform(a, b));
    return Tensor(std::move(m), shape.rank, false);
  }
  static Tensor uniform(Index rows, Index cols, Rng& rng, T a = 0, T b = 1) {
    return uniform(Shape::matrix(rows, cols), rng, a, b);
  }
  /// A persistent tensor with a gradient buffer: what layers hold as weights.
  static Tensor parameter(Matrix<T> value, int rank = 2) {
    return Tensor(std::move(value), rank, true);
  }

  /// False for a default-constructed tensor.
  bool defined() const noexcept { return tape_ != nullptr || storage_ != nullptr; }
  Shape shape() const {
    if (storage_) return Shape{storage_->value.rows(), storage_->value.cols(), storage_->rank};
    return node().shape();
  }
  Index rows() const { return shape().rows; }
  Index cols() const { return shape().cols; }
  Index size() const { return shape().size(); }
  int rank() const { return shape().rank; }

  /// True for parameters, tape variables and results that depend on them.
  bool requires_grad() const {
    if (storage_) return storage_->requires_grad;
    return tape_ ? node().requires_grad : false;
  }
  /// True when this tensor owns persistent storage (data, parameters); false for tape nodes.
  bool is_persistent() const noexcept { return storage_ != nullptr; }
  /// The tape this tensor was recorded on, or nullptr for a persistent tensor.
  Tape<T>* tape() const noexcept { return tape_; }
  /// The op that produced this tensor ("parameter", "constant", "matmul", ...).
  const char* op_name() const {
    if (storage_) return storage_->requires_grad ? "parameter" : "constant";
    return detail::op_name(node().op);
  }

  /// Read-only view of the values (no copy).
  ConstMatrixMap<T> value() const {
    if (storage_) return {storage_->value.data(), storage_->value.rows(), storage_->value.cols()};
    require_defined("value()");
    const auto& n = node();
    return {n.value, n.rows, n.cols};
  }
  /// Mutable view of a persistent tensor's values (for initialisers and optimisers).
  MatrixMap<T> mutable_value() {
    require_persistent("mutable_value()");
    return {storage_->value.data(), storage_->value.rows(), storage_->value.cols()};
  }
  /// The single value of a tensor of size 1.
  T item() const {
    const auto v = value();
    if (v.size() != 1) [[unlikely]]
      throw_not_single();
    return v(0, 0);
  }
  /// A copy of the values.
  Matrix<T> to_matrix() const { return Matrix<T>(value()); }

  /// The gradient: accumulated over backward calls for a parameter (until zero_grad), from the
  /// last backward for a tape variable or for an intermediate that called retain_grad().
  ConstMatrixMap<T> grad() const;
  /// Mutable view of a parameter's gradient buffer (for clipping).
  MatrixMap<T> mutable_grad() {
    require_persistent("mutable_grad()");
    if (!storage_->requires_grad) throw UsageError("mutable_grad(): tensor has no gradient");
    return {storage_->grad.data(), storage_->grad.rows(), storage_->grad.cols()};
  }
  /// Zeroes a parameter's gradient buffer.
  void zero_grad() {
    if (storage_ && storage_->requires_grad) storage_->grad.setZero();
  }
  /// Turns a persistent tensor into a parameter (with a zero gradient buffer) or back. Off
  /// freezes a parameter, as PyTorch's requires_grad_(False): backward gives it no gradient and
  /// optimisers and clipping skip it (its value and optimiser state stay as they are) until it
  /// is switched on again. Switching on a parameter that already requires a gradient keeps its
  /// gradient. Ops recorded before the switch keep the setting they saw; a parameter frozen
  /// between forward and backward gets no gradient from that backward.
  Tensor& set_requires_grad(bool on) {
    require_persistent("set_requires_grad()");
    auto& s = *storage_;
    if (on == s.requires_grad) return *this;
    s.requires_grad = on;
    s.parameter = s.parameter || on;
    s.leaf_tape = nullptr;  // the next op records a fresh leaf with the new setting
    if (on)
      s.grad = Matrix<T>::Zero(s.value.rows(), s.value.cols());
    else
      s.grad.resize(0, 0);
    return *this;
  }
  /// True for a persistent tensor that is or was a parameter (Tensor::parameter, or
  /// set_requires_grad(true)): a trainable or a frozen parameter, not data.
  bool is_parameter() const noexcept { return storage_ && storage_->parameter; }

  /// Calls `fn` with this tensor's gradient during backward. On a tape node it fires when the
  /// sweep reaches the node (its gradient is then complete) and lasts until the tape is reset; on
  /// a parameter it fires with the gradient of each backward call, before accumulation.
  HookHandle register_hook(HookFn fn);
  /// On a parameter: calls `fn` with the parameter's accumulated gradient (what grad() returns)
  /// once per backward call that reaches it, right after its accumulation is complete, while it
  /// is still in cache (PyTorch's register_post_accumulate_grad_hook). Unlike register_hook it
  /// does not give the parameter a gradient buffer of its own. Throws UsageError on a tensor
  /// that is not a parameter.
  HookHandle register_post_accumulate_hook(HookFn fn);
  /// Keeps the gradient of an intermediate readable through grad() after backward.
  HookHandle retain_grad();

  /// The name of a persistent tensor given by its module ("3.weight"), or "".
  const std::string& name() const {
    static const std::string none;
    return storage_ ? storage_->name : none;
  }
  /// Names a persistent tensor (modules do this for their parameters).
  Tensor& set_name(std::string n) {
    require_persistent("set_name()");
    storage_->name = std::move(n);
    return *this;
  }

  /// A persistent copy of the values, cut from the tape (no gradient).
  Tensor detach() const { return Tensor(to_matrix(), rank(), false); }

  // --- for the library's own components (ops, optimisers, diagnostics) ---
  /// Node index on its tape (tape tensors only).
  std::uint32_t node_index() const noexcept { return index_; }
  /// The persistent storage, or nullptr for a tape node.
  const std::shared_ptr<detail::Storage<T>>& storage() const noexcept { return storage_; }
  /// Same handle identity (same node or same storage).
  bool same_as(const Tensor& other) const noexcept {
    return storage_ ? storage_ == other.storage_
                    : (tape_ == other.tape_ && index_ == other.index_ &&
                       generation_ == other.generation_ && tape_ != nullptr);
  }

 private:
  friend class Tape<T>;
  friend class detail::Recorder<T>;

  Tensor(Tape<T>* tape, std::uint32_t index, std::uint64_t generation)
      : tape_(tape), index_(index), generation_(generation) {}

  static void check_rank(Index rows, Index cols, int rank) {
    if (rows < 0 || cols < 0) [[unlikely]]
      throw_bad_extent("tensor", rows, cols);
    if (rank < 0 || rank > 2 || (rank == 0 && (rows != 1 || cols != 1)) || (rank == 1 && rows != 1))
        [[unlikely]]
      throw_bad_rank(rows, cols, rank);
  }
  // A factory's shape: sizes first (before anything is allocated), then the rank.
  static void check_shape(const char* what, const Shape& s) {
    detail::check_extent<T>(what, s.rows, s.cols);
    check_rank(s.rows, s.cols, s.rank);
  }
  static Tensor filled(const char* what, const Shape& shape, T fill) {
    check_shape(what, shape);
    return Tensor(Matrix<T>::Constant(shape.rows, shape.cols, fill), shape.rank, false);
  }
  static Matrix<T> from_rows(std::initializer_list<std::initializer_list<T>> rows);
  void require_defined(const char* what) const {
    if (!defined()) [[unlikely]]
      throw_undefined(what);
  }
  void require_persistent(const char* what) const {
    if (!storage_) [[unlikely]]
      throw_not_persistent(what);
  }
  // The error paths, out of line (and, with GRADSCOPE_EXTERN_TEMPLATES, compiled once): the
  // checks above are inlined into every op, their messages need not be.
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_bad_rank(Index rows, Index cols,
                                                                    int rank);
  [[noreturn]] static void throw_bad_extent(const char* what, Index rows, Index cols) {
    detail::throw_bad_extent(what, rows, cols, sizeof(T));
  }
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_undefined(const char* what);
  [[noreturn, gnu::cold, gnu::noinline]] static void throw_not_persistent(const char* what);
  [[noreturn, gnu::cold, gnu::noinline]] void throw_not_single() const;
  // The node of a tape tensor; checks that its tape was not reset. Inlined: every op calls it.
  [[gnu::always_inline]] inline detail::Node<T>& node() const;

  Tape<T>* tape_ = nullptr;
  std::uint32_t index_ = 0;
  std::uint64_t generation_ = 0;
  std::shared_ptr<detail::Storage<T>> storage_;
};

template <Scalar T>
void Tensor<T>::throw_bad_rank(Index rows, Index cols, int rank) {
  throw ShapeError(detail::cat("tensor: rank ", rank, " cannot hold a ", rows, " x ", cols,
                               " value (rank 0 is 1 x 1, rank 1 is 1 x n)"));
}
template <Scalar T>
Matrix<T> Tensor<T>::from_rows(std::initializer_list<std::initializer_list<T>> rows) {
  // Eigen's own nested-list constructor only asserts equal lengths, and writes past the end of
  // its storage in a release build when a later row is longer.
  const std::size_t cols = rows.size() ? rows.begin()->size() : 0;
  Matrix<T> m(static_cast<Index>(rows.size()), static_cast<Index>(cols));
  Index i = 0;
  for (const auto& row : rows) {
    if (row.size() != cols)
      throw ValueError(detail::cat("tensor: row ", i, " of the braces has ", row.size(),
                                   " values, row 0 has ", cols, " (rows must have equal lengths)"));
    Index j = 0;
    for (T v : row) m(i, j++) = v;
    ++i;
  }
  return m;
}
template <Scalar T>
void Tensor<T>::throw_undefined(const char* what) {
  throw UsageError(detail::cat(what, " on an undefined tensor"));
}
template <Scalar T>
void Tensor<T>::throw_not_persistent(const char* what) {
  throw UsageError(detail::cat(what, " needs a persistent tensor (a parameter or data); this ",
                               "one is a tape node"));
}
template <Scalar T>
void Tensor<T>::throw_not_single() const {
  throw UsageError(detail::cat("item() needs a tensor of one element; shape is ", shape()));
}

/// A tensor with a hierarchical name ("4.inner.0.weight"): parameters, buffers, optimiser state.
template <Scalar T>
struct NamedTensor {
  std::string name;
  Tensor<T> tensor;
};

}  // namespace gradscope

#include "tape.hpp"
