#pragma once
/// The backward rules of every op, one case each: given the gradient G of an op's output Y,
/// accumulate the gradients of its inputs X0, X1, X2. This is the table to audit.

#include <cmath>
#include <limits>
#include <utility>

#include "detail/broadcast.hpp"
#include "detail/elementwise.hpp"
#include "detail/eval.hpp"
#include "detail/gemm.hpp"
#include "detail/node.hpp"
#include "tape.hpp"

namespace gradscope::detail {

/// The backward rules of the elementwise ops of one input. For such a node this calls
/// f(rule) and returns true, where input 0's gradient is rule(g, x, y): g the output's
/// gradient, x the input, y the output, as arrays of the node's shape (Eigen maps, or 1x1
/// fixed-size arrays for a one-element node); for any other node it returns false.
template <Scalar T, class F>
GRADSCOPE_ALWAYS_INLINE inline bool with_pointwise_rule(const Node<T>& n, F&& f) {
  const T a = n.alpha, b = n.beta;
  switch (n.op) {
    case Op::neg:
      f([](const auto& g, const auto&, const auto&) { return -g; });
      return true;
    case Op::scale:
      f([a](const auto& g, const auto&, const auto&) { return a * g; });
      return true;
    case Op::add_scalar:
      f([](const auto& g, const auto&, const auto&) { return g; });
      return true;
    case Op::mul:  // x * x, one input used twice: 2 x dx, in one pass
      if (n.in[0] != n.in[1]) return false;
      f([](const auto& g, const auto& x, const auto&) { return T(2) * g * x; });
      return true;
    case Op::pow:  // d x^p = p x^(p-1)
      f([a](const auto& g, const auto& x, const auto&) { return g * a * x.pow(a - T(1)); });
      return true;
    case Op::exp:
      f([](const auto& g, const auto&, const auto& y) { return g * y; });
      return true;
    case Op::log:
      f([](const auto& g, const auto& x, const auto&) { return g / x; });
      return true;
    case Op::sqrt:
      f([](const auto& g, const auto&, const auto& y) { return g * T(0.5) / y; });
      return true;
    case Op::square:
      f([](const auto& g, const auto& x, const auto&) { return T(2) * g * x; });
      return true;
    case Op::abs:
      f([](const auto& g, const auto& x, const auto&) { return g * x.sign(); });
      return true;
    case Op::clamp:  // the gradient passes where lo <= x <= hi
      f([a, b](const auto& g, const auto& x, const auto&) {
        return ((x >= a) && (x <= b)).select(g, T(0));
      });
      return true;
    case Op::sigmoid:
      f([](const auto& g, const auto&, const auto& y) { return g * y * (T(1) - y); });
      return true;
    case Op::tanh:
      f([](const auto& g, const auto&, const auto& y) { return g * (T(1) - y.square()); });
      return true;
    case Op::relu:
      f([](const auto& g, const auto& x, const auto&) { return (x > T(0)).select(g, T(0)); });
      return true;
    case Op::leaky_relu:
      f([a](const auto& g, const auto& x, const auto&) { return (x > T(0)).select(g, a * g); });
      return true;
    case Op::elu:  // for x <= 0: d alpha (e^x - 1) = alpha e^x = y + alpha
      f([a](const auto& g, const auto& x, const auto& y) {
        return (x > T(0)).select(g, g * (y + a));
      });
      return true;
    case Op::softplus:  // d log(1 + e^x) = sigmoid(x)
      f([](const auto& g, const auto& x, const auto&) { return g * x.logistic(); });
      return true;
    case Op::log1p:
      f([](const auto& g, const auto& x, const auto&) { return g / (T(1) + x); });
      return true;
    default:
      return false;
  }
}

/// The backward step of a one-element node of an elementwise op (with_pointwise_rule), in
/// scalar code: the rule is evaluated on 1x1 fixed-size arrays, which stay in registers. (The
/// general path builds Eigen expressions over maps; their copies go through the stack, and
/// reading them back stalls on store forwarding, which was most of the cost of a 1x1 step.)
/// Returns false for any other op, which backward_node then handles. Inlined into the sweep: the
/// call cost as much as the rule.
template <Scalar T>
GRADSCOPE_ALWAYS_INLINE inline bool backward_pointwise_1x1(Tape<T>& tape, Node<T>& n) {
  return with_pointwise_rule(n, [&](const auto& rule) GRADSCOPE_ALWAYS_INLINE {
    using A1 = Eigen::Array<T, 1, 1>;
    const A1 g(n.grad[0]), x(tape.node(n.in[0]).value[0]), y(n.value[0]);
    const T d = rule(g, x, y).coeff(0, 0);
    const auto [p, fresh] = tape.pointwise_target(n, n.in[0]);
    *p = fresh ? d : *p + d;
  });
}

// ---- the recurrent cells (core/recurrent_ops.hpp) ----
// Each cell's inputs are xg (all steps side by side; this step's block, aux2, gets the gate
// gradients), gh (this step's recurrent pre-activations) and the previous state. The gate
// gradients are computed once into gh's gradient (or a scratch block) and added to xg's block.
// Each rule works row by row: a row's gate gradients are computed and added where they go while
// the row is in cache (a pass over the whole [B, gates * H] per stage reads it several times).

/// Where a cell's gate gradients go: gh's gradient buffer when this is its first contribution
/// (then the rule writes them there directly), otherwise a scratch block of the arena.
template <Scalar T>
struct GateGradient {
  T* data;
  T* gh_grad;  // gh's gradient to add data to afterwards, or nullptr
};
template <Scalar T>
GateGradient<T> gate_gradient(Tape<T>& tape, const Node<T>& n, Index size) {
  const std::uint32_t gh = n.in[1];
  if (tape.node(gh).requires_grad) {
    const auto [p, fresh] = tape.grad_target(gh);
    if (fresh) return {p, nullptr};
    return {tape.arena().template allocate_array<T>(static_cast<std::size_t>(size)), p};
  }
  return {tape.arena().template allocate_array<T>(static_cast<std::size_t>(size)), nullptr};
}

/// Adds rows of a cell's gate gradients to gh's gradient (when they were not written there) and
/// to xg's block of this step.
template <Scalar T>
class GateScatter {
 public:
  GateScatter(Tape<T>& tape, const Node<T>& n, const GateGradient<T>& d, Index B, Index width)
      : gh_(d.gh_grad), width_(width) {
    const auto& xg = tape.node(n.in[0]);
    if (xg.requires_grad) {
      ld_ = xg.size() / B;
      xg_ = tape.grad_buffer(n.in[0]) + index_of_tag(n.aux2) * width;
    }
  }
  /// Adds row b of the gate gradients, `d` (width_ values).
  void add_row(const T* d, Index b) const {
    using Row = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
    using ConstRow = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;
    const ConstRow row(d, width_);
    if (gh_) Row(gh_ + b * width_, width_) += row;
    if (xg_) Row(xg_ + b * ld_, width_) += row;
  }

 private:
  T* gh_;
  T* xg_ = nullptr;  // this step's block of xg's gradient, rows ld_ apart
  Index ld_ = 0;
  Index width_;
};

template <Scalar T>
void backward_rnn_cell(Tape<T>& tape, Node<T>& n) {  // h = act(pre): dpre = g act'(pre)
  const Index B = n.rows, H = n.cols;
  const ConstMatrixMap<T> G(n.grad, B, H), Y(n.value, B, H);
  const GateGradient<T> d = gate_gradient(tape, n, B * H);
  const GateScatter<T> scatter(tape, n, d, B, H);
  MatrixMap<T> D(d.data, B, H);
  const bool tanh = static_cast<RnnNonlinearity>(n.mode) == RnnNonlinearity::tanh;
  for (Index b = 0; b < B; ++b) {
    const auto g = G.row(b).array(), h = Y.row(b).array();
    if (tanh)
      D.row(b).array() = g * (T(1) - h.square());
    else
      D.row(b).array() = (h > T(0)).select(g, T(0));
    scatter.add_row(D.row(b).data(), b);
  }
}

template <Scalar T>
void backward_lstm_cell(Tape<T>& tape, Node<T>& n) {
  const Index B = n.rows / 2, H = n.cols;
  const ConstMatrixMap<T> acts(static_cast<const T*>(n.aux), B, 5 * H);
  const ConstMatrixMap<T> G(n.grad, 2 * B, H);
  const auto& prev = tape.node(n.in[2]);
  const auto C_prev = ConstMatrixMap<T>(prev.value, prev.rows, H).bottomRows(B);
  // c_prev's gradient: the last B rows of prev's (its only rows when prev is c_0 [B, H]).
  T* gc = prev.requires_grad ? tape.grad_buffer(n.in[2]) + (prev.rows - B) * H : nullptr;
  const GateGradient<T> d = gate_gradient(tape, n, B * 4 * H);
  const GateScatter<T> scatter(tape, n, d, B, 4 * H);
  MatrixMap<T> D(d.data, B, 4 * H);
  for (Index b = 0; b < B; ++b) {
    const auto a = acts.row(b);
    const auto i = a.head(H).array(), f = a.segment(H, H).array();
    const auto g = a.segment(2 * H, H).array(), o = a.segment(3 * H, H).array();
    const auto tc = a.tail(H).array();
    const auto dh = G.row(b).array();
    auto drow = D.row(b);
    // dc, the gradient of this step's c (through c_out and through h), is kept in the g block
    // until the last use: dg = dc i (1 - g^2) is computed after di and df.
    auto dc = drow.segment(2 * H, H).array();
    dc = G.row(B + b).array() + dh * o * (T(1) - tc.square());
    if (gc) MatrixMap<T>(gc, B, H).row(b).array() += dc * f;
    drow.head(H).array() = dc * g * i * (T(1) - i);
    drow.segment(H, H).array() = dc * C_prev.row(b).array() * f * (T(1) - f);
    drow.segment(3 * H, H).array() = dh * tc * o * (T(1) - o);
    dc = dc * i * (T(1) - g.square());  // dg, in place
    scatter.add_row(drow.data(), b);
  }
}

template <Scalar T>
void backward_gru_cell(Tape<T>& tape, Node<T>& n) {
  const Index B = n.rows, H = n.cols;
  const ConstMatrixMap<T> acts(static_cast<const T*>(n.aux), B, 3 * H);
  const ConstMatrixMap<T> G(n.grad, B, H);
  const auto& hp = tape.node(n.in[2]);
  const ConstMatrixMap<T> Hp(hp.value, B, H);
  const auto& ghn = tape.node(n.in[1]);
  const auto GHn = ConstMatrixMap<T>(ghn.value, B, 3 * H).rightCols(H);
  // xg's gradient is [dr, dz, dn_pre], gh's [dr, dz, dn_pre r]: each row is computed as xg's in
  // a scratch row, then added (or, for a first contribution, assigned) where it goes.
  using Row = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
  Row D(tape.arena().template allocate_array<T>(static_cast<std::size_t>(3 * H)), 3 * H);
  const auto& xg = tape.node(n.in[0]);
  T* gx = nullptr;
  Index ldx = 0;
  if (xg.requires_grad) {
    ldx = xg.size() / B;
    gx = tape.grad_buffer(n.in[0]) + index_of_tag(n.aux2) * 3 * H;
  }
  auto [gg, gg_fresh] = ghn.requires_grad ? tape.grad_target(n.in[1]) : std::pair<T*, bool>{};
  auto [gp, gp_fresh] = hp.requires_grad ? tape.grad_target(n.in[2]) : std::pair<T*, bool>{};
  for (Index b = 0; b < B; ++b) {
    const auto a = acts.row(b);
    const auto r = a.head(H).array(), z = a.segment(H, H).array(), nn = a.tail(H).array();
    const auto dh = G.row(b).array();
    auto dn = D.tail(H);
    dn = dh * (T(1) - z) * (T(1) - nn.square());
    D.head(H) = dn * GHn.row(b).array() * r * (T(1) - r);
    D.segment(H, H) = dh * (Hp.row(b).array() - nn) * z * (T(1) - z);
    if (gx) Row(gx + b * ldx, 3 * H) += D;
    if (gg) {
      Row row(gg + b * 3 * H, 3 * H);
      if (gg_fresh) {
        row.head(2 * H) = D.head(2 * H);
        row.tail(H) = dn * r;
      } else {
        row.head(2 * H) += D.head(2 * H);
        row.tail(H) += dn * r;
      }
    }
    if (gp) {
      Row row(gp + b * H, H);
      if (gp_fresh)
        row = dh * z;
      else
        row += dh * z;
    }
  }
}

template <Scalar T>
void backward_node(Tape<T>& tape, Node<T>& n) {
  const ConstMatrixMap<T> G(n.grad, n.rows, n.cols);
  const ConstMatrixMap<T> Y(n.value, n.rows, n.cols);
  const auto X = [&](int k) {
    const auto& in = tape.node(n.in[k]);
    return ConstMatrixMap<T>(in.value, in.rows, in.cols);
  };
  const auto wants = [&](int k) { return n.in[k] != no_input && tape.node(n.in[k]).requires_grad; };
  // The gradient of input k, zero-filled on first use: for rules that accumulate piecewise.
  const auto GX = [&](int k) {
    const auto& in = tape.node(n.in[k]);
    return MatrixMap<T>(tape.grad_buffer(n.in[k]), in.rows, in.cols);
  };
  // The gradient of input k to write into, and whether this is its first contribution (then it
  // is uninitialised and the rule assigns instead of adding: no zero-fill, no read of zeros).
  const auto target = [&](int k) GRADSCOPE_ALWAYS_INLINE {
    const auto& in = tape.node(n.in[k]);
    const auto [p, fresh] = tape.grad_target(n.in[k]);
    return std::pair<MatrixMap<T>, bool>(MatrixMap<T>(p, in.rows, in.cols), fresh);
  };
  // Input k's gradient += e, an array expression of input k's shape.
  const auto acc = [&](int k, const auto& e) GRADSCOPE_ALWAYS_INLINE {
    auto [gx, fresh] = target(k);
    if (fresh)
      assign(gx.array(), e);
    else
      add_assign(gx.array(), e);
  };
  // Input k's gradient += op(a) op(b), a matrix product (detail::gemm; op: the transpose where
  // asked), assigned instead on its first contribution.
  const auto acc_product = [&](int k, const ConstMatrixMap<T>& a, bool ta,
                               const ConstMatrixMap<T>& b, bool tb) {
    auto [gx, fresh] = target(k);
    gemm(gx, a, ta, b, tb, !fresh);
  };
  // Input k's gradient += `full` (an array of the output's shape), reducing broadcast axes.
  const auto give = [&](int k, const auto& full) GRADSCOPE_ALWAYS_INLINE {
    const auto& in = tape.node(n.in[k]);
    const auto [p, fresh] = tape.grad_target(n.in[k]);
    accumulate_reduced<T>(p, in.rows, in.cols, full, fresh);
  };
  const Index R = n.rows, C = n.cols;
  // Where the gradient passes through unchanged (add, add_scalar), input k may take the output's
  // gradient buffer itself instead of a copy: when it has no gradient yet, has the output's
  // shape, is not a parameter, and the output's gradient is not retained for the user (later
  // contributions to the input change the shared buffer). Once per node, so two inputs never
  // share one buffer.
  bool shared = false;
  const auto pass_through = [&](int k) {
    auto& in = tape.node(n.in[k]);
    if (shared || n.retain || in.grad || in.op == Op::parameter || in.rows != R || in.cols != C)
      return false;
    in.grad = n.grad;
    shared = true;
    return true;
  };

  if (n.op == Op::add_scalar && pass_through(0)) return;
  // The rectifiers' gradient: a kernel of the CPU path (detail/elementwise.hpp).
  if (n.op == Op::relu || n.op == Op::leaky_relu || n.op == Op::elu) {
    const auto [p, fresh] = tape.pointwise_target(n, n.in[0]);  // may be G's buffer
    const Rectifier r = n.op == Op::relu         ? Rectifier::relu
                        : n.op == Op::leaky_relu ? Rectifier::leaky_relu
                                                 : Rectifier::elu;
    rectifier_backward(r, p, G.data(), X(0).data(), Y.data(), R * C, n.alpha, !fresh);
    return;
  }
  // The elementwise ops of one input (detail::with_pointwise_rule).
  if (with_pointwise_rule(n, [&](const auto& rule) GRADSCOPE_ALWAYS_INLINE {
        const auto [p, fresh] = tape.pointwise_target(n, n.in[0]);
        auto gx = MatrixMap<T>(p, R, C).array();  // may be G itself: coefficient-wise, no alias
        if (fresh)
          gx = rule(G.array(), X(0).array(), Y.array());
        else
          gx += rule(G.array(), X(0).array(), Y.array());
      }))
    return;

  switch (n.op) {
    case Op::add:  // d(a + b) = da + db
      if (wants(0) && !pass_through(0)) give(0, G.array());
      if (wants(1) && !pass_through(1)) give(1, G.array());
      break;
    case Op::sub:  // d(a - b) = da - db
      if (wants(0)) give(0, G.array());
      if (wants(1)) give(1, -G.array());
      break;
    case Op::mul:  // d(a b) = b da + a db (x * x is in the elementwise table)
      if (wants(0)) with_expanded(X(1), R, C, [&](const auto& b) { give(0, G.array() * b); });
      if (wants(1)) with_expanded(X(0), R, C, [&](const auto& a) { give(1, G.array() * a); });
      break;
    case Op::div:  // d(a / b) = da / b - (a / b) db / b
      with_expanded(X(1), R, C, [&](const auto& b) {
        if (wants(0)) give(0, G.array() / b);
        if (wants(1)) give(1, -G.array() * Y.array() / b);
      });
      break;
    case Op::matmul: {  // C = op(A) op(B); mode bit 0: A transposed, bit 1: B transposed
      const bool ta = n.mode & 1, tb = n.mode & 2;
      // C = A B: dA = G B^T, dB = A^T G. With op(A) = A^T, dA is the transpose of G op(B)^T,
      // i.e. op(B) G^T; with op(B) = B^T, dB is the transpose of op(A)^T G, i.e. G^T op(A).
      if (wants(0)) {
        if (ta)
          acc_product(0, X(1), tb, G, true);  // dA = op(B) G^T
        else
          acc_product(0, G, false, X(1), !tb);  // dA = G op(B)^T
      }
      if (wants(1)) {
        if (tb)
          acc_product(1, G, true, X(0), ta);  // dB = G^T op(A)
        else
          acc_product(1, X(0), !ta, G, false);  // dB = op(A)^T G
      }
      break;
    }
    case Op::transpose: {
      auto [gx, fresh] = target(0);
      if (fresh)
        gx.noalias() = G.transpose();
      else
        gx.noalias() += G.transpose();
      break;
    }
    case Op::sum:
    case Op::mean: {  // every input element receives its reduction's gradient times alpha (1/count)
      // Row by row: Eigen would evaluate a broadcast (colwise() += expression) into a heap
      // temporary, and a steady-state step must not allocate.
      auto gx = GX(0);
      switch (static_cast<Reduce>(n.mode)) {
        case Reduce::all:
          gx.array() += G(0, 0) * n.alpha;
          break;
        case Reduce::per_row:
          for (Index i = 0; i < gx.rows(); ++i) gx.row(i).array() += G(i, 0) * n.alpha;
          break;
        default:
          for (Index i = 0; i < gx.rows(); ++i) gx.row(i) += G.row(0) * n.alpha;
          break;
      }
      break;
    }
    case Op::softmax: {  // dx = y * (g - sum(g * y)) per row
      auto gx = GX(0);
      for (Index i = 0; i < R; ++i) {
        const T dot = G.row(i).dot(Y.row(i));
        gx.row(i).array() += Y.row(i).array() * (G.row(i).array() - dot);
      }
      break;
    }
    case Op::log_softmax: {  // dx = g - softmax(x) * sum(g) per row
      auto gx = GX(0);
      for (Index i = 0; i < R; ++i)
        gx.row(i).array() += G.row(i).array() - Y.row(i).array().exp() * G.row(i).sum();
      break;
    }
    case Op::linear: {  // Y = X W^T + b: dX = G W, dW = G^T X, db = column sums of G
      if (wants(0)) acc_product(0, G, false, X(1), false);
      if (wants(1)) acc_product(1, G, true, X(0), false);
      if (wants(2)) {  // row by row: Eigen's colwise().sum() of a row-major G was 2.7-8x slower
        auto [gb, fresh] = target(2);
        auto sum = gb.row(0);
        if (fresh)
          sum = G.row(0);
        else
          sum += G.row(0);
        for (Index i = 1; i < G.rows(); ++i) sum += G.row(i);
      }
      break;
    }
    case Op::softmax_cross_entropy: {  // dlogits = g / batch * (softmax - onehot)
      const auto& in = tape.node(n.in[0]);
      const ConstMatrixMap<T> P(static_cast<const T*>(n.aux), in.rows, in.cols);
      const int* labels = static_cast<const int*>(n.aux2);
      const T k = G(0, 0) * n.alpha;
      auto [gx, fresh] = target(0);
      if (fresh)
        gx = k * P;
      else
        gx += k * P;
      for (Index i = 0; i < in.rows; ++i) gx(i, labels[i]) -= k;
      break;
    }
    case Op::binary_cross_entropy_with_logits: {  // dx = g (sigmoid(x) - t) / n, dt = -g x / n
      const T k = G(0, 0) * n.alpha;
      if (wants(0)) acc(0, k * (X(0).array().logistic() - X(1).array()));
      if (wants(1)) acc(1, -k * X(0).array());
      break;
    }
    case Op::batch_norm: {  // columns are features; aux = xhat [N, C], aux2 = 1/sqrt(var + eps) [C]
      const ConstMatrixMap<T> xhat(static_cast<const T*>(n.aux), R, C);
      const auto is = ConstMatrixMap<T>(static_cast<const T*>(n.aux2), 1, C).row(0).array();
      const auto gamma = X(1).row(0).array();
      // Per-feature sums of G and of G xhat, accumulated row by row (rows are contiguous).
      MatrixMap<T> sums(tape.arena().template allocate_array<T>(static_cast<std::size_t>(3 * C)), 3,
                        C);
      auto sum_g = sums.row(0).array();
      auto sum_gx = sums.row(1).array();
      auto k = sums.row(2).array();
      sum_g.setZero();
      sum_gx.setZero();
      for (Index i = 0; i < R; ++i) {
        sum_g += G.row(i).array();
        sum_gx += G.row(i).array() * xhat.row(i).array();
      }
      if (wants(1)) acc(1, sum_gx);  // d gamma = sum(g xhat)
      if (wants(2)) acc(2, sum_g);   // d beta = sum(g)
      if (wants(0)) {
        auto [gx, fresh_target] = target(0);
        const bool fresh = fresh_target;  // clang before 16 cannot capture a structured binding
        const auto put = [fresh](auto&& row, const auto& e) {
          if (fresh)
            row = e;
          else
            row += e;
        };
        k = gamma * is;
        if (n.mode == 1) {  // eval: y = gamma (x - running_mean) invstd + beta
          for (Index i = 0; i < R; ++i) put(gx.row(i).array(), G.row(i).array() * k);
        } else {  // train: dx = gamma invstd (g - mean(g) - xhat mean(g xhat))
          const T inv_n = T(1) / static_cast<T>(R);
          sum_g *= inv_n;
          sum_gx *= inv_n;
          for (Index i = 0; i < R; ++i)
            put(gx.row(i).array(), k * (G.row(i).array() - sum_g - xhat.row(i).array() * sum_gx));
        }
      }
      break;
    }
    case Op::dropout: {  // y = x * mask, mask already holding 1 / (1 - p) or 0
      const ConstMatrixMap<T> mask(static_cast<const T*>(n.aux), R, C);
      acc(0, G.array() * mask.array());
      break;
    }
    case Op::reshape: {  // the same values in another shape: the gradient, reshaped
      auto& in = tape.node(n.in[0]);
      if (!in.grad && !n.retain && in.op != Op::parameter) {  // hand the buffer over, as add does
        in.grad = n.grad;
        n.grad = nullptr;
        break;
      }
      acc(0, ConstMatrixMap<T>(n.grad, in.rows, in.cols).array());
      break;
    }
    case Op::slice_rows: {  // aux: the first row
      GX(0).middleRows(index_of_tag(n.aux), R) += G;
      break;
    }
    case Op::slice_cols: {  // aux: the first column
      GX(0).middleCols(index_of_tag(n.aux), C) += G;
      break;
    }
    case Op::concat_rows:
    case Op::concat_cols: {  // each input receives its block of the gradient
      const bool rows = n.op == Op::concat_rows;
      Index at = 0;
      for (const std::uint32_t k : input_list(n)) {
        auto& in = tape.node(k);
        const Index extent = rows ? in.rows : in.cols;
        if (in.requires_grad) {
          const auto [p, fresh] = tape.grad_target(k);
          MatrixMap<T> gx(p, in.rows, in.cols);
          if (rows) {
            if (fresh)
              gx = G.middleRows(at, extent);
            else
              gx += G.middleRows(at, extent);
          } else if (fresh) {
            gx = G.middleCols(at, extent);
          } else {
            gx += G.middleCols(at, extent);
          }
        }
        at += extent;
      }
      break;
    }
    case Op::gather_rows: {  // scatter-add: a row picked several times sums its gradients
      const int* idx = static_cast<const int*>(n.aux);
      auto gx = GX(0);
      for (Index i = 0; i < R; ++i) gx.row(idx[i]) += G.row(i);
      break;
    }
    case Op::max: {  // aux: the flat input position of each maximum
      const Index* where = static_cast<const Index*>(n.aux);
      T* gx = tape.grad_buffer(n.in[0]);
      for (Index o = 0; o < n.size(); ++o) gx[where[o]] += n.grad[o];
      break;
    }
    case Op::logsumexp: {  // dx = g * exp(x - y) along the axis (zero where y is -inf)
      const auto x = X(0).array();
      auto gx = GX(0).array();
      const auto lane = [](T g, T y, const auto& xs, auto&& out) {
        if (std::isinf(y) && y < 0) return;
        // exp(-inf) is 0, exactly: a vectorised exp clamps its argument (5.6e-309 on SSE2).
        constexpr T minus_inf = -std::numeric_limits<T>::infinity();
        out += g * (xs == minus_inf).select(T(0), (xs - y).exp());
      };
      switch (static_cast<Reduce>(n.mode)) {
        case Reduce::all:
          lane(G(0, 0), Y(0, 0), x, gx);
          break;
        case Reduce::per_row:
          for (Index i = 0; i < x.rows(); ++i) lane(G(i, 0), Y(i, 0), x.row(i), gx.row(i));
          break;
        default:
          for (Index j = 0; j < x.cols(); ++j) lane(G(0, j), Y(0, j), x.col(j), gx.col(j));
          break;
      }
      break;
    }
    case Op::where:  // the gradient goes to a where the mask is nonzero, to b elsewhere
      with_expanded(X(0), R, C, [&](const auto& m) {
        if (wants(1)) give(1, (m != T(0)).select(G.array(), T(0)));
        if (wants(2)) give(2, (m != T(0)).select(T(0), G.array()));
      });
      break;
    case Op::custom:
      static_cast<CustomEntryBase<T>*>(n.aux2)->backward(tape, n);
      break;
    case Op::rnn_cell:
      backward_rnn_cell(tape, n);
      break;
    case Op::lstm_cell:
      backward_lstm_cell(tape, n);
      break;
    case Op::gru_cell:
      backward_gru_cell(tape, n);
      break;
    case Op::constant:
    case Op::variable:
    case Op::parameter:
    case Op::count_:
      break;
    case Op::neg:  // the elementwise ops of one input: done above (with_pointwise_rule)
    case Op::scale:
    case Op::add_scalar:
    case Op::pow:
    case Op::exp:
    case Op::log:
    case Op::sqrt:
    case Op::square:
    case Op::abs:
    case Op::clamp:
    case Op::sigmoid:
    case Op::tanh:
    case Op::relu:
    case Op::leaky_relu:
    case Op::elu:
    case Op::softplus:
    case Op::log1p:
      break;
  }
}

}  // namespace gradscope::detail
