#pragma once
// Heap-allocation counters for the benchmark executables.
//
// Include this header in exactly ONE translation unit per executable: it defines (not declares)
// the replaceable global operator new / delete, and on glibc it also interposes the malloc
// family. Each bench/*.bench.cpp is its own executable with a single TU, so including it there is
// right; including it from two TUs of one program is a multiple-definition link error.
//
// Two counts, because they answer different questions:
//   new_count()     calls of any global operator new (plain, array, aligned, nothrow): the C++
//                   allocations of the code under test (std::vector growth, shared_ptr,
//                   std::function, std::string, the tape arena's blocks).
//   malloc_count()  calls of malloc, calloc, realloc, aligned_alloc, memalign, posix_memalign
//                   (glibc only, -1 elsewhere). operator new ends in malloc, so this includes
//                   new_count(); the difference is what Eigen allocates itself: Eigen's
//                   aligned_malloc calls std::malloc, e.g. the packing buffers of a GEMM whose
//                   blocks exceed EIGEN_STACK_ALLOCATION_LIMIT (128 KiB).
//
// The counters are relaxed atomics: a few nanoseconds per allocation, nothing when nothing is
// allocated (the steady state we want to prove).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace gradscope_bench {

inline std::atomic<std::uint64_t> g_new_calls{0};
inline std::atomic<std::uint64_t> g_malloc_calls{0};

/// Calls of the global operator new so far.
inline std::int64_t new_count() noexcept {
  return static_cast<std::int64_t>(g_new_calls.load(std::memory_order_relaxed));
}

#if defined(__GLIBC__)
inline constexpr bool counts_malloc = true;
/// Calls of the malloc family so far (operator new included).
inline std::int64_t malloc_count() noexcept {
  return static_cast<std::int64_t>(g_malloc_calls.load(std::memory_order_relaxed));
}
#else
inline constexpr bool counts_malloc = false;
inline std::int64_t malloc_count() noexcept { return -1; }
#endif

/// Allocations between construction and a call of the members, e.g. around a timed loop.
struct AllocationScope {
  std::int64_t news = new_count();
  std::int64_t mallocs = malloc_count();
  std::int64_t new_calls() const noexcept { return new_count() - news; }
  std::int64_t malloc_calls() const noexcept {
    return counts_malloc ? malloc_count() - mallocs : -1;
  }
};

namespace detail {
inline void* counted_new(std::size_t size) {
  g_new_calls.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  if (void* p = std::malloc(size)) return p;
  throw std::bad_alloc();
}
inline void* counted_new_aligned(std::size_t size, std::align_val_t al) {
  g_new_calls.fetch_add(1, std::memory_order_relaxed);
  const auto a = static_cast<std::size_t>(al);
  // aligned_alloc needs a size that is a multiple of the alignment.
  size = (size == 0 ? a : (size + a - 1) / a * a);
  if (void* p = std::aligned_alloc(a, size)) return p;
  throw std::bad_alloc();
}
}  // namespace detail

}  // namespace gradscope_bench

// ---- the replaced global allocation functions (must not be inline) ----
void* operator new(std::size_t n) { return gradscope_bench::detail::counted_new(n); }
void* operator new[](std::size_t n) { return gradscope_bench::detail::counted_new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return gradscope_bench::detail::counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return gradscope_bench::detail::counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a) {
  return gradscope_bench::detail::counted_new_aligned(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return gradscope_bench::detail::counted_new_aligned(n, a);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return gradscope_bench::detail::counted_new_aligned(n, a);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return gradscope_bench::detail::counted_new_aligned(n, a);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

// ---- glibc: count every malloc-family call of the process (Eigen's own buffers included) ----
#if defined(__GLIBC__)
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* malloc(std::size_t size) {
  gradscope_bench::g_malloc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(size);
}
void* calloc(std::size_t n, std::size_t size) {
  gradscope_bench::g_malloc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t size) {
  gradscope_bench::g_malloc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, size);
}
void* aligned_alloc(std::size_t alignment, std::size_t size) {
  gradscope_bench::g_malloc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(alignment, size);
}
void* memalign(std::size_t alignment, std::size_t size) {
  gradscope_bench::g_malloc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  gradscope_bench::g_malloc_calls.fetch_add(1, std::memory_order_relaxed);
  void* p = __libc_memalign(alignment, size);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}
}  // extern "C"
#endif
