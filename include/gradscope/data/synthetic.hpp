#pragma once
/// synthetic_digits: a deterministic, procedurally drawn 28x28 ten-class image set, for tests
/// and for running the examples with no data installed.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "dataset.hpp"

namespace gradscope::data {

/// `n` images of seven-segment digits 0-9 (balanced classes, shuffled), each drawn with a random
/// rotation (+-12 degrees), scale, shift, stroke width, jittered stroke ends and pixel noise,
/// anti-aliased, pixels in [0, 1]. The same (n, seed) gives the same images everywhere.
template <Scalar T>
Dataset<T> synthetic_digits(Index n, std::uint64_t seed = 0) {
  if (n <= 0) throw ValueError(gradscope::detail::cat("synthetic_digits: n must be > 0, got ", n));
  gradscope::detail::check_extent<T>("synthetic_digits", n, 28 * 28);
  // Segment endpoints in a unit box (x right, y down): a top, b upper right, c lower right,
  // d bottom, e lower left, f upper left, g middle.
  static constexpr double seg[7][4] = {{0.25, 0.15, 0.75, 0.15}, {0.75, 0.15, 0.75, 0.5},
                                       {0.75, 0.5, 0.75, 0.85},  {0.25, 0.85, 0.75, 0.85},
                                       {0.25, 0.5, 0.25, 0.85},  {0.25, 0.15, 0.25, 0.5},
                                       {0.25, 0.5, 0.75, 0.5}};
  static constexpr const char* digits[10] = {"abcdef", "bc",     "abged", "abgcd",   "fgbc",
                                             "afgcd",  "afgedc", "abc",   "abcdefg", "abcdfg"};
  Rng rng(seed ^ 0xD161'7500'0000'0001ull);
  Dataset<T> d;
  d.images = Matrix<T>::Zero(n, 28 * 28);
  d.labels.resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const int label = static_cast<int>(i % 10);
    d.labels[static_cast<std::size_t>(i)] = label;
    const double angle = rng.uniform(-0.21, 0.21), sc = rng.uniform(0.8, 1.1);
    const double dx = rng.uniform(-2, 2), dy = rng.uniform(-2, 2), width = rng.uniform(1.2, 2.2);
    const double slant = rng.uniform(-0.15, 0.15);
    const double ca = std::cos(angle), sa = std::sin(angle);
    double pts[7][4];
    for (int s = 0; s < 7; ++s)
      for (int k = 0; k < 4; k += 2) {
        double x = seg[s][k] + rng.uniform(-0.04, 0.04) - 0.5;
        double y = seg[s][k + 1] + rng.uniform(-0.04, 0.04) - 0.5;
        x += slant * y;
        pts[s][k] = 14 + dx + 22 * sc * (ca * x - sa * y);
        pts[s][k + 1] = 14 + dy + 22 * sc * (sa * x + ca * y);
      }
    auto row = d.images.row(i);
    for (const char* c = digits[label]; *c; ++c) {
      const auto& p = pts[*c - 'a'];
      const double vx = p[2] - p[0], vy = p[3] - p[1], len2 = vx * vx + vy * vy;
      for (int py = 0; py < 28; ++py)
        for (int px = 0; px < 28; ++px) {
          const double qx = px + 0.5 - p[0], qy = py + 0.5 - p[1];
          const double t = std::clamp((qx * vx + qy * vy) / len2, 0.0, 1.0);
          const double ex = qx - t * vx, ey = qy - t * vy;
          const double dist = std::sqrt(ex * ex + ey * ey);
          const double v = std::clamp(width / 2 + 0.5 - dist, 0.0, 1.0);
          T& pix = row(py * 28 + px);
          pix = std::max(pix, static_cast<T>(v));
        }
    }
    for (Index k = 0; k < 28 * 28; ++k)
      row(k) =
          static_cast<T>(std::clamp(static_cast<double>(row(k)) + rng.normal(0, 0.05), 0.0, 1.0));
  }
  // Shuffle so that batches are not ordered by class.
  std::vector<Index> order(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  return d.subset(order);
}

}  // namespace gradscope::data
