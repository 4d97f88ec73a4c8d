#pragma once
// Assignment of elementwise array expressions, with a scalar path for one-element tensors.

#include "../types.hpp"

namespace gradscope::detail {

/// dst = e for an array expression e of dst's shape (dst: an Eigen array view, e.g. map.array()).
/// A single element is computed directly: Eigen's vectorised assignment would spend most of its
/// time on alignment and loop set-up, and a coefficient loop gets alias-check versions from the
/// auto-vectoriser. That keeps ops on 1x1 tensors (scalar autodiff) cheap.
template <class Dst, class E>
inline void assign(Dst&& dst, const E& e) {
  if (dst.rows() == 1 && dst.cols() == 1)
    dst.coeffRef(0, 0) = e.coeff(0, 0);
  else
    dst = e;
}

/// dst += e, as assign.
template <class Dst, class E>
inline void add_assign(Dst&& dst, const E& e) {
  if (dst.rows() == 1 && dst.cols() == 1)
    dst.coeffRef(0, 0) += e.coeff(0, 0);
  else
    dst += e;
}

/// out = f(in...) for an elementwise f of same-shape inputs (Eigen maps). One element is
/// computed on 1x1 fixed-size arrays, which compiles to scalar code in registers (Eigen
/// expressions over maps are copied through the stack, and reading the copies back stalls).
template <class Out, class F, class... In>
inline void eval_pointwise(Out& out, F&& f, const In&... in) {
  using A1 = Eigen::Array<typename Out::Scalar, 1, 1>;
  if (out.size() == 1)
    out.data()[0] = f(A1(in.data()[0])...).coeff(0, 0);
  else
    out.array() = f(in.array()...);
}

}  // namespace gradscope::detail
