#pragma once
// Broadcasting of elementwise binary ops: each dimension of an operand matches the result's or
// is 1 (scalars, row vectors [n] against [r, n], column vectors [r, 1] against [r, n]).

#include <algorithm>

#include "../error.hpp"
#include "../types.hpp"
#include "eval.hpp"

namespace gradscope::detail {

inline Shape broadcast_shape(const char* op, const Shape& a, const Shape& b) {
  auto dim = [](Index x, Index y, Index& out) {
    if (x == y || y == 1) {
      out = x;
      return true;
    }
    if (x == 1) {
      out = y;
      return true;
    }
    return false;
  };
  Shape s;
  if (!dim(a.rows, b.rows, s.rows) || !dim(a.cols, b.cols, s.cols))
    throw ShapeError(cat(op, ": shapes ", a, " and ", b,
                         " cannot be broadcast (each dimension must be equal or 1)"));
  s.rank = std::max(a.rank, b.rank);
  if (s.rows > 1) s.rank = 2;
  return s;
}

/// Calls f with the array of x expanded to rows x cols (no copy; a replicate view only when
/// x really is broadcast, so the common same-shape case stays vectorised).
template <class M, class F>
decltype(auto) with_expanded(const M& x, Index rows, Index cols, F&& f) {
  if (x.rows() == rows && x.cols() == cols) return f(x.array());
  return f(x.replicate(rows / x.rows(), cols / x.cols()).array());
}

/// grad += full, summing full over the dimensions along which grad's operand was broadcast;
/// with `overwrite`, grad is uninitialised and receives the (reduced) full instead.
template <class T, class E>
void accumulate_reduced(T* grad, Index rows, Index cols, const E& full, bool overwrite) {
  MatrixMap<T> g(grad, rows, cols);
  if (rows == full.rows() && cols == full.cols()) {
    if (overwrite)
      assign(g.array(), full);
    else
      add_assign(g.array(), full);
    return;
  }
  if (overwrite) g.setZero();  // broadcast operands are small: no second variant of each reduction
  if (rows == 1 && cols == 1)
    g(0, 0) += full.sum();
  else if (rows == 1)
    g.array() += full.colwise().sum();
  else
    g.array() += full.rowwise().sum();
}

}  // namespace gradscope::detail
