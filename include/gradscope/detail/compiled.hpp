#pragma once
// Compiled mode for gradscope's heavy non-template functions (the kernels of the CPU paths, the
// report writers, the diagnosis, safetensors, IDX files, the command-line parser and progress line
// of util/, the initialisers' names and the learning-rate schedules).
//
// Header-only (the default), these functions are `inline` and compiled in every translation unit
// that uses them. With GRADSCOPE_EXTERN_TEMPLATES they have external linkage and their bodies are
// compiled only where GRADSCOPE_INSTANTIATE_<COMPONENT> is defined: in the one source file of the
// program that includes <gradscope/instantiate.hpp> (which defines it for the core, nn, optim,
// the diagnostics and util, and for io and data when the file defines GRADSCOPE_INSTANTIATE_IO /
// GRADSCOPE_INSTANTIATE_DATA first). Each such function is written once:
//
//     GRADSCOPE_COMPILED_API Result name(parameters = defaults)
//     #if GRADSCOPE_IO_DECLARE_ONLY
//         ;
//     #else
//     { body }
//     #endif
#define GRADSCOPE_DETAIL_COMPILED_INCLUDED

// GRADSCOPE_INSTANTIATE_<COMPONENT> belongs to the one file that includes
// <gradscope/instantiate.hpp> (which marks it as GRADSCOPE_DETAIL_INSTANCE_UNIT): defined for any
// other file, that file would compile the functions too, and the program would not link.
#if (defined(GRADSCOPE_INSTANTIATE_CORE) || defined(GRADSCOPE_INSTANTIATE_NN) ||           \
     defined(GRADSCOPE_INSTANTIATE_OPTIM) || defined(GRADSCOPE_INSTANTIATE_DIAGNOSTICS) || \
     defined(GRADSCOPE_INSTANTIATE_UTIL) || defined(GRADSCOPE_INSTANTIATE_IO) ||           \
     defined(GRADSCOPE_INSTANTIATE_DATA)) &&                                               \
    !defined(GRADSCOPE_DETAIL_INSTANCE_UNIT)
#error \
    "GRADSCOPE_INSTANTIATE_<component> is defined in a file that does not include <gradscope/instantiate.hpp> first: define it in that one file only, right before the include (#define GRADSCOPE_INSTANTIATE_IO), not for the whole target"
#endif

#if defined(GRADSCOPE_EXTERN_TEMPLATES)
#define GRADSCOPE_COMPILED_API
#else
#define GRADSCOPE_COMPILED_API inline
#endif

// The core's: the kernels of the CPU paths (core/detail/gemm.hpp, elementwise.hpp). Declared only,
// a file also skips their headers (and <immintrin.h>): half a second of every compilation.
#if defined(GRADSCOPE_EXTERN_TEMPLATES) && !defined(GRADSCOPE_INSTANTIATE_CORE)
#define GRADSCOPE_CORE_DECLARE_ONLY 1
#else
#define GRADSCOPE_CORE_DECLARE_ONLY 0
#endif

#if defined(GRADSCOPE_EXTERN_TEMPLATES) && !defined(GRADSCOPE_INSTANTIATE_DIAGNOSTICS)
#define GRADSCOPE_DIAGNOSTICS_DECLARE_ONLY 1
#else
#define GRADSCOPE_DIAGNOSTICS_DECLARE_ONLY 0
#endif

#if defined(GRADSCOPE_EXTERN_TEMPLATES) && !defined(GRADSCOPE_INSTANTIATE_IO)
#define GRADSCOPE_IO_DECLARE_ONLY 1
#else
#define GRADSCOPE_IO_DECLARE_ONLY 0
#endif

#if defined(GRADSCOPE_EXTERN_TEMPLATES) && !defined(GRADSCOPE_INSTANTIATE_DATA)
#define GRADSCOPE_DATA_DECLARE_ONLY 1
#else
#define GRADSCOPE_DATA_DECLARE_ONLY 0
#endif

#if defined(GRADSCOPE_EXTERN_TEMPLATES) && !defined(GRADSCOPE_INSTANTIATE_UTIL)
#define GRADSCOPE_UTIL_DECLARE_ONLY 1
#else
#define GRADSCOPE_UTIL_DECLARE_ONLY 0
#endif

#if defined(GRADSCOPE_EXTERN_TEMPLATES) && !defined(GRADSCOPE_INSTANTIATE_NN)
#define GRADSCOPE_NN_DECLARE_ONLY 1
#else
#define GRADSCOPE_NN_DECLARE_ONLY 0
#endif

#if defined(GRADSCOPE_EXTERN_TEMPLATES) && !defined(GRADSCOPE_INSTANTIATE_OPTIM)
#define GRADSCOPE_OPTIM_DECLARE_ONLY 1
#else
#define GRADSCOPE_OPTIM_DECLARE_ONLY 0
#endif
