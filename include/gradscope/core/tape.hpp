#pragma once
/// Tape<T>: the linear (Wengert) list that records ops and sweeps them backwards.

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "detail/arena.hpp"
#include "detail/node.hpp"
#include "mode.hpp"
#include "tensor.hpp"

namespace gradscope {

namespace detail {
inline std::uint64_t next_generation() noexcept {
  static std::atomic<std::uint64_t> counter{1};
  return counter.fetch_add(1, std::memory_order_relaxed);
}
template <Scalar T>
void backward_node(Tape<T>& tape, Node<T>& node);
template <Scalar T>
GRADSCOPE_ALWAYS_INLINE inline bool backward_pointwise_1x1(Tape<T>& tape, Node<T>& node);
struct TapeToken {
  std::uint64_t generation = 0;
};
/// A custom op's record on its tape (core/custom_op.hpp): its name and its backward rule, owned
/// by the tape until reset().
template <Scalar T>
struct CustomEntryBase {
  explicit CustomEntryBase(std::string n) : name(std::move(n)) {}
  virtual ~CustomEntryBase() = default;
  /// Accumulates the gradients of node n's inputs from n's gradient.
  virtual void backward(Tape<T>& tape, Node<T>& n) = 0;
  std::string name;
};
}  // namespace detail

/// What backward does when a tape looks like a training loop that never calls reset(): see
/// Tape::set_reset_check.
enum class ResetCheck {
  error,  ///< throw UsageError (the default in builds without NDEBUG)
  warn,   ///< print one warning per tape to stderr and go on (the default with NDEBUG)
  off,    ///< say nothing
};

/// Records ops on tensors and computes gradients by one reverse sweep.
///
/// While a Tape is alive it is the current tape of its thread: ops on parameters record onto it.
/// Values and gradients live in an arena owned by the tape; reset() forgets the recorded ops but
/// keeps the memory, so a training step of a fixed network allocates nothing from the second
/// step on. Tensors recorded before a reset() throw UsageError when used afterwards.
template <Scalar T>
class Tape {
 public:
  Tape();
  ~Tape();
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  /// The innermost live tape of this thread, or nullptr.
  static Tape* current() noexcept { return detail::current_tape<T>(); }

  /// A leaf whose gradient is computed by backward and read with grad().
  Tensor<T> variable(const Eigen::Ref<const Matrix<T>>& value, int rank = 2) {
    return leaf(value, rank, detail::Op::variable, true);
  }
  /// A leaf without gradient.
  Tensor<T> constant(const Eigen::Ref<const Matrix<T>>& value, int rank = 2) {
    return leaf(value, rank, detail::Op::constant, false);
  }

  /// Back-propagates from a scalar `loss`: fills parameter gradients (accumulating), tape
  /// variables' gradients, and fires hooks.
  void backward(const Tensor<T>& loss);
  /// Back-propagates from a non-scalar `y`, with dL/dy = `seed` (same shape as y).
  void backward(const Tensor<T>& y, const Eigen::Ref<const Matrix<T>>& seed);

  /// Forgets every recorded op (their tensors become invalid) and keeps the memory for reuse.
  void reset() {
    nodes_.clear();
    arena_.reset();
    free_.clear();
    kept_.clear();
    hooks_.clear();
    custom_.clear();
    token_->generation = generation_ = detail::next_generation();
    swept_to_ = 0;
    fresh_backwards_ = 0;
  }

  /// Backward passes since a reset() on graphs recorded wholly after the previous backward
  /// (reaching nothing recorded before it but leaves) after which the reset check reacts: the
  /// pattern of a training loop that never calls reset() and keeps every step's graph.
  static constexpr std::uint32_t fresh_backward_limit = 8;
  /// How backward reacts to that pattern (see ResetCheck). Legitimate uses stay silent:
  /// backward called again on the same loss, losses built from what was recorded before the
  /// previous backward, up to fresh_backward_limit micro-batches accumulated per reset().
  void set_reset_check(ResetCheck check) noexcept { reset_check_ = check; }
  ResetCheck reset_check() const noexcept { return reset_check_; }

  /// Number of recorded nodes (leaves included).
  std::size_t size() const noexcept { return nodes_.size(); }
  /// Bytes the arena reserved from the heap (kept across reset()).
  std::size_t arena_capacity() const { return arena_.capacity(); }
  /// Bytes of values and gradients handed out since the last reset().
  std::size_t arena_used() const { return arena_.used(); }
  /// Changes at every reset(); tensors remember the generation they were recorded in.
  std::uint64_t generation() const noexcept { return generation_; }

  /// One line per node: index, op, shape, inputs and label. For debugging.
  std::string listing() const;

  // --- for ops and the backward table (not part of the user API) ---
  detail::Node<T>& node(std::uint32_t i) noexcept { return nodes_[i]; }
  const detail::Node<T>& node(std::uint32_t i) const noexcept { return nodes_[i]; }
  detail::Arena& arena() noexcept { return arena_; }

  /// Appends a node built in place from these fields (the rest zero) and returns its index. (A
  /// node assembled on the stack and then copied in stalls on store forwarding, and a
  /// value-initialised one filled afterwards is zeroed with `rep stosq`: each cost a third or
  /// more of recording an op.)
  GRADSCOPE_ALWAYS_INLINE std::uint32_t append(detail::Op op, Index rows, Index cols,
                                               std::uint8_t rank, bool requires_grad, T* value,
                                               const char* label = nullptr,
                                               std::uint32_t in0 = detail::no_input,
                                               std::uint32_t in1 = detail::no_input,
                                               std::uint32_t in2 = detail::no_input) {
    return nodes_.append(op, rows, cols, rank, requires_grad, value, label, in0, in1, in2);
  }
  /// The gradient buffer of node i, allocated and zeroed on first use. A parameter without
  /// gradient hooks accumulates straight into its persistent gradient (no copy, no extra pass);
  /// one with hooks gets a buffer of its own, so its hooks see this backward's contribution.
  T* grad_buffer(std::uint32_t i) {
    const auto [p, fresh] = grad_target(i);
    if (fresh)
      std::memset(static_cast<void*>(p), 0, static_cast<std::size_t>(nodes_[i].size()) * sizeof(T));
    return p;
  }
  /// The gradient buffer of node i for a backward rule, and whether this is its first
  /// contribution: then it was just allocated, uninitialised, and the rule assigns to it.
  GRADSCOPE_ALWAYS_INLINE std::pair<T*, bool> grad_target(std::uint32_t i) {
    auto& n = nodes_[i];
    if (n.grad) return {n.grad, false};
    auto* s = n.op == detail::Op::parameter ? static_cast<detail::Storage<T>*>(n.aux) : nullptr;
    if (s && s->hooks.empty() && s->requires_grad) {
      n.grad = s->grad.data();  // accumulates onto earlier backward calls
      return {n.grad, false};
    }
    n.grad = take_buffer(n.size());
    return {n.grad, true};
  }
  /// As grad_target, for the rule of an elementwise op `n` of one input `i` (same shape): when
  /// the input has no gradient yet and is not a parameter, and n's gradient is not retained for
  /// the user, it takes n's gradient buffer itself, which is dead once n's rule has run (the rule
  /// reads each element of it before it writes the same element), and n forgets it. A chain of
  /// elementwise ops then back-propagates in one buffer, with no buffer taken or released per op.
  GRADSCOPE_ALWAYS_INLINE std::pair<T*, bool> pointwise_target(detail::Node<T>& n,
                                                               std::uint32_t i) {
    auto& in = nodes_[i];
    if (!in.grad && !n.retain && in.op != detail::Op::parameter) {
      T* p = n.grad;
      in.grad = p;
      n.grad = nullptr;
      return {p, true};
    }
    return grad_target(i);
  }
  /// The leaf node standing for a persistent tensor on this tape (one per storage per reset).
  std::uint32_t leaf_for(const std::shared_ptr<detail::Storage<T>>& s) {
    if (s->leaf_tape == this && s->leaf_generation == generation_) return s->leaf_index;
    const auto index = append(s->requires_grad ? detail::Op::parameter : detail::Op::constant,
                              s->value.rows(), s->value.cols(), static_cast<std::uint8_t>(s->rank),
                              s->requires_grad, s->value.data());
    auto& n = nodes_[index];
    n.aux = s.get();
    kept_.push_back(s);
    s->leaf_tape = this;
    s->leaf_generation = generation_;
    s->leaf_index = index;
    return index;
  }
  /// Checks that `t` was recorded on this tape since the last reset. (Its index is then valid:
  /// only the tape and the Recorder make tape tensors, from indices of nodes they appended, and
  /// nodes are only removed by reset(), which starts a new generation.)
  GRADSCOPE_ALWAYS_INLINE void check_live(const Tensor<T>& t, const char* what) const {
    if (t.tape_ != this || t.generation_ != generation_) [[unlikely]]
      throw_not_live(t, what);
  }

  HookHandle add_hook(std::uint32_t index, typename Tensor<T>::HookFn fn);
  HookHandle retain(std::uint32_t index);
  /// Keeps a custom op's entry until reset() and returns it (for the node's aux2).
  detail::CustomEntryBase<T>* keep_custom(std::unique_ptr<detail::CustomEntryBase<T>> entry) {
    custom_.push_back(std::move(entry));
    return custom_.back().get();
  }

 private:
  Tensor<T> leaf(const Eigen::Ref<const Matrix<T>>& value, int rank, detail::Op op, bool grad) {
    Tensor<T>::check_rank(value.rows(), value.cols(), rank);
    T* data = arena_.allocate_array<T>(static_cast<std::size_t>(value.size()));
    const auto index =
        append(op, value.rows(), value.cols(), static_cast<std::uint8_t>(rank), grad, data);
    MatrixMap<T>(data, value.rows(), value.cols()) = value;
    return Tensor<T>(this, index, generation_);
  }

  [[noreturn, gnu::cold, gnu::noinline]] void throw_not_live(const Tensor<T>& t,
                                                             const char* what) const;

  void check_root(const Tensor<T>& y, const char* what) const;

  void fire_tape_hooks(std::uint32_t i, const ConstMatrixMap<T>& g) {
    // Index loop: a hook may register further hooks (push_back) without invalidating us.
    for (std::size_t k = 0; k < hooks_.size(); ++k)
      if (hooks_[k].node == i) hooks_[k].fn(g);
  }

  void sweep(std::uint32_t root, const Eigen::Ref<const Matrix<T>>* seed);

  // Gradient buffers are recycled within a sweep: once a node's rule has run, its gradient is
  // dead (unless retained for the user, or handed to an input by the rule), and the next
  // gradient of the same size reuses it. The sweep then works in a few cache-resident buffers
  // instead of a fresh one per node; the list keeps its capacity across reset().
  T* take_buffer(Index size) {
    const std::size_t n = free_.size(), stop = n > 8 ? n - 8 : 0;
    for (std::size_t k = n; k-- > stop;)
      if (free_[k].first == size) {
        T* p = free_[k].second;
        free_[k] = free_.back();
        free_.pop_back();
        return p;
      }
    return arena_.allocate_array<T>(static_cast<std::size_t>(size));
  }
  void release_buffer(detail::Node<T>& n) {
    if (n.retain || !n.grad) return;  // kept for the user, or handed to an input already
    for (auto k : n.in)
      if (k != detail::no_input && nodes_[k].grad == n.grad) {  // passed through: the input's now
        n.grad = nullptr;
        return;
      }
    free_.emplace_back(n.size(), n.grad);
    n.grad = nullptr;
  }

  void check_backward(const detail::Node<T>& n) const;

  /// Called before a backward from `root` on a tape that already ran one since its reset().
  void check_growth(std::uint32_t root);

  detail::NodeList<T> nodes_;
  detail::Arena arena_;
  std::vector<std::pair<Index, T*>> free_;  // recycled gradient buffers (see take_buffer)
  std::vector<std::shared_ptr<detail::Storage<T>>> kept_;  // persistent inputs stay alive
  std::vector<detail::HookEntry<T>> hooks_;
  std::vector<std::unique_ptr<detail::CustomEntryBase<T>>> custom_;  // see keep_custom
  std::shared_ptr<detail::TapeToken> token_;
  std::uint64_t generation_ = 0;
  std::uint64_t next_hook_id_ = 1;
  Tape* previous_ = nullptr;
  std::uint32_t swept_to_ = 0;         // nodes at the end of the last backward since reset (or 0)
  std::uint32_t fresh_backwards_ = 0;  // backward passes on fresh graphs since reset
#ifdef NDEBUG
  ResetCheck reset_check_ = ResetCheck::warn;
#else
  ResetCheck reset_check_ = ResetCheck::error;
#endif
  bool warned_ = false;
};

template <Scalar T>
Tape<T>::Tape() : token_(std::make_shared<detail::TapeToken>()) {
  nodes_.reserve(256);
  token_->generation = generation_ = detail::next_generation();
  previous_ = detail::current_tape<T>();
  detail::current_tape<T>() = this;
}

template <Scalar T>
Tape<T>::~Tape() {
  token_->generation = 0;
  // Unlink from the thread's stack of live tapes wherever we are in it: tapes held by smart
  // pointers may be destroyed out of order, and none may be left pointing at us.
  Tape*& top = detail::current_tape<T>();
  if (top == this) {
    top = previous_;
    return;
  }
  for (Tape* t = top; t; t = t->previous_) {
    if (t->previous_ == this) {
      t->previous_ = previous_;
      break;
    }
  }
}

template <Scalar T>
void Tape<T>::backward(const Tensor<T>& loss) {
  check_root(loss, "backward(loss)");
  if (nodes_[loss.index_].rows * nodes_[loss.index_].cols != 1)
    throw UsageError(detail::cat("backward(loss) needs a scalar; the loss has shape ",
                                 nodes_[loss.index_].shape(),
                                 " (reduce it with sum/mean, or pass a seed: backward(y, seed))"));
  if (swept_to_ != 0) [[unlikely]]
    check_growth(loss.index_);
  sweep(loss.index_, nullptr);
  swept_to_ = static_cast<std::uint32_t>(nodes_.size());
}

template <Scalar T>
void Tape<T>::backward(const Tensor<T>& y, const Eigen::Ref<const Matrix<T>>& seed) {
  check_root(y, "backward(y, seed)");
  const auto& n = nodes_[y.index_];
  if (seed.rows() != n.rows || seed.cols() != n.cols)
    throw ShapeError(detail::cat("backward(y, seed): seed has shape [", seed.rows(), ", ",
                                 seed.cols(), "] but y has shape ", n.shape()));
  if (swept_to_ != 0) [[unlikely]]
    check_growth(y.index_);
  sweep(y.index_, &seed);
  swept_to_ = static_cast<std::uint32_t>(nodes_.size());
}

template <Scalar T>
void Tape<T>::check_growth(std::uint32_t root) {
  if (reset_check_ == ResetCheck::off || root < swept_to_) return;
  // A graph that uses anything but leaves recorded before the last backward is a further loss
  // of the same step (several heads, rows of a Jacobian), not the next step of a loop.
  for (std::uint32_t i = swept_to_; i <= root; ++i)
    for (const auto k : nodes_[i].in)
      if (k != detail::no_input && k < swept_to_ && !nodes_[k].is_leaf()) return;
  if (++fresh_backwards_ < fresh_backward_limit) return;
  if (reset_check_ == ResetCheck::warn && warned_) return;
  const std::string message = detail::cat(
      "backward: this tape ran backward on ", fresh_backwards_ + 1,
      " graphs since its last reset(), each recorded after the previous backward, and holds ",
      nodes_.size(), " nodes and ", arena_.used(),
      " bytes of values and gradients: a training loop that does not call tape.reset() keeps "
      "every step's graph, and its memory grows without bound. Call tape.reset() at the start "
      "of each step (or create the Tape inside the loop); to accumulate more graphs on one tape "
      "on purpose, call tape.set_reset_check(gs::ResetCheck::off)");
  if (reset_check_ == ResetCheck::error) throw UsageError(message);
  warned_ = true;
  std::fprintf(stderr, "gradscope warning: %s\n", message.c_str());
}

template <Scalar T>
std::string Tape<T>::listing() const {
  std::ostringstream os;
  for (std::uint32_t i = 0; i < nodes_.size(); ++i) {
    const auto& n = nodes_[i];
    os << i << ' ' << detail::op_name(n.op);
    if (n.op == detail::Op::custom)
      os << ':' << static_cast<const detail::CustomEntryBase<T>*>(n.aux2)->name;
    os << ' ' << n.shape();
    for (auto k : detail::inputs_of(n)) os << " <- " << k;
    if (n.label) os << "  @" << n.label;
    os << '\n';
  }
  return os.str();
}

template <Scalar T>
HookHandle Tape<T>::add_hook(std::uint32_t index, typename Tensor<T>::HookFn fn) {
  const std::uint64_t id = next_hook_id_++;
  hooks_.push_back({id, index, std::move(fn)});
  nodes_[index].has_hooks = true;
  std::weak_ptr<detail::TapeToken> token = token_;
  const std::uint64_t generation = generation_;
  return HookHandle([this, token, generation, id, index] {
    auto t = token.lock();
    if (!t || t->generation != generation) return;  // tape reset or gone: nothing to remove
    bool others = false;
    for (std::size_t k = 0; k < hooks_.size();) {
      if (hooks_[k].id == id) {
        hooks_.erase(hooks_.begin() + static_cast<std::ptrdiff_t>(k));
        continue;
      }
      others = others || hooks_[k].node == index;
      ++k;
    }
    nodes_[index].has_hooks = others;
  });
}

template <Scalar T>
HookHandle Tape<T>::retain(std::uint32_t index) {
  nodes_[index].retain = true;
  std::weak_ptr<detail::TapeToken> token = token_;
  const std::uint64_t generation = generation_;
  return HookHandle([this, token, generation, index] {
    auto t = token.lock();
    if (t && t->generation == generation) nodes_[index].retain = false;
  });
}

template <Scalar T>
[[noreturn, gnu::cold, gnu::noinline]] void Tape<T>::throw_not_live(const Tensor<T>& t,
                                                                    const char* what) const {
  if (t.tape_ != this)
    throw UsageError(detail::cat(what, ": tensor was not recorded on this tape"));
  throw UsageError(detail::cat(what, ": tensor was recorded on a tape that has since been ",
                               "reset (or destroyed); record it again"));
}

template <Scalar T>
void Tape<T>::check_root(const Tensor<T>& y, const char* what) const {
  if (!y.defined()) throw UsageError(detail::cat(what, ": the tensor is undefined"));
  if (y.is_persistent())
    throw UsageError(detail::cat(
        what,
        ": the tensor was not recorded on a tape (no gradscope::Tape was alive on this "
        "thread when it was computed, or all its inputs were constants or under NoGrad)"));
  check_live(y, what);
  if (!nodes_[y.index_].requires_grad)
    throw UsageError(detail::cat(what, ": the tensor does not depend on any parameter or ",
                                 "variable that requires a gradient"));
}

template <Scalar T>
void Tape<T>::sweep(std::uint32_t root, const Eigen::Ref<const Matrix<T>>* seed) {
  // Every node, not only those up to the root: gradients are those of the last backward call.
  for (auto& n : nodes_) n.grad = nullptr;
  T* g0 = grad_buffer(root);
  auto& r = nodes_[root];
  if (seed)
    MatrixMap<T>(g0, r.rows, r.cols) = *seed;  // by coefficient: the seed may be strided
  else
    g0[0] = T(1);
  const bool anomaly = anomaly_enabled();
  for (std::uint32_t i = root + 1; i-- > 0;) {
    auto& n = nodes_[i];
    if (!n.grad || !n.requires_grad) continue;
    const ConstMatrixMap<T> g(n.grad, n.rows, n.cols);
    if (n.has_hooks) fire_tape_hooks(i, g);
    if (n.op == detail::Op::parameter) {
      auto* s = static_cast<detail::Storage<T>*>(n.aux);
      if (!s->requires_grad) continue;  // frozen after it was recorded: no gradient, no hooks
      if (n.grad != s->grad.data()) {   // else accumulated in place (see grad_target)
        for (std::size_t k = 0; k < s->hooks.size(); ++k) s->hooks[k].fn(g);
        s->grad += g;
      }
      if (!s->post_hooks.empty()) {
        const ConstMatrixMap<T> total(s->grad.data(), s->grad.rows(), s->grad.cols());
        for (std::size_t k = 0; k < s->post_hooks.size(); ++k) s->post_hooks[k].fn(total);
      }
      continue;
    }
    if (n.is_leaf()) continue;
    if (n.rows != 1 || n.cols != 1 || !detail::backward_pointwise_1x1(*this, n))
      detail::backward_node(*this, n);
    if (anomaly) check_backward(n);
    release_buffer(n);
  }
}

template <Scalar T>
void Tape<T>::check_backward(const detail::Node<T>& n) const {
  const auto inputs = detail::inputs_of(n);
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const auto& in = nodes_[inputs[k]];
    if (!in.grad) continue;
    if (!detail::all_finite(in.grad, in.rows * in.cols)) {
      std::ostringstream os;
      os << "non-finite gradient in backward of '" << detail::op_name(n.op) << "' flowing to input "
         << k << "; input shapes";
      for (auto j : inputs) os << ' ' << nodes_[j].shape();
      os << ", output " << n.shape();
      if (n.label) os << ", at '" << n.label << "'";
      throw NumericalError(os.str(), detail::op_name(n.op), "backward", n.label ? n.label : "");
    }
  }
}

// --- Tensor members that need the Tape ---

template <Scalar T>
detail::Node<T>& Tensor<T>::node() const {
  if (!tape_) throw UsageError("operation on an undefined tensor");
  tape_->check_live(*this, "tensor");
  return tape_->node(index_);
}

template <Scalar T>
ConstMatrixMap<T> Tensor<T>::grad() const {
  if (storage_) {
    if (!storage_->requires_grad)
      throw UsageError("grad(): this persistent tensor does not require a gradient");
    return {storage_->grad.data(), storage_->grad.rows(), storage_->grad.cols()};
  }
  auto& n = node();
  if (!n.requires_grad)
    throw UsageError(detail::cat("grad(): tensor (op '", detail::op_name(n.op),
                                 "') does not require a gradient"));
  if (!n.is_leaf() && !n.retain)
    throw UsageError(detail::cat("grad(): the gradient of an intermediate tensor (op '",
                                 detail::op_name(n.op),
                                 "') is not kept; call retain_grad() on it before backward"));
  return {tape_->grad_buffer(index_), n.rows, n.cols};
}

template <Scalar T>
HookHandle Tensor<T>::register_hook(HookFn fn) {
  require_defined("register_hook()");
  if (storage_) {
    auto& s = *storage_;
    if (!s.requires_grad)
      throw UsageError("register_hook(): this persistent tensor does not require a gradient");
    const std::uint64_t id = s.next_hook_id++;
    s.hooks.push_back({id, 0, std::move(fn)});
    std::weak_ptr<detail::Storage<T>> weak = storage_;
    return HookHandle([weak, id] {
      if (auto p = weak.lock()) std::erase_if(p->hooks, [id](const auto& h) { return h.id == id; });
    });
  }
  node();  // validity check
  return tape_->add_hook(index_, std::move(fn));
}

template <Scalar T>
HookHandle Tensor<T>::register_post_accumulate_hook(HookFn fn) {
  require_defined("register_post_accumulate_hook()");
  if (!storage_ || !storage_->requires_grad)
    throw UsageError(
        "register_post_accumulate_hook(): only a parameter (a persistent tensor that requires a "
        "gradient) accumulates a gradient; use register_hook on tape tensors");
  auto& s = *storage_;
  const std::uint64_t id = s.next_hook_id++;
  s.post_hooks.push_back({id, 0, std::move(fn)});
  std::weak_ptr<detail::Storage<T>> weak = storage_;
  return HookHandle([weak, id] {
    if (auto p = weak.lock())
      std::erase_if(p->post_hooks, [id](const auto& h) { return h.id == id; });
  });
}

template <Scalar T>
HookHandle Tensor<T>::retain_grad() {
  require_defined("retain_grad()");
  if (storage_) return HookHandle([] {});  // persistent gradients are always kept
  node();
  return tape_->retain(index_);
}

}  // namespace gradscope

#include "backward.hpp"
