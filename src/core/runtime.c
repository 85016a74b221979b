/* Runtime set-up: see include/kdstep/runtime.h. */
#include "kdstep/runtime.h"

#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kdstep/log.h"

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

/* ---- threads that follow the allocation ---- */

static int g_sharing;         /* ranks sharing this process's CPUs, told by the CLI after MPI_Init; 0 unknown */
static int g_threads_logged;  /* the threads last logged (0: none yet) */
static char g_where[160];     /* "host node1, rank 0 of 3" */

int kd_runtime_cpu_list(const cpu_set_t *set, char *out, size_t cap) {
    size_t len = 0;
    int count = 0;
    if (cap) out[0] = '\0';
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, set)) continue;
        int e = c;
        while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, set)) e++;
        count += e - c + 1;
        int w = e > c ? snprintf(out + len, cap > len ? cap - len : 0, "%s%d-%d", len ? "," : "", c, e)
                      : snprintf(out + len, cap > len ? cap - len : 0, "%s%d", len ? "," : "", c);
        if (w > 0) len += (size_t)w;
        if (len >= cap && cap > 4) snprintf(out + cap - 4, 4, "...");
        c = e;
    }
    return count;
}

static int env_count(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    long n = strtol(v, &end, 10);
    return (*end == '\0' && n > 0 && n <= 1 << 16) ? (int)n : 0;
}

void kd_runtime_plan_threads(int requested, int affinity_cpus, int sharing, kd_thread_plan *p) {
    memset(p, 0, sizeof *p);
    if (affinity_cpus < 1) affinity_cpus = 1;
    if (sharing < 1) sharing = 1;
    p->cpus = affinity_cpus;
    p->sharing = sharing;
    int n;
    if (requested > 0) {
        n = requested;
        p->source = "train.threads";
    } else if ((n = env_count("KDSTEP_THREADS")) > 0) {
        p->source = "KDSTEP_THREADS";
    } else if ((n = env_count("OMP_NUM_THREADS")) > 0) {
        p->source = "OMP_NUM_THREADS";
    } else if ((n = env_count("SLURM_CPUS_PER_TASK")) > 0) {
        /* Slurm's --cpus-per-task; never more than the CPUs this process may run on */
        if (n > affinity_cpus) n = affinity_cpus;
        p->source = "SLURM_CPUS_PER_TASK";
    } else {
        /* Slurm without a cpuset (task/none) leaves the mask whole: its count of CPUs allocated to the
         * job on this node bounds it then */
        int slurm = env_count("SLURM_CPUS_ON_NODE");
        if (slurm > 0 && slurm < affinity_cpus) {
            p->cpus = slurm;
            p->source = "SLURM_CPUS_ON_NODE / ranks sharing them";
        } else {
            p->source = "CPU affinity / ranks sharing it";
        }
        n = p->cpus / sharing;
    }
    p->threads = n < 1 ? 1 : n;
}

void kd_runtime_set_placement(const char *host, int rank, int size, int sharing) {
    g_sharing = sharing;
    snprintf(g_where, sizeof g_where, "host %s, rank %d of %d", host, rank, size);
}

int kd_runtime_set_threads(int local_ranks, int requested) {
    cpu_set_t set;
    CPU_ZERO(&set);
    char list[256] = "?";
    int cpus;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        cpus = kd_runtime_cpu_list(&set, list, sizeof list);
    } else {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        cpus = online > 0 ? (int)online : 1;
    }
    kd_thread_plan p;
    kd_runtime_plan_threads(requested, cpus, g_sharing > 0 ? g_sharing : local_ranks, &p);
    omp_set_num_threads(p.threads);
    openblas_set_num_threads(p.threads);
    if (p.threads != g_threads_logged) {
        KD_INFO("runtime: %s: %d thread%s (%s) on CPUs %s (%d, shared by %d rank%s)",
                g_where[0] ? g_where : "this process", p.threads, p.threads == 1 ? "" : "s", p.source, list, p.cpus,
                p.sharing, p.sharing == 1 ? "" : "s");
        g_threads_logged = p.threads;
    }
    return p.threads;
}
