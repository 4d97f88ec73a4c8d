#pragma once
// The one place that picks gradscope's kernels by CPU.
//
// gradscope's own kernels (the matrix products of core/detail/gemm.hpp and the hot elementwise
// passes of a training step) exist for three paths, side by side with the same signatures:
//
//   avx512    AVX-512F (+ AVX2, FMA): namespace detail::avx512 (kernels_avx512.hpp)
//   avx2      AVX2 + FMA:             namespace detail::avx2   (kernels_avx2.hpp)
//   baseline  the portable code (Eigen's kernels), compiled for whatever the compiler targets
//
// The avx512 and avx2 kernels are compiled inside target regions (simd.hpp: GCC's and Clang's
// target attribute), so a program built for plain x86-64, as a user's -O2 build is, contains
// them too. The path is chosen once, at the first product, from the CPU (cpuid, through
// __builtin_cpu_supports, which also checks that the OS saves the vector registers). A program
// compiled for AVX-512F or AVX2 + FMA itself (-march=native, -mavx2 -mfma) skips that choice: its
// path is the one it targets.
//
// GRADSCOPE_CPU=avx512|avx2|baseline|auto in the environment, or gradscope::set_cpu_path(), forces
// a path (to test or benchmark the others on a machine that has the larger one). A forced path
// this CPU cannot run is an error from set_cpu_path (UsageError); from the environment, which
// every program of a shell inherits, it is a warning on stderr and the best path the CPU has
// below it (as oneDNN's ONEDNN_MAX_CPU_ISA caps rather than fails). GRADSCOPE_NO_DISPATCH (a
// compile definition) leaves the avx512 and avx2 kernels out: baseline only.

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../error.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(GRADSCOPE_NO_DISPATCH)
#define GRADSCOPE_X86_KERNELS 1
#else
#define GRADSCOPE_X86_KERNELS 0
#endif

namespace gradscope {

/// The instruction sets gradscope's kernels exist for, from the portable code up.
enum class CpuPath : std::uint8_t {
  baseline,  ///< the portable code (Eigen's kernels), as the compiler targets
  avx2,      ///< AVX2 + FMA kernels of gradscope's own
  avx512,    ///< AVX-512F kernels of gradscope's own
};

namespace detail {

inline constexpr CpuPath cpu_paths[] = {CpuPath::baseline, CpuPath::avx2, CpuPath::avx512};

inline const char* cpu_path_name(CpuPath p) noexcept {
  switch (p) {
    case CpuPath::avx512:
      return "avx512";
    case CpuPath::avx2:
      return "avx2";
    default:
      return "baseline";
  }
}

// The path the compiler targets: a build for AVX-512F or AVX2 + FMA runs it without asking the
// CPU.
#if GRADSCOPE_X86_KERNELS && defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
inline constexpr CpuPath compiled_cpu_path = CpuPath::avx512;
#elif GRADSCOPE_X86_KERNELS && defined(__AVX2__) && defined(__FMA__)
inline constexpr CpuPath compiled_cpu_path = CpuPath::avx2;
#else
inline constexpr CpuPath compiled_cpu_path = CpuPath::baseline;
#endif

/// Whether this CPU can run path p (and this build has its kernels).
inline bool cpu_supports(CpuPath p) noexcept {
#if GRADSCOPE_X86_KERNELS
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (p) {
    case CpuPath::avx512:
      return avx2 && __builtin_cpu_supports("avx512f");
    case CpuPath::avx2:
      return avx2;
    default:
      return true;
  }
#else
  return p == CpuPath::baseline;
#endif
}

/// The best path this CPU runs, at most `cap`.
inline CpuPath best_cpu_path(CpuPath cap = CpuPath::avx512) noexcept {
  for (const CpuPath p : {CpuPath::avx512, CpuPath::avx2})
    if (p <= cap && cpu_supports(p)) return p;
  return CpuPath::baseline;
}

/// "avx512, avx2, baseline": the paths that `supports` says this CPU runs.
template <class Supports>
std::string cpu_path_list(Supports supports) {
  std::string s;
  for (const CpuPath p : {CpuPath::avx512, CpuPath::avx2, CpuPath::baseline})
    if (supports(p)) s.append(s.empty() ? "" : ", ").append(cpu_path_name(p));
  return s;
}

/// Throws UsageError unless `supports` says this CPU runs path p (set_cpu_path's check).
template <class Supports>
void check_cpu_path(CpuPath p, Supports supports) {
  if (!supports(p))
    throw UsageError(cat("set_cpu_path: this CPU (or build) cannot run the ", cpu_path_name(p),
                         " kernels (it runs: ", cpu_path_list(supports), ")"));
}

/// The path GRADSCOPE_CPU's value `env` asks for, given the path taken without it
/// (`automatic`) and what the CPU runs (`supports`); sets `warning` when the value is not a path
/// or names one the CPU cannot run (then the best path below it).
template <class Supports>
CpuPath cpu_path_from_env(const char* env, CpuPath automatic, Supports supports,
                          std::string& warning) {
  warning.clear();
  if (!env || !*env || std::strcmp(env, "auto") == 0) return automatic;
  for (const CpuPath p : cpu_paths) {
    if (std::strcmp(env, cpu_path_name(p)) != 0) continue;
    if (supports(p)) return p;
    CpuPath fallback = CpuPath::baseline;
    for (const CpuPath q : {CpuPath::avx512, CpuPath::avx2})
      if (q < p && supports(q) && fallback == CpuPath::baseline) fallback = q;
    const std::string runs = cpu_path_list(supports);
    warning = std::string("GRADSCOPE_CPU=") + env +
              ", but this CPU (or build) cannot run it (it runs: " + runs + "); using " +
              cpu_path_name(fallback);
    return fallback;
  }
  warning = std::string("GRADSCOPE_CPU=") + env +
            " is not a path (expected avx512, avx2, baseline or auto); using " +
            cpu_path_name(automatic);
  return automatic;
}

/// The path a process starts on: GRADSCOPE_CPU if set (and runnable), else the compiled target's,
/// else the best the CPU runs. A bad GRADSCOPE_CPU is reported on stderr.
[[gnu::cold]] inline CpuPath initial_cpu_path() {
  const CpuPath automatic =
      compiled_cpu_path != CpuPath::baseline ? compiled_cpu_path : best_cpu_path();
  std::string warning;
  const CpuPath p =
      cpu_path_from_env(std::getenv("GRADSCOPE_CPU"), automatic, cpu_supports, warning);
  if (!warning.empty()) std::fprintf(stderr, "gradscope: %s\n", warning.c_str());
  return p;
}

// The path in use: -1 until the first product reads it.
inline std::atomic<int> cpu_path_state{-1};

[[gnu::cold, gnu::noinline]] inline CpuPath resolve_cpu_path() {
  int expected = -1;
  cpu_path_state.compare_exchange_strong(expected, static_cast<int>(initial_cpu_path()),
                                         std::memory_order_relaxed);
  return static_cast<CpuPath>(cpu_path_state.load(std::memory_order_relaxed));
}

/// The path the kernels take now: one relaxed load after the first call.
inline CpuPath active_cpu_path() noexcept {
  const int s = cpu_path_state.load(std::memory_order_relaxed);
  if (s < 0) [[unlikely]]
    return resolve_cpu_path();
  return static_cast<CpuPath>(s);
}

}  // namespace detail

}  // namespace gradscope
