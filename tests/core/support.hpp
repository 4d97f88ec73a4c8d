#pragma once
// Helpers shared by the core tests: seeded random matrices with values kept inside an op's
// smooth domain, and the shapes and seeds every gradient check runs over.

#include <gradscope/core/rng.hpp>
#include <gradscope/core/types.hpp>

#include <array>
#include <cstdint>
#include <string>

namespace gradscope::testing {

/// A double matrix with entries uniform in [lo, hi).
inline Matrix<double> uniform(Index rows, Index cols, Rng& rng, double lo = -2, double hi = 2) {
  Matrix<double> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = rng.uniform(lo, hi);
  return m;
}

/// Entries with a random sign and a magnitude uniform in [lo, hi): away from the kink at 0.
inline Matrix<double> away_from_zero(Index rows, Index cols, Rng& rng, double lo = 0.1,
                                     double hi = 2) {
  Matrix<double> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i)
    m.data()[i] = (rng.bernoulli(0.5) ? 1.0 : -1.0) * rng.uniform(lo, hi);
  return m;
}

/// A shape drawn for a gradient check: rows x cols of a rank-2 matrix.
struct Dims {
  Index rows;
  Index cols;
  std::string str() const { return Shape::matrix(rows, cols).str(); }
};

/// The seeds every gradient check runs with.
inline constexpr std::array<std::uint64_t, 3> seeds = {11, 2024, 0xC0FFEE};

/// Three random shapes for `seed`: a single row, a single column and a general block, with the
/// free dimensions drawn from [2, 6].
inline std::array<Dims, 3> random_shapes(std::uint64_t seed) {
  Rng rng(seed ^ 0x5A5A5A5Aull);
  auto dim = [&] { return static_cast<Index>(2 + rng.below(5)); };
  const Index c0 = dim(), r1 = dim(), r2 = dim(), c2 = dim();
  return {Dims{1, c0}, Dims{r1, 1}, Dims{r2, c2}};
}

}  // namespace gradscope::testing
