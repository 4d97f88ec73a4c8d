#pragma once
// Matrix products of the ops (matmul, linear) and their backward rules, float and double.
//
// gemm() runs each product on the kernels of the CPU path in use (dispatch.hpp):
// - avx512 and avx2: gradscope's own blocked GEMM (kernels.inl; a 12 x 32 tile of floats on
//   AVX-512, 6 x 16 on AVX2) and, for a b^T with a long inner dimension and a thin result,
//   register-blocked dot products; the smallest products and matrix-vector ones stay with Eigen.
// - baseline: Eigen's GEMM kernels, with the same dot-product kernel on Eigen's packets.
// Every path packs into a per-thread workspace that only grows, so a steady-state training step
// makes no heap allocation, in gradscope or in Eigen. Eigen's product expressions
// (dst.noalias() = a * b) would take their packing buffers for each product: on the stack up to
// EIGEN_STACK_ALLOCATION_LIMIT (128 KiB) and from the heap above it, which a 784-wide dense layer
// exceeds. To run Eigen's kernels with gradscope's buffers gemm() uses Eigen's internal GEMM
// interface (gemm_functor, level3_blocking), which is stable within Eigen 3.4; with another Eigen
// version the baseline path uses the product expressions (and Eigen's own buffers) instead.
//
// Products from 2^23 multiply-adds on split over the threads of parallel.hpp (OpenMP), each
// thread taking a slice of C's columns (or of its rows) with its own packing workspace. With
// EIGEN_USE_BLAS every product goes to Eigen, and so to the BLAS.

#include <algorithm>
#include <cstddef>
#include <new>
#include <type_traits>

#include "../../detail/compiled.hpp"
#include "../types.hpp"
#include "dispatch.hpp"
#include "parallel.hpp"

#if EIGEN_VERSION_AT_LEAST(3, 4, 0) && !EIGEN_VERSION_AT_LEAST(3, 4, 90)
#define GRADSCOPE_GEMM_WORKSPACE 1
#else
#define GRADSCOPE_GEMM_WORKSPACE 0
#endif

// gradscope's own products on the avx512 and avx2 paths, unless the program routes its
// products to a BLAS (EIGEN_USE_BLAS).
#if GRADSCOPE_X86_KERNELS && !defined(EIGEN_USE_BLAS)
#define GRADSCOPE_GEMM_KERNELS 1
#if !GRADSCOPE_CORE_DECLARE_ONLY  // their kernels: compiled where path_gemm is (below)
#include "kernels_avx2.hpp"
#include "kernels_avx512.hpp"
#endif
#else
#define GRADSCOPE_GEMM_KERNELS 0
#endif

namespace gradscope::detail {

/// The packing buffers of this thread's products: grown to the largest product seen, then
/// reused. Freed when the thread ends.
template <class T>
class GemmWorkspace {
 public:
  static constexpr std::size_t alignment = 64;  // at least Eigen's EIGEN_DEFAULT_ALIGN_BYTES

  GemmWorkspace() = default;
  GemmWorkspace(const GemmWorkspace&) = delete;
  GemmWorkspace& operator=(const GemmWorkspace&) = delete;
  ~GemmWorkspace() { release(); }

  /// Room for `n` values, 64-byte aligned; the contents are not kept when it grows.
  T* reserve(std::size_t n) {
    if (n > capacity_) {
      release();
      // Grow by half again at least, so a sequence of growing products reallocates rarely.
      const std::size_t size = std::max(n, capacity_ + capacity_ / 2);
      data_ = static_cast<T*>(::operator new (size * sizeof(T), std::align_val_t{alignment}));
      capacity_ = size;
    }
    return data_;
  }
  std::size_t capacity() const noexcept { return capacity_; }

  static GemmWorkspace& of_this_thread() {
    static thread_local GemmWorkspace workspace;
    return workspace;
  }

 private:
  void release() noexcept {
    if (data_) ::operator delete (data_, std::align_val_t{alignment});
    data_ = nullptr;
    capacity_ = 0;
  }
  T* data_ = nullptr;
  std::size_t capacity_ = 0;
};

/// The multiply-adds from which a product is split over the threads (gemm_threads). On the
/// 2-core machine of docs/benchmarks.md a product of 100,000 multiply-adds (Eigen's own
/// threshold) ran 1.2-2.5x slower on two threads than on one: forking and joining cost more
/// than the work, and the gain starts near 2^23.
inline constexpr double gemm_parallel_work = 8388608.0;  // 2^23

/// The multiply-adds of an [m, k] x [k, n] product, the measure of the rules below.
inline double gemm_work(Index m, Index n, Index k) {
  return static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}

/// The threads a product runs on: those of parallel.hpp from gemm_parallel_work multiply-adds
/// on, else 1.
inline int gemm_threads(Index m, Index n, Index k) {
  return gemm_work(m, n, k) >= gemm_parallel_work ? available_threads() : 1;
}

/// Runs part(i0, i1, j0, j1) for the rows [i0, i1) and columns [j0, j1) of an [m, n] result,
/// on `threads` threads: each takes a slice of whole `tile`-column tiles or, when there are
/// fewer tiles than threads, of the rows.
template <class Part>
void split_product(Index m, Index n, Index tile, int threads, const Part& part) {
  if (threads <= 1) {
    part(Index{0}, m, Index{0}, n);
    return;
  }
  const Index tiles = (n + tile - 1) / tile;
  auto body = [&](int t, int team) {
    if (tiles >= team) {
      const Index per = (tiles + team - 1) / team * tile;
      part(Index{0}, m, std::min(n, t * per), std::min(n, (t + 1) * per));
    } else {
      const Index per = (m + team - 1) / team;
      part(std::min(m, t * per), std::min(m, (t + 1) * per), Index{0}, n);
    }
  };
  parallel_run(threads, body);
}

// ---- the baseline path: Eigen's kernels ----

#if GRADSCOPE_GEMM_WORKSPACE
/// Eigen's blocking for a product into a row-major destination [rows, cols] with inner dimension
/// `depth`, as Eigen's own gemm_blocking_space computes it (Eigen evaluates the transposed
/// product, so its m is `cols` and its n is `rows`), with the panels in this thread's
/// GemmWorkspace. The members are the ones Eigen's gemm_functor and parallelize_gemm call.
template <class T>
class GemmBlocking : public Eigen::internal::level3_blocking<T, T> {
 public:
  GemmBlocking(Index rows, Index cols, Index depth) {
    this->m_mc = cols;
    this->m_nc = rows;
    this->m_kc = depth;
    Eigen::internal::computeProductBlockingSizes<T, T, 1>(this->m_kc, this->m_mc, this->m_nc,
                                                          Index{1});
    size_a_ = this->m_mc * this->m_kc;
    size_b_ = this->m_kc * this->m_nc;
    // One block: panel A, then panel B at the next 64-byte boundary.
    T* w =
        GemmWorkspace<T>::of_this_thread().reserve(offset_b() + static_cast<std::size_t>(size_b_));
    this->m_blockA = w;
    this->m_blockB = w + offset_b();
  }
  // Called by Eigen's own parallel GEMM only, which gradscope does not use (split_product
  // gives each thread a whole product of its own); kept for completeness of the interface.
  void initParallel(Index, Index, Index, Index) {}
  void allocateA() {}
  void allocateB() {}
  void allocateAll() {}

 private:
  std::size_t offset_b() const {
    constexpr std::size_t per_line = GemmWorkspace<T>::alignment / sizeof(T);
    return (static_cast<std::size_t>(size_a_) + per_line - 1) / per_line * per_line;
  }
  Index size_a_ = 0;
  Index size_b_ = 0;
};

// An operand as Eigen's GEMM reads it: a row-major matrix, or the transpose of one as a
// column-major view of the same storage, with a row stride.
template <class T, int Order>
using GemmOperand = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order>, 0,
                               Eigen::OuterStride<>>;
template <class T>
using GemmResult = Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>;

/// c (row stride ldc) = lhs rhs, or += when `accumulate`, on Eigen's kernels on this thread.
template <class T, class Lhs, class Rhs>
void eigen_gemm_kernel(T* c, Index ldc, const Lhs& lhs, const Rhs& rhs, bool accumulate) {
  namespace ei = Eigen::internal;
  const Index m = lhs.rows(), n = rhs.cols(), k = lhs.cols();
  GemmResult<T> dst(c, m, n, Eigen::OuterStride<>(ldc));
  // Where Eigen itself would not run its blocked GEMM (tiny products: coefficient by
  // coefficient; one row or column: GEMV) it needs no packing buffers; let it do those.
  if (m + n + k < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD || m == 1 || n == 1 || k == 0) {
    if (accumulate)
      dst.noalias() += lhs * rhs;
    else
      dst.noalias() = lhs * rhs;
    return;
  }
  if (!accumulate) dst.setZero();
  using Gemm = ei::general_matrix_matrix_product<
      Index, T, (Lhs::Flags & Eigen::RowMajorBit) ? Eigen::RowMajor : Eigen::ColMajor, false, T,
      (Rhs::Flags & Eigen::RowMajorBit) ? Eigen::RowMajor : Eigen::ColMajor, false, Eigen::RowMajor,
      1>;
  using Functor = ei::gemm_functor<T, Index, Gemm, Lhs, Rhs, GemmResult<T>, GemmBlocking<T>>;
  GemmBlocking<T> blocking(m, n, k);
  const Functor product(lhs, rhs, dst, T(1), blocking);
  ei::parallelize_gemm<false>(product, m, n, k, true);  // this thread only
}

/// c [m, n] (row stride ldc) = op(a) op(b) (or +=) on Eigen's kernels, op(a) [m, k] with a's
/// row stride lda, op(b) [k, n] with b's row stride ldb.
template <class T>
void eigen_gemm(T* c, Index ldc, Index m, Index n, Index k, const T* a, bool ta, Index lda,
                const T* b, bool tb, Index ldb, bool accumulate) {
  const Eigen::OuterStride<> sa(lda), sb(ldb);
  const auto with_b = [&](const auto& lhs) {
    if (tb)
      eigen_gemm_kernel(c, ldc, lhs, GemmOperand<T, Eigen::ColMajor>(b, k, n, sb), accumulate);
    else
      eigen_gemm_kernel(c, ldc, lhs, GemmOperand<T, Eigen::RowMajor>(b, k, n, sb), accumulate);
  };
  if (ta)
    with_b(GemmOperand<T, Eigen::ColMajor>(a, m, k, sa));
  else
    with_b(GemmOperand<T, Eigen::RowMajor>(a, m, k, sa));
}

// ---- a b^T with a thin result: dot products of rows, no packing ----
//
// In c = a b^T with a [m, k] and b [n, k] row-major (a dense layer's forward, x W^T), each
// element is the dot product of two contiguous rows. A GEMM first packs both operands, which for
// a thin result (few rows or few columns) and a long k is most of the work, and its register
// tile fits a result of 30 or 10 columns badly. The dot kernel (here on Eigen's packets; on the
// avx512 and avx2 paths in kernels.inl) keeps a block of dot products in registers, reads each
// row once per packet of k, and reduces each sum across its packet at the end. Measured on the
// 2-core AVX-512 machine of docs/benchmarks.md (float, one thread, -march=native, Eigen's GEMM
// first): [10, 784] x [784, 30] 19.8 -> 5.6 us, [128, 784] x [784, 30] 95 -> 54 us, [128, 256] x
// [256, 10] 12.8 -> 6.4 us, [32, 784] x [784, 256] 133 -> 111 us, [16, 1024] x [1024, 1024] 542
// -> 335 us. Where the result is wide it is no better ([128, 784] x [784, 256]: 468 against 436
// us), and where k is short it is worse, the reductions at the end costing as much as 128 steps of
// k ([128, 129] x [129, 64]: 37 us against 17). Hence the rule in prefers_dot_products.

template <class T, int RB, int CB>
GRADSCOPE_ALWAYS_INLINE inline void dot_block(const T* a, Index lda, const T* b, Index ldb, Index k,
                                              T* c, Index ldc, bool accumulate) {
  namespace ei = Eigen::internal;
  using Packet = typename ei::packet_traits<T>::type;
  constexpr Index lanes = ei::packet_traits<T>::size;
  Packet sum[RB][CB];
  for (int r = 0; r < RB; ++r)
    for (int j = 0; j < CB; ++j) sum[r][j] = ei::pset1<Packet>(T(0));
  Index l = 0;
  for (; l + lanes <= k; l += lanes) {
    Packet x[RB], y[CB];
    for (int r = 0; r < RB; ++r) x[r] = ei::ploadu<Packet>(a + r * lda + l);
    for (int j = 0; j < CB; ++j) y[j] = ei::ploadu<Packet>(b + j * ldb + l);
    for (int r = 0; r < RB; ++r)
      for (int j = 0; j < CB; ++j) sum[r][j] = ei::pmadd(x[r], y[j], sum[r][j]);
  }
  T total[RB][CB];
  for (int r = 0; r < RB; ++r)
    for (int j = 0; j < CB; ++j) total[r][j] = ei::predux(sum[r][j]);
  for (; l < k; ++l)
    for (int r = 0; r < RB; ++r)
      for (int j = 0; j < CB; ++j) total[r][j] += a[r * lda + l] * b[j * ldb + l];
  for (int r = 0; r < RB; ++r)
    for (int j = 0; j < CB; ++j) {
      T& out = c[r * ldc + j];
      out = accumulate ? out + total[r][j] : total[r][j];
    }
}

// RB rows of a against every row of b.
template <class T, int RB>
void dot_rows(const T* a, const T* b, Index n, Index k, T* c, bool accumulate) {
  Index j = 0;
  for (; j + 4 <= n; j += 4) dot_block<T, RB, 4>(a, k, b + j * k, k, k, c + j, n, accumulate);
  if (j + 2 <= n) {
    dot_block<T, RB, 2>(a, k, b + j * k, k, k, c + j, n, accumulate);
    j += 2;
  }
  if (j < n) dot_block<T, RB, 1>(a, k, b + j * k, k, k, c + j, n, accumulate);
}

/// c (+)= a b^T for contiguous row-major a [m, k], b [n, k], c [m, n].
template <class T>
void dot_product_gemm(T* c, const T* a, const T* b, Index m, Index n, Index k, bool accumulate) {
  Index i = 0;
  for (; i + 4 <= m; i += 4) dot_rows<T, 4>(a + i * k, b, n, k, c + i * n, accumulate);
  if (i + 2 <= m) {
    dot_rows<T, 2>(a + i * k, b, n, k, c + i * n, accumulate);
    i += 2;
  }
  if (i < m) dot_rows<T, 1>(a + i * k, b, n, k, c + i * n, accumulate);
}
#endif

/// Whether c [m, n] = a b^T with inner dimension k goes to a dot-product kernel: a long k and a
/// thin result (the measurements above), and small enough to stay on one thread (the dot kernels
/// have no threads of their own).
inline bool prefers_dot_products(Index m, Index n, Index k) {
  return k >= 256 && (n <= 64 || m <= 32) && m > 1 &&
         (gemm_work(m, n, k) < gemm_parallel_work || available_threads() == 1);
}

// ---- the avx512 and avx2 paths: gradscope's kernels ----

/// Whether a product goes to the blocked kernel of the avx512 or avx2 path: at least 16 columns
/// (the AVX-512 float tiles are 32 wide: [128, 30] x [30, 10] ran at 0.67 times Eigen's speed)
/// and 2^15 multiply-adds ([30, 10] x [10, 30]: 0.77). Measured on the machine of
/// docs/benchmarks.md: 1.15-1.6x Eigen's speed on the products of nets B-E, 1.2-1.7x on net A's.
inline bool prefers_blocked_kernel(Index m, Index n, Index k) {
  return n >= 16 && m > 1 && k > 0 && gemm_work(m, n, k) >= 32768.0;
}

#if GRADSCOPE_GEMM_KERNELS && !GRADSCOPE_CORE_DECLARE_ONLY
/// The kernels of path P (namespace avx512 or avx2 of kernels_*.hpp).
template <CpuPath P>
struct PathKernels;
template <>
struct PathKernels<CpuPath::avx512> {
  template <class T>
  using Vec = avx512::Vec<T>;
  template <class T>
  static std::size_t workspace(Index m, Index n, Index k) {
    return avx512::gemm_workspace<T>(m, n, k);
  }
  template <class T>
  static void blocked(T* c, Index ldc, Index m, Index n, Index k, const T* a, Index ars, Index acs,
                      const T* b, Index brs, Index bcs, bool accumulate, T* work) {
    avx512::gemm_blocked(c, ldc, m, n, k, a, ars, acs, b, brs, bcs, accumulate, work);
  }
  template <class T>
  static void dot(T* c, const T* a, const T* b, Index m, Index n, Index k, bool accumulate) {
    avx512::dot_product_gemm(c, a, b, m, n, k, accumulate);
  }
};
template <>
struct PathKernels<CpuPath::avx2> {
  template <class T>
  using Vec = avx2::Vec<T>;
  template <class T>
  static std::size_t workspace(Index m, Index n, Index k) {
    return avx2::gemm_workspace<T>(m, n, k);
  }
  template <class T>
  static void blocked(T* c, Index ldc, Index m, Index n, Index k, const T* a, Index ars, Index acs,
                      const T* b, Index brs, Index bcs, bool accumulate, T* work) {
    avx2::gemm_blocked(c, ldc, m, n, k, a, ars, acs, b, brs, bcs, accumulate, work);
  }
  template <class T>
  static void dot(T* c, const T* a, const T* b, Index m, Index n, Index k, bool accumulate) {
    avx2::dot_product_gemm(c, a, b, m, n, k, accumulate);
  }
};

/// c [m, n] = op(a) op(b) (or +=) on path P's kernels, split over the threads of gemm_threads;
/// false (nothing done) for a shape the portable code runs better.
template <CpuPath P, class T>
bool path_gemm_on(T* c, Index m, Index n, Index k, const T* a, bool ta, const T* b, bool tb,
                  bool accumulate) {
  using K = PathKernels<P>;
  if (!ta && tb && prefers_dot_products(m, n, k)) {
    K::dot(c, a, b, m, n, k, accumulate);
    return true;
  }
  if (!prefers_blocked_kernel(m, n, k)) return false;
  // Element (i, l) of op(a) and (l, j) of op(b) by row and column strides.
  const Index ars = ta ? 1 : k, acs = ta ? m : 1;
  const Index brs = tb ? 1 : n, bcs = tb ? k : 1;
  constexpr Index tile = K::template Vec<T>::NV * K::template Vec<T>::lanes;
  split_product(m, n, tile, gemm_threads(m, n, k), [&](Index i0, Index i1, Index j0, Index j1) {
    if (i0 >= i1 || j0 >= j1) return;
    T* work =
        GemmWorkspace<T>::of_this_thread().reserve(K::template workspace<T>(i1 - i0, j1 - j0, k));
    K::blocked(c + i0 * n + j0, n, i1 - i0, j1 - j0, k, a + i0 * ars, ars, acs, b + j0 * bcs, brs,
               bcs, accumulate, work);
  });
  return true;
}
#endif

#if GRADSCOPE_GEMM_KERNELS
/// c [m, n] = op(a) op(b) (or +=) on the kernels of path p (avx512 or avx2), split over the
/// threads; false (nothing done) for a shape the portable code runs better. Compiled once, with
/// the kernels, in the compiled mode (detail/compiled.hpp).
GRADSCOPE_COMPILED_API bool path_gemm(CpuPath p, float* c, Index m, Index n, Index k,
                                      const float* a, bool ta, const float* b, bool tb,
                                      bool accumulate)
#if GRADSCOPE_CORE_DECLARE_ONLY
    ;
#else
{
  return p == CpuPath::avx512 ? path_gemm_on<CpuPath::avx512>(c, m, n, k, a, ta, b, tb, accumulate)
                              : path_gemm_on<CpuPath::avx2>(c, m, n, k, a, ta, b, tb, accumulate);
}
#endif

/// The same for double.
GRADSCOPE_COMPILED_API bool path_gemm(CpuPath p, double* c, Index m, Index n, Index k,
                                      const double* a, bool ta, const double* b, bool tb,
                                      bool accumulate)
#if GRADSCOPE_CORE_DECLARE_ONLY
    ;
#else
{
  return p == CpuPath::avx512 ? path_gemm_on<CpuPath::avx512>(c, m, n, k, a, ta, b, tb, accumulate)
                              : path_gemm_on<CpuPath::avx2>(c, m, n, k, a, ta, b, tb, accumulate);
}
#endif
#endif

/// c = op(a) op(b), or c += op(a) op(b) when `accumulate`; op is the transpose where asked. c is
/// a contiguous row-major [m, n] that aliases neither operand; the shapes are the caller's to
/// check.
template <class T>
void gemm(MatrixMap<T> c, const ConstMatrixMap<T>& a, bool transpose_a, const ConstMatrixMap<T>& b,
          bool transpose_b, bool accumulate) {
  const Index m = c.rows(), n = c.cols(), k = transpose_a ? a.rows() : a.cols();
#if GRADSCOPE_GEMM_KERNELS
  if (const CpuPath p = active_cpu_path(); p != CpuPath::baseline)
    if (path_gemm(p, c.data(), m, n, k, a.data(), transpose_a, b.data(), transpose_b, accumulate))
      return;
#endif
#if GRADSCOPE_GEMM_WORKSPACE
  if (!transpose_a && transpose_b && prefers_dot_products(m, n, k)) {
    dot_product_gemm(c.data(), a.data(), b.data(), m, n, k, accumulate);
    return;
  }
  // Row strides of a and b as stored (a: [m, k], or [k, m] when transposed).
  const Index lda = a.cols(), ldb = b.cols();
  const bool vector = m == 1 || n == 1 || m + n + k < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD;
  split_product(m, n, 16, vector ? 1 : gemm_threads(m, n, k),
                [&](Index i0, Index i1, Index j0, Index j1) {
                  if (i0 >= i1 || j0 >= j1) return;
                  eigen_gemm(c.data() + i0 * n + j0, n, i1 - i0, j1 - j0, k,
                             a.data() + i0 * (transpose_a ? 1 : lda), transpose_a, lda,
                             b.data() + j0 * (transpose_b ? ldb : 1), transpose_b, ldb, accumulate);
                });
#else
  const auto run = [&](const auto& lhs, const auto& rhs) {
    if (accumulate)
      c.noalias() += lhs * rhs;
    else
      c.noalias() = lhs * rhs;
  };
  if (transpose_a)
    transpose_b ? run(a.transpose(), b.transpose()) : run(a.transpose(), b);
  else
    transpose_b ? run(a, b.transpose()) : run(a, b);
#endif
}

}  // namespace gradscope::detail
