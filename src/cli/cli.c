/* Shared subcommand helpers: see cli.h. */
#include "cli.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

int kd_cli_mpi_init(int *argc, char ***argv, int *rank, int *size) {
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return -1;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    kd_log_set_rank(*rank, *size);
    return 0;
}

void kd_cli_mpi_finalize(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}
