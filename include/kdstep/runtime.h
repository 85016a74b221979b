/* Process-level runtime set-up: BLAS kernel choice and thread budget.
 *
 * OpenBLAS picks its kernels when the library loads, from the CPU it detects or from
 * OPENBLAS_CORETYPE. On some CPUs (AMD EPYC with AVX-512 here) it detects "Prescott" and runs sgemm
 * 6x slower than it can. kd_runtime_select_blas() runs first in main(): when OPENBLAS_CORETYPE is
 * unset it chooses the kernel family from the CPU's features and re-executes the process once so
 * the library loads with it. An explicit OPENBLAS_CORETYPE is respected (KDSTEP_BLAS_CORETYPE
 * overrides both).
 */
#ifndef KDSTEP_RUNTIME_H
#define KDSTEP_RUNTIME_H

/* May not return (re-exec). Returns 0 when nothing was changed, 1 when already re-executed. */
int kd_runtime_select_blas(int argc, char **argv);
/* The kernel family OpenBLAS is using ("SkylakeX", "Haswell", ...). */
const char *kd_runtime_blas_core(void);
/* Threads this process should use: cores / local ranks (at least 1), unless KDSTEP_THREADS or
 * OMP_NUM_THREADS say otherwise. Sets both OpenMP's and OpenBLAS's thread counts. */
int kd_runtime_set_threads(int local_ranks, int requested);

#endif
