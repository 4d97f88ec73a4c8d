#pragma once
// Helpers shared by the optim tests. Not a test file itself (the build globs *.test.cpp only).

#include <catch2/catch.hpp>

#include <gradscope/gradscope.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace optim_test {

namespace gs = gradscope;
using Mat = gs::Matrix<double>;

/// A named parameter holding `value`, of rank `rank`.
template <class T = double>
gs::Tensor<T> parameter(const std::type_identity_t<gs::Matrix<T>>& value, int rank,
                        const std::string& name) {
  auto p = gs::Tensor<T>::parameter(value, rank);
  p.set_name(name);
  return p;
}

/// The largest |a - b| over two equally shaped matrices (infinity on a shape mismatch).
template <class A, class B>
double max_abs_diff(const A& a_expr, const B& b_expr) {
  const auto a = a_expr.eval();
  const auto b = b_expr.eval();
  if (a.rows() != b.rows() || a.cols() != b.cols()) return std::numeric_limits<double>::infinity();
  double m = 0;
  for (gs::Index i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i])));
  return m;
}

/// True when the two matrices hold the same bits (NaNs included).
template <class A, class B>
bool identical(const A& a_expr, const B& b_expr) {
  const auto a = a_expr.eval();
  const auto b = b_expr.eval();
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (gs::Index i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a.data()[i]), y = static_cast<double>(b.data()[i]);
    if (!(x == y || (std::isnan(x) && std::isnan(y)))) return false;
  }
  return true;
}

}  // namespace optim_test
