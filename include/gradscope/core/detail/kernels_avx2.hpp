#pragma once
// The avx2 path's kernels (dispatch.hpp): kernels.inl compiled for AVX2 + FMA over 8 floats or
// 4 doubles per register. With 16 vector registers the products keep a 6 x 2-register tile of C
// (12 accumulators, 2 registers of B and the broadcast value of A: 15), the tile of BLIS's and
// OpenBLAS's Haswell kernels.

#include <algorithm>
#include <cstddef>

#include "../types.hpp"
#include "simd.hpp"

#if GRADSCOPE_X86_KERNELS
GRADSCOPE_TARGET_AVX2_BEGIN
namespace gradscope::detail::avx2 {

template <class T>
struct Vec;

template <>
struct Vec<float> {
  using V = __m256;
  using Mask = __m256i;
  static constexpr Index lanes = 8;
  static constexpr Index MR = 6, NV = 2, MC = 96, KC = 256, NC = 512;
  static constexpr int DR = 4, DC = 2;

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  /// The first n lanes (none for n <= 0, all for n >= lanes), as AVX2's masked moves take them.
  static Mask mask(Index n) {
    const int k = static_cast<int>(std::clamp<Index>(n, 0, lanes));
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V maskz_loadu(Mask m, const float* p) { return _mm256_maskload_ps(p, m); }
  static void mask_storeu(float* p, Mask m, V v) { _mm256_maskstore_ps(p, m, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  /// Lanes where x > 0 (false for NaN), and a blend by them.
  static V positive(V x) { return _mm256_cmp_ps(x, zero(), _CMP_GT_OQ); }
  static V select(V m, V if_true, V if_false) { return _mm256_blendv_ps(if_false, if_true, m); }
  static float reduce_add(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  /// Transposes 8 rows of 8 floats: r[t] holds row t before, column t after.
  static void transpose(V r[8]) {
    V t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {  // per 128-bit half: columns of rows i..i+3
      s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
      s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
      s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int q = 0; q < 4; ++q) {
      r[q] = _mm256_permute2f128_ps(s[q], s[4 + q], 0x20);
      r[4 + q] = _mm256_permute2f128_ps(s[q], s[4 + q], 0x31);
    }
  }
};

template <>
struct Vec<double> {
  using V = __m256d;
  using Mask = __m256i;
  static constexpr Index lanes = 4;
  static constexpr Index MR = 6, NV = 2, MC = 96, KC = 256, NC = 256;
  static constexpr int DR = 4, DC = 2;

  static V zero() { return _mm256_setzero_pd(); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V load(const double* p) { return _mm256_load_pd(p); }
  static V loadu(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_store_pd(p, v); }
  static void storeu(double* p, V v) { _mm256_storeu_pd(p, v); }
  static Mask mask(Index n) {
    const long long k = std::clamp<Index>(n, 0, lanes);
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(k), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static V maskz_loadu(Mask m, const double* p) { return _mm256_maskload_pd(p, m); }
  static void mask_storeu(double* p, Mask m, V v) { _mm256_maskstore_pd(p, m, v); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V positive(V x) { return _mm256_cmp_pd(x, zero(), _CMP_GT_OQ); }
  static V select(V m, V if_true, V if_false) { return _mm256_blendv_pd(if_false, if_true, m); }
  static double reduce_add(V v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }

  /// Transposes 4 rows of 4 doubles: r[t] holds row t before, column t after.
  static void transpose(V r[4]) {
    const V t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const V t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
  }
};

#include "kernels.inl"

}  // namespace gradscope::detail::avx2
GRADSCOPE_TARGET_END
#endif
