#pragma once
// Target regions for the kernels of each CPU path (dispatch.hpp): code between
// GRADSCOPE_TARGET_AVX512_BEGIN (or _AVX2_BEGIN) and GRADSCOPE_TARGET_END is compiled for that
// instruction set whatever the command line says, through GCC's `#pragma GCC target` or Clang's
// `#pragma clang attribute` (the target attribute on every function declared inside). Only
// gradscope's own kernels go inside a region, and no #include: a standard or Eigen header first
// included there would be compiled for the region's target too and then run on CPUs without it.
//
// Lambdas inside a region are not given its target by every compiler: kernels use none.
// A region's functions are never inlined into code outside it (GCC and Clang refuse to inline a
// function with more instruction sets than its caller), so each path's entry points are calls.

#include "dispatch.hpp"

#if GRADSCOPE_X86_KERNELS
#include <immintrin.h>

#if defined(__clang__)
// clang-format off
#define GRADSCOPE_TARGET_AVX512_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx2,fma\"))), apply_to = function)")
// clang-format on
#define GRADSCOPE_TARGET_AVX2_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define GRADSCOPE_TARGET_END _Pragma("clang attribute pop")
#else
#define GRADSCOPE_TARGET_AVX512_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx2,fma\")")
#define GRADSCOPE_TARGET_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define GRADSCOPE_TARGET_END _Pragma("GCC pop_options")
#endif
#endif

// Keeps a kernel out of line and uncloned: inlined into a caller's loop (or cloned for its
// constant arguments) GCC 12 allocated the micro-kernel's registers worse (a third of its speed
// when inlined into a test's main) and warned about the scalar tails of the packing routines.
#if defined(__clang__)
#define GRADSCOPE_NOIPA [[gnu::noinline]]
#else
#define GRADSCOPE_NOIPA [[gnu::noipa]]
#endif
