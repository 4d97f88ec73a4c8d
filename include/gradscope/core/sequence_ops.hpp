#pragma once
/// Ops on the layout of tensors and on axes, for sequences and embeddings: reshape, slices,
/// concatenation, split/stack/unstack of time steps, gather_rows, max/argmax, logsumexp and where.
/// Each records one tape node; its backward rule is the case of the same name in
/// core/backward.hpp.

#include <cmath>
#include <initializer_list>
#include <limits>
#include <span>
#include <vector>

#include "ops.hpp"

namespace gradscope {

namespace detail {
[[noreturn, gnu::cold]] inline void throw_bad_range(const char* op, const char* axis, Index begin,
                                                    Index count, const Shape& s, Index extent) {
  throw ShapeError(cat(op, ": ", axis, " [", begin, ", ", begin + count,
                       ") is outside an input of ", "shape ", s, " (", axis, " 0 to ", extent,
                       ")"));
}
inline void check_range(const char* op, const char* axis, Index begin, Index count, const Shape& s,
                        Index extent) {
  if (count < 1) throw ValueError(cat(op, ": needs a count of at least 1, got ", count));
  if (begin < 0 || begin > extent - count) throw_bad_range(op, axis, begin, count, s, extent);
}
}  // namespace detail

/// The same values in another shape [rows, cols] (row-major order is kept; one of rows and cols
/// may be -1, inferred from the size). [B, T*F] -> [B*T, F] turns a batch of sequences into one
/// row per step. On a tape it shares the input's memory (no copy).
template <Scalar T>
Tensor<T> reshape(const Tensor<T>& x, Index rows, Index cols) {
  const Shape s = x.shape();
  if (rows == -1 && cols > 0 && s.size() % cols == 0) rows = s.size() / cols;
  if (cols == -1 && rows > 0 && s.size() % rows == 0) cols = s.size() / rows;
  if (rows <= 0 || cols <= 0 || rows * cols != s.size())
    throw ShapeError(detail::cat("reshape: cannot view an input of shape ", s, " (", s.size(),
                                 " elements) as [", rows, ", ", cols, "]"));
  Tensor<T> y;
  if (detail::Recorder<T>::record_view(y, detail::Op::reshape, x, Shape::matrix(rows, cols), 0))
    return y;
  detail::Recorder<T> r(detail::Op::reshape, {&x}, Shape::matrix(rows, cols));
  std::copy_n(r.in(0).data(), s.size(), r.out().data());
  return r.finish();
}

/// Rows [begin, begin + count) of x. On a tape it shares the input's memory (no copy).
template <Scalar T>
Tensor<T> slice_rows(const Tensor<T>& x, Index begin, Index count) {
  const Shape s = x.shape();
  detail::check_range("slice_rows", "rows", begin, count, s, s.rows);
  const Shape out{count, s.cols, s.rank};
  Tensor<T> y;
  if (detail::Recorder<T>::record_view(y, detail::Op::slice_rows, x, out, begin * s.cols,
                                       detail::index_tag(begin)))
    return y;
  detail::Recorder<T> r(detail::Op::slice_rows, {&x}, out);
  r.out() = r.in(0).middleRows(begin, count);
  return r.finish();
}

/// Columns [begin, begin + count) of x (of each row).
template <Scalar T>
Tensor<T> slice_cols(const Tensor<T>& x, Index begin, Index count) {
  const Shape s = x.shape();
  detail::check_range("slice_cols", "columns", begin, count, s, s.cols);
  detail::Recorder<T> r(detail::Op::slice_cols, {&x}, Shape{s.rows, count, s.rank});
  if (r.recording()) r.node().aux = detail::index_tag(begin);
  r.out() = r.in(0).middleCols(begin, count);
  return r.finish();
}

namespace detail {
// concat_rows / concat_cols: the output shape, checked.
template <Scalar T>
Shape concat_shape(const char* op, std::span<const Tensor<T>> xs, bool rows) {
  if (xs.empty()) throw ValueError(cat(op, ": needs at least one tensor"));
  Shape out = xs[0].shape();  // throws for an undefined tensor
  bool all_vectors = out.rank == 1;
  for (std::size_t k = 1; k < xs.size(); ++k) {
    if (!xs[k].defined()) throw UsageError(cat(op, ": input ", k, " is an undefined tensor"));
    const Shape s = xs[k].shape();
    const bool fits = rows ? s.cols == out.cols : s.rows == out.rows;
    if (!fits)
      throw ShapeError(cat(op, ": input ", k, " has shape ", s, " but input 0 has shape ",
                           xs[0].shape(), " (every input needs the same number of ",
                           rows ? "columns" : "rows", ")"));
    (rows ? out.rows : out.cols) += rows ? s.rows : s.cols;
    all_vectors = all_vectors && s.rank == 1;
  }
  out.rank = !rows && all_vectors ? 1 : 2;
  return out;
}
template <Scalar T>
Tensor<T> concat(Op op, std::span<const Tensor<T>> xs) {
  const bool rows = op == Op::concat_rows;
  Recorder<T> r(op, xs, concat_shape(op_name(op), xs, rows));
  Index at = 0;
  for (const auto& x : xs) {
    const auto v = x.value();
    if (rows)
      r.out().middleRows(at, v.rows()) = v;
    else
      r.out().middleCols(at, v.cols()) = v;
    at += rows ? v.rows() : v.cols();
  }
  return r.finish();
}
}  // namespace detail

/// The inputs one below the other: [r1, c], [r2, c], ... -> [r1 + r2 + ..., c].
template <Scalar T>
Tensor<T> concat_rows(std::span<const Tensor<T>> xs) {
  return detail::concat(detail::Op::concat_rows, xs);
}
template <Scalar T>
Tensor<T> concat_rows(const std::vector<Tensor<T>>& xs) {
  return concat_rows(std::span<const Tensor<T>>(xs));
}
template <Scalar T>
Tensor<T> concat_rows(std::initializer_list<Tensor<T>> xs) {
  return concat_rows(std::span<const Tensor<T>>(xs.begin(), xs.size()));
}

/// The inputs side by side: [r, c1], [r, c2], ... -> [r, c1 + c2 + ...] (rank 1 if all are).
template <Scalar T>
Tensor<T> concat_cols(std::span<const Tensor<T>> xs) {
  return detail::concat(detail::Op::concat_cols, xs);
}
template <Scalar T>
Tensor<T> concat_cols(const std::vector<Tensor<T>>& xs) {
  return concat_cols(std::span<const Tensor<T>>(xs));
}
template <Scalar T>
Tensor<T> concat_cols(std::initializer_list<Tensor<T>> xs) {
  return concat_cols(std::span<const Tensor<T>>(xs.begin(), xs.size()));
}

/// k tensors of equal width: the columns of x cut into k blocks (an LSTM's gate pre-activations
/// [B, 4H] into i, f, g, o). x's width must be a multiple of k.
template <Scalar T>
std::vector<Tensor<T>> split_cols(const Tensor<T>& x, Index k) {
  const Shape s = x.shape();
  if (k < 1 || s.cols % k != 0)
    throw ShapeError(detail::cat("split_cols: cannot cut the ", s.cols, " columns of an input of ",
                                 "shape ", s, " into ", k, " equal blocks"));
  const Index w = s.cols / k;
  std::vector<Tensor<T>> out;
  out.reserve(static_cast<std::size_t>(k));
  for (Index i = 0; i < k; ++i) out.push_back(slice_cols(x, i * w, w));
  return out;
}

/// T steps of [B, F] (one shape) as one [B, T*F] tensor: step t in columns [t*F, (t+1)*F), the
/// batch-first layout the recurrent layers read and write.
template <Scalar T>
Tensor<T> stack(std::span<const Tensor<T>> steps) {
  if (steps.empty()) throw ValueError("stack: needs at least one step");
  const Shape s0 = steps[0].shape();
  for (std::size_t t = 1; t < steps.size(); ++t)
    if (steps[t].defined() && steps[t].shape() != s0)
      throw ShapeError(detail::cat("stack: step ", t, " has shape ", steps[t].shape(),
                                   " but step 0 has shape ", s0, " (every step needs one shape)"));
  return concat_cols(steps);
}
template <Scalar T>
Tensor<T> stack(const std::vector<Tensor<T>>& steps) {
  return stack(std::span<const Tensor<T>>(steps));
}
template <Scalar T>
Tensor<T> stack(std::initializer_list<Tensor<T>> steps) {
  return stack(std::span<const Tensor<T>>(steps.begin(), steps.size()));
}

/// The inverse of stack: [B, T*F] -> T steps of [B, F].
template <Scalar T>
std::vector<Tensor<T>> unstack(const Tensor<T>& x, Index steps) {
  return split_cols(x, steps);
}

/// Rows of `table` [N, D] picked by `indices` (each in [0, N)): [indices.size(), D]. The
/// gradient of a row picked several times is the sum of its uses. An embedding lookup.
template <Scalar T>
Tensor<T> gather_rows(const Tensor<T>& table, std::span<const int> indices) {
  const Shape s = table.shape();
  if (indices.empty()) throw ValueError("gather_rows: needs at least one index");
  for (std::size_t i = 0; i < indices.size(); ++i)
    if (indices[i] < 0 || indices[i] >= s.rows)
      throw ValueError(detail::cat("gather_rows: index ", indices[i], " at position ", i,
                                   " is out of range for a table of shape ", s, " (0 to ",
                                   s.rows - 1, ")"));
  const auto n = static_cast<Index>(indices.size());
  detail::Recorder<T> r(detail::Op::gather_rows, {&table}, Shape::matrix(n, s.cols));
  for (Index i = 0; i < n; ++i) r.out().row(i) = r.in(0).row(indices[static_cast<std::size_t>(i)]);
  if (r.recording()) {
    int* saved = r.template scratch<int>(indices.size());
    std::copy(indices.begin(), indices.end(), saved);
    r.node().aux = saved;
  }
  return r.finish();
}
template <Scalar T>
Tensor<T> gather_rows(const Tensor<T>& table, const std::vector<int>& indices) {
  return gather_rows(table, std::span<const int>(indices));
}

namespace detail {
// The position of the largest of n values at p with stride `step` (the first one on ties; a NaN
// wins, so that max propagates it).
template <class T>
Index argmax_strided(const T* p, Index n, Index step) {
  Index best = 0;
  T v = p[0];
  if (std::isnan(v)) return 0;
  for (Index i = 1; i < n; ++i) {
    const T x = p[i * step];
    if (std::isnan(x)) return i;
    if (x > v) {
      v = x;
      best = i;
    }
  }
  return best;
}
// Calls f(out_index, first_element, count, stride) for each lane of a reduction over `axis`.
template <class F>
void for_each_lane(const Shape& s, Reduce axis, F&& f) {
  switch (axis) {
    case Reduce::all:
      f(Index(0), Index(0), s.size(), Index(1));
      break;
    case Reduce::per_row:
      for (Index i = 0; i < s.rows; ++i) f(i, i * s.cols, s.cols, Index(1));
      break;
    default:
      for (Index j = 0; j < s.cols; ++j) f(j, j, s.rows, s.cols);
      break;
  }
}
}  // namespace detail

/// Positions of the maxima over `axis` (the first on ties, a NaN's if there is one): one
/// row-major flat index for Reduce::all, a column per row for per_row, a row per column for
/// per_column. Not differentiable.
template <Scalar T>
std::vector<Index> argmax(const Tensor<T>& x, Reduce axis = Reduce::all) {
  const auto v = x.value();
  const Shape s = x.shape();
  std::vector<Index> out(static_cast<std::size_t>(detail::reduced_shape(s, axis).size()));
  detail::for_each_lane(s, axis, [&](Index o, Index first, Index count, Index step) {
    out[static_cast<std::size_t>(o)] = detail::argmax_strided(v.data() + first, count, step);
  });
  return out;
}

/// Maximum over all elements ([]), of each row ([rows, 1]) or of each column ([cols]); NaN if
/// there is one. The gradient goes to the maximum's position (the first one on ties).
template <Scalar T>
Tensor<T> max(const Tensor<T>& x, Reduce axis = Reduce::all) {
  const Shape s = x.shape();
  detail::Recorder<T> r(detail::Op::max, {&x}, detail::reduced_shape(s, axis));
  r.set_args(0, 0, static_cast<std::uint8_t>(axis));
  const T* in = r.in(0).data();
  Index* where =
      r.recording() ? r.template scratch<Index>(static_cast<std::size_t>(r.out().size())) : nullptr;
  detail::for_each_lane(s, axis, [&](Index o, Index first, Index count, Index step) {
    const Index k = first + detail::argmax_strided(in + first, count, step) * step;
    r.out().data()[o] = in[k];
    if (where) where[o] = k;
  });
  if (where) r.node().aux = where;
  return r.finish();
}

/// log(sum(exp(x))) over all elements, each row or each column, computed stably as
/// m + log(sum(exp(x - m))) with m the maximum (so inputs of 1e4 are fine). A lane of only -inf
/// gives -inf (and passes no gradient); the gradient is softmax(x) along the axis.
template <Scalar T>
Tensor<T> logsumexp(const Tensor<T>& x, Reduce axis = Reduce::all) {
  const Shape s = x.shape();
  detail::Recorder<T> r(detail::Op::logsumexp, {&x}, detail::reduced_shape(s, axis));
  r.set_args(0, 0, static_cast<std::uint8_t>(axis));
  const auto X = r.in(0).array();
  auto& Y = r.out();
  const auto lse = [](const auto& lane) {
    const T m = lane.maxCoeff();
    if (std::isinf(m)) return m;  // all -inf gives -inf; a +inf gives +inf
    if (std::isnan(m)) return std::numeric_limits<T>::quiet_NaN();
    return m + std::log((lane - m).exp().sum());
  };
  switch (axis) {
    case Reduce::all:
      Y(0, 0) = lse(X);
      break;
    case Reduce::per_row:
      for (Index i = 0; i < s.rows; ++i) Y(i, 0) = lse(X.row(i));
      break;
    default:
      for (Index j = 0; j < s.cols; ++j) Y(0, j) = lse(X.col(j));
      break;
  }
  return r.finish();
}

/// a where mask is nonzero, b elsewhere, elementwise, broadcasting all three (a padded step keeps
/// the previous state: where(mask, h_new, h_prev)). The mask gets no gradient; the gradient of a
/// or b is zero where the other is chosen, even if the unchosen value is NaN or infinite.
template <Scalar T>
Tensor<T> where(const Tensor<T>& mask, const Tensor<T>& a, const Tensor<T>& b) {
  const Shape out = detail::broadcast_shape(
      "where", detail::broadcast_shape("where", mask.shape(), a.shape()), b.shape());
  detail::Recorder<T> r(detail::Op::where, {&mask, &a, &b}, out);
  detail::with_expanded(r.in(0), out.rows, out.cols, [&](const auto& m) {
    detail::with_expanded(r.in(1), out.rows, out.cols, [&](const auto& x) {
      detail::with_expanded(r.in(2), out.rows, out.cols,
                            [&](const auto& y) { r.out().array() = (m != T(0)).select(x, y); });
    });
  });
  return r.finish();
}

}  // namespace gradscope
