#pragma once
// Helpers shared by the core tests: seeded random matrices with values kept inside an op's
// smooth domain, and the shapes and seeds every gradient check runs over.

#include <gradscope/core/rng.hpp>
#include <gradscope/core/runtime.hpp>
#include <gradscope/core/types.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

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

/// The CPU paths this machine runs (gradscope::set_cpu_path), the portable one first.
inline std::vector<CpuPath> supported_cpu_paths() {
  std::vector<CpuPath> paths;
  for (const CpuPath p : {CpuPath::baseline, CpuPath::avx2, CpuPath::avx512})
    if (cpu_path_supported(p)) paths.push_back(p);
  return paths;
}

/// Sets a CPU path for its lifetime and puts the previous one back.
class CpuPathScope {
 public:
  explicit CpuPathScope(CpuPath p) : previous_(cpu_path()) { set_cpu_path(p); }
  ~CpuPathScope() { set_cpu_path(previous_); }
  CpuPathScope(const CpuPathScope&) = delete;
  CpuPathScope& operator=(const CpuPathScope&) = delete;

 private:
  CpuPath previous_;
};

}  // namespace gradscope::testing
