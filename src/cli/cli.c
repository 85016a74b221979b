/* Shared subcommand helpers: see cli.h. */
#include "cli.h"

#include <mpi.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdstep/log.h"
#include "kdstep/runtime.h"

int kd_cli_usage_error(const char *usage, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kdstep: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n%s", usage);
    va_end(ap);
    return KD_EXIT_USAGE;
}

int kd_cli_fail(const kd_error *err) {
    KD_ERROR("%s", err->msg[0] ? err->msg : "failed");
    return 1;
}

void kd_cli_reset_getopt(void) {
    optind = 0; /* glibc: 0 also re-initializes internal state */
    opterr = 0;
}

int kd_cli_load_config(kd_config *cfg, const char *path, char **sets, int nsets, kd_error *err) {
    kd_config_defaults(cfg);
    int rc;
    if (path && (rc = kd_config_load_file(cfg, path, err))) return rc;
    for (int i = 0; i < nsets; i++)
        if ((rc = kd_config_set(cfg, sets[i], err))) return rc;
    return KD_OK;
}

static const char *host_name(void) {
    static char name[256];
    if (gethostname(name, sizeof name - 1) != 0) snprintf(name, sizeof name, "?");
    return name;
}

/* Ranks on this node (MPI_COMM_TYPE_SHARED) whose CPU affinity masks overlap this rank's, this rank
 * included: they divide those CPUs among themselves. Ranks bound to CPUs of their own count 1. */
static int ranks_sharing_cpus(MPI_Comm comm) {
    MPI_Comm node;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS) return 1;
    int n = 1, me = 0, sharing = 1;
    MPI_Comm_size(node, &n);
    MPI_Comm_rank(node, &me);
    cpu_set_t mine;
    CPU_ZERO(&mine);
    if (sched_getaffinity(0, sizeof mine, &mine) != 0) CPU_ZERO(&mine);
    cpu_set_t *all = malloc(sizeof(cpu_set_t) * (size_t)n);
    if (all && MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, node) == MPI_SUCCESS) {
        sharing = 0;
        for (int r = 0; r < n; r++) {
            cpu_set_t both;
            CPU_AND(&both, &mine, &all[r]);
            if (r == me || CPU_COUNT(&both) > 0) sharing++;
        }
    }
    free(all);
    MPI_Comm_free(&node);
    return sharing;
}

int kd_cli_mpi_init(int *argc, char ***argv, int *rank, int *size) {
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return -1;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    kd_log_set_rank(*rank, *size);
    kd_runtime_set_placement(host_name(), *rank, *size, ranks_sharing_cpus(MPI_COMM_WORLD));
    kd_runtime_set_threads(1, 0); /* logs host, rank, threads and CPU list once at start */
    return 0;
}

void kd_cli_mpi_finalize(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}
