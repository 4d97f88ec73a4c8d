#pragma once
/// The fused gate math of one step of a recurrent cell (RNN, LSTM, GRU), with PyTorch's gate
/// order: one tape node per step whose backward rule (core/backward.hpp) computes every gate's
/// gradient in one pass, instead of a dozen elementwise nodes. The matrix products stay outside:
///   xg = x W_ih^T + b_ih   (for all steps at once: [B, steps * gates * H], step t in its block)
///   gh = h W_hh^T + b_hh   ([B, gates * H], one product per step)
/// nn/recurrent.hpp builds the layers on these.

#include <cstdint>

#include "ops.hpp"

namespace gradscope {

namespace detail {
// Checks a cell's inputs: gh [B, gates * H]; xg of k steps, [B, k * gates * H] or (the same
// memory) [k * B, gates * H] with row b * k + t for step t of sequence b, and step < k. Returns H.
template <Scalar T>
Index check_cell(const char* op, Index gates, const Tensor<T>& xg, const Tensor<T>& gh,
                 Index step) {
  const Shape sx = xg.shape(), sh = gh.shape();
  if (sh.cols % gates != 0 || sh.cols == 0)
    throw ShapeError(
        cat(op, ": gh has shape ", sh, "; its width must be ", gates, " x the hidden size"));
  const Index width = sh.cols, B = sh.rows;
  const bool wide = sx.rows == B && sx.cols % width == 0;
  const bool tall = sx.cols == width && sx.rows % B == 0;
  if (!wide && !tall)
    throw ShapeError(cat(op, ": xg ", sx, " does not fit gh ", sh, " (expected [", B, ", ", width,
                         "], or the steps of a sequence: [", B, ", steps x ", width, "] or [",
                         "steps x ", B, ", ", width, "])"));
  const Index steps = sx.size() / (B * width);
  if (step < 0 || step >= steps)
    throw ShapeError(cat(op, ": step ", step, " is outside xg ", sx, " (", steps,
                         " steps of width ", width, ")"));
  return width / gates;
}
}  // namespace detail

/// One step of an Elman RNN: h = act(xg + gh), each [B, H] (xg may hold several steps side by
/// side, [B, k*H], of which `step` is used).
template <Scalar T>
Tensor<T> rnn_cell(const Tensor<T>& xg, const Tensor<T>& gh,
                   RnnNonlinearity act = RnnNonlinearity::tanh, Index step = 0) {
  const Index H = detail::check_cell("rnn_cell", 1, xg, gh, step);
  const Index B = gh.rows();
  detail::Recorder<T> r(detail::Op::rnn_cell, {&xg, &gh}, Shape::matrix(B, H));
  r.set_args(0, 0, static_cast<std::uint8_t>(act));
  if (r.recording()) r.node().aux2 = detail::index_tag(step);
  const auto pre =
      detail::step_block(r.in(0).data(), xg.size(), B, H, step).array() + r.in(1).array();
  if (act == RnnNonlinearity::tanh)
    r.out().array() = pre.tanh();
  else
    r.out().array() = pre.max(T(0));
  return r.finish();
}

/// One step of an LSTM (Hochreiter and Schmidhuber 1997, PyTorch's gate order i, f, g, o):
///   i, f, o = sigmoid(.), g = tanh(.) of the blocks of xg + gh ([B, 4H]),
///   c = f * c_prev + i * g,  h = o * tanh(c).
/// `prev` is c_prev [B, H], or the state [2B, H] returned by the previous step. Returns the state
/// [2B, H]: rows 0 to B-1 hold h, rows B to 2B-1 hold c (slice_rows takes them apart).
template <Scalar T>
Tensor<T> lstm_cell(const Tensor<T>& xg, const Tensor<T>& gh, const Tensor<T>& prev,
                    Index step = 0) {
  const Index H = detail::check_cell("lstm_cell", 4, xg, gh, step);
  const Index B = gh.rows();
  const Shape sp = prev.shape();
  if (sp.cols != H || (sp.rows != B && sp.rows != 2 * B))
    throw ShapeError(detail::cat("lstm_cell: prev has shape ", sp, "; expected c_prev [", B, ", ",
                                 H, "] or a previous state [", 2 * B, ", ", H, "]"));
  detail::Recorder<T> r(detail::Op::lstm_cell, {&xg, &gh, &prev}, Shape::matrix(2 * B, H));
  // The gates after their non-linearity, then tanh(c): kept for the backward rule.
  MatrixMap<T> acts(r.template scratch<T>(static_cast<std::size_t>(B * 5 * H)), B, 5 * H);
  const auto XG = detail::step_block(r.in(0).data(), xg.size(), B, 4 * H, step);
  const auto& GH = r.in(1);
  const auto C_prev = r.in(2).bottomRows(B);
  auto& Y = r.out();
  // Row by row, each row's gates, c and h in one pass while the row is in cache (a pass over the
  // whole [B, 5H] per stage reads and writes it seven times).
  for (Index b = 0; b < B; ++b) {
    auto a = acts.row(b);
    a.head(4 * H).array() = XG.row(b).array() + GH.row(b).array();
    a.head(2 * H).array() = a.head(2 * H).array().logistic();
    a.segment(2 * H, H).array() = a.segment(2 * H, H).array().tanh();
    a.segment(3 * H, H).array() = a.segment(3 * H, H).array().logistic();
    const auto i = a.head(H).array(), f = a.segment(H, H).array();
    const auto g = a.segment(2 * H, H).array(), o = a.segment(3 * H, H).array();
    auto c = Y.row(B + b).array();
    auto tc = a.tail(H).array();
    c = f * C_prev.row(b).array() + i * g;
    tc = c.tanh();
    Y.row(b).array() = o * tc;
  }
  if (r.recording()) {
    r.node().aux = acts.data();
    r.node().aux2 = detail::index_tag(step);
  }
  return r.finish();
}

/// One step of a GRU (Cho et al. 2014, PyTorch's gate order r, z, n):
///   r, z = sigmoid(.) of the first two blocks of xg + gh ([B, 3H]),
///   n = tanh(xg_n + r * gh_n),  h = (1 - z) * n + z * h_prev.
/// gh_n includes b_hn, so the reset gate scales it too (PyTorch's formulation).
template <Scalar T>
Tensor<T> gru_cell(const Tensor<T>& xg, const Tensor<T>& gh, const Tensor<T>& h_prev,
                   Index step = 0) {
  const Index H = detail::check_cell("gru_cell", 3, xg, gh, step);
  const Index B = gh.rows();
  if (h_prev.rows() != B || h_prev.cols() != H)
    throw ShapeError(detail::cat("gru_cell: h_prev has shape ", h_prev.shape(), "; expected [", B,
                                 ", ", H, "]"));
  detail::Recorder<T> r(detail::Op::gru_cell, {&xg, &gh, &h_prev}, Shape::matrix(B, H));
  // r, z, n: kept for the backward rule.
  MatrixMap<T> acts(r.template scratch<T>(static_cast<std::size_t>(B * 3 * H)), B, 3 * H);
  const auto XG = detail::step_block(r.in(0).data(), xg.size(), B, 3 * H, step);
  const auto& GH = r.in(1);
  const auto& Hp = r.in(2);
  auto& Y = r.out();
  // Row by row, in one pass while the row is in cache.
  for (Index b = 0; b < B; ++b) {
    auto a = acts.row(b);
    const auto x = XG.row(b), g = GH.row(b);
    a.head(2 * H).array() = (x.head(2 * H).array() + g.head(2 * H).array()).logistic();
    const auto rg = a.head(H).array(), z = a.segment(H, H).array();
    auto n = a.tail(H).array();
    n = (x.tail(H).array() + rg * g.tail(H).array()).tanh();
    Y.row(b).array() = (T(1) - z) * n + z * Hp.row(b).array();
  }
  if (r.recording()) {
    r.node().aux = acts.data();
    r.node().aux2 = detail::index_tag(step);
  }
  return r.finish();
}

/// The gate activations a cell recorded on a tape keeps for its backward rule: for lstm_cell
/// [B, 5H] (i, f, g, o after their non-linearity, then tanh(c)), for gru_cell [B, 3H] (r, z, n).
/// Empty (0 x 0) for any other tensor, or a cell evaluated without recording (eagerly, or with no
/// input needing a gradient). Valid until the tape is reset.
template <Scalar T>
ConstMatrixMap<T> cell_gates(const Tensor<T>& cell) {
  Tape<T>* tape = cell.tape();
  if (!tape) return {nullptr, 0, 0};
  tape->check_live(cell, "cell_gates");
  const auto& n = tape->node(cell.node_index());
  const T* gates = static_cast<const T*>(n.aux);
  if (n.op == detail::Op::lstm_cell && gates) return {gates, n.rows / 2, 5 * n.cols};
  if (n.op == detail::Op::gru_cell && gates) return {gates, n.rows, 3 * n.cols};
  return {nullptr, 0, 0};
}

}  // namespace gradscope
