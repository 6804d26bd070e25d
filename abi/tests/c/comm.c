/* comm.c: communicators, groups, names, intercommunicators, attributes with callbacks, and
 * error handlers. Expected results are computed from the size, so any size works; the
 * intercommunicator group needs two ranks and passes as skipped at one. */
#include <stdint.h>

#include "check.h"

static int rank, size;

static void expect_compare(MPI_Comm a, MPI_Comm b, int want, const char *what, int line) {
    int r = -1;
    int rc = MPI_Comm_compare(a, b, &r);
    if (rc != MPI_SUCCESS) ck_fail(line, "MPI_Comm_compare(%s) returned %s", what, ck_errstr(rc));
    else if (r != want) ck_fail(line, "MPI_Comm_compare(%s) gave %d, expected %d", what, r, want);
}

static void expect_group_compare(MPI_Group a, MPI_Group b, int want, const char *what, int line) {
    int r = -1;
    int rc = MPI_Group_compare(a, b, &r);
    if (rc != MPI_SUCCESS) ck_fail(line, "MPI_Group_compare(%s) returned %s", what, ck_errstr(rc));
    else if (r != want) ck_fail(line, "MPI_Group_compare(%s) gave %d, expected %d", what, r, want);
}

static void expect_size_rank(MPI_Comm c, int want_size, int want_rank, const char *what, int line) {
    int s = -1, r = -1;
    if (MPI_Comm_size(c, &s) != MPI_SUCCESS || MPI_Comm_rank(c, &r) != MPI_SUCCESS || s != want_size || r != want_rank)
        ck_fail(line, "%s: size %d rank %d, expected %d and %d", what, s, r, want_size, want_rank);
}

/* The sum of the world ranks of `c`'s members, through MPI_Allreduce on `c`. */
static int sum_of_world_ranks(MPI_Comm c) {
    int x = rank, sum = -1;
    if (CHECK_MPI(MPI_Allreduce(&x, &sum, 1, MPI_INT, MPI_SUM, c)) != MPI_SUCCESS) return -1;
    return sum;
}

static void dup_compare_free(void) {
    ck_begin("comm.dup-compare-free");
    expect_compare(MPI_COMM_WORLD, MPI_COMM_WORLD, MPI_IDENT, "world, world", __LINE__);
    expect_compare(MPI_COMM_WORLD, MPI_COMM_SELF, size == 1 ? MPI_CONGRUENT : MPI_UNEQUAL, "world, self", __LINE__);
    MPI_Comm d = MPI_COMM_NULL, d2 = MPI_COMM_NULL;
    CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &d));
    CHECK(d != MPI_COMM_NULL && d != MPI_COMM_WORLD, "MPI_Comm_dup gave %#x", (unsigned)d);
    expect_size_rank(d, size, rank, "the duplicate", __LINE__);
    expect_compare(MPI_COMM_WORLD, d, MPI_CONGRUENT, "world, its duplicate", __LINE__);
    expect_compare(d, d, MPI_IDENT, "duplicate, itself", __LINE__);
    CHECK_MPI(MPI_Comm_dup_with_info(d, MPI_INFO_NULL, &d2));
    expect_compare(d, d2, MPI_CONGRUENT, "duplicate, its duplicate with info", __LINE__);
    /* A duplicate is another context: its messages never match receives on the world. */
    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    int a = 1000 + rank, b = 2000 + rank, ra = -1, rb = -1;
    MPI_Request req[2];
    CHECK_MPI(MPI_Isend(&b, 1, MPI_INT, next, 5, d, &req[0]));
    CHECK_MPI(MPI_Isend(&a, 1, MPI_INT, next, 5, MPI_COMM_WORLD, &req[1]));
    CHECK_MPI(MPI_Recv(&ra, 1, MPI_INT, MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Recv(&rb, 1, MPI_INT, MPI_ANY_SOURCE, MPI_ANY_TAG, d, MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Waitall(2, req, MPI_STATUSES_IGNORE));
    CHECK(ra == 1000 + prev && rb == 2000 + prev, "world got %d, duplicate got %d; expected %d and %d", ra, rb, 1000 + prev, 2000 + prev);
    CHECK(sum_of_world_ranks(d) == size * (size - 1) / 2, "MPI_Allreduce on the duplicate is wrong");
    CHECK_MPI(MPI_Comm_free(&d));
    CHECK(d == MPI_COMM_NULL, "MPI_Comm_free left %#x", (unsigned)d);
    CHECK_MPI(MPI_Comm_free(&d2));
    CHECK(d2 == MPI_COMM_NULL, "MPI_Comm_free left %#x", (unsigned)d2);
    ck_end();
}

static void split(void) {
    ck_begin("comm.split");
    /* Two colors by parity, each ordered by descending world rank. */
    MPI_Comm c = MPI_COMM_NULL;
    CHECK_MPI(MPI_Comm_split(MPI_COMM_WORLD, rank % 2, -rank, &c));
    int members = 0, above = 0, sum = 0;
    for (int r = 0; r < size; r++)
        if (r % 2 == rank % 2) {
            members++;
            sum += r;
            if (r > rank) above++;
        }
    expect_size_rank(c, members, above, "the parity split", __LINE__);
    CHECK(sum_of_world_ranks(c) == sum, "MPI_Allreduce on the parity split gave the wrong sum");
    expect_compare(MPI_COMM_WORLD, c, size == 1 ? MPI_CONGRUENT : MPI_UNEQUAL, "world, parity split", __LINE__);
    CHECK_MPI(MPI_Comm_free(&c));

    /* One color, reversed: the same group in another order. */
    CHECK_MPI(MPI_Comm_split(MPI_COMM_WORLD, 0, -rank, &c));
    expect_size_rank(c, size, size - 1 - rank, "the reversed split", __LINE__);
    expect_compare(MPI_COMM_WORLD, c, size == 1 ? MPI_CONGRUENT : MPI_SIMILAR, "world, reversed split", __LINE__);
    CHECK_MPI(MPI_Comm_free(&c));

    /* Equal keys keep the parent's order. */
    CHECK_MPI(MPI_Comm_split(MPI_COMM_WORLD, 3, 0, &c));
    expect_size_rank(c, size, rank, "the split with equal keys", __LINE__);
    expect_compare(MPI_COMM_WORLD, c, MPI_CONGRUENT, "world, split with equal keys", __LINE__);
    CHECK_MPI(MPI_Comm_free(&c));

    /* MPI_UNDEFINED: the last rank gets MPI_COMM_NULL. */
    c = MPI_COMM_WORLD;
    CHECK_MPI(MPI_Comm_split(MPI_COMM_WORLD, rank == size - 1 ? MPI_UNDEFINED : 1, rank, &c));
    if (rank == size - 1) {
        CHECK(c == MPI_COMM_NULL, "MPI_UNDEFINED gave %#x, not MPI_COMM_NULL", (unsigned)c);
    } else {
        CHECK(c != MPI_COMM_NULL, "a defined color gave MPI_COMM_NULL");
        if (c != MPI_COMM_NULL) {
            expect_size_rank(c, size - 1, rank, "the split without the last rank", __LINE__);
            CHECK(sum_of_world_ranks(c) == (size - 1) * (size - 2) / 2, "MPI_Allreduce without the last rank gave the wrong sum");
            CHECK_MPI(MPI_Comm_free(&c));
        }
    }
    ck_end();

    ck_begin("comm.split-type-shared");
    CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &c));
    /* One machine: every rank shares memory. */
    expect_size_rank(c, size, rank, "MPI_COMM_TYPE_SHARED", __LINE__);
    expect_compare(MPI_COMM_WORLD, c, MPI_CONGRUENT, "world, shared split", __LINE__);
    if (c != MPI_COMM_NULL) CHECK_MPI(MPI_Comm_free(&c));
    c = MPI_COMM_WORLD;
    CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_UNDEFINED, rank, MPI_INFO_NULL, &c));
    CHECK(c == MPI_COMM_NULL, "MPI_Comm_split_type(MPI_UNDEFINED) gave %#x", (unsigned)c);
    ck_end();
}

static void create(void) {
    ck_begin("comm.create-create-group");
    MPI_Group world, evens, firsthalf;
    CHECK_MPI(MPI_Comm_group(MPI_COMM_WORLD, &world));
    int range[1][3] = {{0, size - 1, 2}};
    CHECK_MPI(MPI_Group_range_incl(world, 1, range, &evens));
    MPI_Comm c = MPI_COMM_WORLD;
    CHECK_MPI(MPI_Comm_create(MPI_COMM_WORLD, evens, &c));
    if (rank % 2 == 0) {
        CHECK(c != MPI_COMM_NULL, "an even rank got MPI_COMM_NULL from MPI_Comm_create");
        if (c != MPI_COMM_NULL) {
            expect_size_rank(c, (size + 1) / 2, rank / 2, "MPI_Comm_create of the even ranks", __LINE__);
            int sum = 0;
            for (int r = 0; r < size; r += 2) sum += r;
            CHECK(sum_of_world_ranks(c) == sum, "MPI_Allreduce on the even ranks gave the wrong sum");
            CHECK_MPI(MPI_Comm_free(&c));
        }
    } else {
        CHECK(c == MPI_COMM_NULL, "an odd rank got %#x from MPI_Comm_create", (unsigned)c);
    }
    c = MPI_COMM_WORLD;
    CHECK_MPI(MPI_Comm_create(MPI_COMM_WORLD, MPI_GROUP_EMPTY, &c));
    CHECK(c == MPI_COMM_NULL, "MPI_Comm_create(MPI_GROUP_EMPTY) gave %#x", (unsigned)c);

    /* MPI_Comm_create_group: only the members call it. */
    int half = (size + 1) / 2;
    int r2[1][3] = {{0, half - 1, 1}};
    CHECK_MPI(MPI_Group_range_incl(world, 1, r2, &firsthalf));
    if (rank < half) {
        c = MPI_COMM_NULL;
        CHECK_MPI(MPI_Comm_create_group(MPI_COMM_WORLD, firsthalf, 7, &c));
        CHECK(c != MPI_COMM_NULL, "MPI_Comm_create_group gave MPI_COMM_NULL to a member");
        if (c != MPI_COMM_NULL) {
            expect_size_rank(c, half, rank, "MPI_Comm_create_group of the first half", __LINE__);
            CHECK(sum_of_world_ranks(c) == half * (half - 1) / 2, "MPI_Allreduce on the first half gave the wrong sum");
            CHECK_MPI(MPI_Comm_free(&c));
        }
    }
    CHECK_MPI(MPI_Group_free(&world));
    CHECK_MPI(MPI_Group_free(&evens));
    CHECK_MPI(MPI_Group_free(&firsthalf));
    CHECK(world == MPI_GROUP_NULL && evens == MPI_GROUP_NULL, "MPI_Group_free did not set MPI_GROUP_NULL");
    CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    ck_end();
}

static void expect_group(MPI_Group g, int want_size, int want_rank, const char *what, int line) {
    int s = -1, r = -2;
    if (MPI_Group_size(g, &s) != MPI_SUCCESS || MPI_Group_rank(g, &r) != MPI_SUCCESS || s != want_size || r != want_rank)
        ck_fail(line, "group %s: size %d rank %d, expected %d and %d", what, s, r, want_size, want_rank);
}

static void groups(void) {
    ck_begin("comm.groups");
    MPI_Group world, incl, excl, evens, odds, uni, inter, diff, empty;
    CHECK_MPI(MPI_Comm_group(MPI_COMM_WORLD, &world));
    expect_group(world, size, rank, "of the world", __LINE__);
    expect_group(MPI_GROUP_EMPTY, 0, MPI_UNDEFINED, "MPI_GROUP_EMPTY", __LINE__);

    /* incl: the last rank, then rank 0 (only rank 0 at one rank). */
    int two[2] = {size - 1, 0};
    CHECK_MPI(MPI_Group_incl(world, size > 1 ? 2 : 1, two, &incl));
    int want = size == 1 ? 0 : rank == size - 1 ? 0 : rank == 0 ? 1 : MPI_UNDEFINED;
    expect_group(incl, size > 1 ? 2 : 1, want, "incl {last, 0}", __LINE__);

    int zero[1] = {0};
    CHECK_MPI(MPI_Group_excl(world, 1, zero, &excl));
    expect_group(excl, size - 1, rank == 0 ? MPI_UNDEFINED : rank - 1, "excl {0}", __LINE__);

    int range[1][3] = {{0, size - 1, 2}};
    CHECK_MPI(MPI_Group_range_incl(world, 1, range, &evens));
    CHECK_MPI(MPI_Group_range_excl(world, 1, range, &odds));
    expect_group(evens, (size + 1) / 2, rank % 2 ? MPI_UNDEFINED : rank / 2, "range_incl evens", __LINE__);
    expect_group(odds, size / 2, rank % 2 ? rank / 2 : MPI_UNDEFINED, "range_excl evens", __LINE__);
    /* A range going down. */
    MPI_Group down;
    int rdown[1][3] = {{size - 1, 0, -1}};
    CHECK_MPI(MPI_Group_range_incl(world, 1, rdown, &down));
    expect_group(down, size, size - 1 - rank, "range_incl downwards", __LINE__);
    expect_group_compare(world, down, size == 1 ? MPI_IDENT : MPI_SIMILAR, "world, reversed", __LINE__);

    CHECK_MPI(MPI_Group_union(evens, odds, &uni));
    /* The union lists the evens, then the odds. */
    int pos = rank % 2 ? (size + 1) / 2 + rank / 2 : rank / 2;
    expect_group(uni, size, pos, "evens union odds", __LINE__);
    expect_group_compare(world, uni, size <= 2 ? MPI_IDENT : MPI_SIMILAR, "world, evens union odds", __LINE__);
    CHECK_MPI(MPI_Group_intersection(world, evens, &inter));
    expect_group_compare(inter, evens, MPI_IDENT, "world intersection evens, evens", __LINE__);
    CHECK_MPI(MPI_Group_difference(world, evens, &diff));
    expect_group_compare(diff, odds, MPI_IDENT, "world minus evens, odds", __LINE__);
    CHECK_MPI(MPI_Group_difference(world, world, &empty));
    expect_group(empty, 0, MPI_UNDEFINED, "world minus world", __LINE__);
    expect_group_compare(empty, MPI_GROUP_EMPTY, MPI_IDENT, "world minus world, MPI_GROUP_EMPTY", __LINE__);
    expect_group_compare(world, evens, size == 1 ? MPI_IDENT : MPI_UNEQUAL, "world, evens", __LINE__);
    expect_group_compare(world, world, MPI_IDENT, "world, world", __LINE__);

    /* translate_ranks, both ways, and MPI_PROC_NULL. */
    int ne = (size + 1) / 2, in[64], out[64];
    for (int i = 0; i < ne; i++) in[i] = i;
    CHECK_MPI(MPI_Group_translate_ranks(evens, ne, in, world, out));
    for (int i = 0; i < ne; i++) CHECK(out[i] == 2 * i, "even rank %d translates to world rank %d", i, out[i]);
    for (int i = 0; i < size; i++) in[i] = i;
    CHECK_MPI(MPI_Group_translate_ranks(world, size, in, evens, out));
    for (int i = 0; i < size; i++)
        CHECK(out[i] == (i % 2 ? MPI_UNDEFINED : i / 2), "world rank %d translates to even rank %d", i, out[i]);
    in[0] = MPI_PROC_NULL;
    CHECK_MPI(MPI_Group_translate_ranks(world, 1, in, evens, out));
    CHECK(out[0] == MPI_PROC_NULL, "MPI_PROC_NULL translates to %d", out[0]);

    MPI_Group *all[] = {&world, &incl, &excl, &evens, &odds, &uni, &inter, &diff, &empty, &down};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        CHECK_MPI(MPI_Group_free(all[i]));
        CHECK(*all[i] == MPI_GROUP_NULL, "MPI_Group_free did not set MPI_GROUP_NULL (group %zu)", i);
    }
    ck_end();
}

static void names(void) {
    ck_begin("comm.names");
    char name[MPI_MAX_OBJECT_NAME];
    int len = -1;
    CHECK_MPI(MPI_Comm_get_name(MPI_COMM_WORLD, name, &len));
    CHECK(strcmp(name, "MPI_COMM_WORLD") == 0 && len == 14, "the world's name is \"%s\" (len %d)", name, len);
    CHECK_MPI(MPI_Comm_get_name(MPI_COMM_SELF, name, &len));
    CHECK(strcmp(name, "MPI_COMM_SELF") == 0 && len == 13, "self's name is \"%s\" (len %d)", name, len);
    MPI_Comm d;
    CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &d));
    CHECK_MPI(MPI_Comm_set_name(d, "my duplicate"));
    CHECK_MPI(MPI_Comm_get_name(d, name, &len));
    CHECK(strcmp(name, "my duplicate") == 0 && len == 12, "the duplicate's name is \"%s\" (len %d)", name, len);
    CHECK_MPI(MPI_Comm_set_name(d, "renamed"));
    CHECK_MPI(MPI_Comm_get_name(d, name, &len));
    CHECK(strcmp(name, "renamed") == 0 && len == 7, "after renaming: \"%s\" (len %d)", name, len);
    CHECK_MPI(MPI_Comm_get_name(MPI_COMM_WORLD, name, &len));
    CHECK(strcmp(name, "MPI_COMM_WORLD") == 0, "naming a duplicate renamed the world to \"%s\"", name);
    CHECK_MPI(MPI_Comm_free(&d));
    ck_end();
}

static void intercomm(void) {
    if (size < 2) {
        ck_skip("comm.intercomm", "needs 2 ranks");
        return;
    }
    ck_begin("comm.intercomm");
    int color = rank % 2;
    int mine = 0, theirs = 0;
    for (int r = 0; r < size; r++) *(r % 2 == color ? &mine : &theirs) += 1;
    MPI_Comm local = MPI_COMM_NULL, inter = MPI_COMM_NULL, merged = MPI_COMM_NULL;
    CHECK_MPI(MPI_Comm_split(MPI_COMM_WORLD, color, rank, &local));
    /* The leaders are world ranks 0 (evens) and 1 (odds). */
    CHECK_MPI(MPI_Intercomm_create(local, 0, MPI_COMM_WORLD, 1 - color, 77, &inter));
    int flag = -1;
    CHECK_MPI(MPI_Comm_test_inter(inter, &flag));
    CHECK(flag == 1, "MPI_Comm_test_inter of an intercommunicator gave %d", flag);
    CHECK_MPI(MPI_Comm_test_inter(MPI_COMM_WORLD, &flag));
    CHECK(flag == 0, "MPI_Comm_test_inter of the world gave %d", flag);
    expect_size_rank(inter, mine, rank / 2, "the intercommunicator (local group)", __LINE__);
    int rs = -1;
    CHECK_MPI(MPI_Comm_remote_size(inter, &rs));
    CHECK(rs == theirs, "MPI_Comm_remote_size gave %d, expected %d", rs, theirs);
    MPI_Group remote, world;
    CHECK_MPI(MPI_Comm_remote_group(inter, &remote));
    CHECK_MPI(MPI_Comm_group(MPI_COMM_WORLD, &world));
    int in[64], out[64];
    for (int i = 0; i < theirs; i++) in[i] = i;
    int gs = -1;
    CHECK_MPI(MPI_Group_size(remote, &gs));
    CHECK(gs == theirs, "the remote group has %d ranks, expected %d", gs, theirs);
    CHECK_MPI(MPI_Group_translate_ranks(remote, theirs, in, world, out));
    for (int i = 0; i < theirs; i++) CHECK(out[i] == 2 * i + 1 - color, "remote rank %d is world rank %d", i, out[i]);
    int gr = -2;
    CHECK_MPI(MPI_Group_rank(remote, &gr));
    CHECK(gr == MPI_UNDEFINED, "this rank is rank %d of the remote group", gr);
    /* Point to point addresses the remote group: local rank i talks to remote rank i. */
    int peer = rank / 2;
    if (peer < theirs) {
        int x = rank, y = -1;
        MPI_Status st = ck_status();
        CHECK_MPI(MPI_Sendrecv(&x, 1, MPI_INT, peer, 9, &y, 1, MPI_INT, peer, 9, inter, &st));
        CHECK(y == 2 * peer + 1 - color, "over the intercommunicator, remote rank %d sent %d", peer, y);
        CHECK(st.MPI_SOURCE == peer, "over the intercommunicator, status source %d, expected remote rank %d", st.MPI_SOURCE, peer);
    }
    /* A broadcast from the even leader to the odd group. */
    int v = color == 0 && rank == 0 ? 4242 : -1;
    int root = color == 0 ? (rank == 0 ? MPI_ROOT : MPI_PROC_NULL) : 0;
    CHECK_MPI(MPI_Bcast(&v, 1, MPI_INT, root, inter));
    if (color == 1) CHECK(v == 4242, "the intercommunicator broadcast delivered %d", v);
    else if (rank != 0) CHECK(v == -1, "the intercommunicator broadcast wrote %d on the root's side", v);
    /* Merge: evens low, odds high. */
    CHECK_MPI(MPI_Intercomm_merge(inter, color, &merged));
    int evens = (size + 1) / 2;
    expect_size_rank(merged, size, color ? evens + rank / 2 : rank / 2, "the merged communicator", __LINE__);
    CHECK_MPI(MPI_Comm_test_inter(merged, &flag));
    CHECK(flag == 0, "MPI_Comm_test_inter of the merged communicator gave %d", flag);
    CHECK(sum_of_world_ranks(merged) == size * (size - 1) / 2, "MPI_Allreduce on the merged communicator gave the wrong sum");
    CHECK_MPI(MPI_Group_free(&remote));
    CHECK_MPI(MPI_Group_free(&world));
    CHECK_MPI(MPI_Comm_free(&merged));
    CHECK_MPI(MPI_Comm_free(&inter));
    CHECK_MPI(MPI_Comm_free(&local));
    ck_end();
}

/* ---------------------------------------------------------------- attributes */

static int copies, deletes, extra_marker, bad_extra, self_deletes;
static intptr_t last_deleted;

static int copy_fn(MPI_Comm oldcomm, int keyval, void *extra, void *in, void *out, int *flag) {
    (void)oldcomm;
    (void)keyval;
    copies++;
    if (extra != &extra_marker) bad_extra++;
    *(void **)out = (void *)((intptr_t)in + 1);
    *flag = 1;
    return MPI_SUCCESS;
}

static int delete_fn(MPI_Comm comm, int keyval, void *value, void *extra) {
    (void)comm;
    (void)keyval;
    deletes++;
    last_deleted = (intptr_t)value;
    if (extra != &extra_marker) bad_extra++;
    return MPI_SUCCESS;
}

static int self_delete_fn(MPI_Comm comm, int keyval, void *value, void *extra) {
    (void)comm;
    (void)keyval;
    (void)value;
    (void)extra;
    self_deletes++;
    return MPI_SUCCESS;
}

static intptr_t attr(MPI_Comm c, int key, int *flag) {
    void *v = NULL;
    *flag = -1;
    if (CHECK_MPI(MPI_Comm_get_attr(c, key, &v, flag)) != MPI_SUCCESS) *flag = -1;
    return (intptr_t)v;
}

static int self_key = MPI_KEYVAL_INVALID;

static void attributes(void) {
    ck_begin("comm.attributes");
    int key = MPI_KEYVAL_INVALID, dupkey = MPI_KEYVAL_INVALID, nocopy = MPI_KEYVAL_INVALID, flag;
    CHECK_MPI(MPI_Comm_create_keyval(copy_fn, delete_fn, &key, &extra_marker));
    CHECK_MPI(MPI_Comm_create_keyval(MPI_COMM_DUP_FN, MPI_COMM_NULL_DELETE_FN, &dupkey, NULL));
    CHECK_MPI(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, delete_fn, &nocopy, &extra_marker));
    CHECK(key != MPI_KEYVAL_INVALID && dupkey != MPI_KEYVAL_INVALID && nocopy != MPI_KEYVAL_INVALID && key != dupkey && key != nocopy,
          "keyvals %#x %#x %#x", (unsigned)key, (unsigned)dupkey, (unsigned)nocopy);
    MPI_Comm a, b, c, d;
    CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &a));
    attr(a, key, &flag);
    CHECK(flag == 0, "an attribute never set has flag %d", flag);
    CHECK_MPI(MPI_Comm_set_attr(a, key, (void *)(intptr_t)100));
    CHECK_MPI(MPI_Comm_set_attr(a, dupkey, (void *)(intptr_t)7));
    CHECK_MPI(MPI_Comm_set_attr(a, nocopy, (void *)(intptr_t)55));
    intptr_t v = attr(a, key, &flag);
    CHECK(flag == 1 && v == 100, "get_attr after set: flag %d value %ld", flag, (long)v);
    attr(MPI_COMM_WORLD, key, &flag);
    CHECK(flag == 0, "an attribute set on a duplicate shows on the world");

    /* MPI_Comm_dup runs the copy functions. */
    copies = deletes = 0;
    CHECK_MPI(MPI_Comm_dup(a, &b));
    CHECK(copies == 1, "MPI_Comm_dup called the copy function %d times", copies);
    v = attr(b, key, &flag);
    CHECK(flag == 1 && v == 101, "the copied attribute: flag %d value %ld, expected 101", flag, (long)v);
    v = attr(b, dupkey, &flag);
    CHECK(flag == 1 && v == 7, "MPI_COMM_DUP_FN copied flag %d value %ld, expected 7", flag, (long)v);
    attr(b, nocopy, &flag);
    CHECK(flag == 0, "MPI_COMM_NULL_COPY_FN copied the attribute (flag %d)", flag);
    v = attr(a, key, &flag);
    CHECK(flag == 1 && v == 100, "the original after the copy: flag %d value %ld", flag, (long)v);

    /* Setting again deletes the old value; MPI_Comm_delete_attr deletes. */
    CHECK_MPI(MPI_Comm_set_attr(a, key, (void *)(intptr_t)200));
    CHECK(deletes == 1 && last_deleted == 100, "replacing an attribute: %d deletes, last value %ld", deletes, (long)last_deleted);
    v = attr(a, key, &flag);
    CHECK(flag == 1 && v == 200, "after replacing: flag %d value %ld", flag, (long)v);
    CHECK_MPI(MPI_Comm_delete_attr(a, key));
    CHECK(deletes == 2 && last_deleted == 200, "MPI_Comm_delete_attr: %d deletes, last value %ld", deletes, (long)last_deleted);
    attr(a, key, &flag);
    CHECK(flag == 0, "a deleted attribute has flag %d", flag);

    /* MPI_Comm_free deletes what is left. */
    CHECK_MPI(MPI_Comm_free(&b));
    CHECK(deletes == 3 && last_deleted == 101, "MPI_Comm_free: %d deletes, last value %ld", deletes, (long)last_deleted);
    CHECK_MPI(MPI_Comm_dup(a, &c));
    CHECK(copies == 1, "a dup with no copy-function attribute called the copy function");
    CHECK_MPI(MPI_Comm_dup(c, &d));
    v = attr(d, dupkey, &flag);
    CHECK(flag == 1 && v == 7, "MPI_COMM_DUP_FN twice: flag %d value %ld", flag, (long)v);
    CHECK_MPI(MPI_Comm_free(&a));
    CHECK(deletes == 4 && last_deleted == 55, "freeing the original: %d deletes, last value %ld", deletes, (long)last_deleted);
    CHECK_MPI(MPI_Comm_free(&c));
    CHECK_MPI(MPI_Comm_free(&d));
    CHECK(deletes == 4, "freeing communicators without delete-function attributes called it (%d)", deletes);
    CHECK(bad_extra == 0, "the callbacks got the wrong extra_state %d times", bad_extra);

    CHECK_MPI(MPI_Comm_free_keyval(&key));
    CHECK_MPI(MPI_Comm_free_keyval(&dupkey));
    CHECK_MPI(MPI_Comm_free_keyval(&nocopy));
    CHECK(key == MPI_KEYVAL_INVALID && dupkey == MPI_KEYVAL_INVALID && nocopy == MPI_KEYVAL_INVALID, "MPI_Comm_free_keyval did not set MPI_KEYVAL_INVALID");

    /* An attribute on MPI_COMM_SELF is deleted first thing in MPI_Finalize (checked after it). */
    CHECK_MPI(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, self_delete_fn, &self_key, NULL));
    CHECK_MPI(MPI_Comm_set_attr(MPI_COMM_SELF, self_key, (void *)(intptr_t)1));
    ck_end();
}

/* ---------------------------------------------------------------- error handlers */

static int eh_calls;
static MPI_Comm eh_comm;
static int eh_code;

static void handler(MPI_Comm *comm, int *code, ...) {
    eh_calls++;
    eh_comm = *comm;
    eh_code = *code;
}

static void errhandlers(void) {
    ck_begin("comm.errhandler");
    MPI_Errhandler eh = MPI_ERRHANDLER_NULL, got = MPI_ERRHANDLER_NULL;
    CHECK_MPI(MPI_Comm_create_errhandler(handler, &eh));
    CHECK(eh != MPI_ERRHANDLER_NULL, "MPI_Comm_create_errhandler gave MPI_ERRHANDLER_NULL");
    MPI_Comm e, f;
    CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &e));
    CHECK_MPI(MPI_Comm_get_errhandler(e, &got));
    CHECK(got == MPI_ERRORS_RETURN, "a duplicate of the world has error handler %#x, not the world's MPI_ERRORS_RETURN", (unsigned)got);
    CHECK_MPI(MPI_Errhandler_free(&got));
    CHECK_MPI(MPI_Comm_set_errhandler(e, eh));
    CHECK_MPI(MPI_Comm_get_errhandler(e, &got));
    CHECK(got == eh, "MPI_Comm_get_errhandler gave %#x, set %#x", (unsigned)got, (unsigned)eh);
    CHECK_MPI(MPI_Errhandler_free(&got));
    CHECK(got == MPI_ERRHANDLER_NULL, "MPI_Errhandler_free left %#x", (unsigned)got);

    int x = 0;
    eh_calls = 0;
    int rc = MPI_Send(&x, 1, MPI_INT, size, 0, e);
    CHECK(rc != MPI_SUCCESS, "MPI_Send to rank %d succeeded", size);
    CHECK(eh_calls == 1, "the user error handler ran %d times", eh_calls);
    CHECK(eh_comm == e, "the handler got communicator %#x, expected %#x", (unsigned)eh_comm, (unsigned)e);
    CHECK(ck_class(eh_code) == MPI_ERR_RANK, "the handler got code %d of class %d, expected MPI_ERR_RANK", eh_code, ck_class(eh_code));
    CHECK(rc == eh_code, "MPI_Send returned %d, the handler got %d", rc, eh_code);

    /* Freed while attached: it keeps working. */
    CHECK_MPI(MPI_Errhandler_free(&eh));
    CHECK(eh == MPI_ERRHANDLER_NULL, "MPI_Errhandler_free left %#x", (unsigned)eh);
    rc = MPI_Send(&x, 1, MPI_INT, -5, 0, e);
    CHECK(eh_calls == 2, "after MPI_Errhandler_free the handler ran %d times in all, expected 2", eh_calls);
    CHECK(ck_class(eh_code) == MPI_ERR_RANK, "the handler got class %d", ck_class(eh_code));

    /* A duplicate inherits it. */
    CHECK_MPI(MPI_Comm_dup(e, &f));
    rc = MPI_Recv(&x, 1, MPI_INT, size + 3, 0, f, MPI_STATUS_IGNORE);
    CHECK(eh_calls == 3 && eh_comm == f, "the duplicate's error: %d calls, communicator %#x (duplicate %#x)", eh_calls, (unsigned)eh_comm, (unsigned)f);

    /* MPI_Comm_call_errhandler passes the code as it is. */
    int cls = -1, code = -1;
    CHECK_MPI(MPI_Add_error_class(&cls));
    CHECK_MPI(MPI_Add_error_code(cls, &code));
    rc = MPI_Comm_call_errhandler(e, code);
    CHECK(rc == MPI_SUCCESS, "MPI_Comm_call_errhandler returned %d after a handler that returns", rc);
    CHECK(eh_calls == 4, "MPI_Comm_call_errhandler ran the handler %d times in all, expected 4", eh_calls);
    CHECK(eh_code == code, "MPI_Comm_call_errhandler: the handler got code %d, expected the added code %d", eh_code, code);
    CHECK(eh_comm == e, "MPI_Comm_call_errhandler: the handler got communicator %#x", (unsigned)eh_comm);
    rc = MPI_Comm_call_errhandler(e, MPI_ERR_OTHER);
    CHECK(eh_calls == 5 && eh_code == MPI_ERR_OTHER, "MPI_Comm_call_errhandler(MPI_ERR_OTHER): %d calls, code %d", eh_calls, eh_code);

    /* Back to MPI_ERRORS_RETURN: no more calls. */
    CHECK_MPI(MPI_Comm_set_errhandler(e, MPI_ERRORS_RETURN));
    CHECK_CLASS(MPI_Send(&x, 1, MPI_INT, size, 0, e), MPI_ERR_RANK);
    CHECK(eh_calls == 5, "with MPI_ERRORS_RETURN the handler still ran");
    CHECK_MPI(MPI_Comm_free(&e));
    CHECK_MPI(MPI_Comm_free(&f));
    CHECK(eh_calls == 5, "freeing the communicators ran the handler");
    ck_end();
}

int main(int argc, char **argv) {
    ck_init(&argc, &argv);
    rank = ck.rank;
    size = ck.size;
    dup_compare_free();
    split();
    create();
    groups();
    names();
    intercomm();
    attributes();
    errhandlers();
    int status = ck_finish();
    ck_begin("comm.finalize-deletes-self-attributes");
    CHECK(self_deletes == 1, "MPI_Finalize ran the delete function of MPI_COMM_SELF's attribute %d times", self_deletes);
    ck_end();
    return status || ck.total_fails ? 1 : 0;
}
