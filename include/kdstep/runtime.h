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

#include <sched.h> /* cpu_set_t: the build defines _GNU_SOURCE */
#include <stddef.h>

/* May not return (re-exec). Returns 0 when nothing was changed, 1 when already re-executed. */
int kd_runtime_select_blas(int argc, char **argv);
/* The kernel family OpenBLAS is using ("SkylakeX", "Haswell", ...). */
const char *kd_runtime_blas_core(void);
/* The thread budget of one rank, and where it came from. */
typedef struct kd_thread_plan {
    int threads;        /* OpenMP and OpenBLAS threads */
    int cpus;           /* CPUs this rank may use: its affinity mask (Slurm's cpuset, mpirun's binding), or
                           SLURM_CPUS_ON_NODE when that is smaller */
    int sharing;        /* ranks on this node whose affinity masks overlap this one's (this one included) */
    const char *source; /* what decided: "train.threads", "KDSTEP_THREADS", "OMP_NUM_THREADS",
                           "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE / ranks sharing them" or
                           "CPU affinity / ranks sharing it" */
} kd_thread_plan;

/* The decision alone, first match wins: `requested` (train.threads) > 0; KDSTEP_THREADS;
 * OMP_NUM_THREADS; SLURM_CPUS_PER_TASK (at most affinity_cpus); else affinity_cpus (or
 * SLURM_CPUS_ON_NODE when smaller: Slurm without a cpuset) / sharing.
 * Always at least 1. */
void kd_runtime_plan_threads(int requested, int affinity_cpus, int sharing, kd_thread_plan *plan);
/* Writes a CPU set as a list ("0-3,8") into out (cut with "..." when longer than cap); returns the
 * number of CPUs in the set. */
int kd_runtime_cpu_list(const cpu_set_t *set, char *out, size_t cap);
/* Told once by the CLI after MPI_Init: this process's host name, rank, world size and how many ranks
 * on its node share its CPUs (counted from their affinity masks). */
void kd_runtime_set_placement(const char *host, int rank, int size, int sharing);
/* Sets OpenMP's and OpenBLAS's thread counts from kd_runtime_plan_threads over this process's
 * sched_getaffinity mask, with the sharing count from kd_runtime_set_placement (or local_ranks when
 * none was told), and returns them. Logs "host H, rank R of N: T threads (source) on CPUs LIST" the
 * first time and whenever the count changes. */
int kd_runtime_set_threads(int local_ranks, int requested);

#endif
