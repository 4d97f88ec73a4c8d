#pragma once
/// Scalar types, Eigen aliases and shapes shared by every component.

#include <concepts>
#include <cstdint>
#include <ostream>
#include <string>

// Eigen, and the x86 intrinsics headers it includes, are included here first and compiled without
// the warnings they raise in a user's -Wall -Wextra build (as Eigen's own DisableStupidWarnings.h
// does for its code), each pragma covering only the third-party lines it is about, never
// gradscope's: GCC before 13 reports its own AVX-512 intrinsics (the self-initialised __Y of
// _mm512_undefined_*(), GCC bug 105593) as (maybe) uninitialised wherever they are inlined, which
// the pragmas around <immintrin.h> silence at those lines; Eigen 3.4.0's AVX bfloat16 code has
// unused variables, and Clang finds a C99 compound literal in F16C's _cvtss_sh as Eigen's Half.h
// uses it. (Included after Eigen by the user, the intrinsics are not covered: see README.)
#include "../detail/compiled.hpp"
// (<immintrin.h> only where it is used: by gradscope's kernels, not compiled in a file of the
// compiled mode, and by Eigen for AVX and above.)
#if (defined(__x86_64__) || defined(__i386__)) && (!GRADSCOPE_CORE_DECLARE_ONLY || defined(__AVX__))
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wc99-extensions"
#endif
#endif
#include <Eigen/Core>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/// Forces inlining of small lambdas on hot paths (the backward rules' helpers), where a call would
/// cost more than the arithmetic on a small tensor.
#if defined(__GNUC__) || defined(__clang__)
#define GRADSCOPE_ALWAYS_INLINE __attribute__((always_inline))
#else
#define GRADSCOPE_ALWAYS_INLINE
#endif

namespace gradscope {

/// The scalar types a Tensor may hold.
template <class T>
concept Scalar = std::same_as<T, float> || std::same_as<T, double>;

using Index = Eigen::Index;

/// A dense row-major Eigen matrix: rows are the batch.
template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// A mutable view of row-major storage.
template <class T>
using MatrixMap = Eigen::Map<Matrix<T>>;
/// A read-only view of row-major storage.
template <class T>
using ConstMatrixMap = Eigen::Map<const Matrix<T>>;

/// Rank 0 (scalar, 1x1), rank 1 (a row vector 1 x n) or rank 2 (rows x cols).
struct Shape {
  Index rows = 1;
  Index cols = 1;
  int rank = 0;

  static constexpr Shape scalar() { return {1, 1, 0}; }
  static constexpr Shape vector(Index n) { return {1, n, 1}; }
  static constexpr Shape matrix(Index r, Index c) { return {r, c, 2}; }

  constexpr Index size() const { return rows * cols; }
  friend constexpr bool operator==(const Shape&, const Shape&) = default;

  /// "[]" for a scalar, "[n]" for a vector, "[r, c]" for a matrix.
  std::string str() const {
    // Appends only: GCC 12 at -O3 warns falsely (-Wrestrict) on "[" + std::string in user code.
    std::string s = "[";
    if (rank == 2) s.append(std::to_string(rows)).append(", ");
    if (rank >= 1) s.append(std::to_string(cols));
    s.append("]");
    return s;
  }
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }
};

/// The axis a reduction runs over: everything, within each row, or within each column.
enum class Reduce : std::uint8_t {
  all,         ///< one value: shape []
  per_row,     ///< one value per row: shape [rows, 1]
  per_column,  ///< one value per column: shape [cols]
};

/// The non-linearity of a plain RNN cell (rnn_cell, nn::RNN).
enum class RnnNonlinearity : std::uint8_t { tanh, relu };

namespace detail {
/// True when none of the n values at p is NaN or infinite. One vectorised pass (x * 0 is 0 for
/// a finite x and NaN otherwise, and the sum keeps a NaN); Eigen's allFinite() on a row-major
/// map walks it column by column, one scalar at a time, several times slower.
template <class T>
bool all_finite(const T* p, Index n) {
  return (Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(p, n) * T(0)).sum() == T(0);
}
/// The same for a contiguous Eigen matrix or map (any object with data() and size()).
template <class M>
bool all_finite(const M& m) {
  return all_finite(m.data(), m.size());
}
}  // namespace detail

}  // namespace gradscope
