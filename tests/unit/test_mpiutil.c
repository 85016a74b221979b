/* The MPI helpers (include/kdstep/mpiutil.h). Runs as one rank (a unit test) and as several
 * (tests/mpi/mpiutil.sh runs this program under mpirun -np 3): every assertion holds at any size. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "kdstep/error.h"
#include "kdstep/mpiutil.h"
#include "testutil.h"

static int g_rank, g_size;

/* What every rank must read when rank `first` failed with `msg`. */
static void expect_msg(const kd_error *err, int first, const char *msg) {
    char want[KD_ERROR_MSG_MAX];
    if (first == 0) snprintf(want, sizeof want, "%s", msg);
    else snprintf(want, sizeof want, "rank %d: %s", first, msg);
    if (strcmp(err->msg, want) != 0) fprintf(stderr, "\n  rank %d: got \"%s\", want \"%s\"\n", g_rank, err->msg, want);
    CU_ASSERT_STRING_EQUAL(err->msg, want);
}

static void test_agree_all_ok(void) {
    kd_error err = {0};
    CU_ASSERT_EQUAL(kd_mpi_agree(MPI_COMM_WORLD, KD_OK, &err), KD_OK);
    CU_ASSERT_EQUAL(err.code, KD_OK);
    CU_ASSERT_STRING_EQUAL(err.msg, "");
}

static void test_agree_last_rank_fails(void) {
    kd_error err = {0};
    int last = g_size - 1, rc = KD_OK;
    if (g_rank == last) rc = kd_error_set(&err, KD_ERR_IO, "shard-%05d.h5: write failed: No space left on device", last);
    char msg[128];
    snprintf(msg, sizeof msg, "shard-%05d.h5: write failed: No space left on device", last);
    CU_ASSERT_EQUAL(kd_mpi_agree(MPI_COMM_WORLD, rc, &err), KD_ERR_IO);
    CU_ASSERT_EQUAL(err.code, KD_ERR_IO);
    expect_msg(&err, last, msg); /* the same words on every rank, the failing one included */
}

/* Several ranks fail with different codes: the lowest failing rank's code and message win. */
static void test_agree_lowest_failing_rank_wins(void) {
    kd_error err = {0};
    int first = g_size > 1 ? 1 : 0, rc = KD_OK;
    if (g_rank >= first) rc = kd_error_set(&err, g_rank == first ? KD_ERR_PARSE : KD_ERR_NOMEM, "failure on rank %d", g_rank);
    char msg[64];
    snprintf(msg, sizeof msg, "failure on rank %d", first);
    CU_ASSERT_EQUAL(kd_mpi_agree(MPI_COMM_WORLD, rc, &err), KD_ERR_PARSE);
    expect_msg(&err, first, msg);
}

/* A failing rank without a message record still reports its status by name. */
static void test_agree_without_record(void) {
    kd_error err = {0};
    int last = g_size - 1;
    int rc = kd_mpi_agree(MPI_COMM_WORLD, g_rank == last ? KD_ERR_NOTFOUND : KD_OK, g_rank == last ? NULL : &err);
    CU_ASSERT_EQUAL(rc, KD_ERR_NOTFOUND);
    if (g_rank != last) expect_msg(&err, last, kd_status_name(KD_ERR_NOTFOUND));
}

/* An agreed error agreed again reads the same (rank 0 holds it as every rank does). */
static void test_agree_twice(void) {
    kd_error err = {0};
    int last = g_size - 1;
    int rc = g_rank == last ? kd_error_set(&err, KD_ERR_INVALID, "bad value") : KD_OK;
    rc = kd_mpi_agree(MPI_COMM_WORLD, rc, &err);
    CU_ASSERT_EQUAL(kd_mpi_agree(MPI_COMM_WORLD, rc, &err), KD_ERR_INVALID);
    expect_msg(&err, last, "bad value");
}

static void test_bcast_status(void) {
    int root = g_size - 1;
    kd_error err = {0};
    /* the other ranks' own status is overwritten by root's */
    int mine = g_rank == root ? kd_error_set(&err, KD_ERR_NET, "teacher unreachable") : kd_error_set(&err, KD_ERR_IO, "ignored");
    CU_ASSERT_EQUAL(kd_mpi_bcast_status(MPI_COMM_WORLD, root, mine, &err), KD_ERR_NET);
    expect_msg(&err, root, "teacher unreachable");
    kd_error ok = {0};
    CU_ASSERT_EQUAL(kd_mpi_bcast_status(MPI_COMM_WORLD, 0, g_rank == 0 ? KD_OK : KD_ERR_IO, &ok), KD_OK);
}

/* On one machine every rank shares the node; a split communicator counts only its own ranks. */
static void test_local_ranks(void) {
    CU_ASSERT_EQUAL(kd_mpi_local_ranks(MPI_COMM_WORLD), g_size);
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, g_rank % 2, g_rank, &half);
    int hs;
    MPI_Comm_size(half, &hs);
    CU_ASSERT_EQUAL(kd_mpi_local_ranks(half), hs);
    MPI_Comm_free(&half);
    CU_ASSERT_EQUAL(kd_mpi_local_ranks(MPI_COMM_SELF), 1);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("mpiutil", NULL, NULL);
    CU_add_test(s, "agree: all ranks pass", test_agree_all_ok);
    CU_add_test(s, "agree: the last rank fails, every rank reads its error", test_agree_last_rank_fails);
    CU_add_test(s, "agree: the lowest failing rank wins", test_agree_lowest_failing_rank_wins);
    CU_add_test(s, "agree: a failing rank without a record", test_agree_without_record);
    CU_add_test(s, "agree: twice reads the same", test_agree_twice);
    CU_add_test(s, "bcast_status: root's status everywhere", test_bcast_status);
    CU_add_test(s, "local_ranks", test_local_ranks);
    int rc = kd_test_main();
    MPI_Finalize();
    return rc;
}
