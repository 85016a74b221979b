/* Run-time dispatch for the hot row kernels (docs/install.md, "Portable or native").
 *
 * The default build is portable (-O3, no -march). A function marked KD_HOT_CLONES is compiled twice
 * on x86-64, for the baseline and for x86-64-v3 (AVX2 + FMA), and the dynamic loader picks the copy
 * for the CPU it runs on (GNU ifunc, through the compiler's target_clones). Mark the function that
 * holds the loop, not the small helpers it inlines: a cloned function is called, never inlined.
 *
 * Empty elsewhere: on other architectures, when the whole build already targets this CPU
 * (-DKD_NATIVE=ON defines KD_NO_CLONES), in sanitizer and fuzzing builds (KD_NO_CLONES too: the
 * resolvers would run before the sanitizer runtime), and without glibc's ifunc.
 * clang 14 dispatches "arch=x86-64-v3" by CPU *name* (it never matches), so clang gets an "avx2"
 * clone, which it dispatches by the CPUID feature bit. clang 14 also makes the resolver of a *static*
 * cloned function a global symbol (NAME.resolver): give every cloned function a name that is unique
 * across the library, or the clang build fails to link ("multiple definition of `NAME.resolver'"). */
#ifndef KDSTEP_SIMD_H
#define KDSTEP_SIMD_H

#include <limits.h> /* defines __GLIBC__ on glibc */

#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && !defined(KD_NO_CLONES)
#if defined(__clang__)
#define KD_HOT_CLONES __attribute__((target_clones("avx2", "default")))
#elif defined(__GNUC__) && __GNUC__ >= 12
#define KD_HOT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
#endif
#ifndef KD_HOT_CLONES
#define KD_HOT_CLONES
#endif

#endif
