/* badinput.c: bad arguments through the C API, with MPI_ERRORS_RETURN on MPI_COMM_WORLD: each
 * call returns the error class MPI gives, never crashes or hangs, and its error string names
 * the function. For onecopy's library: MPICH ends the job at some of these (a garbage handle
 * is fatal there whatever the error handler says). */
#include <limits.h>
#include "check.h"

#ifdef ONECOPY_MPI
/* onecopy's mpi.h declares only what works; the library exports the rest (MPICH's binaries
 * need it), and this program checks that one of those says it is unsupported. */
int MPI_Win_create(void *base, MPI_Aint size, int disp_unit, MPI_Info info, MPI_Comm comm, MPI_Win *win);
#endif

static void names_the_function(int rc, const char *function) {
    if (!ck_onecopy()) return;
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    CHECK_MPI(MPI_Error_string(rc, s, &len));
    CHECK(strstr(s, function) != NULL, "the error string \"%s\" does not name %s", s, function);
}

int main(int argc, char **argv) {
    ck_init(&argc, &argv);
    int r = ck.rank, n = ck.size, x = 1, rc, tag_ub = 0, flag = 0, *p = NULL;

    /* MPI_ERRORS_RETURN is on MPI_COMM_WORLD. An invalid communicator has no handler of its
     * own: onecopy raises the error on MPI_COMM_WORLD (MPI-3.1 section 8.3), MPICH ends the job,
     * so those checks run on onecopy only. */
    ck_begin("bad handles");
    if (!ck_onecopy()) goto other_handles;
    MPI_Comm dup, old;
    CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
    old = dup;
    CHECK_MPI(MPI_Comm_free(&dup));
    CHECK(dup == MPI_COMM_NULL, "freed communicator not set to MPI_COMM_NULL");
    rc = CHECK_CLASS(MPI_Send(&x, 1, MPI_INT, 0, 0, old), MPI_ERR_COMM);
    names_the_function(rc, "MPI_Send");
    CHECK_CLASS(MPI_Barrier(MPI_COMM_NULL), MPI_ERR_COMM);
    MPI_Group g;
    CHECK_MPI(MPI_Comm_group(MPI_COMM_WORLD, &g));
    CHECK_CLASS(MPI_Barrier((MPI_Comm)g), MPI_ERR_COMM);
    CHECK_MPI(MPI_Group_free(&g));
    for (int i = 0; i < 3; i++) {
        int garbage[3] = {12345, -7, 0x7fffffff}, size = 0;
        CHECK_CLASS(MPI_Comm_size((MPI_Comm)garbage[i], &size), MPI_ERR_COMM);
    }
other_handles:;
    int garbage[3] = {12345, -7, 0x7fffffff};
    for (int i = 0; i < 3; i++) {
        CHECK_CLASS(MPI_Send(&x, 1, (MPI_Datatype)garbage[i], r, 0, MPI_COMM_WORLD), MPI_ERR_TYPE);
        int out = 0;
        CHECK_CLASS2(MPI_Allreduce(&x, &out, 1, MPI_INT, (MPI_Op)garbage[i], MPI_COMM_WORLD), MPI_ERR_OP, MPI_ERR_ARG);
        MPI_Request q = (MPI_Request)garbage[i];
        CHECK_CLASS2(MPI_Wait(&q, MPI_STATUS_IGNORE), MPI_ERR_REQUEST, MPI_ERR_ARG);
    }
    MPI_Datatype t;
    CHECK_MPI(MPI_Type_contiguous(2, MPI_INT, &t));
    CHECK_MPI(MPI_Type_commit(&t));
    MPI_Datatype freed = t;
    CHECK_MPI(MPI_Type_free(&t));
    CHECK_CLASS(MPI_Send(&x, 1, freed, r, 0, MPI_COMM_WORLD), MPI_ERR_TYPE);
    ck_end();

    ck_begin("bad arguments");
    rc = CHECK_CLASS(MPI_Send(&x, -1, MPI_INT, 0, 0, MPI_COMM_WORLD), MPI_ERR_COUNT);
    names_the_function(rc, "MPI_Send");
    CHECK_CLASS(MPI_Send(p, 4, MPI_INT, 0, 0, MPI_COMM_WORLD), MPI_ERR_BUFFER);
    CHECK_CLASS(MPI_Bcast(p, 4, MPI_INT, 0, MPI_COMM_WORLD), MPI_ERR_BUFFER);
    CHECK_MPI(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &p, &flag));
    tag_ub = flag ? *p : 32767;
    if (tag_ub < INT_MAX) CHECK_CLASS(MPI_Send(&x, 1, MPI_INT, 0, tag_ub + 1, MPI_COMM_WORLD), MPI_ERR_TAG);
    CHECK_CLASS(MPI_Send(&x, 1, MPI_INT, 0, -5, MPI_COMM_WORLD), MPI_ERR_TAG);
    CHECK_CLASS(MPI_Recv(&x, 1, MPI_INT, 0, -5, MPI_COMM_WORLD, MPI_STATUS_IGNORE), MPI_ERR_TAG);
    CHECK_CLASS(MPI_Send(&x, 1, MPI_INT, n, 0, MPI_COMM_WORLD), MPI_ERR_RANK);
    CHECK_CLASS(MPI_Send(&x, 1, MPI_INT, -5, 0, MPI_COMM_WORLD), MPI_ERR_RANK);
    CHECK_CLASS(MPI_Recv(&x, 1, MPI_INT, n + 3, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE), MPI_ERR_RANK);
    CHECK_CLASS(MPI_Bcast(&x, 1, MPI_INT, n, MPI_COMM_WORLD), MPI_ERR_ROOT);
    CHECK_CLASS(MPI_Reduce(&x, &flag, 1, MPI_INT, MPI_SUM, -1, MPI_COMM_WORLD), MPI_ERR_ROOT);
    ck_end();

    ck_begin("the world still works after the errors");
    int sum = 0;
    CHECK_MPI(MPI_Allreduce(&x, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    CHECK(sum == n, "allreduce after the errors: %d", sum);
    ck_end();

    if (ck_onecopy()) {
        ck_begin("unsupported functions say so");
        MPI_Win w;
        rc = CHECK_CLASS(MPI_Win_create(&x, sizeof x, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &w), MPI_ERR_UNSUPPORTED_OPERATION);
        names_the_function(rc, "MPI_Win_create");
        ck_end();
    }
    return ck_finish();
}
