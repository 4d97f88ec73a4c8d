// The kernels of one CPU path, written once over that path's vector type Vec<T>
// (kernels_avx512.hpp, kernels_avx2.hpp include this file inside their target region and
// namespace; no include guard, no #include: see simd.hpp).
//
// ---- Matrix products: c (+)= A B, blocked ----
//
// The usual blocked layout (Goto and van de Geijn; BLIS): for each block of NC columns of B and
// KC of the inner dimension, B's block is packed into strips of NR = NV * lanes columns, each
// stored k by k as NR consecutive values; for each block of MC rows of A, A's block is packed
// into strips of MR rows, stored k by k as MR consecutive values. The micro-kernel then keeps an
// MR x NR tile of C in MR * NV vector registers and, for each k, loads NV registers of B's strip,
// broadcasts each of the MR values of A's strip and issues MR * NV fused multiply-adds. Eigen's
// kernel keeps a 3-register x 4 tile of the transposed product (12 accumulators on AVX-512, whose
// 32 registers could hold twice as many), which leaves the FMA units waiting on loads more often.
// Strips are zero-padded, so the kernel always computes a whole tile, and the tile is written
// back with masked stores where it overhangs C.
//
// Packing handles the transposed operands: B = W^T of a dense layer's forward (W row-major,
// contiguous along k) is packed by lanes x lanes in-register transposes, and so is A where its
// rows are contiguous along k.

/// Values of workspace for the packed block of A, rounded up to 64 bytes: the packed panel of B
/// follows it, aligned as the micro-kernel's loads of B need.
template <class T>
inline Index packed_a_size(Index m, Index k) {
  using W = Vec<T>;
  constexpr Index per_line = 64 / static_cast<Index>(sizeof(T));
  const Index a = (std::min(W::MC, m) + W::MR - 1) / W::MR * W::MR * std::min(W::KC, k);
  return (a + per_line - 1) / per_line * per_line;
}

/// Values of packing workspace (64-byte aligned) that gemm_blocked needs for a product of these
/// dimensions.
template <class T>
inline std::size_t gemm_workspace(Index m, Index n, Index k) {
  using W = Vec<T>;
  constexpr Index nr = W::NV * W::lanes;
  const Index b = (std::min(W::NC, n) + nr - 1) / nr * nr * std::min(W::KC, k);
  return static_cast<std::size_t>(packed_a_size<T>(m, k) + b);
}

// B(l, j) = b[l * brs + j * bcs] for l in [0, kc), j in [0, nc): the panel as strips of NR
// columns, each stored k by k, zero beyond nc. Strip s starts at dst + s * NR * kc.
template <class T>
GRADSCOPE_NOIPA void pack_b_panel(T* dst, const T* b, Index brs, Index bcs, Index kc, Index nc) {
  using W = Vec<T>;
  constexpr Index L = W::lanes, NV = W::NV, NR = NV * L;
  if (bcs == 1) {  // rows of B contiguous: read each row once, NV registers into every strip
    for (Index l = 0; l < kc; ++l) {
      const T* src = b + l * brs;
      Index js = 0;
      for (; js + NR <= nc; js += NR)
        for (Index v = 0; v < NV; ++v)
          W::store(dst + js * kc + l * NR + v * L, W::loadu(src + js + v * L));
      if (js < nc)
        for (Index v = 0; v < NV; ++v)
          W::store(dst + js * kc + l * NR + v * L,
                   W::maskz_loadu(W::mask(nc - js - v * L), src + js + v * L));
    }
    return;
  }
  for (Index js = 0; js < nc; js += NR) {
    T* strip = dst + js * kc;
    const Index w = std::min(NR, nc - js);
    Index l0 = 0;
    if (brs == 1) {  // rows of B^T contiguous along l: lanes x lanes blocks, transposed
      for (Index jj = 0; jj < NR; jj += L)
        for (l0 = 0; l0 + L <= kc; l0 += L) {
          typename W::V r[L];
          for (Index t = 0; t < L; ++t)
            r[t] = jj + t < w ? W::loadu(b + (js + jj + t) * bcs + l0) : W::zero();
          W::transpose(r);
          for (Index u = 0; u < L; ++u) W::store(strip + (l0 + u) * NR + jj, r[u]);
        }
    }
    for (Index l = l0; l < kc; ++l) {
      T* d = strip + l * NR;
      const T* src = b + l * brs + js * bcs;
      Index j = 0;
      for (; j < w; ++j) d[j] = src[j * bcs];
      for (; j < NR; ++j) d[j] = T(0);
    }
  }
}

// A(i, l) = a[i * ars + l * acs] for i in [0, h), l in [0, kc): one strip of MR rows, k by k,
// zero beyond h. A register of MR values is stored whole where it overhangs into the next l's
// slot (which is written next), masked only for the strip's last l: AVX2's masked stores cost
// more than a dozen plain ones on some CPUs.
template <class T>
GRADSCOPE_NOIPA void pack_a_strip(T* dst, const T* a, Index ars, Index acs, Index kc, Index h) {
  using W = Vec<T>;
  constexpr Index L = W::lanes, MR = W::MR;
  if (ars == 1) {  // columns of A contiguous: MR consecutive values per l
    for (Index l = 0; l < kc; ++l)
      for (Index v = 0; v < MR; v += L) {
        const typename W::V x = W::maskz_loadu(W::mask(h - v), a + l * acs + v);
        if (v + L <= MR || l + 1 < kc)
          W::storeu(dst + l * MR + v, x);
        else
          W::mask_storeu(dst + l * MR + v, W::mask(MR - v), x);
      }
    return;
  }
  Index l0 = 0;
  if (acs == 1) {  // rows of A contiguous along l: transpose lanes x lanes blocks, keep MR rows
    constexpr Index blocks = (MR + L - 1) / L;  // of rows
    for (; l0 + L <= kc; l0 += L) {
      typename W::V r[blocks][L];
      for (Index b = 0; b < blocks; ++b) {
        for (Index t = 0; t < L; ++t)
          r[b][t] = b * L + t < h ? W::loadu(a + (b * L + t) * ars + l0) : W::zero();
        W::transpose(r[b]);
      }
      // Slot by slot, so a register that overhangs into the next slot is overwritten after.
      for (Index u = 0; u < L; ++u)
        for (Index b = 0; b < blocks; ++b) {
          T* d = dst + (l0 + u) * MR + b * L;
          if ((b + 1) * L <= MR || l0 + u + 1 < kc)
            W::storeu(d, r[b][u]);
          else
            W::mask_storeu(d, W::mask(MR - b * L), r[b][u]);
        }
    }
  }
  for (Index l = l0; l < kc; ++l) {
    T* d = dst + l * MR;
    Index i = 0;
    for (; i < h; ++i) d[i] = a[i * ars + l * acs];
    for (; i < MR; ++i) d[i] = T(0);
  }
}

// The MR x NR tile of C at c (row stride ldc) += (or =, when `overwrite`) the product of one
// packed strip of A and one of B over kc. Only `rows` x `cols` of the tile lie inside C.
template <class T>
GRADSCOPE_NOIPA void micro_kernel(Index kc, const T* __restrict ap, const T* __restrict bp, T* c,
                                  Index ldc, Index rows, Index cols, bool overwrite) {
  using W = Vec<T>;
  using V = typename W::V;
  constexpr Index L = W::lanes, MR = W::MR, NV = W::NV, NR = NV * L;
  // The tile's rows of C are fetched while the products run, so the final update does not wait.
  constexpr Index line = 64 / static_cast<Index>(sizeof(T));
  for (Index r = 0; r < rows; ++r)
    for (Index q = 0; q < NR; q += line)
      _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + q), _MM_HINT_T0);
  V acc[MR][NV];
#pragma GCC unroll 16
  for (Index r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (Index v = 0; v < NV; ++v) acc[r][v] = W::zero();
#pragma GCC unroll 2
  for (Index l = 0; l < kc; ++l) {
    V b[NV];
#pragma GCC unroll 4
    for (Index v = 0; v < NV; ++v) b[v] = W::load(bp + l * NR + v * L);
#pragma GCC unroll 16
    for (Index r = 0; r < MR; ++r) {
      const V x = W::set1(ap[l * MR + r]);
#pragma GCC unroll 4
      for (Index v = 0; v < NV; ++v) acc[r][v] = W::fmadd(x, b[v], acc[r][v]);
    }
  }
  // Unrolled with constant indices, so the accumulators stay in registers.
  if (cols == NR) {
#pragma GCC unroll 16
    for (Index r = 0; r < MR; ++r) {
      if (r >= rows) break;
      T* p = c + r * ldc;
#pragma GCC unroll 4
      for (Index v = 0; v < NV; ++v)
        W::storeu(p + v * L, overwrite ? acc[r][v] : W::add(W::loadu(p + v * L), acc[r][v]));
    }
    return;
  }
  typename W::Mask m[NV];
#pragma GCC unroll 4
  for (Index v = 0; v < NV; ++v) m[v] = W::mask(cols - v * L);
#pragma GCC unroll 16
  for (Index r = 0; r < MR; ++r) {
    if (r >= rows) break;
    T* p = c + r * ldc;
#pragma GCC unroll 4
    for (Index v = 0; v < NV; ++v)
      W::mask_storeu(p + v * L, m[v],
                     overwrite ? acc[r][v] : W::add(W::maskz_loadu(m[v], p + v * L), acc[r][v]));
  }
}

/// c [m, n] (row-major, row stride ldc) = A B, or += A B when `accumulate`, where A(i, l) =
/// a[i * ars + l * acs] is [m, k] and B(l, j) = b[l * brs + j * bcs] is [k, n]. `work` holds
/// gemm_workspace<T>(m, n, k) values, 64-byte aligned.
template <class T>
void gemm_blocked(T* c, Index ldc, Index m, Index n, Index k, const T* a, Index ars, Index acs,
                  const T* b, Index brs, Index bcs, bool accumulate, T* work) {
  using W = Vec<T>;
  constexpr Index MR = W::MR, NR = W::NV * W::lanes;
  T* ap = work;
  T* bp = work + packed_a_size<T>(m, k);
  for (Index jc = 0; jc < n; jc += W::NC) {
    const Index nc = std::min(W::NC, n - jc);
    for (Index pc = 0; pc < k; pc += W::KC) {
      const Index kc = std::min(W::KC, k - pc);
      const bool overwrite = !accumulate && pc == 0;
      pack_b_panel(bp, b + pc * brs + jc * bcs, brs, bcs, kc, nc);
      for (Index ic = 0; ic < m; ic += W::MC) {
        const Index mc = std::min(W::MC, m - ic);
        for (Index is = 0; is < mc; is += MR)
          pack_a_strip(ap + is * kc, a + (ic + is) * ars + pc * acs, ars, acs, kc,
                       std::min(MR, mc - is));
        for (Index js = 0; js < nc; js += NR)
          for (Index is = 0; is < mc; is += MR)
            micro_kernel(kc, ap + is * kc, bp + js * kc, c + (ic + is) * ldc + jc + js, ldc,
                         std::min(MR, mc - is), std::min(NR, nc - js), overwrite);
      }
    }
  }
}

// ---- a b^T with a thin result: register-blocked dot products of rows ----
//
// c = a b^T for row-major a [m, k], b [n, k]: each element is the dot product of two contiguous
// rows. The kernel keeps RB x CB sums in registers, reads the RB + CB rows once per register of
// k, and reduces each sum across its register at the end (gemm.hpp says when this beats GEMM).

template <class T, int RB, int CB>
GRADSCOPE_ALWAYS_INLINE inline void dot_block(const T* a, Index lda, const T* b, Index ldb, Index k,
                                              T* c, Index ldc, bool accumulate) {
  using W = Vec<T>;
  using V = typename W::V;
  constexpr Index L = W::lanes;
  V sum[RB][CB];
  for (int r = 0; r < RB; ++r)
    for (int j = 0; j < CB; ++j) sum[r][j] = W::zero();
  Index l = 0;
  for (; l + L <= k; l += L) {
    V x[RB], y[CB];
    for (int r = 0; r < RB; ++r) x[r] = W::loadu(a + r * lda + l);
    for (int j = 0; j < CB; ++j) y[j] = W::loadu(b + j * ldb + l);
    for (int r = 0; r < RB; ++r)
      for (int j = 0; j < CB; ++j) sum[r][j] = W::fmadd(x[r], y[j], sum[r][j]);
  }
  T total[RB][CB];
  for (int r = 0; r < RB; ++r)
    for (int j = 0; j < CB; ++j) total[r][j] = W::reduce_add(sum[r][j]);
  for (; l < k; ++l)
    for (int r = 0; r < RB; ++r)
      for (int j = 0; j < CB; ++j) total[r][j] += a[r * lda + l] * b[j * ldb + l];
  for (int r = 0; r < RB; ++r)
    for (int j = 0; j < CB; ++j) {
      T& out = c[r * ldc + j];
      out = accumulate ? out + total[r][j] : total[r][j];
    }
}

// RB rows of a against every row of b, in blocks of DC, DC / 2, ..., 1 rows of b.
template <class T, int RB>
void dot_rows(const T* a, const T* b, Index n, Index k, T* c, bool accumulate) {
  constexpr int DC = Vec<T>::DC;
  Index j = 0;
  for (; j + DC <= n; j += DC) dot_block<T, RB, DC>(a, k, b + j * k, k, k, c + j, n, accumulate);
  if constexpr (DC >= 4)
    if (j + 2 <= n) {
      dot_block<T, RB, 2>(a, k, b + j * k, k, k, c + j, n, accumulate);
      j += 2;
    }
  if constexpr (DC >= 2)
    if (j < n) dot_block<T, RB, 1>(a, k, b + j * k, k, k, c + j, n, accumulate);
}

/// c (+)= a b^T for contiguous row-major a [m, k], b [n, k], c [m, n].
template <class T>
GRADSCOPE_NOIPA void dot_product_gemm(T* c, const T* a, const T* b, Index m, Index n, Index k,
                                      bool accumulate) {
  static_assert(Vec<T>::DR == 4);
  Index i = 0;
  for (; i + 4 <= m; i += 4) dot_rows<T, 4>(a + i * k, b, n, k, c + i * n, accumulate);
  if (i + 2 <= m) {
    dot_rows<T, 2>(a + i * k, b, n, k, c + i * n, accumulate);
    i += 2;
  }
  if (i < m) dot_rows<T, 1>(a + i * k, b, n, k, c + i * n, accumulate);
}

// ---- Elementwise passes ----
//
// The gradient of the rectifiers, out = x > 0 ? g : r, where r is 0 (ReLU), a g (LeakyReLU with
// slope a) or g (y + a) (ELU with alpha a, y its output); out += that when `accumulate`. out may
// be g itself. A select: Eigen vectorises it for AVX and AVX-512, not for SSE2, where the
// ReLU layers' backward pass ran element by element (15% of net B's training step).
template <class T, int Kind>
GRADSCOPE_NOIPA void rectifier_backward(T* out, const T* g, const T* x, const T* y, Index n, T a,
                                        bool accumulate) {
  using W = Vec<T>;
  using V = typename W::V;
  constexpr Index L = W::lanes;
  const V av = W::set1(a);
  Index i = 0;
  for (; i + L <= n; i += L) {
    const V gv = W::loadu(g + i);
    V r = W::zero();  // the gradient where x <= 0 (no lambdas here: see simd.hpp)
    if constexpr (Kind == 1) r = W::mul(av, gv);
    if constexpr (Kind == 2) r = W::mul(gv, W::add(W::loadu(y + i), av));
    r = W::select(W::positive(W::loadu(x + i)), gv, r);
    W::storeu(out + i, accumulate ? W::add(W::loadu(out + i), r) : r);
  }
  for (; i < n; ++i) {
    const T r = x[i] > T(0) ? g[i] : Kind == 0 ? T(0) : Kind == 1 ? a * g[i] : g[i] * (y[i] + a);
    out[i] = accumulate ? out[i] + r : r;
  }
}
