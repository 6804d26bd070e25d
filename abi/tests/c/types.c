/* types.c: derived datatypes. Constructors with their sizes and extents, names, sending and
 * receiving through layouts (ring: to the next rank, from the previous one, receives posted
 * first), a struct with MPI_Get_address displacements, pack and unpack, and MPI_Get_elements
 * on derived types. */
#include <stddef.h>

#include "check.h"

static int rank, size, next, prev;

static void expect_shape(MPI_Datatype t, int want_size, MPI_Aint lb, MPI_Aint extent, MPI_Aint tlb, MPI_Aint textent,
                         const char *what, int line) {
    int s = -1;
    MPI_Aint l = -1, e = -1, tl = -1, te = -1;
    MPI_Count sx = -1;
    if (MPI_Type_size(t, &s) != MPI_SUCCESS || MPI_Type_get_extent(t, &l, &e) != MPI_SUCCESS ||
        MPI_Type_get_true_extent(t, &tl, &te) != MPI_SUCCESS || MPI_Type_size_x(t, &sx) != MPI_SUCCESS) {
        ck_fail(line, "%s: a size or extent query failed", what);
        return;
    }
    if (s != want_size || sx != want_size || l != lb || e != extent || tl != tlb || te != textent)
        ck_fail(line, "%s: size %d (size_x %ld), lb %ld, extent %ld, true lb %ld, true extent %ld; expected %d, %ld, %ld, %ld, %ld",
                what, s, (long)sx, (long)l, (long)e, (long)tl, (long)te, want_size, (long)lb, (long)extent, (long)tlb, (long)textent);
}

struct rec {
    int a;
    double b;
    char c[3];
};

static MPI_Datatype rec_type(MPI_Datatype *raw) {
    struct rec r = {0, 0.0, {0, 0, 0}};
    MPI_Aint base, d[3];
    MPI_Get_address(&r, &base);
    MPI_Get_address(&r.a, &d[0]);
    MPI_Get_address(&r.b, &d[1]);
    MPI_Get_address(&r.c, &d[2]);
    for (int i = 0; i < 3; i++) d[i] = MPI_Aint_diff(d[i], base);
    int bl[3] = {1, 1, 3};
    MPI_Datatype ts[3] = {MPI_INT, MPI_DOUBLE, MPI_CHAR}, t;
    CHECK_MPI(MPI_Type_create_struct(3, bl, d, ts, raw));
    CHECK_MPI(MPI_Type_create_resized(*raw, 0, (MPI_Aint)sizeof(struct rec), &t));
    CHECK_MPI(MPI_Type_commit(&t));
    return t;
}

static void constructors(void) {
    ck_begin("types.constructors-size-extent");
    MPI_Datatype t;
    expect_shape(MPI_INT, 4, 0, 4, 0, 4, "MPI_INT", __LINE__);
    expect_shape(MPI_DOUBLE, 8, 0, 8, 0, 8, "MPI_DOUBLE", __LINE__);

    CHECK_MPI(MPI_Type_contiguous(3, MPI_INT, &t));
    expect_shape(t, 12, 0, 12, 0, 12, "contiguous(3, int)", __LINE__);
    CHECK_MPI(MPI_Type_free(&t));
    CHECK(t == MPI_DATATYPE_NULL, "MPI_Type_free left %#x", (unsigned)t);

    CHECK_MPI(MPI_Type_vector(3, 2, 4, MPI_DOUBLE, &t));
    expect_shape(t, 48, 0, 80, 0, 80, "vector(3, 2, 4, double)", __LINE__);
    CHECK_MPI(MPI_Type_free(&t));

    CHECK_MPI(MPI_Type_create_hvector(3, 1, 24, MPI_INT, &t));
    expect_shape(t, 12, 0, 52, 0, 52, "hvector(3, 1, 24 bytes, int)", __LINE__);
    CHECK_MPI(MPI_Type_free(&t));

    int bl[3] = {1, 2, 1}, disp[3] = {4, 0, 0};
    CHECK_MPI(MPI_Type_indexed(2, bl, disp, MPI_INT, &t));
    expect_shape(t, 12, 0, 20, 0, 20, "indexed({1, 2}, {4, 0}, int)", __LINE__);
    CHECK_MPI(MPI_Type_free(&t));

    int bl1[2] = {1, 1}, disp2[2] = {2, 5};
    CHECK_MPI(MPI_Type_indexed(2, bl1, disp2, MPI_INT, &t));
    expect_shape(t, 8, 8, 16, 8, 16, "indexed({1, 1}, {2, 5}, int)", __LINE__);
    CHECK_MPI(MPI_Type_free(&t));

    int hbl[2] = {2, 1};
    MPI_Aint hd[2] = {8, 40};
    CHECK_MPI(MPI_Type_create_hindexed(2, hbl, hd, MPI_INT, &t));
    expect_shape(t, 12, 8, 36, 8, 36, "hindexed({2, 1}, {8, 40} bytes, int)", __LINE__);
    CHECK_MPI(MPI_Type_free(&t));

    int bd[2] = {1, 5};
    CHECK_MPI(MPI_Type_create_indexed_block(2, 2, bd, MPI_INT, &t));
    expect_shape(t, 16, 4, 24, 4, 24, "indexed_block(2, {1, 5}, int)", __LINE__);
    CHECK_MPI(MPI_Type_free(&t));

    MPI_Aint hbd[3] = {0, 16, 32};
    CHECK_MPI(MPI_Type_create_hindexed_block(3, 1, hbd, MPI_DOUBLE, &t));
    expect_shape(t, 24, 0, 40, 0, 40, "hindexed_block(1, {0, 16, 32} bytes, double)", __LINE__);
    CHECK_MPI(MPI_Type_free(&t));

    /* The struct: its extent is padded to the alignment of double, as the C struct is. */
    MPI_Datatype raw;
    t = rec_type(&raw);
    expect_shape(raw, 15, 0, (MPI_Aint)sizeof(struct rec), 0, (MPI_Aint)(offsetof(struct rec, c) + 3), "struct {int, double, char[3]}", __LINE__);
    expect_shape(t, 15, 0, (MPI_Aint)sizeof(struct rec), 0, (MPI_Aint)(offsetof(struct rec, c) + 3), "the struct resized to sizeof", __LINE__);
    CHECK_MPI(MPI_Type_free(&raw));
    CHECK_MPI(MPI_Type_free(&t));

    MPI_Datatype two, wide;
    CHECK_MPI(MPI_Type_contiguous(2, MPI_INT, &two));
    CHECK_MPI(MPI_Type_create_resized(two, -4, 16, &wide));
    expect_shape(wide, 8, -4, 16, 0, 8, "contiguous(2, int) resized to lb -4, extent 16", __LINE__);
    MPI_Datatype d;
    CHECK_MPI(MPI_Type_dup(wide, &d));
    expect_shape(d, 8, -4, 16, 0, 8, "a duplicate of the resized type", __LINE__);
    CHECK_MPI(MPI_Type_free(&d));
    CHECK_MPI(MPI_Type_free(&wide));
    CHECK_MPI(MPI_Type_free(&two));
    ck_end();

    ck_begin("types.names");
    char name[MPI_MAX_OBJECT_NAME];
    int len = -1;
    CHECK_MPI(MPI_Type_get_name(MPI_INT, name, &len));
    CHECK(strcmp(name, "MPI_INT") == 0 && len == 7, "MPI_INT's name is \"%s\" (len %d)", name, len);
    CHECK_MPI(MPI_Type_get_name(MPI_DOUBLE, name, &len));
    CHECK(strcmp(name, "MPI_DOUBLE") == 0, "MPI_DOUBLE's name is \"%s\"", name);
    CHECK_MPI(MPI_Type_vector(2, 1, 2, MPI_INT, &t));
    CHECK_MPI(MPI_Type_set_name(t, "every other int"));
    CHECK_MPI(MPI_Type_get_name(t, name, &len));
    CHECK(strcmp(name, "every other int") == 0 && len == 15, "the set name reads back as \"%s\" (len %d)", name, len);
    CHECK_MPI(MPI_Type_free(&t));
    ck_end();
}

#define ROWS 6
#define COLS 5

static void layouts(void) {
    ck_begin("types.vector-to-contiguous");
    MPI_Datatype col, col1;
    CHECK_MPI(MPI_Type_vector(ROWS, 1, COLS, MPI_DOUBLE, &col));
    CHECK_MPI(MPI_Type_commit(&col));
    double m[ROWS][COLS], v[2 * ROWS];
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < COLS; j++) m[i][j] = rank * 100 + i * 10 + j;
    for (int i = 0; i < 2 * ROWS; i++) v[i] = -1;
    MPI_Request req;
    MPI_Status st = ck_status();
    /* Column 2 out, ROWS contiguous doubles in. */
    CHECK_MPI(MPI_Irecv(v, 2 * ROWS, MPI_DOUBLE, prev, 1, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(&m[0][2], 1, col, next, 1, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Wait(&req, &st));
    CHECK_STATUS(st, prev, 1, MPI_DOUBLE, ROWS);
    for (int i = 0; i < ROWS; i++) CHECK(v[i] == prev * 100 + i * 10 + 2, "element %d of the column is %g", i, v[i]);
    CHECK(v[ROWS] == -1, "the receive wrote past the column");
    /* Two adjacent columns: the column resized to one double's extent, count 2. */
    CHECK_MPI(MPI_Type_create_resized(col, 0, sizeof(double), &col1));
    CHECK_MPI(MPI_Type_commit(&col1));
    st = ck_status();
    CHECK_MPI(MPI_Irecv(v, 2 * ROWS, MPI_DOUBLE, prev, 2, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(&m[0][1], 2, col1, next, 2, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Wait(&req, &st));
    CHECK_STATUS(st, prev, 2, MPI_DOUBLE, 2 * ROWS);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < ROWS; i++)
            CHECK(v[k * ROWS + i] == prev * 100 + i * 10 + 1 + k, "column %d element %d is %g", 1 + k, i, v[k * ROWS + i]);
    ck_end();

    ck_begin("types.contiguous-to-vector");
    double in[ROWS][COLS];
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < COLS; j++) in[i][j] = -1;
    for (int i = 0; i < ROWS; i++) v[i] = rank * 1000 + i;
    st = ck_status();
    CHECK_MPI(MPI_Irecv(&in[0][3], 1, col, prev, 3, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(v, ROWS, MPI_DOUBLE, next, 3, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Wait(&req, &st));
    CHECK_STATUS(st, prev, 3, col, 1);
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < COLS; j++) {
            double want = j == 3 ? prev * 1000 + i : -1;
            CHECK(in[i][j] == want, "matrix element [%d][%d] is %g, expected %g", i, j, in[i][j], want);
        }
    /* Vector to vector, through a non-blocking send. */
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < COLS; j++) in[i][j] = -1;
    MPI_Request s;
    CHECK_MPI(MPI_Irecv(&in[0][0], 1, col, prev, 4, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Isend(&m[0][4], 1, col, next, 4, MPI_COMM_WORLD, &s));
    CHECK_MPI(MPI_Wait(&s, MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    for (int i = 0; i < ROWS; i++) CHECK(in[i][0] == prev * 100 + i * 10 + 4 && in[i][1] == -1, "row %d: %g %g", i, in[i][0], in[i][1]);
    CHECK_MPI(MPI_Type_free(&col1));
    CHECK_MPI(MPI_Type_free(&col));
    ck_end();

    ck_begin("types.large-vector");
    /* 1024 blocks of 512 doubles, a block apart: 4 MiB of data. */
    MPI_Datatype big;
    CHECK_MPI(MPI_Type_vector(1024, 512, 1024, MPI_DOUBLE, &big));
    CHECK_MPI(MPI_Type_commit(&big));
    size_t n = 1024 * 1024;
    double *a = malloc(n * sizeof(double)), *b = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        a[i] = rank * 1e7 + (double)i;
        b[i] = -1;
    }
    CHECK_MPI(MPI_Irecv(b, 1, big, prev, 5, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(a, 1, big, next, 5, MPI_COMM_WORLD));
    st = ck_status();
    CHECK_MPI(MPI_Wait(&req, &st));
    CHECK_STATUS(st, prev, 5, big, 1);
    for (size_t i = 0; i < n; i++) {
        double want = (i % 1024) < 512 ? prev * 1e7 + (double)i : -1;
        if (b[i] != want) {
            ck_fail(__LINE__, "element %zu of the large vector is %g, expected %g", i, b[i], want);
            break;
        }
    }
    /* Contiguous out, the vector in. */
    double *c = malloc(n / 2 * sizeof(double));
    for (size_t i = 0; i < n / 2; i++) c[i] = rank + 0.5 * (double)i;
    for (size_t i = 0; i < n; i++) b[i] = -1;
    CHECK_MPI(MPI_Irecv(b, 1, big, prev, 6, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(c, (int)(n / 2), MPI_DOUBLE, next, 6, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    for (size_t i = 0; i < n; i++) {
        double want = (i % 1024) < 512 ? prev + 0.5 * (double)((i / 1024) * 512 + i % 1024) : -1;
        if (b[i] != want) {
            ck_fail(__LINE__, "element %zu of the large vector (from contiguous) is %g, expected %g", i, b[i], want);
            break;
        }
    }
    free(a);
    free(b);
    free(c);
    CHECK_MPI(MPI_Type_free(&big));
    ck_end();
}

static void structs(void) {
    ck_begin("types.struct");
    MPI_Datatype raw, t = rec_type(&raw);
    CHECK_MPI(MPI_Type_free(&raw));
    struct rec out[5], in[5];
    for (int i = 0; i < 5; i++) {
        out[i].a = rank * 10 + i;
        out[i].b = rank + i * 0.25;
        out[i].c[0] = (char)('a' + i);
        out[i].c[1] = (char)('A' + rank);
        out[i].c[2] = (char)i;
        memset(&in[i], 0, sizeof in[i]);
    }
    MPI_Request req;
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Irecv(in, 5, t, prev, 10, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(out, 5, t, next, 10, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Wait(&req, &st));
    CHECK_STATUS(st, prev, 10, t, 5);
    for (int i = 0; i < 5; i++)
        CHECK(in[i].a == prev * 10 + i && in[i].b == prev + i * 0.25 && in[i].c[0] == 'a' + i && in[i].c[1] == 'A' + prev && in[i].c[2] == i,
              "struct %d arrived as {%d, %g, %d %d %d}", i, in[i].a, in[i].b, in[i].c[0], in[i].c[1], in[i].c[2]);
    int e = -1;
    CHECK_MPI(MPI_Get_elements(&st, t, &e));
    CHECK(e == 25, "MPI_Get_elements of 5 structs of 5 basic elements gave %d", e);
    CHECK_MPI(MPI_Type_free(&t));
    ck_end();
}

static void pack(void) {
    ck_begin("types.pack-unpack");
    MPI_Datatype col;
    CHECK_MPI(MPI_Type_vector(ROWS, 1, COLS, MPI_DOUBLE, &col));
    CHECK_MPI(MPI_Type_commit(&col));
    int ps_int = -1, ps_col = -1;
    CHECK_MPI(MPI_Pack_size(3, MPI_INT, MPI_COMM_WORLD, &ps_int));
    CHECK_MPI(MPI_Pack_size(1, col, MPI_COMM_WORLD, &ps_col));
    CHECK(ps_int >= 12 && ps_col >= ROWS * 8, "MPI_Pack_size gave %d for 3 ints and %d for a column", ps_int, ps_col);
    int total = ps_int + ps_col;
    char *buf = malloc((size_t)total), *rbuf = malloc((size_t)total);
    int ints[3] = {rank, rank + 1, rank + 2};
    double m[ROWS][COLS];
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < COLS; j++) m[i][j] = rank * 100 + i * 10 + j;
    int pos = 0;
    CHECK_MPI(MPI_Pack(ints, 3, MPI_INT, buf, total, &pos, MPI_COMM_WORLD));
    CHECK(pos >= 12 && pos <= ps_int, "after packing 3 ints the position is %d", pos);
    int after_ints = pos;
    CHECK_MPI(MPI_Pack(&m[0][1], 1, col, buf, total, &pos, MPI_COMM_WORLD));
    CHECK(pos >= after_ints + ROWS * 8 && pos <= total, "after packing a column the position is %d", pos);
    /* Unpack here. */
    int ui[3] = {-1, -1, -1};
    double um[ROWS][COLS];
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < COLS; j++) um[i][j] = -1;
    int upos = 0;
    CHECK_MPI(MPI_Unpack(buf, pos, &upos, ui, 3, MPI_INT, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Unpack(buf, pos, &upos, &um[0][3], 1, col, MPI_COMM_WORLD));
    CHECK(upos == pos, "unpacking ended at %d, packing at %d", upos, pos);
    CHECK(ui[0] == rank && ui[2] == rank + 2, "unpacked ints %d %d %d", ui[0], ui[1], ui[2]);
    for (int i = 0; i < ROWS; i++)
        CHECK(um[i][3] == rank * 100 + i * 10 + 1 && um[i][2] == -1 && um[i][4] == -1, "unpacked row %d: %g %g %g", i, um[i][2], um[i][3], um[i][4]);
    /* Packed bytes travel as MPI_PACKED. */
    MPI_Request req;
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Irecv(rbuf, total, MPI_PACKED, prev, 20, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(buf, pos, MPI_PACKED, next, 20, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Wait(&req, &st));
    int got = -1;
    CHECK_MPI(MPI_Get_count(&st, MPI_PACKED, &got));
    CHECK(got == pos, "MPI_PACKED message of %d bytes arrived with count %d", pos, got);
    upos = 0;
    CHECK_MPI(MPI_Unpack(rbuf, got, &upos, ui, 3, MPI_INT, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Unpack(rbuf, got, &upos, &um[0][0], 1, col, MPI_COMM_WORLD));
    CHECK(ui[0] == prev && ui[2] == prev + 2, "ints from the previous rank: %d %d %d", ui[0], ui[1], ui[2]);
    for (int i = 0; i < ROWS; i++) CHECK(um[i][0] == prev * 100 + i * 10 + 1, "column from the previous rank, row %d: %g", i, um[i][0]);
    free(buf);
    free(rbuf);
    CHECK_MPI(MPI_Type_free(&col));
    ck_end();
}

static void elements(void) {
    ck_begin("types.get-elements-derived");
    /* Five doubles into a vector of 3 blocks of 2: not a whole element, five basic ones. */
    MPI_Datatype v;
    CHECK_MPI(MPI_Type_vector(3, 2, 3, MPI_DOUBLE, &v));
    CHECK_MPI(MPI_Type_commit(&v));
    double s[6] = {1, 2, 3, 4, 5, 6}, r[9];
    for (int i = 0; i < 9; i++) r[i] = -1;
    MPI_Request req;
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Irecv(r, 1, v, prev, 30, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(s, 5, MPI_DOUBLE, next, 30, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Wait(&req, &st));
    int c = -1, e = -1;
    CHECK_MPI(MPI_Get_count(&st, v, &c));
    CHECK(c == MPI_UNDEFINED, "MPI_Get_count of 5 doubles as the vector gave %d, expected MPI_UNDEFINED", c);
    CHECK_MPI(MPI_Get_elements(&st, v, &e));
    CHECK(e == 5, "MPI_Get_elements of 5 doubles as the vector gave %d", e);
    const double want[9] = {1, 2, -1, 3, 4, -1, 5, -1, -1};
    for (int i = 0; i < 9; i++) CHECK(r[i] == want[i], "element %d of the partial vector is %g, expected %g", i, r[i], want[i]);
    /* Six: one whole element. */
    st = ck_status();
    CHECK_MPI(MPI_Irecv(r, 1, v, prev, 31, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(s, 6, MPI_DOUBLE, next, 31, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Wait(&req, &st));
    CHECK_MPI(MPI_Get_count(&st, v, &c));
    CHECK(c == 1, "MPI_Get_count of 6 doubles as the vector gave %d", c);
    CHECK_MPI(MPI_Get_elements(&st, v, &e));
    CHECK(e == 6, "MPI_Get_elements of 6 doubles as the vector gave %d", e);
    CHECK_MPI(MPI_Type_free(&v));
    ck_end();
}

int main(int argc, char **argv) {
    ck_init(&argc, &argv);
    rank = ck.rank;
    size = ck.size;
    next = (rank + 1) % size;
    prev = (rank + size - 1) % size;
    constructors();
    layouts();
    structs();
    pack();
    elements();
    return ck_finish();
}
