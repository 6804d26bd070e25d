/* pmpi.c: with a profiling library preloaded (profiler.c, whose MPI_Send and MPI_Allreduce
 * count calls and call PMPI_*), every call of the program is seen once, and the library's own
 * calls (MPI_Sendrecv, MPI_Bcast) are never seen. The profiler's counters are read through
 * weak symbols, so the program also runs without it (and then checks nothing about them). */
#include "check.h"

extern int profiled_sends __attribute__((weak));
extern int profiled_allreduces __attribute__((weak));

int main(int argc, char **argv) {
    ck_init(&argc, &argv);
    ck_begin("pmpi interposition");
    int r = ck.rank, n = ck.size, v = r, got = -1;
    if (n >= 2) {
        if (r == 0) CHECK_MPI(MPI_Send(&v, 1, MPI_INT, 1, 0, MPI_COMM_WORLD));
        if (r == 1) CHECK_MPI(MPI_Recv(&got, 1, MPI_INT, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    }
    CHECK_MPI(MPI_Sendrecv(&v, 1, MPI_INT, (r + 1) % n, 1, &got, 1, MPI_INT, (r + n - 1) % n, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Bcast(&v, 1, MPI_INT, 0, MPI_COMM_WORLD));
    int s = 0;
    CHECK_MPI(MPI_Allreduce(&r, &s, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Allreduce(&r, &s, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    if (&profiled_sends != NULL) {
        int want = (n >= 2 && r == 0) ? 1 : 0;
        CHECK(profiled_sends == want, "the profiler saw %d MPI_Send calls, the program made %d", profiled_sends, want);
        CHECK(profiled_allreduces == 2, "the profiler saw %d MPI_Allreduce calls, the program made 2", profiled_allreduces);
        printf("profiler present [rank %d]\n", r);
    }
    ck_end();
    return ck_finish();
}
