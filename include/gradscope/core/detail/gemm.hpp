#pragma once
// Matrix products of the ops (matmul, linear) and their backward rules, on Eigen's GEMM kernels
// with packing buffers that gradscope owns.
//
// Eigen's product expressions (dst.noalias() = a * b) pack panels of both operands into
// buffers it takes for each product: on the stack up to EIGEN_STACK_ALLOCATION_LIMIT (128 KiB)
// and from the heap above it, which a 784-wide dense layer exceeds. gemm() runs the same
// kernels (Eigen's gemm_functor and parallelize_gemm, or the BLAS behind EIGEN_USE_BLAS) with
// a blocking object whose panels live in a per-thread workspace that only grows, so a
// steady-state training step makes no heap allocation, in gradscope or in Eigen. It relies on
// Eigen's internal GEMM interface, which is stable within Eigen 3.4; with another Eigen version
// gemm() uses the product expressions (and Eigen's own buffers) instead.
//
// Two shapes get kernels of gradscope's own, chosen per product by the rules below: a b^T with a
// long inner dimension and a thin result as register-blocked dot products (dot_product_gemm),
// and, where the compiler targets AVX-512F, float products as a 12 x 32-tile GEMM
// (gemm_avx512.hpp) that runs 1.15-1.6x as fast as Eigen 3.4's on the nets of
// docs/benchmarks.md. Every translation unit of a program should see the same target flags (as
// with Eigen itself, whose inline kernels also differ by them).

#include <algorithm>
#include <cstddef>
#include <new>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../types.hpp"

#if EIGEN_VERSION_AT_LEAST(3, 4, 0) && !EIGEN_VERSION_AT_LEAST(3, 4, 90)
#define GRADSCOPE_GEMM_WORKSPACE 1
#else
#define GRADSCOPE_GEMM_WORKSPACE 0
#endif

// gradscope's own float GEMM (gemm_avx512.hpp) where the compiler targets AVX-512F, unless the
// program routes its products to a BLAS (EIGEN_USE_BLAS) or defines GRADSCOPE_NO_AVX512_GEMM.
#if GRADSCOPE_GEMM_WORKSPACE && defined(__AVX512F__) && !defined(EIGEN_USE_BLAS) && \
    !defined(GRADSCOPE_NO_AVX512_GEMM)
#define GRADSCOPE_GEMM_AVX512 1
#include "gemm_avx512.hpp"
#else
#define GRADSCOPE_GEMM_AVX512 0
#endif

namespace gradscope::detail {

#if GRADSCOPE_GEMM_WORKSPACE
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

  // With OpenMP threads, Eigen shares one A panel between the threads (allocateA) and each
  // thread packs its own B panel (on its stack, or from the heap when larger).
  void initParallel(Index rows, Index cols, Index depth, Index num_threads) {
    this->m_mc = cols;
    this->m_nc = rows;
    this->m_kc = depth;
    Index m = this->m_mc;
    Eigen::internal::computeProductBlockingSizes<T, T, 1>(this->m_kc, m, this->m_nc, num_threads);
    size_a_ = this->m_mc * this->m_kc;
    size_b_ = this->m_kc * this->m_nc;
    this->m_blockA = nullptr;
    this->m_blockB = nullptr;
  }
  void allocateA() {
    if (!this->m_blockA)
      this->m_blockA =
          GemmWorkspace<T>::of_this_thread().reserve(static_cast<std::size_t>(size_a_));
  }
  void allocateB() {
    if (!this->m_blockB) {
      T* w = GemmWorkspace<T>::of_this_thread().reserve(offset_b() +
                                                        static_cast<std::size_t>(size_b_));
      this->m_blockA = w;  // the workspace may have moved: A first, as in the constructor
      this->m_blockB = w + offset_b();
    }
  }
  void allocateAll() { allocateB(); }

 private:
  std::size_t offset_b() const {
    constexpr std::size_t per_line = GemmWorkspace<T>::alignment / sizeof(T);
    return (static_cast<std::size_t>(size_a_) + per_line - 1) / per_line * per_line;
  }
  Index size_a_ = 0;
  Index size_b_ = 0;
};

/// The multiply-adds from which a product is split over Eigen's OpenMP threads (see gemm_kernel).
inline constexpr double gemm_parallel_work = 8388608.0;  // 2^23

/// The multiply-adds of an [m, k] x [k, n] product, the measure of the rules below.
inline double gemm_work(Index m, Index n, Index k) {
  return static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}

// An operand as Eigen's GEMM reads it: the row-major matrix itself, or its transpose as a
// column-major view of the same storage.
template <class T, int Order>
using GemmOperand = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order>, 0,
                               Eigen::OuterStride<>>;

template <class T, class F>
void with_gemm_operand(const ConstMatrixMap<T>& m, bool transposed, F&& f) {
  const Eigen::OuterStride<> stride(m.cols());
  if (transposed)
    f(GemmOperand<T, Eigen::ColMajor>(m.data(), m.cols(), m.rows(), stride));
  else
    f(GemmOperand<T, Eigen::RowMajor>(m.data(), m.rows(), m.cols(), stride));
}

template <class T, class Lhs, class Rhs>
void gemm_kernel(MatrixMap<T>& c, const Lhs& lhs, const Rhs& rhs, bool accumulate) {
  namespace ei = Eigen::internal;
  const Index m = lhs.rows(), n = rhs.cols(), k = lhs.cols();
  // Where Eigen itself would not run its blocked GEMM (tiny products: coefficient by
  // coefficient; one row or column: GEMV) it needs no packing buffers; let it do those.
  if (m + n + k < EIGEN_GEMM_TO_COEFFBASED_THRESHOLD || m == 1 || n == 1 || k == 0) {
    if (accumulate)
      c.noalias() += lhs * rhs;
    else
      c.noalias() = lhs * rhs;
    return;
  }
  if (!accumulate) c.setZero();
  using Gemm = ei::general_matrix_matrix_product<
      Index, T, (Lhs::Flags & Eigen::RowMajorBit) ? Eigen::RowMajor : Eigen::ColMajor, false, T,
      (Rhs::Flags & Eigen::RowMajorBit) ? Eigen::RowMajor : Eigen::ColMajor, false, Eigen::RowMajor,
      1>;
  using Functor = ei::gemm_functor<T, Index, Gemm, Lhs, Rhs, MatrixMap<T>, GemmBlocking<T>>;
  GemmBlocking<T> blocking(m, n, k);
  const Functor product(lhs, rhs, c, T(1), blocking);
  // With OpenMP, Eigen splits a product over its threads from 100,000 multiply-adds on; on the
  // 2-core machine of docs/benchmarks.md a product that small ran 1.2-2.5x slower on two threads
  // than on one (forking and joining cost more than the work), and the gain starts near 2^23.
  if (gemm_work(m, n, k) >= gemm_parallel_work)
    ei::parallelize_gemm<true>(product, m, n, k, true);
  else
    ei::parallelize_gemm<false>(product, m, n, k, true);  // this thread only
}

// ---- a b^T with a thin result: dot products of rows, no packing ----
//
// In c = a b^T with a [m, k] and b [n, k] row-major (a dense layer's forward, x W^T), each
// element is the dot product of two contiguous rows. Eigen's GEMM first packs both operands,
// which for a thin result (few rows or few columns) and a long k is most of the work, and its
// register tile (three packets of rows of the transposed result) fits a result of 30 or 10
// columns badly. The dot kernel below keeps a block of RB x CB dot products in registers, reads
// the RB + CB rows once per packet of k, and reduces each sum across its packet at the end.
// Measured on the 2-core AVX-512 machine of docs/benchmarks.md (float, one thread, Eigen's GEMM
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

/// Whether c [m, n] = a b^T with inner dimension k goes to dot_product_gemm: a long k and a thin
/// result (the measurements above), and small enough to stay on one thread (the dot kernel has no
/// threads of its own).
inline bool prefers_dot_products(Index m, Index n, Index k) {
  return k >= 256 && (n <= 64 || m <= 32) && m > 1 &&
         (gemm_work(m, n, k) < gemm_parallel_work || Eigen::nbThreads() == 1);
}
#endif

#if GRADSCOPE_GEMM_AVX512
/// Whether a float product goes to avx512::sgemm: at least 16 columns (its tiles are 32 wide:
/// [128, 30] x [30, 10] ran at 0.67 times Eigen's speed) and 2^15 multiply-adds ([30, 10] x
/// [10, 30]: 0.77). Measured on the machine of docs/benchmarks.md: 1.15-1.6x Eigen's speed on
/// the products of nets B-E, 1.2-1.7x on net A's. With OpenMP, products from gemm_parallel_work
/// on are split over the threads (avx512_sgemm_threads).
inline bool prefers_avx512_sgemm(Index m, Index n, Index k) {
  return n >= 16 && m > 1 && k > 0 && gemm_work(m, n, k) >= 32768.0;
}

/// The threads a float product on avx512::sgemm runs on: Eigen's (Eigen::nbThreads(), with
/// OpenMP) from gemm_parallel_work multiply-adds on, unless this thread already is one of an
/// OpenMP team (as Eigen's parallelize_gemm decides, no nested split); else 1.
inline int avx512_sgemm_threads(Index m, Index n, Index k) {
#ifdef _OPENMP
  if (gemm_work(m, n, k) >= gemm_parallel_work && omp_get_num_threads() == 1)
    return Eigen::nbThreads();
#else
  (void)m, (void)n, (void)k;
#endif
  return 1;
}

/// c = op(a) op(b) (or +=) on avx512::sgemm, on `threads` threads: each computes a slice of c's
/// columns (whole 32-column tiles) or, when c has fewer tiles of columns than threads, of its
/// rows, with packing buffers of its own (the per-thread workspace).
inline void avx512_sgemm(float* c, Index m, Index n, Index k, const float* a, bool transpose_a,
                         const float* b, bool transpose_b, bool accumulate, int threads) {
  // Element (i, l) of op(a) and (l, j) of op(b) by row and column strides.
  const Index ars = transpose_a ? 1 : k, acs = transpose_a ? m : 1;
  const Index brs = transpose_b ? 1 : n, bcs = transpose_b ? k : 1;
  const auto slice = [&](Index i0, Index i1, Index j0, Index j1) {
    if (i0 >= i1 || j0 >= j1) return;
    float* work = GemmWorkspace<float>::of_this_thread().reserve(
        avx512::sgemm_workspace(i1 - i0, j1 - j0, k));
    avx512::sgemm(c + i0 * n + j0, n, i1 - i0, j1 - j0, k, a + i0 * ars, ars, acs, b + j0 * bcs,
                  brs, bcs, accumulate, work);
  };
  if (threads <= 1) {
    slice(0, m, 0, n);
    return;
  }
#ifdef _OPENMP
  const Index tiles = (n + avx512::kNR - 1) / avx512::kNR;  // of columns
#pragma omp parallel num_threads(threads)
  {
    const Index t = omp_get_thread_num(), team = omp_get_num_threads();
    if (tiles >= threads) {
      const Index per = (tiles + team - 1) / team * avx512::kNR;
      slice(0, m, std::min(n, t * per), std::min(n, (t + 1) * per));
    } else {
      const Index per = (m + team - 1) / team;
      slice(std::min(m, t * per), std::min(m, (t + 1) * per), 0, n);
    }
  }
#endif
}
#endif

/// c = op(a) op(b), or c += op(a) op(b) when `accumulate`; op is the transpose where asked. c is
/// a contiguous row-major [m, n] that aliases neither operand; the shapes are the caller's to
/// check.
template <class T>
void gemm(MatrixMap<T> c, const ConstMatrixMap<T>& a, bool transpose_a, const ConstMatrixMap<T>& b,
          bool transpose_b, bool accumulate) {
#if GRADSCOPE_GEMM_WORKSPACE
  if (!transpose_a && transpose_b && prefers_dot_products(a.rows(), b.rows(), a.cols())) {
    dot_product_gemm(c.data(), a.data(), b.data(), a.rows(), b.rows(), a.cols(), accumulate);
    return;
  }
#if GRADSCOPE_GEMM_AVX512
  if constexpr (std::is_same_v<T, float>) {
    const Index m = c.rows(), n = c.cols(), k = transpose_a ? a.rows() : a.cols();
    if (prefers_avx512_sgemm(m, n, k)) {
      avx512_sgemm(c.data(), m, n, k, a.data(), transpose_a, b.data(), transpose_b, accumulate,
                   avx512_sgemm_threads(m, n, k));
      return;
    }
  }
#endif
  with_gemm_operand(a, transpose_a, [&](const auto& lhs) {
    with_gemm_operand(b, transpose_b,
                      [&](const auto& rhs) { gemm_kernel(c, lhs, rhs, accumulate); });
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
