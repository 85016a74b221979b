/* MPI helpers shared by generate, train and eval: one way to agree on a status across ranks, one
 * way to broadcast a rank's error, and the count of ranks on this node.
 *
 * Every rank of `comm` must call these together (they are collectives). The error a rank receives
 * reads the same on every rank: the failing rank's message, prefixed with "rank N: " when N is not
 * rank 0 (rank 0's own messages are the job's, and read best as they are), with the failing rank's
 * status code.
 */
#ifndef KDSTEP_MPIUTIL_H
#define KDSTEP_MPIUTIL_H

#include <mpi.h>

#include "kdstep/error.h"

/* Agree on a status: every rank passes its own `rc` (and, when rc != KD_OK, its message in err).
 * Returns KD_OK when all ranks passed KD_OK; otherwise the lowest failing rank's code, and every
 * rank's err holds that rank's message as described above. */
int kd_mpi_agree(MPI_Comm comm, int rc, kd_error *err);

/* Broadcast `root`'s status and error to every rank (the other ranks' rc and err are ignored and
 * overwritten). Returns root's rc. */
int kd_mpi_bcast_status(MPI_Comm comm, int root, int rc, kd_error *err);

/* How many ranks of `comm` share this node (1 when MPI cannot tell). */
int kd_mpi_local_ranks(MPI_Comm comm);

#endif
