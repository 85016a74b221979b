/* Shared helpers for subcommands: flag parsing conventions, usage output, MPI start-up.
 * Only src/cli/ includes this; modules below never parse argv or call MPI_Init. */
#ifndef KDSTEP_CLI_H
#define KDSTEP_CLI_H

#include <getopt.h>
#include <stdio.h>

#include "kdstep/config.h"
#include "kdstep/error.h"

#define KD_EXIT_USAGE 2

#define KD_COMMAND(name, fn, summary) __attribute__((weak)) int fn(int argc, char **argv);
#include "commands.h"
#undef KD_COMMAND

/* Print "kdstep <cmd>: <msg>" and the usage to stderr; returns KD_EXIT_USAGE. */
int kd_cli_usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print an error record as "kdstep: error: ..." and return exit code 1. */
int kd_cli_fail(const kd_error *err);
/* getopt_long wrapper behaviour: reset state before each subcommand. */
void kd_cli_reset_getopt(void);
/* Load --config FILE (may be NULL) and apply each --set, in order. */
/* kdstep teacher answer (teacher_answer.c). */
int kd_cmd_teacher_answer(int argc, char **argv);
int kd_cli_load_config(kd_config *cfg, const char *path, char **sets, int nsets, kd_error *err);

/* MPI: init (thread level FUNNELED), rank/size into the logger; finalize. */
int kd_cli_mpi_init(int *argc, char ***argv, int *rank, int *size);
void kd_cli_mpi_finalize(void);

#endif
