#pragma once
// A float GEMM for AVX-512, used by detail::gemm when the compiler targets AVX-512F (e.g.
// -march=native on such a CPU): the products of dense layers run 1.2x as fast as with Eigen 3.4's
// kernel, within a few percent of OpenBLAS's AVX-512 kernels (docs/benchmarks.md).
//
// The usual blocked layout (Goto and van de Geijn; BLIS): for each block of NC columns of B and
// KC of the inner dimension, B's block is packed into strips of NR = 32 columns, each stored k by
// k as 32 consecutive floats; for each block of MC rows of A, A's block is packed into strips of
// MR = 12 rows, stored k by k as 12 consecutive floats. The micro-kernel then keeps a 12 x 32
// tile of C in 24 of the 32 vector registers and, for each k, loads two vectors of B's strip,
// broadcasts each of the 12 values of A's strip and issues 24 fused multiply-adds. Eigen's kernel
// keeps a 48 x 4 tile (12 accumulators) of the transposed product, which leaves the FMA units
// waiting on loads more often. Strips are zero-padded, so the kernel always computes a whole
// tile, and the tile is written back with masked stores where it overhangs C.
//
// Packing handles the transposed operands: B = W^T of a dense layer's forward (W row-major,
// contiguous along k) is packed by 16 x 16 in-register transposes.
//
// The packing routines and the micro-kernel are [[gnu::noipa]]: inlined into a caller's loop
// (or cloned for its constant arguments) GCC 12 allocated their registers worse (the kernel ran
// at a third of its speed when inlined into a test's main) and warned about the scalar tails.

#if defined(__AVX512F__)
#include <immintrin.h>

#include <algorithm>
#include <cstddef>

#include "../types.hpp"

namespace gradscope::detail::avx512 {

inline constexpr Index kMR = 12;   // rows of a micro-tile
inline constexpr Index kNV = 2;    // vectors of 16 floats per micro-tile row
inline constexpr Index kNR = 32;   // columns of a micro-tile
inline constexpr Index kMC = 96;   // rows of A per packed block (a multiple of kMR)
inline constexpr Index kKC = 256;  // inner dimension per packed block
inline constexpr Index kNC = 512;  // columns of B per packed block (a multiple of kNR)

// Floats of workspace for the packed block of A, rounded up to 64 bytes: the packed panel of B
// follows it, aligned as the kernel's loads of B need.
inline Index packed_a_floats(Index m, Index k) {
  const Index a = (std::min(kMC, m) + kMR - 1) / kMR * kMR * std::min(kKC, k);
  return (a + 15) / 16 * 16;
}

/// Floats of packing workspace that sgemm needs for a product of these dimensions.
inline std::size_t sgemm_workspace(Index m, Index n, Index k) {
  const Index b = (std::min(kNC, n) + kNR - 1) / kNR * kNR * std::min(kKC, k);
  return static_cast<std::size_t>(packed_a_floats(m, k) + b);
}

// The first n of 16 lanes (none for n <= 0, all for n >= 16).
GRADSCOPE_ALWAYS_INLINE inline __mmask16 lanes(Index n) {
  return n <= 0    ? static_cast<__mmask16>(0)
         : n >= 16 ? static_cast<__mmask16>(0xFFFF)
                   : static_cast<__mmask16>((1u << n) - 1);
}

// Transposes 16 rows of 16 floats in registers: r[t] holds row t before, column t after.
GRADSCOPE_ALWAYS_INLINE inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 16; i += 8)
    for (int s = 0; s < 4; ++s) {
      t[i + s] = _mm512_shuffle_f32x4(r[i + s], r[i + 4 + s], 0x88);
      t[i + 4 + s] = _mm512_shuffle_f32x4(r[i + s], r[i + 4 + s], 0xDD);
    }
  for (int s = 0; s < 8; ++s) {
    r[s] = _mm512_shuffle_f32x4(t[s], t[8 + s], 0x88);
    r[8 + s] = _mm512_shuffle_f32x4(t[s], t[8 + s], 0xDD);
  }
}

// B(l, j) = b[l * brs + j * bcs] for l in [0, kc), j in [0, nc): the panel as strips of kNR
// columns, each stored k by k, zero beyond nc. Strip s starts at dst + s * kNR * kc.
[[gnu::noipa]] inline void pack_b_panel(float* dst, const float* b, Index brs, Index bcs, Index kc,
                                        Index nc) {
  if (bcs == 1) {  // rows of B contiguous: read each row once, two vectors into every strip
    for (Index l = 0; l < kc; ++l) {
      const float* src = b + l * brs;
      for (Index js = 0; js < nc; js += kNR) {
        float* d = dst + js * kc + l * kNR;
        _mm512_store_ps(d, _mm512_maskz_loadu_ps(lanes(nc - js), src + js));
        _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(lanes(nc - js - 16), src + js + 16));
      }
    }
    return;
  }
  for (Index js = 0; js < nc; js += kNR) {
    float* strip = dst + js * kc;
    const Index w = std::min(kNR, nc - js);
    Index l0 = 0;
    if (brs == 1) {  // rows of B^T contiguous along l: 16 x 16 blocks, 16 rows at a time
      for (Index jj = 0; jj < kNR; jj += 16)
        for (l0 = 0; l0 + 16 <= kc; l0 += 16) {
          __m512 r[16];
          for (Index t = 0; t < 16; ++t)
            r[t] = jj + t < w ? _mm512_loadu_ps(b + (js + jj + t) * bcs + l0) : _mm512_setzero_ps();
          transpose16(r);
          for (Index u = 0; u < 16; ++u) _mm512_store_ps(strip + (l0 + u) * kNR + jj, r[u]);
        }
    }
    for (Index l = l0; l < kc; ++l) {
      float* d = strip + l * kNR;
      const float* src = b + l * brs + js * bcs;
      Index j = 0;
      for (; j < w; ++j) d[j] = src[j * bcs];
      std::fill(d + j, d + kNR, 0.0f);
    }
  }
}

// A(i, l) = a[i * ars + l * acs] for i in [0, h), l in [0, kc): one strip of kMR rows, k by k,
// zero beyond h.
[[gnu::noipa]] inline void pack_a_strip(float* dst, const float* a, Index ars, Index acs, Index kc,
                                        Index h) {
  const __mmask16 tile = lanes(kMR);
  if (ars == 1) {  // columns of A contiguous: kMR consecutive floats per l
    const __mmask16 m = lanes(h);
    for (Index l = 0; l < kc; ++l)
      _mm512_mask_storeu_ps(dst + l * kMR, tile, _mm512_maskz_loadu_ps(m, a + l * acs));
    return;
  }
  Index l0 = 0;
  if (acs == 1) {  // rows of A contiguous along l: transpose 16 x 16 blocks, keep kMR lanes
    for (; l0 + 16 <= kc; l0 += 16) {
      __m512 r[16];
      for (Index t = 0; t < 16; ++t)
        r[t] = t < h ? _mm512_loadu_ps(a + t * ars + l0) : _mm512_setzero_ps();
      transpose16(r);
      for (Index u = 0; u < 16; ++u) _mm512_mask_storeu_ps(dst + (l0 + u) * kMR, tile, r[u]);
    }
  }
  for (Index l = l0; l < kc; ++l) {
    float* d = dst + l * kMR;
    for (Index i = 0; i < h; ++i) d[i] = a[i * ars + l * acs];
    std::fill(d + h, d + kMR, 0.0f);
  }
}

// The kMR x kNR tile of C at c (row stride ldc) += (or =, when `overwrite`) the product of one
// packed strip of A and one of B over kc. Only `rows` x `cols` of the tile lie inside C.
[[gnu::noipa]] inline void micro_kernel(Index kc, const float* __restrict ap,
                                        const float* __restrict bp, float* c, Index ldc, Index rows,
                                        Index cols, bool overwrite) {
  // The tile's rows of C are fetched while the products run, so the final update does not wait.
  for (Index r = 0; r < rows; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16), _MM_HINT_T0);
  }
  __m512 acc[kMR][kNV];
#pragma GCC unroll 12
  for (Index r = 0; r < kMR; ++r)
    for (Index v = 0; v < kNV; ++v) acc[r][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (Index l = 0; l < kc; ++l) {
    const __m512 b0 = _mm512_load_ps(bp + l * kNR), b1 = _mm512_load_ps(bp + l * kNR + 16);
#pragma GCC unroll 12
    for (Index r = 0; r < kMR; ++r) {
      const __m512 x = _mm512_set1_ps(ap[l * kMR + r]);
      acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
    }
  }
  // Unrolled with constant indices, so the accumulators stay in registers.
  const __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
#pragma GCC unroll 12
  for (Index r = 0; r < kMR; ++r) {
    if (r >= rows) break;
    float* p = c + r * ldc;
    if (overwrite) {
      _mm512_mask_storeu_ps(p, m0, acc[r][0]);
      _mm512_mask_storeu_ps(p + 16, m1, acc[r][1]);
    } else {
      _mm512_mask_storeu_ps(p, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, p), acc[r][0]));
      _mm512_mask_storeu_ps(p + 16, m1,
                            _mm512_add_ps(_mm512_maskz_loadu_ps(m1, p + 16), acc[r][1]));
    }
  }
}

/// c [m, n] (row-major, row stride ldc) = A B, or += A B when `accumulate`, where A(i, l) =
/// a[i * ars + l * acs] is [m, k] and B(l, j) = b[l * brs + j * bcs] is [k, n]. `work` holds
/// sgemm_workspace(m, n, k) floats, 64-byte aligned.
inline void sgemm(float* c, Index ldc, Index m, Index n, Index k, const float* a, Index ars,
                  Index acs, const float* b, Index brs, Index bcs, bool accumulate, float* work) {
  float* ap = work;
  float* bp = work + packed_a_floats(m, k);
  for (Index jc = 0; jc < n; jc += kNC) {
    const Index nc = std::min(kNC, n - jc);
    for (Index pc = 0; pc < k; pc += kKC) {
      const Index kc = std::min(kKC, k - pc);
      const bool overwrite = !accumulate && pc == 0;
      pack_b_panel(bp, b + pc * brs + jc * bcs, brs, bcs, kc, nc);
      for (Index ic = 0; ic < m; ic += kMC) {
        const Index mc = std::min(kMC, m - ic);
        for (Index is = 0; is < mc; is += kMR)
          pack_a_strip(ap + is * kc, a + (ic + is) * ars + pc * acs, ars, acs, kc,
                       std::min(kMR, mc - is));
        for (Index js = 0; js < nc; js += kNR)
          for (Index is = 0; is < mc; is += kMR)
            micro_kernel(kc, ap + is * kc, bp + js * kc, c + (ic + is) * ldc + jc + js, ldc,
                         std::min(kMR, mc - is), std::min(kNR, nc - js), overwrite);
      }
    }
  }
}

}  // namespace gradscope::detail::avx512
#endif
