/* MPI helpers shared by generate, train and eval: see include/kdstep/mpiutil.h. */
#include "kdstep/mpiutil.h"

#include <stdio.h>
#include <string.h>

/* Every rank ends with root's code and message ("rank N: " before it when root is not 0). */
static int share_error(MPI_Comm comm, int root, int rc, kd_error *err) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    int code = rc;
    MPI_Bcast(&code, 1, MPI_INT, root, comm);
    if (code == KD_OK) return KD_OK;
    char msg[KD_ERROR_MSG_MAX];
    if (rank == root) snprintf(msg, sizeof msg, "%s", err && err->msg[0] ? err->msg : kd_status_name(code));
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, root, comm);
    if (root == 0) kd_error_set(err, code, "%s", msg);
    else kd_error_set(err, code, "rank %d: %s", root, msg);
    return code;
}

int kd_mpi_agree(MPI_Comm comm, int rc, kd_error *err) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int mine = rc != KD_OK ? rank : size, first = size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size) return KD_OK;
    return share_error(comm, first, rc, err);
}

int kd_mpi_bcast_status(MPI_Comm comm, int root, int rc, kd_error *err) { return share_error(comm, root, rc, err); }

int kd_mpi_local_ranks(MPI_Comm comm) {
    MPI_Comm node;
    int n = 1;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &n);
        MPI_Comm_free(&node);
    }
    return n;
}
