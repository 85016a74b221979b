/* Runtime set-up: see include/kdstep/runtime.h. */
#include "kdstep/runtime.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* OpenBLAS entry points (declared here so the header stays BLAS-agnostic). */
extern char *openblas_get_corename(void);
extern void openblas_set_num_threads(int);

static const char *cpu_best_core(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

int kd_runtime_select_blas(int argc, char **argv) {
    (void)argc;
    if (getenv("KDSTEP_BLAS_REEXEC")) return 1;
    const char *want = getenv("KDSTEP_BLAS_CORETYPE");
    if (!want) {
        if (getenv("OPENBLAS_CORETYPE")) return 0;
        want = cpu_best_core();
        if (!want) return 0;
    }
    const char *cur = getenv("OPENBLAS_CORETYPE");
    if (cur && strcmp(cur, want) == 0) return 0;
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
