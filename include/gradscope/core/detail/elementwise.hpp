#pragma once
// The elementwise passes of a training step that run on the kernels of the CPU path
// (dispatch.hpp, kernels.inl) rather than as Eigen expressions.
//
// Eigen's expressions follow the compiler's target: in a build for plain x86-64 they run at
// SSE2's width, and some not vectorised at all. Measured on net B (docs/benchmarks.md) once the
// products ran on the avx512 kernels in such a build, the only elementwise pass that cost a
// noticeable share of the step was the rectifiers' gradient, a select that Eigen does not
// vectorise for SSE2: 15% of the step, element by element (1% with -march=native). The others
// (the optimiser's update, the finite check, bias gradients, batch norm) took about the same time
// at SSE2's width as at AVX-512's, being bound by memory, and stay Eigen expressions.

#include "../../detail/compiled.hpp"
#include "../types.hpp"
#include "dispatch.hpp"
#if GRADSCOPE_X86_KERNELS && !GRADSCOPE_CORE_DECLARE_ONLY  // compiled where defined (below)
#include "kernels_avx2.hpp"
#include "kernels_avx512.hpp"
#endif

namespace gradscope::detail {

/// The rectifiers whose gradient rectifier_backward computes.
enum class Rectifier : std::uint8_t {
  relu,        ///< x > 0 ? g : 0
  leaky_relu,  ///< x > 0 ? g : a g
  elu,         ///< x > 0 ? g : g (y + a), y = a (e^x - 1) the output
};

template <class T, int Kind>
void rectifier_backward_portable(T* out, const T* g, const T* x, const T* y, Index n, T a,
                                 bool accumulate) {
  using A = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  using CA = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  A o(out, n);
  const CA gv(g, n), xv(x, n);
  const auto put = [&](const auto& e) {
    if (accumulate)
      o += e;
    else
      o = e;
  };
  if constexpr (Kind == 0)
    put((xv > T(0)).select(gv, T(0)));
  else if constexpr (Kind == 1)
    put((xv > T(0)).select(gv, a * gv));
  else
    put((xv > T(0)).select(gv, gv * (CA(y, n) + a)));
}

#if GRADSCOPE_X86_KERNELS && !GRADSCOPE_CORE_DECLARE_ONLY
template <CpuPath P, class T, int Kind>
void path_rectifier_backward_on(T* out, const T* g, const T* x, const T* y, Index n, T a,
                                bool accumulate) {
  if constexpr (P == CpuPath::avx512)
    avx512::rectifier_backward<T, Kind>(out, g, x, y, n, a, accumulate);
  else
    avx2::rectifier_backward<T, Kind>(out, g, x, y, n, a, accumulate);
}

template <CpuPath P, class T>
void path_rectifier_backward_on(Rectifier r, T* out, const T* g, const T* x, const T* y, Index n,
                                T a, bool accumulate) {
  switch (r) {
    case Rectifier::relu:
      return path_rectifier_backward_on<P, T, 0>(out, g, x, y, n, a, accumulate);
    case Rectifier::leaky_relu:
      return path_rectifier_backward_on<P, T, 1>(out, g, x, y, n, a, accumulate);
    default:
      return path_rectifier_backward_on<P, T, 2>(out, g, x, y, n, a, accumulate);
  }
}
#endif

#if GRADSCOPE_X86_KERNELS
/// rectifier_backward on the kernels of path p (avx512 or avx2). Compiled once, with the
/// kernels, in the compiled mode (detail/compiled.hpp).
GRADSCOPE_COMPILED_API void path_rectifier_backward(CpuPath p, Rectifier r, float* out,
                                                    const float* g, const float* x, const float* y,
                                                    Index n, float a, bool accumulate)
#if GRADSCOPE_CORE_DECLARE_ONLY
    ;
#else
{
  if (p == CpuPath::avx512)
    path_rectifier_backward_on<CpuPath::avx512>(r, out, g, x, y, n, a, accumulate);
  else
    path_rectifier_backward_on<CpuPath::avx2>(r, out, g, x, y, n, a, accumulate);
}
#endif

/// The same for double.
GRADSCOPE_COMPILED_API void path_rectifier_backward(CpuPath p, Rectifier r, double* out,
                                                    const double* g, const double* x,
                                                    const double* y, Index n, double a,
                                                    bool accumulate)
#if GRADSCOPE_CORE_DECLARE_ONLY
    ;
#else
{
  if (p == CpuPath::avx512)
    path_rectifier_backward_on<CpuPath::avx512>(r, out, g, x, y, n, a, accumulate);
  else
    path_rectifier_backward_on<CpuPath::avx2>(r, out, g, x, y, n, a, accumulate);
}
#endif
#endif

/// out = (or += when `accumulate`) the gradient of rectifier r at its n inputs x (outputs y,
/// read by the ELU only) given its output's gradient g; a is the LeakyReLU's slope or the ELU's
/// alpha. out may be g itself.
template <class T>
void rectifier_backward(Rectifier r, T* out, const T* g, const T* x, const T* y, Index n, T a,
                        bool accumulate) {
#if GRADSCOPE_X86_KERNELS
  if (const CpuPath p = active_cpu_path(); p != CpuPath::baseline)
    return path_rectifier_backward(p, r, out, g, x, y, n, a, accumulate);
#endif
  switch (r) {
    case Rectifier::relu:
      return rectifier_backward_portable<T, 0>(out, g, x, y, n, a, accumulate);
    case Rectifier::leaky_relu:
      return rectifier_backward_portable<T, 1>(out, g, x, y, n, a, accumulate);
    default:
      return rectifier_backward_portable<T, 2>(out, g, x, y, n, a, accumulate);
  }
}

}  // namespace gradscope::detail
