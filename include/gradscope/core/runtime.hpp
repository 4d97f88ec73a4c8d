#pragma once
/// What gradscope's kernels run on: the CPU path (AVX-512, AVX2 or the portable code) and the
/// threads of the matrix products. docs/benchmarks.md ("CPU paths and threads") has the figures.

#include "detail/dispatch.hpp"
#include "detail/parallel.hpp"
#include "error.hpp"

namespace gradscope {

/// The path gradscope's kernels take in this process: chosen at the first product from the CPU
/// (or the compiler's target, or GRADSCOPE_CPU), or set by set_cpu_path.
inline CpuPath cpu_path() { return detail::active_cpu_path(); }

/// Whether this CPU, and this build, can run path p.
inline bool cpu_path_supported(CpuPath p) { return detail::cpu_supports(p); }

/// "avx512", "avx2" or "baseline".
inline const char* to_string(CpuPath p) noexcept { return detail::cpu_path_name(p); }

/// Forces path p for every later product and kernel, in every thread (set it before training,
/// not while products run). Throws UsageError when this CPU or build cannot run p.
inline void set_cpu_path(CpuPath p) {
  detail::check_cpu_path(p, detail::cpu_supports);
  detail::cpu_path_state.store(static_cast<int>(p), std::memory_order_relaxed);
}

/// The threads a large matrix product is split over: 1 unless the program is built with OpenMP
/// (any of its files that includes gradscope, compiled with -fopenmp), then set_num_threads'
/// value or OpenMP's default (OMP_NUM_THREADS, else every core). Products below 2^23
/// multiply-adds, and products called from inside a parallel region, use one thread.
inline int num_threads() { return detail::available_threads(); }

/// Sets the threads of the products (n >= 1); 0 goes back to OpenMP's default. Without OpenMP
/// in the program the products stay on one thread whatever is set.
inline void set_num_threads(int n) {
  if (n < 0) throw ValueError(detail::cat("set_num_threads: needs n >= 0, got ", n));
  detail::requested_threads.store(n, std::memory_order_relaxed);
}

}  // namespace gradscope
