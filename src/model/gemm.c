/* Matrix products of the training step over the OpenMP threads: see src/model/model_internal.h. */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

extern int openblas_get_num_threads(void);
extern void openblas_set_num_threads(int);

int kd_sgemm_split(void) {
    static int mode = -1;
    if (mode < 0) {
        const char *e = getenv("KDSTEP_SGEMM");
        mode = !(e && strcmp(e, "blas") == 0);
    }
    return mode;
}

int kd_blas_threads_push(void) {
    int n = openblas_get_num_threads();
    if (omp_get_max_threads() > 1 && n != 1) openblas_set_num_threads(1);
    return n;
}

void kd_blas_threads_pop(int n) {
    if (openblas_get_num_threads() != n) openblas_set_num_threads(n);
}

void kd_sgemm_rows(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    int nt = omp_get_max_threads();
    if (nt <= 1 || omp_in_parallel() || !kd_sgemm_split() || M < 32) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int saved = kd_blas_threads_push();
#pragma omp parallel
    {
        /* blocks of whole 16-row panels (the kernels' register tiles divide 16) */
        int n = omp_get_num_threads(), me = omp_get_thread_num(), panels = (M + 15) / 16;
        int m0 = (int)((long)panels * me / n) * 16, m1 = (int)((long)panels * (me + 1) / n) * 16;
        if (m1 > M) m1 = M;
        if (m1 > m0) {
            const float *Ab = ta == CblasNoTrans ? A + (size_t)m0 * lda : A + m0;
            cblas_sgemm(CblasRowMajor, ta, tb, m1 - m0, N, K, alpha, Ab, lda, B, ldb, beta, C + (size_t)m0 * ldc, ldc);
        }
    }
    kd_blas_threads_pop(saved);
}
