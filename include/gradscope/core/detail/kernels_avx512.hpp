#pragma once
// The avx512 path's kernels (dispatch.hpp): kernels.inl compiled for AVX-512F over 16 floats or
// 8 doubles per register. The products keep a 12 x 2-register tile of C (24 of the 32 vector
// registers) and transpose 16 x 16 float (8 x 8 double) blocks in registers to pack W^T.

#include <algorithm>
#include <cstddef>

#include "../types.hpp"
#include "simd.hpp"

#if GRADSCOPE_X86_KERNELS
GRADSCOPE_TARGET_AVX512_BEGIN
namespace gradscope::detail::avx512 {

template <class T>
struct Vec;

template <>
struct Vec<float> {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr Index lanes = 16;
  // The product's blocking: a micro-tile of MR rows and NV registers of columns; packed blocks
  // of MC rows of A, KC of the inner dimension and NC columns of B.
  static constexpr Index MR = 12, NV = 2, MC = 96, KC = 256, NC = 512;
  // The dot-product kernel's block of rows x columns (dot_product_gemm).
  static constexpr int DR = 4, DC = 4;

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  /// The first n lanes (none for n <= 0, all for n >= lanes).
  static Mask mask(Index n) {
    return n <= 0 ? Mask(0) : n >= lanes ? Mask(0xFFFF) : static_cast<Mask>((1u << n) - 1);
  }
  static V maskz_loadu(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
  static void mask_storeu(float* p, Mask m, V v) { _mm512_mask_storeu_ps(p, m, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  /// Lanes where x > 0 (false for NaN), and a blend by them.
  static Mask positive(V x) { return _mm512_cmp_ps_mask(x, zero(), _CMP_GT_OQ); }
  static V select(Mask m, V if_true, V if_false) {
    return _mm512_mask_blend_ps(m, if_false, if_true);
  }
  static float reduce_add(V v) {
    V s = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0x4E));  // + other half
    s = _mm512_add_ps(s, _mm512_maskz_shuffle_f32x4(0xFFFF, s, s, 0xB1));    // + other quarter
    __m128 q = _mm512_maskz_extractf32x4_ps(0xF, s, 0);
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }

  /// Transposes 16 rows of 16 floats: r[t] holds row t before, column t after.
  static void transpose(V r[16]) {
    V t[16];
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_maskz_unpacklo_ps(0xFFFF, r[i], r[i + 1]);
      t[i + 1] = _mm512_maskz_unpackhi_ps(0xFFFF, r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
      const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
      const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
      r[i] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xFF, a, c));
      r[i + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xFF, a, c));
      r[i + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xFF, b, d));
      r[i + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xFF, b, d));
    }
    for (int i = 0; i < 16; i += 8)
      for (int s = 0; s < 4; ++s) {
        t[i + s] = _mm512_maskz_shuffle_f32x4(0xFFFF, r[i + s], r[i + 4 + s], 0x88);
        t[i + 4 + s] = _mm512_maskz_shuffle_f32x4(0xFFFF, r[i + s], r[i + 4 + s], 0xDD);
      }
    for (int s = 0; s < 8; ++s) {
      r[s] = _mm512_maskz_shuffle_f32x4(0xFFFF, t[s], t[8 + s], 0x88);
      r[8 + s] = _mm512_maskz_shuffle_f32x4(0xFFFF, t[s], t[8 + s], 0xDD);
    }
  }
};

template <>
struct Vec<double> {
  using V = __m512d;
  using Mask = __mmask8;
  static constexpr Index lanes = 8;
  static constexpr Index MR = 12, NV = 2, MC = 96, KC = 256, NC = 256;
  static constexpr int DR = 4, DC = 4;

  static V zero() { return _mm512_setzero_pd(); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V load(const double* p) { return _mm512_load_pd(p); }
  static V loadu(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, V v) { _mm512_store_pd(p, v); }
  static void storeu(double* p, V v) { _mm512_storeu_pd(p, v); }
  static Mask mask(Index n) {
    return n <= 0 ? Mask(0) : n >= lanes ? Mask(0xFF) : static_cast<Mask>((1u << n) - 1);
  }
  static V maskz_loadu(Mask m, const double* p) { return _mm512_maskz_loadu_pd(m, p); }
  static void mask_storeu(double* p, Mask m, V v) { _mm512_mask_storeu_pd(p, m, v); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static Mask positive(V x) { return _mm512_cmp_pd_mask(x, zero(), _CMP_GT_OQ); }
  static V select(Mask m, V if_true, V if_false) {
    return _mm512_mask_blend_pd(m, if_false, if_true);
  }
  static double reduce_add(V v) {
    V s = _mm512_add_pd(v, _mm512_maskz_shuffle_f64x2(0xFF, v, v, 0x4E));  // + other half
    s = _mm512_add_pd(s, _mm512_maskz_shuffle_f64x2(0xFF, s, s, 0xB1));    // + other quarter
    const __m128d q = _mm256_castpd256_pd128(_mm512_maskz_extractf64x4_pd(0xF, s, 0));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
  }

  /// Transposes 8 rows of 8 doubles: r[t] holds row t before, column t after.
  static void transpose(V r[8]) {
    V t[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm512_maskz_unpacklo_pd(0xFF, r[i],
                                      r[i + 1]);  // per 128-bit lane: (row i, row i + 1), even
      t[i + 1] = _mm512_maskz_unpackhi_pd(0xFF, r[i], r[i + 1]);  // odd columns
    }
    V u[8];
    for (int i = 0; i < 8; i += 4) {
      u[i] = _mm512_maskz_shuffle_f64x2(0xFF, t[i], t[i + 2], 0x88);
      u[i + 1] = _mm512_maskz_shuffle_f64x2(0xFF, t[i + 1], t[i + 3], 0x88);
      u[i + 2] = _mm512_maskz_shuffle_f64x2(0xFF, t[i], t[i + 2], 0xDD);
      u[i + 3] = _mm512_maskz_shuffle_f64x2(0xFF, t[i + 1], t[i + 3], 0xDD);
    }
    for (int s = 0; s < 4; ++s) {
      r[s] = _mm512_maskz_shuffle_f64x2(0xFF, u[s], u[4 + s], 0x88);
      r[4 + s] = _mm512_maskz_shuffle_f64x2(0xFF, u[s], u[4 + s], 0xDD);
    }
  }
};

// (The unmasked forms of the shuffles, _mm512_unpacklo_ps and the like, take GCC 12's
// _mm512_undefined_ps(), whose self-initialisation warns under -Wuninitialized in every program
// that inlines them, GCC bug 105593; the zero-masked forms with every lane selected are the same
// instructions.)
#include "kernels.inl"

}  // namespace gradscope::detail::avx512
GRADSCOPE_TARGET_END
#endif
