/* Runtime set-up: see include/kdstep/runtime.h. */
#include "kdstep/runtime.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* OpenBLAS entry points (declared here so the header stays BLAS-agnostic). */
extern char *openblas_get_corename(void);
extern void openblas_set_num_threads(int);

/* x86 only: OpenBLAS's run-time kernel choice (DYNAMIC_ARCH) is the x86 one that misdetects; on other
 * architectures (aarch64) its own detection is kept. */
static const char *cpu_best_core(void) {
#if !defined(__x86_64__) && !defined(__i386__)
    return NULL;
#else
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
#endif
}

/* How wide a kernel family's sgemm is: 3 AVX-512, 2 AVX2+FMA, 1 older; 0 unknown (left alone). */
static int core_rank(const char *name) {
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    static const char *const avx2[] = {"Haswell", "Zen", "Excavator", "Steamroller", "Piledriver", "Bulldozer"};
    static const char *const old[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Sandybridge", "Atom",
                                      "Katmai", "Coppermine", "Northwood", "Banias", "Opteron", "Barcelona", "Nano"};
    for (size_t i = 0; i < sizeof avx512 / sizeof *avx512; i++)
        if (strcasecmp(name, avx512[i]) == 0) return 3;
    for (size_t i = 0; i < sizeof avx2 / sizeof *avx2; i++)
        if (strcasecmp(name, avx2[i]) == 0) return 2;
    for (size_t i = 0; i < sizeof old / sizeof *old; i++)
        if (strcasecmp(name, old[i]) == 0) return 1;
    return 0;
}

/* Policy: KDSTEP_BLAS_CORETYPE, when set, is used as given. Otherwise the CPU's widest family is
 * used when OPENBLAS_CORETYPE is unset OR names a narrower known family: on the AVX-512 EPYC here
 * OpenBLAS 0.3.21 measured 88 GFLOP/s (1 thread, 1024^3) with the Haswell preset that this
 * environment exports, 177 with SkylakeX, 175 detected (Cooperlake); other builds detect
 * Prescott (~20). An OPENBLAS_CORETYPE at least as wide as the CPU's best, or unknown, is kept. */
int kd_runtime_select_blas(int argc, char **argv) {
    (void)argc;
    if (getenv("KDSTEP_BLAS_REEXEC")) return 1;
    const char *want = getenv("KDSTEP_BLAS_CORETYPE");
    const char *cur = getenv("OPENBLAS_CORETYPE");
    if (!want) {
        want = cpu_best_core();
        if (!want) return 0;
        if (cur && (core_rank(cur) == 0 || core_rank(cur) >= core_rank(want))) return 0;
    }
    if (cur && strcasecmp(cur, want) == 0) return 0;
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("KDSTEP_BLAS_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    return 0; /* exec failed: carry on with the detected kernels */
}

const char *kd_runtime_blas_core(void) { return openblas_get_corename(); }

int kd_runtime_set_threads(int local_ranks, int requested) {
    int n = requested;
    const char *env = getenv("KDSTEP_THREADS");
    if (n <= 0 && env) n = atoi(env);
    if (n <= 0 && getenv("OMP_NUM_THREADS")) n = atoi(getenv("OMP_NUM_THREADS"));
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (local_ranks < 1) local_ranks = 1;
        n = (int)(cores / local_ranks);
    }
    if (n < 1) n = 1;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return n;
}
