/* Shared by the files of the model module (model.c, gemm.c): not part of the public API. */
#ifndef KDSTEP_MODEL_INTERNAL_H
#define KDSTEP_MODEL_INTERNAL_H

#include <cblas.h>
#include <omp.h>

#include "kdstep/model.h"

/* C[M, N] = alpha op(A) op(B) + beta C, as cblas_sgemm (row-major). With one OpenMP thread (or inside
 * a parallel region) it IS that one call, so a 1-thread step keeps its bits. With more threads it
 * splits C's rows into one block per thread, each a single-threaded sgemm (the default), or hands
 * the whole product to OpenBLAS's own threads when KDSTEP_SGEMM=blas; the bench
 * (tests/bench/train_threads.sh) measures both. A row block changes no element's summation over K,
 * but a kernel may pick other code for other shapes: results match within float reassociation. */
void kd_sgemm_rows(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);
/* 1 when products are split over the OpenMP threads (KDSTEP_SGEMM unset or "rows"). */
int kd_sgemm_split(void);
/* BLAS calls inside an OpenMP loop must run single-threaded, or each would start its own pool. */
int kd_blas_threads_push(void);
void kd_blas_threads_pop(int saved);

/* Kernel timers (m->profile, when set): t0 = KD_PROF_START(m); ...; KD_PROF_END(m, KD_PROF_X, t0). */
#define KD_PROF_START(m) ((m)->profile ? omp_get_wtime() : 0.0)
#define KD_PROF_END(m, k, t0)                                           \
    do {                                                                \
        if ((m)->profile) (m)->profile[(k)] += omp_get_wtime() - (t0); \
    } while (0)

#endif
