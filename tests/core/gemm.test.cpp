// detail::gemm, the matrix product behind matmul, linear and their backward rules: against a
// plain triple loop in every transpose variant, assigning and accumulating, on shapes that take
// each of its paths (Eigen's coefficient-based product, GEMV, the blocked GEMM with gradscope's
// workspace); and gradient checks of matmul and linear at sizes that reach the blocked GEMM (the
// gradient checks in ops.test.cpp use sizes below Eigen's coefficient-based threshold).

#include <catch2/catch.hpp>

#include <gradscope/core/core.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "support.hpp"

namespace gs = gradscope;
using gs::Index;

namespace {

/// op(a) op(b) by the definition, accumulated in double.
template <class T>
gs::Matrix<T> naive_product(const gs::Matrix<T>& a, bool ta, const gs::Matrix<T>& b, bool tb) {
  const Index m = ta ? a.cols() : a.rows(), k = ta ? a.rows() : a.cols();
  const Index n = tb ? b.rows() : b.cols();
  gs::Matrix<T> c(m, n);
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < n; ++j) {
      double s = 0;
      for (Index l = 0; l < k; ++l)
        s += static_cast<double>(ta ? a(l, i) : a(i, l)) *
             static_cast<double>(tb ? b(j, l) : b(l, j));
      c(i, j) = static_cast<T>(s);
    }
  return c;
}

template <class T>
gs::Matrix<T> random_matrix(Index rows, Index cols, gs::Rng& rng) {
  return gs::testing::uniform(rows, cols, rng, -1, 1).cast<T>();
}

struct Mnk {
  Index m, n, k;
};
// Coefficient-based (m + n + k < 20), GEMV (m or n is 1), blocked GEMMs up to sizes whose
// packed panels exceed Eigen's 128 KiB stack limit (784 and 1024 deep), and, for a b^T, the dot
// kernels of thin results (k >= 256 with n <= 64 or m <= 32), with row and column counts that
// leave every tail block (4, 2 and 1 rows or columns) and k not a multiple of a register.
// Products of at least 16 columns and 2^15 multiply-adds take the blocked kernels of the avx512
// and avx2 paths (kernels.inl); tiles of 12 x 32 floats and 12 x 16 doubles (AVX-512), 6 x 16
// floats and 6 x 8 doubles (AVX2). These sizes leave every row count of the 6-row tiles and 1,
// 4, 7-12 rows of the 12-row ones; 1, one register exactly (16, 8, 4), one register and one
// more (17, 9, 5) and one short of a tile (31, 15, 7) columns, and whole tiles; k blocks (256
// deep) with 0, 1, lanes - 1 and other remainders for the in-register transposes; and more than
// one block of rows (96) and of columns (512; 256 for doubles). With OpenMP (test_gemm_openmp)
// the products from 2^23 multiply-adds on split over the threads, by slices of columns, or of
// rows when there are fewer tiles of columns than threads ([2048, 24]).
const Mnk sizes[] = {
    {3, 4, 5},       {1, 37, 29},     {41, 1, 23},    {2, 3, 30},    {17, 19, 23}, {64, 70, 300},
    {129, 257, 785}, {33, 1024, 128}, {1024, 48, 64}, {10, 30, 784}, {7, 13, 300}, {35, 3, 260},
    {128, 64, 257},  {31, 100, 257},  {13, 17, 200},  {23, 33, 100}, {97, 16, 40}, {12, 560, 273},
    {2048, 24, 200}, {19, 25, 271},   {37, 47, 263},  {8, 29, 300},  {26, 31, 140}};

/// Runs f(path) on every CPU path this machine supports, with that path set.
template <class F>
void on_every_path(F&& f) {
  for (const gs::CpuPath p : gs::testing::supported_cpu_paths()) {
    gs::testing::CpuPathScope scope(p);
    INFO("CPU path " << gs::to_string(p));
    f(p);
  }
}

template <class T>
void check_every_variant(double tolerance) {
  gs::Rng rng(7);
  const auto paths = gs::testing::supported_cpu_paths();
  for (const Mnk s : sizes) {
    for (const bool ta : {false, true}) {
      for (const bool tb : {false, true}) {
        INFO("[" << s.m << ", " << s.k << "] x [" << s.k << ", " << s.n << "], transpose_a " << ta
                 << ", transpose_b " << tb);
        const gs::Matrix<T> a =
            ta ? random_matrix<T>(s.k, s.m, rng) : random_matrix<T>(s.m, s.k, rng);
        const gs::Matrix<T> b =
            tb ? random_matrix<T>(s.n, s.k, rng) : random_matrix<T>(s.k, s.n, rng);
        const gs::Matrix<T> expected = naive_product(a, ta, b, tb);
        const gs::Matrix<T> start = random_matrix<T>(s.m, s.n, rng);
        const gs::ConstMatrixMap<T> am(a.data(), a.rows(), a.cols()),
            bm(b.data(), b.rows(), b.cols());
        const double scale = std::max(1.0, static_cast<double>(expected.cwiseAbs().maxCoeff()));
        on_every_path([&](gs::CpuPath) {
          gs::Matrix<T> c = start;  // assigned: the old contents must not leak in
          gs::detail::gemm(gs::MatrixMap<T>(c.data(), s.m, s.n), am, ta, bm, tb, false);
          CHECK(static_cast<double>((c - expected).cwiseAbs().maxCoeff()) <= tolerance * scale);

          gs::Matrix<T> acc = start;  // accumulated onto what is there
          gs::detail::gemm(gs::MatrixMap<T>(acc.data(), s.m, s.n), am, ta, bm, tb, true);
          const gs::Matrix<T> sum = start + expected;
          CHECK(static_cast<double>((acc - sum).cwiseAbs().maxCoeff()) <= tolerance * scale);
        });
      }
    }
  }
}

}  // namespace

TEST_CASE("gemm computes every transpose variant, assigning and accumulating, on every CPU path",
          "[core][gemm]") {
  SECTION("double") { check_every_variant<double>(1e-12); }
  SECTION("float") { check_every_variant<float>(2e-5); }
}

TEST_CASE("gemm packs into a per-thread workspace that grows to the largest product only",
          "[core][gemm]") {
  using W = gs::detail::GemmWorkspace<float>;
  gs::Rng rng(3);
  const gs::Matrix<float> a = random_matrix<float>(256, 784, rng),
                          b = random_matrix<float>(784, 512, rng);
  gs::Matrix<float> c(256, 512);
  const auto product = [&](Index m, Index k, Index n) {
    gs::detail::gemm(gs::MatrixMap<float>(c.data(), m, n),
                     gs::ConstMatrixMap<float>(a.data(), m, k), false,
                     gs::ConstMatrixMap<float>(b.data(), k, n), false, false);
  };
  on_every_path([&](gs::CpuPath) {
    product(256, 784, 512);
    const std::size_t capacity = W::of_this_thread().capacity();
    CHECK(capacity > 0);
    const float* data = W::of_this_thread().reserve(1);
    product(64, 100, 64);  // smaller: reuses the buffer
    product(256, 784, 512);
    CHECK(W::of_this_thread().capacity() == capacity);
    CHECK(W::of_this_thread().reserve(1) == data);
    CHECK(reinterpret_cast<std::uintptr_t>(data) % 64 == 0);
  });
}

#if GRADSCOPE_GEMM_KERNELS
// The sizes above that exercise the blocked kernels of the avx512 and avx2 paths really are
// routed to them.
TEST_CASE("products of at least 16 columns and 2^15 multiply-adds take the blocked kernels",
          "[core][gemm]") {
  for (const Mnk s : {Mnk{13, 17, 200}, Mnk{23, 33, 100}, Mnk{97, 16, 40}, Mnk{12, 560, 273},
                      Mnk{1024, 48, 64}, Mnk{19, 25, 271}, Mnk{26, 31, 140}}) {
    INFO("[" << s.m << ", " << s.k << "] x [" << s.k << ", " << s.n << "]");
    CHECK(gs::detail::prefers_blocked_kernel(s.m, s.n, s.k));
  }
  CHECK_FALSE(gs::detail::prefers_blocked_kernel(128, 10, 30));  // too narrow
  CHECK_FALSE(gs::detail::prefers_blocked_kernel(30, 30, 10));   // too little work
}
#endif

#ifdef _OPENMP
// Built with OpenMP (test_gemm_openmp, run with OMP_NUM_THREADS=2): the products above split
// over the threads of parallel.hpp where they are larger than gemm_parallel_work, each thread
// with a workspace of its own; this checks that they really had threads to split over.
TEST_CASE("the OpenMP build runs its large products on more than one thread", "[core][gemm]") {
  CHECK(gs::num_threads() >= 2);
  CHECK(gs::detail::gemm_threads(129, 257, 785) >= 2);  // by columns
  CHECK(gs::detail::gemm_threads(2048, 24, 200) >= 2);  // by rows
  CHECK(gs::detail::gemm_threads(64, 70, 300) == 1);
  // Inside a parallel region a product stays on its thread.
  int inner = 0;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    inner = gs::detail::gemm_threads(129, 257, 785);
  }
  CHECK(inner == 1);
  // set_num_threads caps the team; 0 goes back to OpenMP's default.
  gs::set_num_threads(1);
  CHECK(gs::detail::gemm_threads(129, 257, 785) == 1);
  gs::set_num_threads(0);
  CHECK(gs::num_threads() >= 2);
}
#endif

// The gradient checks of matmul and linear at sizes where the forward and every backward product
// take the blocked GEMM (m + n + k >= 20, no dimension 1).
TEST_CASE("matmul and linear pass the gradient check at blocked-GEMM sizes",
          "[core][gemm][gradcheck]") {
  using T = gs::Tensor<double>;
  using Inputs = std::vector<T>;
  using Fn = std::function<T(const Inputs&)>;
  const auto require = [](const Fn& f, const std::vector<gs::Matrix<double>>& inputs,
                          std::vector<int> ranks = {}) {
    const gs::GradCheckReport report = gs::check_gradients(f, inputs, {}, std::move(ranks));
    INFO(report.str());
    CHECK(report.ok);
    CHECK(report.max_rel_error < 1e-6);
  };
  for (const auto seed : gs::testing::seeds) {
    gs::Rng rng(seed);
    const Index m = 6 + static_cast<Index>(rng.below(4)), k = 8 + static_cast<Index>(rng.below(4));
    const Index n = 7 + static_cast<Index>(rng.below(4));
    INFO("seed " << seed << ": m " << m << ", k " << k << ", n " << n);
    for (const bool ta : {false, true}) {
      for (const bool tb : {false, true}) {
        INFO("transpose_a " << ta << ", transpose_b " << tb);
        // tanh after the product: the gradient reaching it is not constant.
        const Fn f = [ta, tb](const Inputs& v) {
          return gs::tanh(gs::matmul(v[0], v[1], {.transpose_a = ta, .transpose_b = tb}));
        };
        require(
            f,
            {ta ? gs::testing::uniform(k, m, rng, -1, 1) : gs::testing::uniform(m, k, rng, -1, 1),
             tb ? gs::testing::uniform(n, k, rng, -1, 1) : gs::testing::uniform(k, n, rng, -1, 1)});
      }
    }
    const Fn dense = [](const Inputs& v) { return gs::tanh(gs::linear(v[0], v[1], v[2])); };
    require(dense,
            {gs::testing::uniform(m, k, rng, -1, 1), gs::testing::uniform(n, k, rng, -1, 1),
             gs::testing::uniform(1, n, rng, -1, 1)},
            {2, 2, 1});
  }
}
