/* icoll.c: the nonblocking collectives, overlapped with point to point, and generalized
 * requests. */
#include "check.h"

static void nonblocking(void) {
    ck_begin("nonblocking collectives");
    int n = ck.size, r = ck.rank;
    MPI_Request req[8];
    int sum = -1, one = r + 1, scan = -1, exs = -1, bval = r == 0 ? 77 : -1;
    double big[4096], bigsum[4096];
    for (int i = 0; i < 4096; i++) big[i] = r + i;
    CHECK_MPI(MPI_Iallreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD, &req[0]));
    CHECK_MPI(MPI_Iscan(&one, &scan, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD, &req[1]));
    CHECK_MPI(MPI_Iexscan(&one, &exs, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD, &req[2]));
    CHECK_MPI(MPI_Ibcast(&bval, 1, MPI_INT, 0, MPI_COMM_WORLD, &req[3]));
    CHECK_MPI(MPI_Iallreduce(big, bigsum, 4096, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD, &req[4]));
    CHECK_MPI(MPI_Ibarrier(MPI_COMM_WORLD, &req[5]));
    int *all = malloc(sizeof(int) * n), *a2a = malloc(sizeof(int) * n), *a2b = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) a2a[i] = r * 100 + i;
    CHECK_MPI(MPI_Iallgather(&r, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD, &req[6]));
    CHECK_MPI(MPI_Ialltoall(a2a, 1, MPI_INT, a2b, 1, MPI_INT, MPI_COMM_WORLD, &req[7]));
    /* Point to point while they are in flight. */
    int next = (r + 1) % n, prev = (r + n - 1) % n, got = -1;
    CHECK_MPI(MPI_Sendrecv(&r, 1, MPI_INT, next, 5, &got, 1, MPI_INT, prev, 5, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    CHECK(got == prev, "sendrecv during collectives %d", got);
    CHECK_MPI(MPI_Waitall(8, req, MPI_STATUSES_IGNORE));
    CHECK(sum == n * (n + 1) / 2, "iallreduce %d", sum);
    CHECK(scan == (r + 1) * (r + 2) / 2, "iscan %d", scan);
    if (r > 0) CHECK(exs == r * (r + 1) / 2, "iexscan %d", exs);
    CHECK(bval == 77, "ibcast %d", bval);
    CHECK(bigsum[10] == n - 1 + 10, "iallreduce max %g", bigsum[10]);
    for (int i = 0; i < n; i++) {
        CHECK(all[i] == i, "iallgather[%d] %d", i, all[i]);
        CHECK(a2b[i] == i * 100 + r, "ialltoall[%d] %d", i, a2b[i]);
    }
    /* Rooted ones, every root, with in place at the root. */
    for (int root = 0; root < n; root++) {
        int red = -1, v = r * 2;
        MPI_Request q;
        CHECK_MPI(MPI_Ireduce(&v, &red, 1, MPI_INT, MPI_SUM, root, MPI_COMM_WORLD, &q));
        CHECK_MPI(MPI_Wait(&q, MPI_STATUS_IGNORE));
        if (r == root) CHECK(red == n * (n - 1), "ireduce root %d: %d", root, red);
        int *g = malloc(sizeof(int) * n);
        for (int i = 0; i < n; i++) g[i] = -1;
        g[r] = r + 1000;
        if (r == root) CHECK_MPI(MPI_Igather(MPI_IN_PLACE, 1, MPI_INT, g, 1, MPI_INT, root, MPI_COMM_WORLD, &q));
        else CHECK_MPI(MPI_Igather(&g[r], 1, MPI_INT, NULL, 0, MPI_INT, root, MPI_COMM_WORLD, &q));
        CHECK_MPI(MPI_Wait(&q, MPI_STATUS_IGNORE));
        if (r == root)
            for (int i = 0; i < n; i++) CHECK(g[i] == i + 1000, "igather root %d [%d] %d", root, i, g[i]);
        int part = -1;
        for (int i = 0; i < n; i++) g[i] = i * 3;
        CHECK_MPI(MPI_Iscatter(g, 1, MPI_INT, &part, 1, MPI_INT, root, MPI_COMM_WORLD, &q));
        int flag = 0;
        double t0 = MPI_Wtime();
        while (!flag && MPI_Wtime() - t0 < CK_POLL_SECONDS) CHECK_MPI(MPI_Test(&q, &flag, MPI_STATUS_IGNORE));
        CHECK(flag && part == r * 3, "iscatter root %d: %d", root, part);
        free(g);
    }
    int rs = -1, blocks[64];
    for (int i = 0; i < n; i++) blocks[i] = r + i;
    MPI_Request q;
    CHECK_MPI(MPI_Ireduce_scatter_block(blocks, &rs, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD, &q));
    CHECK_MPI(MPI_Wait(&q, MPI_STATUS_IGNORE));
    CHECK(rs == n * (n - 1) / 2 + n * r, "ireduce_scatter_block %d", rs);
    free(all);
    free(a2a);
    free(a2b);
    ck_end();
}

static int queried, freed;
static int query(void *extra, MPI_Status *st) {
    queried++;
    MPI_Status_set_elements(st, MPI_INT, *(int *)extra);
    MPI_Status_set_cancelled(st, 0);
    st->MPI_SOURCE = MPI_UNDEFINED;
    st->MPI_TAG = MPI_UNDEFINED;
    return MPI_SUCCESS;
}
static int free_fn(void *extra) {
    (void)extra;
    freed++;
    return MPI_SUCCESS;
}
static int cancel_fn(void *extra, int complete) {
    (void)extra;
    (void)complete;
    return MPI_SUCCESS;
}

static void generalized(void) {
    ck_begin("generalized requests");
    int extra = 5, flag = -1, count = -1;
    MPI_Request g;
    CHECK_MPI(MPI_Grequest_start(query, free_fn, cancel_fn, &extra, &g));
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Test(&g, &flag, &st));
    CHECK(flag == 0, "not complete yet");
    CHECK_MPI(MPI_Grequest_complete(g));
    CHECK_MPI(MPI_Wait(&g, &st));
    CHECK(g == MPI_REQUEST_NULL, "the request is freed");
    CHECK_MPI(MPI_Get_count(&st, MPI_INT, &count));
    CHECK(count == 5 && queried == 1 && freed == 1, "count %d, queried %d, freed %d", count, queried, freed);
    ck_end();
}

int main(int argc, char **argv) {
    ck_init(&argc, &argv);
    nonblocking();
    generalized();
    return ck_finish();
}
