/* coll.c: collectives on MPI_COMM_WORLD. Every reduction's expected result is computed here
 * from the formula each rank used for its contribution, so any size works. */
#include "check.h"

static int rank, size;

/* ---------------------------------------------------------------- predefined reductions */

enum { T_INT, T_LONG, T_DOUBLE, T_FLOAT, T_UCHAR, NTYPES };
static const char *tname[NTYPES] = {"int", "long", "double", "float", "unsigned char"};
static MPI_Datatype tmpi(int t) {
    switch (t) {
    case T_INT: return MPI_INT;
    case T_LONG: return MPI_LONG;
    case T_DOUBLE: return MPI_DOUBLE;
    case T_FLOAT: return MPI_FLOAT;
    default: return MPI_UNSIGNED_CHAR;
    }
}
static void put(int t, void *b, int i, long long v) {
    switch (t) {
    case T_INT: ((int *)b)[i] = (int)v; break;
    case T_LONG: ((long *)b)[i] = (long)v; break;
    case T_DOUBLE: ((double *)b)[i] = (double)v; break;
    case T_FLOAT: ((float *)b)[i] = (float)v; break;
    default: ((unsigned char *)b)[i] = (unsigned char)v; break;
    }
}
static long long get(int t, const void *b, int i) {
    switch (t) {
    case T_INT: return ((const int *)b)[i];
    case T_LONG: return ((const long *)b)[i];
    case T_DOUBLE: return (long long)((const double *)b)[i];
    case T_FLOAT: return (long long)((const float *)b)[i];
    default: return ((const unsigned char *)b)[i];
    }
}

static const MPI_Op ops[] = {MPI_SUM, MPI_PROD, MPI_MIN, MPI_MAX, MPI_LAND, MPI_BAND, MPI_LOR, MPI_BOR, MPI_LXOR, MPI_BXOR};
static const char *opname[] = {"MPI_SUM", "MPI_PROD", "MPI_MIN", "MPI_MAX", "MPI_LAND", "MPI_BAND", "MPI_LOR", "MPI_BOR", "MPI_LXOR", "MPI_BXOR"};
#define NOPS 10

/* Rank r's element i for operation o: small, so that no result overflows any type. */
static long long val(int r, int i, int o) {
    switch (o) {
    case 1: return (r + i) % 3 + 1;                          /* PROD */
    case 4: case 6: case 8: return (r * 7 + i * 3) % 4 == 0 ? 0 : (r + i) % 3 + 1; /* logical */
    case 5: case 7: case 9: return (r * 37 + i * 11 + 5) & 0x7f; /* bitwise */
    default: return (r * 13 + i * 7) % 50;                  /* SUM, MIN, MAX */
    }
}
static long long apply(int o, long long a, long long b) {
    switch (o) {
    case 0: return a + b;
    case 1: return a * b;
    case 2: return a < b ? a : b;
    case 3: return a > b ? a : b;
    case 4: return (a && b);
    case 5: return a & b;
    case 6: return (a || b);
    case 7: return a | b;
    case 8: return (!a != !b);
    default: return a ^ b;
    }
}
static long long expected(int o, int i, int upto) {
    long long e = val(0, i, o);
    for (int r = 1; r <= upto; r++) e = apply(o, e, val(r, i, o));
    return e;
}

#define N 7

static void predefined(void) {
    ck_begin("coll.allreduce-reduce-predefined-ops");
    _Alignas(16) unsigned char in[N * 16], out[N * 16];
    for (int t = 0; t < NTYPES; t++) {
        int nops = (t == T_DOUBLE || t == T_FLOAT) ? 4 : NOPS; /* logical and bitwise ops are for integers */
        for (int o = 0; o < nops; o++) {
            for (int i = 0; i < N; i++) put(t, in, i, val(rank, i, o));
            memset(out, 0x55, sizeof out);
            if (CHECK_MPI(MPI_Allreduce(in, out, N, tmpi(t), ops[o], MPI_COMM_WORLD)) == MPI_SUCCESS) {
                for (int i = 0; i < N; i++) {
                    long long got = get(t, out, i), want = expected(o, i, size - 1);
                    if (got != want) {
                        ck_fail(__LINE__, "MPI_Allreduce %s on %s: element %d is %lld, expected %lld", opname[o], tname[t], i, got, want);
                        break;
                    }
                }
            }
            for (int root = 0; root < size; root++) {
                memset(out, 0x55, sizeof out);
                if (CHECK_MPI(MPI_Reduce(in, out, N, tmpi(t), ops[o], root, MPI_COMM_WORLD)) != MPI_SUCCESS || rank != root) continue;
                for (int i = 0; i < N; i++) {
                    long long got = get(t, out, i), want = expected(o, i, size - 1);
                    if (got != want) {
                        ck_fail(__LINE__, "MPI_Reduce %s on %s to root %d: element %d is %lld, expected %lld", opname[o], tname[t], root, i, got, want);
                        break;
                    }
                }
            }
        }
    }
    ck_end();

    ck_begin("coll.reduce-in-place");
    int v[N];
    for (int i = 0; i < N; i++) v[i] = (int)val(rank, i, 0);
    CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, v, N, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    for (int i = 0; i < N; i++) CHECK(v[i] == expected(0, i, size - 1), "MPI_Allreduce in place: element %d is %d", i, v[i]);
    double d[N];
    for (int root = 0; root < size; root++) {
        for (int i = 0; i < N; i++) d[i] = (double)val(rank, i, 3);
        if (rank == root)
            CHECK_MPI(MPI_Reduce(MPI_IN_PLACE, d, N, MPI_DOUBLE, MPI_MAX, root, MPI_COMM_WORLD));
        else
            CHECK_MPI(MPI_Reduce(d, NULL, N, MPI_DOUBLE, MPI_MAX, root, MPI_COMM_WORLD));
        if (rank == root)
            for (int i = 0; i < N; i++) CHECK(d[i] == (double)expected(3, i, size - 1), "MPI_Reduce in place at root %d: element %d is %g", root, i, d[i]);
    }
    ck_end();
}

/* ---------------------------------------------------------------- MINLOC / MAXLOC */

struct int_int { int v, i; };
struct double_int { double v; int i; };

static int loc_val(int r, int i) { return ((r + i) * 5 + i) % 3; }

static void locations(void) {
    ck_begin("coll.minloc-maxloc");
    struct int_int a[N], mn[N], mx[N];
    struct double_int b[N], dmn[N], dmx[N];
    for (int i = 0; i < N; i++) {
        a[i].v = loc_val(rank, i);
        a[i].i = rank;
        b[i].v = loc_val(rank, i) - 1.5;
        b[i].i = rank;
    }
    CHECK_MPI(MPI_Allreduce(a, mn, N, MPI_2INT, MPI_MINLOC, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Allreduce(a, mx, N, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Allreduce(b, dmn, N, MPI_DOUBLE_INT, MPI_MINLOC, MPI_COMM_WORLD));
    for (int i = 0; i < N; i++) dmx[i].i = -1;
    CHECK_MPI(MPI_Reduce(b, dmx, N, MPI_DOUBLE_INT, MPI_MAXLOC, 0, MPI_COMM_WORLD));
    for (int i = 0; i < N; i++) {
        /* Ties go to the lowest rank. */
        int minv = 1 << 30, mini = -1, maxv = -1, maxi = -1;
        for (int r = 0; r < size; r++) {
            int x = loc_val(r, i);
            if (x < minv) { minv = x; mini = r; }
            if (x > maxv) { maxv = x; maxi = r; }
        }
        CHECK(mn[i].v == minv && mn[i].i == mini, "MINLOC on MPI_2INT, element %d: (%d, %d), expected (%d, %d)", i, mn[i].v, mn[i].i, minv, mini);
        CHECK(mx[i].v == maxv && mx[i].i == maxi, "MAXLOC on MPI_2INT, element %d: (%d, %d), expected (%d, %d)", i, mx[i].v, mx[i].i, maxv, maxi);
        CHECK(dmn[i].v == minv - 1.5 && dmn[i].i == mini, "MINLOC on MPI_DOUBLE_INT, element %d: (%g, %d), expected (%g, %d)", i, dmn[i].v, dmn[i].i, minv - 1.5, mini);
        if (rank == 0)
            CHECK(dmx[i].v == maxv - 1.5 && dmx[i].i == maxi, "MAXLOC on MPI_DOUBLE_INT at root, element %d: (%g, %d), expected (%g, %d)", i, dmx[i].v, dmx[i].i, maxv - 1.5, maxi);
    }
    ck_end();
}

/* ---------------------------------------------------------------- data movement */

static void barrier_bcast(void) {
    ck_begin("coll.barrier");
    for (int i = 0; i < 5; i++) CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    /* Nothing crosses a barrier early: a message sent after it by rank 0 is not there before. */
    int flag = -1, x = 7;
    if (size > 1) {
        if (rank == 1) {
            CHECK_MPI(MPI_Iprobe(0, 1000, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE));
            CHECK(flag == 0, "a message sent after the barrier arrived before it");
        }
        CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
        if (rank == 0) CHECK_MPI(MPI_Send(&x, 1, MPI_INT, 1, 1000, MPI_COMM_WORLD));
        if (rank == 1) CHECK_MPI(MPI_Recv(&x, 1, MPI_INT, 0, 1000, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    }
    ck_end();

    ck_begin("coll.bcast-every-root");
    long big = 100000;
    unsigned char *bytes = malloc((size_t)big);
    for (int root = 0; root < size; root++) {
        int v[10];
        for (int i = 0; i < 10; i++) v[i] = rank == root ? root * 100 + i : -1;
        CHECK_MPI(MPI_Bcast(v, 10, MPI_INT, root, MPI_COMM_WORLD));
        CHECK(v[0] == root * 100 && v[9] == root * 100 + 9, "MPI_Bcast from %d gave %d..%d", root, v[0], v[9]);
        if (rank == root) ck_fill(bytes, big, root, 3);
        else memset(bytes, 0, (size_t)big);
        CHECK_MPI(MPI_Bcast(bytes, (int)big, MPI_BYTE, root, MPI_COMM_WORLD));
        CHECK_FILL(bytes, big, root, 3);
        CHECK_MPI(MPI_Bcast(v, 0, MPI_INT, root, MPI_COMM_WORLD));
    }
    free(bytes);
    ck_end();
}

static void check_ints(const int *got, const int *want, int n, const char *what, int line) {
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) {
            ck_fail(line, "%s: element %d is %d, expected %d", what, i, got[i], want[i]);
            return;
        }
}

static void gathers(void) {
    int *want = malloc(sizeof(int) * 4096), *buf = malloc(sizeof(int) * 4096);
    int counts[64], displs[64];

    ck_begin("coll.gather");
    for (int root = 0; root < size; root++) {
        int s[3] = {rank * 100, rank * 100 + 1, rank * 100 + 2};
        for (int i = 0; i < 3 * size; i++) buf[i] = -1;
        CHECK_MPI(MPI_Gather(s, 3, MPI_INT, buf, 3, MPI_INT, root, MPI_COMM_WORLD));
        if (rank == root) {
            for (int i = 0; i < 3 * size; i++) want[i] = (i / 3) * 100 + i % 3;
            check_ints(buf, want, 3 * size, "MPI_Gather", __LINE__);
        }
        /* In place at the root: its block is already in the receive buffer. */
        if (rank == root) {
            for (int i = 0; i < 3 * size; i++) buf[i] = -1;
            for (int j = 0; j < 3; j++) buf[3 * root + j] = s[j];
            CHECK_MPI(MPI_Gather(MPI_IN_PLACE, 3, MPI_INT, buf, 3, MPI_INT, root, MPI_COMM_WORLD));
            check_ints(buf, want, 3 * size, "MPI_Gather in place", __LINE__);
        } else {
            CHECK_MPI(MPI_Gather(s, 3, MPI_INT, NULL, 0, MPI_DATATYPE_NULL, root, MPI_COMM_WORLD));
        }
    }
    ck_end();

    ck_begin("coll.gatherv");
    /* Rank r gives r + 1 ints; the blocks land in reverse rank order with a gap of one after each. */
    int total = 0;
    for (int r = size - 1; r >= 0; r--) {
        counts[r] = r + 1;
        displs[r] = total;
        total += r + 2;
    }
    for (int root = 0; root < size; root++) {
        int s[64];
        for (int j = 0; j <= rank; j++) s[j] = rank * 1000 + j;
        for (int i = 0; i < total; i++) buf[i] = want[i] = -1;
        for (int r = 0; r < size; r++)
            for (int j = 0; j <= r; j++) want[displs[r] + j] = r * 1000 + j;
        CHECK_MPI(MPI_Gatherv(s, rank + 1, MPI_INT, buf, counts, displs, MPI_INT, root, MPI_COMM_WORLD));
        if (rank == root) check_ints(buf, want, total, "MPI_Gatherv", __LINE__);
    }
    ck_end();

    ck_begin("coll.scatter");
    for (int root = 0; root < size; root++) {
        int s[256], r[2] = {-1, -1};
        for (int i = 0; i < 2 * size; i++) s[i] = root * 1000 + i;
        CHECK_MPI(MPI_Scatter(s, 2, MPI_INT, r, 2, MPI_INT, root, MPI_COMM_WORLD));
        CHECK(r[0] == root * 1000 + 2 * rank && r[1] == root * 1000 + 2 * rank + 1, "MPI_Scatter from %d gave %d %d", root, r[0], r[1]);
        if (rank == root) {
            CHECK_MPI(MPI_Scatter(s, 2, MPI_INT, MPI_IN_PLACE, 2, MPI_INT, root, MPI_COMM_WORLD));
            CHECK(s[2 * rank] == root * 1000 + 2 * rank, "MPI_Scatter in place changed the root's block");
        } else {
            r[0] = r[1] = -1;
            CHECK_MPI(MPI_Scatter(NULL, 0, MPI_DATATYPE_NULL, r, 2, MPI_INT, root, MPI_COMM_WORLD));
            CHECK(r[0] == root * 1000 + 2 * rank && r[1] == root * 1000 + 2 * rank + 1, "MPI_Scatter (root in place) from %d gave %d %d", root, r[0], r[1]);
        }
    }
    ck_end();

    ck_begin("coll.scatterv");
    for (int root = 0; root < size; root++) {
        for (int i = 0; i < total; i++) buf[i] = -7;
        for (int r = 0; r < size; r++)
            for (int j = 0; j <= r; j++) buf[displs[r] + j] = root * 10000 + r * 100 + j;
        int r[64];
        for (int j = 0; j < 64; j++) r[j] = -1;
        CHECK_MPI(MPI_Scatterv(buf, counts, displs, MPI_INT, r, rank + 1, MPI_INT, root, MPI_COMM_WORLD));
        for (int j = 0; j <= rank; j++) want[j] = root * 10000 + rank * 100 + j;
        want[rank + 1] = -1;
        check_ints(r, want, rank + 2, "MPI_Scatterv", __LINE__);
    }
    ck_end();

    ck_begin("coll.allgather");
    int s2[2] = {rank * 10, rank * 10 + 1};
    for (int i = 0; i < 2 * size; i++) {
        buf[i] = -1;
        want[i] = (i / 2) * 10 + i % 2;
    }
    CHECK_MPI(MPI_Allgather(s2, 2, MPI_INT, buf, 2, MPI_INT, MPI_COMM_WORLD));
    check_ints(buf, want, 2 * size, "MPI_Allgather", __LINE__);
    for (int i = 0; i < 2 * size; i++) buf[i] = (i / 2 == rank) ? want[i] : -1;
    CHECK_MPI(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, 2, MPI_INT, MPI_COMM_WORLD));
    check_ints(buf, want, 2 * size, "MPI_Allgather in place", __LINE__);
    ck_end();

    ck_begin("coll.allgatherv");
    int s[64];
    for (int j = 0; j <= rank; j++) s[j] = rank * 1000 + j;
    for (int i = 0; i < total; i++) buf[i] = want[i] = -1;
    for (int r = 0; r < size; r++)
        for (int j = 0; j <= r; j++) want[displs[r] + j] = r * 1000 + j;
    CHECK_MPI(MPI_Allgatherv(s, rank + 1, MPI_INT, buf, counts, displs, MPI_INT, MPI_COMM_WORLD));
    check_ints(buf, want, total, "MPI_Allgatherv", __LINE__);
    ck_end();

    ck_begin("coll.alltoall");
    int *sa = malloc(sizeof(int) * 3 * (size_t)size);
    for (int q = 0; q < size; q++)
        for (int j = 0; j < 3; j++) {
            sa[3 * q + j] = rank * 1000 + q * 10 + j;
            want[3 * q + j] = q * 1000 + rank * 10 + j;
            buf[3 * q + j] = -1;
        }
    CHECK_MPI(MPI_Alltoall(sa, 3, MPI_INT, buf, 3, MPI_INT, MPI_COMM_WORLD));
    check_ints(buf, want, 3 * size, "MPI_Alltoall", __LINE__);
    CHECK_MPI(MPI_Alltoall(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, sa, 3, MPI_INT, MPI_COMM_WORLD));
    check_ints(sa, want, 3 * size, "MPI_Alltoall in place", __LINE__);
    free(sa);
    ck_end();

    ck_begin("coll.alltoallv");
    /* Rank p sends (p + q) % 3 + 1 ints to q: blocks in order with a gap of 1 on the sending side,
     * in reverse order with a gap of 2 on the receiving side. */
    int sc[64], sd[64], rc[64], rd[64], st = 0, rt = 0;
    for (int q = 0; q < size; q++) {
        sc[q] = (rank + q) % 3 + 1;
        sd[q] = st;
        st += sc[q] + 1;
        rc[q] = (q + rank) % 3 + 1;
    }
    for (int q = size - 1; q >= 0; q--) {
        rd[q] = rt;
        rt += rc[q] + 2;
    }
    int *sv = malloc(sizeof(int) * (size_t)st);
    for (int i = 0; i < st; i++) sv[i] = -5;
    for (int q = 0; q < size; q++)
        for (int j = 0; j < sc[q]; j++) sv[sd[q] + j] = rank * 1000 + q * 10 + j;
    for (int i = 0; i < rt; i++) buf[i] = want[i] = -1;
    for (int q = 0; q < size; q++)
        for (int j = 0; j < rc[q]; j++) want[rd[q] + j] = q * 1000 + rank * 10 + j;
    CHECK_MPI(MPI_Alltoallv(sv, sc, sd, MPI_INT, buf, rc, rd, MPI_INT, MPI_COMM_WORLD));
    check_ints(buf, want, rt, "MPI_Alltoallv", __LINE__);
    free(sv);
    ck_end();

    free(want);
    free(buf);
}

/* ---------------------------------------------------------------- scans, reduce_scatter */

static void scans(void) {
    ck_begin("coll.scan-exscan");
    int v[N], out[N];
    for (int i = 0; i < N; i++) v[i] = (int)val(rank, i, 0);
    CHECK_MPI(MPI_Scan(v, out, N, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    for (int i = 0; i < N; i++) CHECK(out[i] == expected(0, i, rank), "MPI_Scan: element %d is %d, expected %lld", i, out[i], expected(0, i, rank));
    for (int i = 0; i < N; i++) out[i] = -1;
    CHECK_MPI(MPI_Exscan(v, out, N, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    if (rank > 0)
        for (int i = 0; i < N; i++) CHECK(out[i] == expected(0, i, rank - 1), "MPI_Exscan: element %d is %d, expected %lld", i, out[i], expected(0, i, rank - 1));
    double d[N], dout[N];
    for (int i = 0; i < N; i++) d[i] = (double)val(rank, i, 3);
    CHECK_MPI(MPI_Scan(d, dout, N, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    for (int i = 0; i < N; i++) CHECK(dout[i] == (double)expected(3, i, rank), "MPI_Scan MAX on double: element %d is %g", i, dout[i]);
    ck_end();

    ck_begin("coll.reduce-scatter");
    int counts[64], total = 0;
    for (int r = 0; r < size; r++) {
        counts[r] = r + 1;
        total += r + 1;
    }
    int *in = malloc(sizeof(int) * (size_t)total), out2[64];
    for (int i = 0; i < total; i++) in[i] = (int)val(rank, i, 0);
    int first = 0;
    for (int r = 0; r < rank; r++) first += counts[r];
    for (int j = 0; j < 64; j++) out2[j] = -1;
    CHECK_MPI(MPI_Reduce_scatter(in, out2, counts, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    for (int j = 0; j <= rank; j++)
        CHECK(out2[j] == expected(0, first + j, size - 1), "MPI_Reduce_scatter: element %d is %d, expected %lld", j, out2[j], expected(0, first + j, size - 1));
    CHECK(out2[rank + 1] == -1, "MPI_Reduce_scatter wrote past this rank's %d elements", rank + 1);
    free(in);
    int *blk = malloc(sizeof(int) * 3 * (size_t)size), bout[4] = {-1, -1, -1, -1};
    for (int i = 0; i < 3 * size; i++) blk[i] = (int)val(rank, i, 3);
    CHECK_MPI(MPI_Reduce_scatter_block(blk, bout, 3, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    for (int j = 0; j < 3; j++)
        CHECK(bout[j] == expected(3, 3 * rank + j, size - 1), "MPI_Reduce_scatter_block: element %d is %d, expected %lld", j, bout[j], expected(3, 3 * rank + j, size - 1));
    CHECK(bout[3] == -1, "MPI_Reduce_scatter_block wrote past its block");
    free(blk);
    ck_end();
}

/* ---------------------------------------------------------------- user operations */

static int user_calls;

/* Commutative: sum modulo 1000, on MPI_INT. */
static void sum_mod(void *in, void *inout, int *len, MPI_Datatype *dt) {
    (void)dt;
    user_calls++;
    const int *a = in;
    int *b = inout;
    for (int i = 0; i < *len; i++) b[i] = (a[i] + b[i]) % 1000;
}

/* Not commutative: the left operand, on MPI_INT (so a reduction gives rank 0's value). */
static void left(void *in, void *inout, int *len, MPI_Datatype *dt) {
    (void)dt;
    user_calls++;
    const int *a = in;
    int *b = inout;
    for (int i = 0; i < *len; i++) b[i] = a[i];
}

/* Not commutative: 2x2 integer matrix product, inout = in x inout, on contiguous(4, MPI_INT). */
static void matmul(void *in, void *inout, int *len, MPI_Datatype *dt) {
    (void)dt;
    user_calls++;
    const int *a = in;
    int *b = inout;
    for (int k = 0; k < *len; k++, a += 4, b += 4) {
        int c0 = a[0] * b[0] + a[1] * b[2], c1 = a[0] * b[1] + a[1] * b[3];
        int c2 = a[2] * b[0] + a[3] * b[2], c3 = a[2] * b[1] + a[3] * b[3];
        b[0] = c0;
        b[1] = c1;
        b[2] = c2;
        b[3] = c3;
    }
}

/* Rank r's matrix k: [[r + k + 1, 1], [1, 0]]; no two of them commute. */
static void mat_of(int r, int k, int *m) {
    m[0] = r + k + 1;
    m[1] = 1;
    m[2] = 1;
    m[3] = 0;
}
/* M(0) x M(1) x ... x M(upto). */
static void mat_product(int k, int upto, int *m) {
    mat_of(0, k, m);
    for (int r = 1; r <= upto; r++) {
        int b[4];
        mat_of(r, k, b);
        int len = 1;
        /* m = m x b: matmul computes inout = in x inout. */
        int t[4] = {b[0], b[1], b[2], b[3]};
        matmul(m, t, &len, NULL);
        user_calls--;
        memcpy(m, t, sizeof t);
    }
}

#define NM 3

static void check_mats(const int *got, int upto, const char *what, int line) {
    for (int k = 0; k < NM; k++) {
        int want[4];
        mat_product(k, upto, want);
        if (memcmp(got + 4 * k, want, sizeof want) != 0) {
            ck_fail(line, "%s: matrix %d is [%d %d; %d %d], expected [%d %d; %d %d]", what, k, got[4 * k], got[4 * k + 1],
                    got[4 * k + 2], got[4 * k + 3], want[0], want[1], want[2], want[3]);
            return;
        }
    }
}

static void user_ops(void) {
    ck_begin("coll.op-create-commutative");
    MPI_Op sum, lft, mm;
    CHECK_MPI(MPI_Op_create(sum_mod, 1, &sum));
    CHECK_MPI(MPI_Op_create(left, 0, &lft));
    CHECK_MPI(MPI_Op_create(matmul, 0, &mm));
    int c = -1;
    CHECK_MPI(MPI_Op_commutative(sum, &c));
    CHECK(c == 1, "MPI_Op_commutative(commutative user op) gave %d", c);
    CHECK_MPI(MPI_Op_commutative(mm, &c));
    CHECK(c == 0, "MPI_Op_commutative(non-commutative user op) gave %d", c);
    CHECK_MPI(MPI_Op_commutative(MPI_SUM, &c));
    CHECK(c == 1, "MPI_Op_commutative(MPI_SUM) gave %d", c);
    int v[N], out[N];
    for (int i = 0; i < N; i++) v[i] = 400 + rank * 300 + i;
    CHECK_MPI(MPI_Allreduce(v, out, N, MPI_INT, sum, MPI_COMM_WORLD));
    for (int i = 0; i < N; i++) {
        int want = 0;
        for (int r = 0; r < size; r++) want = (want + 400 + r * 300 + i) % 1000;
        if (size == 1) want = 400 + i; /* one rank: the operation need not run */
        CHECK(out[i] == want, "MPI_Allreduce with a commutative user op: element %d is %d, expected %d", i, out[i], want);
    }
    for (int i = 0; i < N; i++) v[i] = rank * 10 + i;
    CHECK_MPI(MPI_Allreduce(v, out, N, MPI_INT, lft, MPI_COMM_WORLD));
    for (int i = 0; i < N; i++) CHECK(out[i] == i, "MPI_Allreduce with the left projection: element %d is %d, expected rank 0's %d", i, out[i], i);
    for (int root = 0; root < size; root++) {
        for (int i = 0; i < N; i++) out[i] = -1;
        CHECK_MPI(MPI_Reduce(v, out, N, MPI_INT, lft, root, MPI_COMM_WORLD));
        if (rank == root)
            for (int i = 0; i < N; i++) CHECK(out[i] == i, "MPI_Reduce to %d with the left projection: element %d is %d", root, i, out[i]);
    }
    CHECK_MPI(MPI_Scan(v, out, N, MPI_INT, lft, MPI_COMM_WORLD));
    for (int i = 0; i < N; i++) CHECK(out[i] == i, "MPI_Scan with the left projection: element %d is %d", i, out[i]);
    ck_end();

    ck_begin("coll.op-non-commutative-matrix");
    MPI_Datatype mat;
    CHECK_MPI(MPI_Type_contiguous(4, MPI_INT, &mat));
    CHECK_MPI(MPI_Type_commit(&mat));
    _Alignas(16) int m[4 * NM], r[4 * NM];
    for (int k = 0; k < NM; k++) mat_of(rank, k, m + 4 * k);
    CHECK_MPI(MPI_Allreduce(m, r, NM, mat, mm, MPI_COMM_WORLD));
    check_mats(r, size - 1, "MPI_Allreduce with the matrix product", __LINE__);
    for (int root = 0; root < size; root++) {
        memset(r, 0, sizeof r);
        CHECK_MPI(MPI_Reduce(m, r, NM, mat, mm, root, MPI_COMM_WORLD));
        if (rank == root) check_mats(r, size - 1, "MPI_Reduce with the matrix product", __LINE__);
    }
    CHECK_MPI(MPI_Scan(m, r, NM, mat, mm, MPI_COMM_WORLD));
    check_mats(r, rank, "MPI_Scan with the matrix product", __LINE__);
    memset(r, 0, sizeof r);
    CHECK_MPI(MPI_Exscan(m, r, NM, mat, mm, MPI_COMM_WORLD));
    if (rank > 0) check_mats(r, rank - 1, "MPI_Exscan with the matrix product", __LINE__);
    memcpy(r, m, sizeof r);
    CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, r, NM, mat, mm, MPI_COMM_WORLD));
    check_mats(r, size - 1, "MPI_Allreduce in place with the matrix product", __LINE__);
    ck_end();

    ck_begin("coll.op-user-int-aligned-buffer");
    /* The matrices at an address aligned for int but not for 8 bytes: legal C and MPI. */
    _Alignas(16) int sbuf[4 * NM + 1], rbuf[4 * NM + 1];
    for (int k = 0; k < NM; k++) mat_of(rank, k, sbuf + 1 + 4 * k);
    if (CHECK_MPI(MPI_Allreduce(sbuf + 1, rbuf + 1, NM, mat, mm, MPI_COMM_WORLD)) == MPI_SUCCESS)
        check_mats(rbuf + 1, size - 1, "MPI_Allreduce with the matrix product on int-aligned buffers", __LINE__);
    ck_end();

    ck_begin("coll.reduce-local");
    int a[N], b[N];
    for (int i = 0; i < N; i++) {
        a[i] = i;
        b[i] = 100 + i;
    }
    CHECK_MPI(MPI_Reduce_local(a, b, N, MPI_INT, MPI_SUM));
    for (int i = 0; i < N; i++) CHECK(b[i] == 100 + 2 * i, "MPI_Reduce_local MPI_SUM: element %d is %d", i, b[i]);
    CHECK_MPI(MPI_Reduce_local(a, b, N, MPI_INT, lft));
    for (int i = 0; i < N; i++) CHECK(b[i] == i, "MPI_Reduce_local with the left projection: element %d is %d (inoutbuf = inbuf op inoutbuf)", i, b[i]);
    int x[4 * NM], y[4 * NM];
    for (int k = 0; k < NM; k++) {
        mat_of(0, k, x + 4 * k);
        mat_of(1, k, y + 4 * k);
    }
    user_calls = 0;
    CHECK_MPI(MPI_Reduce_local(x, y, NM, mat, mm));
    CHECK(user_calls >= 1, "MPI_Reduce_local did not call the user function");
    check_mats(y, 1, "MPI_Reduce_local with the matrix product", __LINE__);
    ck_end();

    ck_begin("coll.op-free");
    CHECK_MPI(MPI_Op_free(&sum));
    CHECK_MPI(MPI_Op_free(&lft));
    CHECK_MPI(MPI_Op_free(&mm));
    CHECK(sum == MPI_OP_NULL && lft == MPI_OP_NULL && mm == MPI_OP_NULL, "MPI_Op_free did not set MPI_OP_NULL");
    CHECK_MPI(MPI_Type_free(&mat));
    ck_end();
}

/* ---------------------------------------------------------------- large counts */

static void large(void) {
    ck_begin("coll.large-allreduce-bcast");
    const int n = 1 << 20;
    double *a = malloc(sizeof(double) * (size_t)n), *b = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) a[i] = rank + i % 7;
    CHECK_MPI(MPI_Allreduce(a, b, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    double base = (double)size * (size - 1) / 2;
    for (int i = 0; i < n; i++)
        if (b[i] != base + (double)size * (i % 7)) {
            ck_fail(__LINE__, "MPI_Allreduce of 1M doubles: element %d is %g, expected %g", i, b[i], base + (double)size * (i % 7));
            break;
        }
    CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, a, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    for (int i = 0; i < n; i++)
        if (a[i] != size - 1 + i % 7) {
            ck_fail(__LINE__, "MPI_Allreduce in place of 1M doubles: element %d is %g", i, a[i]);
            break;
        }
    int roots[2] = {0, size - 1};
    for (int k = 0; k < 2; k++) {
        int root = roots[k];
        for (int i = 0; i < n; i++) b[i] = rank == root ? i * 0.5 + root : -1.0;
        CHECK_MPI(MPI_Bcast(b, n, MPI_DOUBLE, root, MPI_COMM_WORLD));
        for (int i = 0; i < n; i++)
            if (b[i] != i * 0.5 + root) {
                ck_fail(__LINE__, "MPI_Bcast of 1M doubles from %d: element %d is %g", root, i, b[i]);
                break;
            }
    }
    free(a);
    free(b);
    ck_end();
}

int main(int argc, char **argv) {
    ck_init(&argc, &argv);
    rank = ck.rank;
    size = ck.size;
    barrier_bcast();
    predefined();
    locations();
    gathers();
    scans();
    user_ops();
    large();
    return ck_finish();
}
