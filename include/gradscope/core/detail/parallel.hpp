#pragma once
// Threads for gradscope's products, through OpenMP when the program has it.
//
// The products split themselves over a team of threads (gemm.hpp); the team comes from a thread
// backend that any translation unit compiled with OpenMP registers at start-up, below. So a
// program gets multi-threaded products as soon as one of its files that includes gradscope is
// built with -fopenmp (CMake: link OpenMP::OpenMP_CXX), whether gradscope's code is compiled in
// that file (header-only) or in the prebuilt library gradscope::compiled, which is built without
// OpenMP and so never imposes it. Without a backend every product runs on the calling thread.
//
// The team size is OpenMP's (OMP_NUM_THREADS, else the cores) unless gradscope::set_num_threads
// says otherwise; a product called from inside a parallel region runs on its caller's thread.

#include <atomic>

namespace gradscope::detail {

/// What the products need of a thread library.
struct ThreadBackend {
  int (*max_threads)();
  bool (*in_parallel)();
  /// Runs body(ctx, thread, team) on each thread of a team of (at most) `threads`.
  void (*run)(int threads, void (*body)(void*, int, int), void* ctx);
};

inline std::atomic<const ThreadBackend*> thread_backend{nullptr};
// The team size set by gradscope::set_num_threads; 0: the backend's default.
inline std::atomic<int> requested_threads{0};

/// The threads a product may use: 1 without a backend or inside a parallel region.
inline int available_threads() {
  const ThreadBackend* b = thread_backend.load(std::memory_order_acquire);
  if (!b || b->in_parallel()) return 1;
  const int requested = requested_threads.load(std::memory_order_relaxed);
  return requested > 0 ? requested : b->max_threads();
}

/// Runs body(thread, team) on a team of `threads` (or body(0, 1) here when threads <= 1).
template <class Body>
void parallel_run(int threads, Body& body) {
  const ThreadBackend* b = thread_backend.load(std::memory_order_acquire);
  if (threads <= 1 || !b) {
    body(0, 1);
    return;
  }
  b->run(
      threads, [](void* ctx, int t, int team) { (*static_cast<Body*>(ctx))(t, team); }, &body);
}

}  // namespace gradscope::detail

#if defined(_OPENMP)
#include <omp.h>

namespace gradscope::detail::openmp {
inline int max_threads() { return omp_get_max_threads(); }
inline bool in_parallel() { return omp_in_parallel() != 0; }
inline void run(int threads, void (*body)(void*, int, int), void* ctx) {
#pragma omp parallel num_threads(threads)
  body(ctx, omp_get_thread_num(), omp_get_num_threads());
}
inline constexpr ThreadBackend backend{&max_threads, &in_parallel, &run};
// Registered during static initialisation of every OpenMP file that includes this header.
inline const bool registered = (thread_backend.store(&backend, std::memory_order_release), true);
}  // namespace gradscope::detail::openmp
#endif
