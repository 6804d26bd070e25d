/* p2p.c: point to point. Every rank sends to the next rank of a ring and receives from the
 * previous one (at one rank both are itself), with the receive posted first or the send
 * non-blocking wherever a blocking call could otherwise wait for its partner: so the program
 * is safe at any size. Every group uses its own tags. Loops that poll (MPI_Test and friends)
 * give up after CK_POLL_SECONDS with a FAIL line and complete the requests with a wait. */
#include "check.h"

static int rank, size, next, prev;

static const long sizes[] = {0, 1, 1000, 100000, 4L << 20};
#define NSIZES ((int)(sizeof sizes / sizeof sizes[0]))

static unsigned char *alloc_bytes(long n) {
    unsigned char *p = malloc((size_t)n + 64);
    if (!p) {
        printf("FAIL p2p: out of memory for %ld bytes\n", n);
        exit(1);
    }
    return p;
}

/* The bytes past a receive buffer's end must stay as they were. */
#define GUARD 16
static void guard_set(unsigned char *p, long n) { memset(p + n, 0xee, GUARD); }
#define CHECK_GUARD(p, n)                                                                       \
    do {                                                                                        \
        for (int g_ = 0; g_ < GUARD; g_++)                                                      \
            if ((p)[(n) + g_] != 0xee) {                                                        \
                ck_fail(__LINE__, "byte %ld past the end of a %ld-byte receive was written", (long)g_, (long)(n)); \
                break;                                                                          \
            }                                                                                   \
    } while (0)

static void send_recv_sizes(void) {
    ck_begin("p2p.send-recv-sizes");
    for (int k = 0; k < NSIZES; k++) {
        long n = sizes[k];
        unsigned char *s = alloc_bytes(n), *r = alloc_bytes(n);
        ck_fill(s, n, rank, k);
        memset(r, 0, (size_t)n);
        guard_set(r, n);
        /* Receive posted, blocking MPI_Send. */
        MPI_Request req = MPI_REQUEST_NULL;
        MPI_Status st = ck_status();
        CHECK_MPI(MPI_Irecv(r, (int)n, MPI_BYTE, prev, 10 + k, MPI_COMM_WORLD, &req));
        CHECK_MPI(MPI_Send(s, (int)n, MPI_BYTE, next, 10 + k, MPI_COMM_WORLD));
        CHECK_MPI(MPI_Wait(&req, &st));
        CHECK(req == MPI_REQUEST_NULL, "MPI_Wait left the request %#x", (unsigned)req);
        CHECK_STATUS(st, prev, 10 + k, MPI_BYTE, (int)n);
        CHECK_FILL(r, n, prev, k);
        CHECK_GUARD(r, n);
        /* Non-blocking send, blocking MPI_Recv. */
        memset(r, 0, (size_t)n);
        ck_fill(s, n, rank, k + 50);
        st = ck_status();
        CHECK_MPI(MPI_Isend(s, (int)n, MPI_BYTE, next, 20 + k, MPI_COMM_WORLD, &req));
        CHECK_MPI(MPI_Recv(r, (int)n, MPI_BYTE, prev, 20 + k, MPI_COMM_WORLD, &st));
        CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
        CHECK_STATUS(st, prev, 20 + k, MPI_BYTE, (int)n);
        CHECK_FILL(r, n, prev, k + 50);
        CHECK_GUARD(r, n);
        /* Ints, received into a larger buffer: the count is what was sent. */
        if (n >= 4 && n <= 100000) {
            int ni = (int)(n / 4);
            int *si = malloc(sizeof(int) * (size_t)ni), *ri = malloc(sizeof(int) * (size_t)(ni + 10));
            for (int i = 0; i < ni; i++) si[i] = rank * 1000003 + i;
            for (int i = 0; i < ni + 10; i++) ri[i] = -1;
            st = ck_status();
            CHECK_MPI(MPI_Irecv(ri, ni + 10, MPI_INT, prev, 30 + k, MPI_COMM_WORLD, &req));
            CHECK_MPI(MPI_Send(si, ni, MPI_INT, next, 30 + k, MPI_COMM_WORLD));
            CHECK_MPI(MPI_Wait(&req, &st));
            CHECK_STATUS(st, prev, 30 + k, MPI_INT, ni);
            int bad = -1;
            for (int i = 0; i < ni && bad < 0; i++)
                if (ri[i] != prev * 1000003 + i) bad = i;
            CHECK(bad < 0, "int %d of %d is %d", bad, ni, bad >= 0 ? ri[bad] : 0);
            CHECK(ri[ni] == -1, "the int past the message was written");
            free(si);
            free(ri);
        }
        free(s);
        free(r);
    }
    ck_end();
}

static void ssend(void) {
    ck_begin("p2p.ssend-issend");
    const long ns[] = {4000, 4L << 20};
    for (int k = 0; k < 2; k++) {
        long n = ns[k];
        unsigned char *s = alloc_bytes(n), *r = alloc_bytes(n);
        ck_fill(s, n, rank, 60 + k);
        MPI_Request req;
        MPI_Status st = ck_status();
        CHECK_MPI(MPI_Irecv(r, (int)n, MPI_BYTE, prev, 60 + k, MPI_COMM_WORLD, &req));
        CHECK_MPI(MPI_Ssend(s, (int)n, MPI_BYTE, next, 60 + k, MPI_COMM_WORLD));
        CHECK_MPI(MPI_Wait(&req, &st));
        CHECK_STATUS(st, prev, 60 + k, MPI_BYTE, (int)n);
        CHECK_FILL(r, n, prev, 60 + k);
        /* An MPI_Issend cannot finish before its receive is posted: that is after the barrier. */
        ck_fill(s, n, rank, 62 + k);
        memset(r, 0, (size_t)n);
        MPI_Request sreq;
        CHECK_MPI(MPI_Issend(s, (int)n, MPI_BYTE, next, 62 + k, MPI_COMM_WORLD, &sreq));
        int flag = -1;
        CHECK_MPI(MPI_Test(&sreq, &flag, MPI_STATUS_IGNORE));
        CHECK(flag == 0, "MPI_Issend finished before its receive was posted");
        CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
        st = ck_status();
        CHECK_MPI(MPI_Recv(r, (int)n, MPI_BYTE, prev, 62 + k, MPI_COMM_WORLD, &st));
        if (flag == 0) CHECK_MPI(MPI_Wait(&sreq, MPI_STATUS_IGNORE));
        CHECK_STATUS(st, prev, 62 + k, MPI_BYTE, (int)n);
        CHECK_FILL(r, n, prev, 62 + k);
        free(s);
        free(r);
    }
    ck_end();
}

static void rsend(void) {
    ck_begin("p2p.rsend-irsend");
    int s[100], r[100];
    for (int i = 0; i < 100; i++) s[i] = rank * 100 + i;
    MPI_Request req;
    MPI_Status st = ck_status();
    /* Every receive is posted before the barrier, every ready send after it. */
    CHECK_MPI(MPI_Irecv(r, 100, MPI_INT, prev, 70, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    CHECK_MPI(MPI_Rsend(s, 100, MPI_INT, next, 70, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Wait(&req, &st));
    CHECK_STATUS(st, prev, 70, MPI_INT, 100);
    CHECK(r[0] == prev * 100 && r[99] == prev * 100 + 99, "MPI_Rsend delivered %d..%d", r[0], r[99]);

    unsigned char *big = alloc_bytes(1 << 20), *rbig = alloc_bytes(1 << 20);
    ck_fill(big, 1 << 20, rank, 71);
    MPI_Request sreq;
    CHECK_MPI(MPI_Irecv(rbig, 1 << 20, MPI_BYTE, prev, 71, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    CHECK_MPI(MPI_Irsend(big, 1 << 20, MPI_BYTE, next, 71, MPI_COMM_WORLD, &sreq));
    st = ck_status();
    CHECK_MPI(MPI_Wait(&req, &st));
    CHECK_MPI(MPI_Wait(&sreq, MPI_STATUS_IGNORE));
    CHECK_STATUS(st, prev, 71, MPI_BYTE, 1 << 20);
    CHECK_FILL(rbig, 1 << 20, prev, 71);
    free(big);
    free(rbig);
    ck_end();
}

static void bsend(void) {
    ck_begin("p2p.bsend-ibsend-buffer");
    int packed = 0;
    CHECK_MPI(MPI_Pack_size(1000, MPI_INT, MPI_COMM_WORLD, &packed));
    CHECK(packed >= 4000, "MPI_Pack_size(1000 ints) = %d", packed);
    int bufsize = 3 * (packed + MPI_BSEND_OVERHEAD) + 64;
    char *buf = malloc((size_t)bufsize);
    CHECK_MPI(MPI_Buffer_attach(buf, bufsize));
    int a[1000], b[1000], c[1000];
    for (int i = 0; i < 1000; i++) {
        a[i] = rank + i;
        b[i] = rank - i;
        c[i] = rank * i;
    }
    /* The sends finish without any receive posted: nothing is received before the barrier. */
    MPI_Request req;
    CHECK_MPI(MPI_Bsend(a, 1000, MPI_INT, next, 80, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bsend(b, 1000, MPI_INT, next, 81, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Ibsend(c, 1000, MPI_INT, next, 82, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    /* The program may reuse its buffers once the sends returned. */
    for (int i = 0; i < 1000; i++) a[i] = b[i] = c[i] = -1;
    CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    int r[1000];
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Recv(r, 1000, MPI_INT, prev, 81, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 81, MPI_INT, 1000);
    CHECK(r[0] == prev && r[999] == prev - 999, "the second MPI_Bsend delivered %d..%d", r[0], r[999]);
    CHECK_MPI(MPI_Recv(r, 1000, MPI_INT, prev, 80, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 80, MPI_INT, 1000);
    CHECK(r[0] == prev && r[999] == prev + 999, "the first MPI_Bsend delivered %d..%d", r[0], r[999]);
    CHECK_MPI(MPI_Recv(r, 1000, MPI_INT, prev, 82, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 82, MPI_INT, 1000);
    CHECK(r[1] == prev && r[999] == prev * 999, "MPI_Ibsend delivered %d..%d", r[1], r[999]);
    void *back = NULL;
    int backsize = -1;
    CHECK_MPI(MPI_Buffer_detach(&back, &backsize));
    CHECK(back == buf && backsize == bufsize, "MPI_Buffer_detach gave %p/%d, attached %p/%d", back, backsize, (void *)buf, bufsize);
    free(buf);
    ck_end();
}

static int recv_statuses_ok(MPI_Status *st, int n, int tag0, int count, int line) {
    int ok = 1;
    for (int i = 0; i < n; i++) {
        if (st[i].MPI_SOURCE != prev || st[i].MPI_TAG != tag0 + i) {
            ck_fail(line, "status %d: source %d tag %d, expected %d and %d", i, st[i].MPI_SOURCE, st[i].MPI_TAG, prev, tag0 + i);
            ok = 0;
        }
        int c = -1;
        MPI_Get_count(&st[i], MPI_INT, &c);
        if (c != count + i) {
            ck_fail(line, "status %d: count %d, expected %d", i, c, count + i);
            ok = 0;
        }
    }
    return ok;
}

#define K 6
static int sbuf[K][64], rbuf[K][64];

/* Posts K receives (tags tag..tag+K-1, i+10 ints each) and K sends. */
static void post(MPI_Request *recvs, MPI_Request *sends, int tag) {
    for (int i = 0; i < K; i++) {
        for (int j = 0; j < 64; j++) {
            sbuf[i][j] = rank * 10000 + tag * 10 + i + j;
            rbuf[i][j] = -1;
        }
        CHECK_MPI(MPI_Irecv(rbuf[i], 64, MPI_INT, prev, tag + i, MPI_COMM_WORLD, &recvs[i]));
    }
    /* Sends in reverse order, so that completion order differs from posting order. */
    for (int i = K - 1; i >= 0; i--) CHECK_MPI(MPI_Isend(sbuf[i], 10 + i, MPI_INT, next, tag + i, MPI_COMM_WORLD, &sends[i]));
}

static void check_rbuf(int i, int tag, int line) {
    int ok = 1;
    for (int j = 0; j < 10 + i; j++)
        if (rbuf[i][j] != prev * 10000 + tag * 10 + i + j) ok = 0;
    if (rbuf[i][10 + i] != -1) ok = 0;
    if (!ok) ck_fail(line, "receive %d (tag %d) holds the wrong data: %d %d ...", i, tag + i, rbuf[i][0], rbuf[i][1]);
}

static void empty_status_ok(const MPI_Status *st, const char *what, int line) {
    int c = -1;
    MPI_Get_count(st, MPI_INT, &c);
    if (st->MPI_SOURCE != MPI_ANY_SOURCE || st->MPI_TAG != MPI_ANY_TAG || c != 0)
        ck_fail(line, "%s: not the empty status (source %d, tag %d, count %d)", what, st->MPI_SOURCE, st->MPI_TAG, c);
}

static void completions(void) {
    MPI_Request recvs[K], sends[K], all[2 * K];
    MPI_Status sts[2 * K];

    ck_begin("p2p.waitall");
    post(recvs, sends, 100);
    for (int i = 0; i < K; i++) {
        all[i] = recvs[i];
        all[K + i] = sends[i];
    }
    for (int i = 0; i < 2 * K; i++) sts[i] = ck_status();
    CHECK_MPI(MPI_Waitall(2 * K, all, sts));
    for (int i = 0; i < 2 * K; i++) CHECK(all[i] == MPI_REQUEST_NULL, "request %d not freed by MPI_Waitall", i);
    recv_statuses_ok(sts, K, 100, 10, __LINE__);
    for (int i = 0; i < K; i++) check_rbuf(i, 100, __LINE__);
    /* Every request null: MPI_Waitall finishes at once. */
    CHECK_MPI(MPI_Waitall(2 * K, all, MPI_STATUSES_IGNORE));
    CHECK_MPI(MPI_Waitall(0, all, MPI_STATUSES_IGNORE));
    ck_end();

    ck_begin("p2p.wait-test-null");
    MPI_Request nul = MPI_REQUEST_NULL;
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Wait(&nul, &st));
    empty_status_ok(&st, "MPI_Wait(MPI_REQUEST_NULL)", __LINE__);
    int flag = -1;
    st = ck_status();
    CHECK_MPI(MPI_Test(&nul, &flag, &st));
    CHECK(flag == 1, "MPI_Test(MPI_REQUEST_NULL) gave flag %d", flag);
    empty_status_ok(&st, "MPI_Test(MPI_REQUEST_NULL)", __LINE__);
    ck_end();

    ck_begin("p2p.waitany");
    post(recvs, sends, 120);
    int seen[K] = {0};
    for (int n = 0; n < K; n++) {
        int idx = -1;
        st = ck_status();
        CHECK_MPI(MPI_Waitany(K, recvs, &idx, &st));
        CHECK(idx >= 0 && idx < K, "MPI_Waitany gave index %d", idx);
        if (idx >= 0 && idx < K) {
            CHECK(!seen[idx], "MPI_Waitany gave index %d twice", idx);
            seen[idx] = 1;
            CHECK(recvs[idx] == MPI_REQUEST_NULL, "MPI_Waitany left request %d", idx);
            CHECK_STATUS(st, prev, 120 + idx, MPI_INT, 10 + idx);
            check_rbuf(idx, 120, __LINE__);
        }
    }
    int idx = -1;
    st = ck_status();
    CHECK_MPI(MPI_Waitany(K, recvs, &idx, &st));
    CHECK(idx == MPI_UNDEFINED, "MPI_Waitany over null requests gave index %d", idx);
    empty_status_ok(&st, "MPI_Waitany over null requests", __LINE__);
    CHECK_MPI(MPI_Waitall(K, sends, MPI_STATUSES_IGNORE));
    ck_end();

    ck_begin("p2p.waitsome");
    post(recvs, sends, 140);
    int done = 0, rounds = 0;
    int got[K] = {0};
    while (done < K && rounds < 10 * K) {
        int outcount = -1, indices[K];
        for (int i = 0; i < K; i++) sts[i] = ck_status();
        CHECK_MPI(MPI_Waitsome(K, recvs, &outcount, indices, sts));
        CHECK(outcount >= 1 && outcount <= K - done, "MPI_Waitsome gave outcount %d with %d pending", outcount, K - done);
        if (outcount < 1 || outcount > K) break;
        for (int j = 0; j < outcount; j++) {
            int i = indices[j];
            CHECK(i >= 0 && i < K && !got[i], "MPI_Waitsome gave index %d", i);
            if (i < 0 || i >= K || got[i]) continue;
            got[i] = 1;
            CHECK_STATUS(sts[j], prev, 140 + i, MPI_INT, 10 + i);
            check_rbuf(i, 140, __LINE__);
        }
        done += outcount;
        rounds++;
    }
    CHECK(done == K, "MPI_Waitsome completed %d of %d", done, K);
    int outcount = -1;
    CHECK_MPI(MPI_Waitsome(K, recvs, &outcount, (int[K]){0}, MPI_STATUSES_IGNORE));
    CHECK(outcount == MPI_UNDEFINED, "MPI_Waitsome over null requests gave outcount %d", outcount);
    CHECK_MPI(MPI_Waitall(K, sends, MPI_STATUSES_IGNORE));
    ck_end();

    ck_begin("p2p.test");
    post(recvs, sends, 160);
    for (int i = 0; i < K; i++) {
        flag = 0;
        double t0 = MPI_Wtime();
        st = ck_status();
        while (!flag && MPI_Wtime() - t0 < CK_POLL_SECONDS) CHECK_MPI(MPI_Test(&recvs[i], &flag, &st));
        CHECK(flag, "MPI_Test did not complete receive %d in %g s", i, CK_POLL_SECONDS);
        if (!flag) CHECK_MPI(MPI_Wait(&recvs[i], &st));
        CHECK(recvs[i] == MPI_REQUEST_NULL, "MPI_Test left the request");
        CHECK_STATUS(st, prev, 160 + i, MPI_INT, 10 + i);
        check_rbuf(i, 160, __LINE__);
    }
    CHECK_MPI(MPI_Waitall(K, sends, MPI_STATUSES_IGNORE));
    ck_end();

    ck_begin("p2p.testall");
    post(recvs, sends, 180);
    flag = 0;
    double t0 = MPI_Wtime();
    while (!flag && MPI_Wtime() - t0 < CK_POLL_SECONDS) {
        for (int i = 0; i < K; i++) sts[i] = ck_status();
        CHECK_MPI(MPI_Testall(K, recvs, &flag, sts));
    }
    CHECK(flag, "MPI_Testall did not complete in %g s", CK_POLL_SECONDS);
    if (!flag) CHECK_MPI(MPI_Waitall(K, recvs, sts));
    for (int i = 0; i < K; i++) CHECK(recvs[i] == MPI_REQUEST_NULL, "MPI_Testall left request %d", i);
    recv_statuses_ok(sts, K, 180, 10, __LINE__);
    for (int i = 0; i < K; i++) check_rbuf(i, 180, __LINE__);
    flag = 0;
    t0 = MPI_Wtime();
    while (!flag && MPI_Wtime() - t0 < CK_POLL_SECONDS) CHECK_MPI(MPI_Testall(K, sends, &flag, MPI_STATUSES_IGNORE));
    CHECK(flag, "MPI_Testall did not complete the sends in %g s", CK_POLL_SECONDS);
    if (!flag) CHECK_MPI(MPI_Waitall(K, sends, MPI_STATUSES_IGNORE));
    ck_end();

    ck_begin("p2p.testany");
    post(recvs, sends, 200);
    memset(seen, 0, sizeof seen);
    int n = 0;
    t0 = MPI_Wtime();
    while (n < K && MPI_Wtime() - t0 < CK_POLL_SECONDS) {
        idx = -1;
        flag = -1;
        st = ck_status();
        CHECK_MPI(MPI_Testany(K, recvs, &idx, &flag, &st));
        if (!flag) {
            CHECK(idx == MPI_UNDEFINED, "MPI_Testany without completion gave index %d", idx);
            continue;
        }
        CHECK(idx >= 0 && idx < K && !seen[idx], "MPI_Testany gave index %d", idx);
        if (idx < 0 || idx >= K || seen[idx]) break;
        seen[idx] = 1;
        n++;
        CHECK_STATUS(st, prev, 200 + idx, MPI_INT, 10 + idx);
        check_rbuf(idx, 200, __LINE__);
    }
    CHECK(n == K, "MPI_Testany completed %d of %d receives", n, K);
    if (n != K) CHECK_MPI(MPI_Waitall(K, recvs, MPI_STATUSES_IGNORE));
    idx = -1;
    flag = -1;
    CHECK_MPI(MPI_Testany(K, recvs, &idx, &flag, MPI_STATUS_IGNORE));
    CHECK(flag == 1 && idx == MPI_UNDEFINED, "MPI_Testany over null requests gave flag %d index %d", flag, idx);
    CHECK_MPI(MPI_Waitall(K, sends, MPI_STATUSES_IGNORE));
    ck_end();

    ck_begin("p2p.testsome");
    post(recvs, sends, 220);
    memset(got, 0, sizeof got);
    done = 0;
    t0 = MPI_Wtime();
    while (done < K && MPI_Wtime() - t0 < CK_POLL_SECONDS) {
        int oc = -1, indices[K];
        CHECK_MPI(MPI_Testsome(K, recvs, &oc, indices, sts));
        CHECK(oc >= 0 && oc <= K - done, "MPI_Testsome gave outcount %d with %d pending", oc, K - done);
        if (oc < 0 || oc > K) break;
        for (int j = 0; j < oc; j++) {
            int i = indices[j];
            CHECK(i >= 0 && i < K && !got[i], "MPI_Testsome gave index %d", i);
            if (i < 0 || i >= K || got[i]) continue;
            got[i] = 1;
            CHECK_STATUS(sts[j], prev, 220 + i, MPI_INT, 10 + i);
            check_rbuf(i, 220, __LINE__);
        }
        done += oc;
    }
    CHECK(done == K, "MPI_Testsome completed %d of %d", done, K);
    if (done != K) CHECK_MPI(MPI_Waitall(K, recvs, MPI_STATUSES_IGNORE));
    outcount = -1;
    CHECK_MPI(MPI_Testsome(K, recvs, &outcount, (int[K]){0}, MPI_STATUSES_IGNORE));
    CHECK(outcount == MPI_UNDEFINED, "MPI_Testsome over null requests gave outcount %d", outcount);
    CHECK_MPI(MPI_Waitall(K, sends, MPI_STATUSES_IGNORE));
    ck_end();
}

static void wildcards(void) {
    ck_begin("p2p.any-source-any-tag");
    int s[64], r[64];
    for (int i = 0; i < 64; i++) s[i] = rank * 64 + i;
    MPI_Request req;
    CHECK_MPI(MPI_Isend(s, 10 + rank, MPI_INT, 0, 300 + rank, MPI_COMM_WORLD, &req));
    if (rank == 0) {
        int seen[64] = {0};
        for (int n = 0; n < size; n++) {
            MPI_Status st = ck_status();
            for (int i = 0; i < 64; i++) r[i] = -1;
            CHECK_MPI(MPI_Recv(r, 64, MPI_INT, MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &st));
            int src = st.MPI_SOURCE;
            CHECK(src >= 0 && src < size && !seen[src], "MPI_ANY_SOURCE receive %d gave source %d", n, src);
            if (src < 0 || src >= size || seen[src]) continue;
            seen[src] = 1;
            CHECK_STATUS(st, src, 300 + src, MPI_INT, 10 + src);
            CHECK(r[0] == src * 64 && r[9 + src] == src * 64 + 9 + src && r[10 + src] == -1, "the message from %d holds %d..", src, r[0]);
        }
    }
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));

    /* A specific source with any tag, and any source with a specific tag. */
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Isend(s, 5, MPI_INT, next, 310, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Recv(r, 64, MPI_INT, prev, MPI_ANY_TAG, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 310, MPI_INT, 5);
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    st = ck_status();
    CHECK_MPI(MPI_Isend(s, 6, MPI_INT, next, 311, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Recv(r, 64, MPI_INT, MPI_ANY_SOURCE, 311, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 311, MPI_INT, 6);
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    ck_end();

    ck_begin("p2p.non-overtaking");
    /* Messages from one sender with one tag arrive in order, small and large mixed. */
    enum { M = 8 };
    MPI_Request reqs[M];
    unsigned char *msgs[M];
    long lens[M];
    for (int m = 0; m < M; m++) {
        lens[m] = (m % 3 == 2) ? (1L << 20) + m : 8 + m;
        msgs[m] = alloc_bytes(lens[m]);
        ck_fill(msgs[m], lens[m], rank, 320 + m);
        CHECK_MPI(MPI_Isend(msgs[m], (int)lens[m], MPI_BYTE, next, 320, MPI_COMM_WORLD, &reqs[m]));
    }
    unsigned char *in = alloc_bytes((1L << 20) + M);
    for (int m = 0; m < M; m++) {
        st = ck_status();
        CHECK_MPI(MPI_Recv(in, (1 << 20) + M, MPI_BYTE, m % 2 ? MPI_ANY_SOURCE : prev, m % 4 == 3 ? MPI_ANY_TAG : 320, MPI_COMM_WORLD, &st));
        CHECK_STATUS(st, prev, 320, MPI_BYTE, (int)lens[m]);
        CHECK_FILL(in, lens[m], prev, 320 + m);
    }
    CHECK_MPI(MPI_Waitall(M, reqs, MPI_STATUSES_IGNORE));
    for (int m = 0; m < M; m++) free(msgs[m]);
    free(in);
    ck_end();
}

static void check_null_status(const MPI_Status *st, const char *what, int line) {
    int c = -1;
    MPI_Get_count(st, MPI_INT, &c);
    if (st->MPI_SOURCE != MPI_PROC_NULL || st->MPI_TAG != MPI_ANY_TAG || c != 0)
        ck_fail(line, "%s: status source %d tag %d count %d, expected MPI_PROC_NULL, MPI_ANY_TAG, 0", what,
                st->MPI_SOURCE, st->MPI_TAG, c);
}

static void proc_null(void) {
    ck_begin("p2p.proc-null");
    int buf[10];
    for (int i = 0; i < 10; i++) buf[i] = 42;
    CHECK_MPI(MPI_Send(buf, 10, MPI_INT, MPI_PROC_NULL, 400, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Ssend(buf, 10, MPI_INT, MPI_PROC_NULL, 400, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Rsend(buf, 10, MPI_INT, MPI_PROC_NULL, 400, MPI_COMM_WORLD));
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Recv(buf, 10, MPI_INT, MPI_PROC_NULL, 400, MPI_COMM_WORLD, &st));
    check_null_status(&st, "MPI_Recv from MPI_PROC_NULL", __LINE__);
    CHECK(buf[0] == 42 && buf[9] == 42, "MPI_Recv from MPI_PROC_NULL wrote the buffer");
    MPI_Request r[2];
    MPI_Status sts[2] = {ck_status(), ck_status()};
    CHECK_MPI(MPI_Irecv(buf, 10, MPI_INT, MPI_PROC_NULL, MPI_ANY_TAG, MPI_COMM_WORLD, &r[0]));
    CHECK_MPI(MPI_Isend(buf, 10, MPI_INT, MPI_PROC_NULL, 401, MPI_COMM_WORLD, &r[1]));
    CHECK_MPI(MPI_Waitall(2, r, sts));
    /* MPICH 4.0.2 leaves source 0 and tag 0 in the status of a non-blocking receive from
     * MPI_PROC_NULL (MPI-3.1 3.11 says MPI_PROC_NULL, MPI_ANY_TAG, count 0): checked on onecopy. */
    if (ck_onecopy()) check_null_status(&sts[0], "MPI_Irecv from MPI_PROC_NULL", __LINE__);
    st = ck_status();
    CHECK_MPI(MPI_Sendrecv(buf, 10, MPI_INT, MPI_PROC_NULL, 402, buf, 10, MPI_INT, MPI_PROC_NULL, 402, MPI_COMM_WORLD, &st));
    check_null_status(&st, "MPI_Sendrecv with MPI_PROC_NULL", __LINE__);
    st = ck_status();
    CHECK_MPI(MPI_Probe(MPI_PROC_NULL, 403, MPI_COMM_WORLD, &st));
    check_null_status(&st, "MPI_Probe(MPI_PROC_NULL)", __LINE__);
    int flag = -1;
    st = ck_status();
    CHECK_MPI(MPI_Iprobe(MPI_PROC_NULL, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st));
    CHECK(flag == 1, "MPI_Iprobe(MPI_PROC_NULL) gave flag %d", flag);
    check_null_status(&st, "MPI_Iprobe(MPI_PROC_NULL)", __LINE__);
    MPI_Message msg = MPI_MESSAGE_NULL;
    st = ck_status();
    CHECK_MPI(MPI_Mprobe(MPI_PROC_NULL, 404, MPI_COMM_WORLD, &msg, &st));
    CHECK(msg == MPI_MESSAGE_NO_PROC, "MPI_Mprobe(MPI_PROC_NULL) gave message %#x", (unsigned)msg);
    check_null_status(&st, "MPI_Mprobe(MPI_PROC_NULL)", __LINE__);
    st = ck_status();
    CHECK_MPI(MPI_Mrecv(buf, 10, MPI_INT, &msg, &st));
    CHECK(msg == MPI_MESSAGE_NULL, "MPI_Mrecv(MPI_MESSAGE_NO_PROC) left message %#x", (unsigned)msg);
    check_null_status(&st, "MPI_Mrecv(MPI_MESSAGE_NO_PROC)", __LINE__);
    flag = -1;
    CHECK_MPI(MPI_Improbe(MPI_PROC_NULL, 404, MPI_COMM_WORLD, &flag, &msg, MPI_STATUS_IGNORE));
    CHECK(flag == 1 && msg == MPI_MESSAGE_NO_PROC, "MPI_Improbe(MPI_PROC_NULL) gave flag %d message %#x", flag, (unsigned)msg);
    MPI_Request mr;
    CHECK_MPI(MPI_Imrecv(buf, 10, MPI_INT, &msg, &mr));
    st = ck_status();
    CHECK_MPI(MPI_Wait(&mr, &st));
    check_null_status(&st, "MPI_Imrecv(MPI_MESSAGE_NO_PROC)", __LINE__);
    /* Persistent requests to and from MPI_PROC_NULL. */
    MPI_Request p[2];
    CHECK_MPI(MPI_Recv_init(buf, 10, MPI_INT, MPI_PROC_NULL, 405, MPI_COMM_WORLD, &p[0]));
    CHECK_MPI(MPI_Send_init(buf, 10, MPI_INT, MPI_PROC_NULL, 405, MPI_COMM_WORLD, &p[1]));
    for (int it = 0; it < 2; it++) {
        sts[0] = ck_status();
        CHECK_MPI(MPI_Startall(2, p));
        CHECK_MPI(MPI_Waitall(2, p, sts));
        /* MPICH 4.0.2 gives the empty status (MPI_ANY_SOURCE) here: checked on onecopy. */
        if (ck_onecopy()) check_null_status(&sts[0], "a persistent receive from MPI_PROC_NULL", __LINE__);
        CHECK(p[0] != MPI_REQUEST_NULL && p[1] != MPI_REQUEST_NULL, "MPI_Waitall freed a persistent request");
    }
    CHECK_MPI(MPI_Request_free(&p[0]));
    CHECK_MPI(MPI_Request_free(&p[1]));
    CHECK(buf[0] == 42, "a receive from MPI_PROC_NULL wrote the buffer");
    ck_end();
}

static void probes(void) {
    ck_begin("p2p.probe-iprobe");
    int s[100], r[100];
    for (int i = 0; i < 100; i++) s[i] = rank + i;
    MPI_Request req;
    CHECK_MPI(MPI_Isend(s, 77, MPI_INT, next, 500, MPI_COMM_WORLD, &req));
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Probe(prev, 500, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 500, MPI_INT, 77);
    /* Probing does not take the message: probe again, with wildcards. */
    int flag = 0;
    double t0 = MPI_Wtime();
    while (!flag && MPI_Wtime() - t0 < CK_POLL_SECONDS) {
        st = ck_status();
        CHECK_MPI(MPI_Iprobe(MPI_ANY_SOURCE, 500, MPI_COMM_WORLD, &flag, &st));
    }
    CHECK(flag == 1, "MPI_Iprobe did not see a probed message");
    if (flag) CHECK_STATUS(st, prev, 500, MPI_INT, 77);
    st = ck_status();
    CHECK_MPI(MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 500, MPI_INT, 77);
    int count = 0;
    MPI_Get_count(&st, MPI_INT, &count);
    st = ck_status();
    CHECK_MPI(MPI_Recv(r, count > 0 && count <= 100 ? count : 100, MPI_INT, prev, 500, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 500, MPI_INT, 77);
    CHECK(r[0] == prev && r[76] == prev + 76, "the probed message holds %d..%d", r[0], r[76]);
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    /* Nothing is sent with tag 501. */
    flag = -1;
    CHECK_MPI(MPI_Iprobe(MPI_ANY_SOURCE, 501, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE));
    CHECK(flag == 0, "MPI_Iprobe found a message with a tag nobody sent");
    CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    ck_end();

    ck_begin("p2p.mprobe-mrecv");
    long big = 4L << 20;
    unsigned char *sb = alloc_bytes(big), *rb = alloc_bytes(big);
    ck_fill(sb, big, rank, 51);
    MPI_Request reqs[3];
    CHECK_MPI(MPI_Isend(s, 100, MPI_INT, next, 510, MPI_COMM_WORLD, &reqs[0]));
    CHECK_MPI(MPI_Isend(sb, (int)big, MPI_BYTE, next, 511, MPI_COMM_WORLD, &reqs[1]));
    CHECK_MPI(MPI_Isend(s, 3, MPI_INT, next, 512, MPI_COMM_WORLD, &reqs[2]));
    MPI_Message msg = MPI_MESSAGE_NULL;
    st = ck_status();
    CHECK_MPI(MPI_Mprobe(prev, 510, MPI_COMM_WORLD, &msg, &st));
    CHECK(msg != MPI_MESSAGE_NULL && msg != MPI_MESSAGE_NO_PROC, "MPI_Mprobe gave message %#x", (unsigned)msg);
    CHECK_STATUS(st, prev, 510, MPI_INT, 100);
    /* A matched message is no one else's: a receive with wildcards takes the next one. */
    MPI_Message bigmsg = MPI_MESSAGE_NULL;
    flag = 0;
    t0 = MPI_Wtime();
    while (!flag && MPI_Wtime() - t0 < CK_POLL_SECONDS) {
        st = ck_status();
        CHECK_MPI(MPI_Improbe(prev, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &bigmsg, &st));
    }
    CHECK(flag == 1, "MPI_Improbe found nothing in %g s", CK_POLL_SECONDS);
    if (flag) CHECK_STATUS(st, prev, 511, MPI_BYTE, (int)big);
    int small[3] = {-1, -1, -1};
    st = ck_status();
    CHECK_MPI(MPI_Recv(small, 3, MPI_INT, MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 512, MPI_INT, 3);
    for (int i = 0; i < 100; i++) r[i] = -1;
    st = ck_status();
    CHECK_MPI(MPI_Mrecv(r, 100, MPI_INT, &msg, &st));
    CHECK(msg == MPI_MESSAGE_NULL, "MPI_Mrecv left message %#x", (unsigned)msg);
    CHECK_STATUS(st, prev, 510, MPI_INT, 100);
    CHECK(r[0] == prev && r[99] == prev + 99, "MPI_Mrecv delivered %d..%d", r[0], r[99]);
    if (flag) {
        MPI_Request mr;
        CHECK_MPI(MPI_Imrecv(rb, (int)big, MPI_BYTE, &bigmsg, &mr));
        CHECK(bigmsg == MPI_MESSAGE_NULL, "MPI_Imrecv left message %#x", (unsigned)bigmsg);
        st = ck_status();
        CHECK_MPI(MPI_Wait(&mr, &st));
        CHECK_STATUS(st, prev, 511, MPI_BYTE, (int)big);
        CHECK_FILL(rb, big, prev, 51);
    } else {
        CHECK_MPI(MPI_Recv(rb, (int)big, MPI_BYTE, prev, 511, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    }
    CHECK_MPI(MPI_Waitall(3, reqs, MPI_STATUSES_IGNORE));
    free(sb);
    free(rb);
    ck_end();
}

static void sendrecv(void) {
    ck_begin("p2p.sendrecv");
    int s[100], r[100];
    for (int i = 0; i < 100; i++) {
        s[i] = rank * 7 + i;
        r[i] = -1;
    }
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Sendrecv(s, 50, MPI_INT, next, 600, r, 100, MPI_INT, prev, 600, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 600, MPI_INT, 50);
    CHECK(r[0] == prev * 7 && r[49] == prev * 7 + 49 && r[50] == -1, "MPI_Sendrecv delivered %d..%d, then %d", r[0], r[49], r[50]);
    /* Opposite directions at once. */
    st = ck_status();
    CHECK_MPI(MPI_Sendrecv(s, 10, MPI_INT, prev, 601, r, 100, MPI_INT, next, 601, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, next, 601, MPI_INT, 10);
    CHECK(r[0] == next * 7 && r[9] == next * 7 + 9, "MPI_Sendrecv (reverse) delivered %d..%d", r[0], r[9]);
    long big = 4L << 20;
    unsigned char *sb = alloc_bytes(big), *rb = alloc_bytes(big);
    ck_fill(sb, big, rank, 61);
    st = ck_status();
    CHECK_MPI(MPI_Sendrecv(sb, (int)big, MPI_BYTE, next, 602, rb, (int)big, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 602, MPI_BYTE, (int)big);
    CHECK_FILL(rb, big, prev, 61);
    ck_end();

    ck_begin("p2p.sendrecv-replace");
    for (int i = 0; i < 100; i++) s[i] = rank * 11 + i;
    st = ck_status();
    CHECK_MPI(MPI_Sendrecv_replace(s, 100, MPI_INT, next, 610, prev, 610, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 610, MPI_INT, 100);
    CHECK(s[0] == prev * 11 && s[99] == prev * 11 + 99, "MPI_Sendrecv_replace left %d..%d", s[0], s[99]);
    ck_fill(sb, big, rank, 62);
    st = ck_status();
    CHECK_MPI(MPI_Sendrecv_replace(sb, (int)big, MPI_BYTE, next, 611, prev, MPI_ANY_TAG, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 611, MPI_BYTE, (int)big);
    CHECK_FILL(sb, big, prev, 62);
    free(sb);
    free(rb);
    ck_end();
}

static void persistent(void) {
    ck_begin("p2p.persistent");
    int s[100], r[100];
    MPI_Request p[2];
    CHECK_MPI(MPI_Recv_init(r, 100, MPI_INT, prev, 700, MPI_COMM_WORLD, &p[0]));
    CHECK_MPI(MPI_Send_init(s, 100, MPI_INT, next, 700, MPI_COMM_WORLD, &p[1]));
    /* An inactive persistent request tests as done, with an empty status. */
    int flag = -1;
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Test(&p[0], &flag, &st));
    CHECK(flag == 1, "MPI_Test of an inactive persistent request gave flag %d", flag);
    empty_status_ok(&st, "MPI_Test of an inactive persistent request", __LINE__);
    CHECK(p[0] != MPI_REQUEST_NULL, "MPI_Test freed an inactive persistent request");
    for (int it = 0; it < 6; it++) {
        for (int i = 0; i < 100; i++) {
            s[i] = rank * 1000 + it * 100 + i;
            r[i] = -1;
        }
        MPI_Status sts[2] = {ck_status(), ck_status()};
        if (it % 3 == 0) {
            CHECK_MPI(MPI_Startall(2, p));
            CHECK_MPI(MPI_Waitall(2, p, sts));
        } else if (it % 3 == 1) {
            CHECK_MPI(MPI_Start(&p[0]));
            CHECK_MPI(MPI_Start(&p[1]));
            CHECK_MPI(MPI_Wait(&p[1], &sts[1]));
            CHECK_MPI(MPI_Wait(&p[0], &sts[0]));
        } else {
            CHECK_MPI(MPI_Startall(2, p));
            flag = 0;
            double t0 = MPI_Wtime();
            while (!flag && MPI_Wtime() - t0 < CK_POLL_SECONDS) CHECK_MPI(MPI_Testall(2, p, &flag, sts));
            CHECK(flag, "MPI_Testall did not complete started persistent requests in %g s (iteration %d)", CK_POLL_SECONDS, it);
            if (!flag) CHECK_MPI(MPI_Waitall(2, p, sts));
        }
        CHECK(p[0] != MPI_REQUEST_NULL && p[1] != MPI_REQUEST_NULL, "completion freed a persistent request (iteration %d)", it);
        CHECK_STATUS(sts[0], prev, 700, MPI_INT, 100);
        CHECK(r[0] == prev * 1000 + it * 100 && r[99] == prev * 1000 + it * 100 + 99,
              "iteration %d delivered %d..%d", it, r[0], r[99]);
    }
    CHECK_MPI(MPI_Request_free(&p[0]));
    CHECK_MPI(MPI_Request_free(&p[1]));
    CHECK(p[0] == MPI_REQUEST_NULL && p[1] == MPI_REQUEST_NULL, "MPI_Request_free left persistent requests");

    /* Large, and synchronous. */
    long big = 4L << 20;
    unsigned char *sb = alloc_bytes(big), *rb = alloc_bytes(big);
    CHECK_MPI(MPI_Recv_init(rb, (int)big, MPI_BYTE, MPI_ANY_SOURCE, 701, MPI_COMM_WORLD, &p[0]));
    CHECK_MPI(MPI_Ssend_init(sb, (int)big, MPI_BYTE, next, 701, MPI_COMM_WORLD, &p[1]));
    for (int it = 0; it < 2; it++) {
        ck_fill(sb, big, rank, 70 + it);
        MPI_Status sts[2] = {ck_status(), ck_status()};
        CHECK_MPI(MPI_Startall(2, p));
        CHECK_MPI(MPI_Waitall(2, p, sts));
        CHECK_STATUS(sts[0], prev, 701, MPI_BYTE, (int)big);
        CHECK_FILL(rb, big, prev, 70 + it);
    }
    CHECK_MPI(MPI_Request_free(&p[0]));
    CHECK_MPI(MPI_Request_free(&p[1]));
    free(sb);
    free(rb);
    ck_end();
}

static void cancel(void) {
    ck_begin("p2p.cancel");
    int r[10];
    MPI_Request req;
    MPI_Status st = ck_status();
    /* Nothing is ever sent with tag 800. */
    CHECK_MPI(MPI_Irecv(r, 10, MPI_INT, prev, 800, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Cancel(&req));
    CHECK_MPI(MPI_Wait(&req, &st));
    CHECK(req == MPI_REQUEST_NULL, "MPI_Wait left a cancelled request");
    int flag = -1;
    CHECK_MPI(MPI_Test_cancelled(&st, &flag));
    CHECK(flag == 1, "MPI_Test_cancelled of a cancelled receive gave %d", flag);
    /* Wildcards on a communicator of its own, where no message could match. */
    MPI_Comm quiet;
    CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &quiet));
    CHECK_MPI(MPI_Irecv(r, 10, MPI_INT, MPI_ANY_SOURCE, MPI_ANY_TAG, quiet, &req));
    CHECK_MPI(MPI_Cancel(&req));
    flag = 0;
    double t0 = MPI_Wtime();
    st = ck_status();
    while (!flag && MPI_Wtime() - t0 < CK_POLL_SECONDS) CHECK_MPI(MPI_Test(&req, &flag, &st));
    CHECK(flag == 1, "MPI_Test did not complete a cancelled receive");
    if (!flag) CHECK_MPI(MPI_Wait(&req, &st));
    flag = -1;
    CHECK_MPI(MPI_Test_cancelled(&st, &flag));
    CHECK(flag == 1, "MPI_Test_cancelled of a cancelled wildcard receive gave %d", flag);
    CHECK_MPI(MPI_Comm_free(&quiet));
    /* A completed receive is not cancelled. */
    int s[10] = {0};
    st = ck_status();
    CHECK_MPI(MPI_Irecv(r, 10, MPI_INT, prev, 801, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(s, 10, MPI_INT, next, 801, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Wait(&req, &st));
    flag = -1;
    CHECK_MPI(MPI_Test_cancelled(&st, &flag));
    CHECK(flag == 0, "MPI_Test_cancelled of a completed receive gave %d", flag);
    CHECK_STATUS(st, prev, 801, MPI_INT, 10);
    ck_end();
}

static void request_free(void) {
    ck_begin("p2p.request-free");
    int s[50], r[50];
    for (int i = 0; i < 50; i++) s[i] = rank * 3 + i;
    MPI_Request req;
    CHECK_MPI(MPI_Isend(s, 50, MPI_INT, next, 850, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Request_free(&req));
    CHECK(req == MPI_REQUEST_NULL, "MPI_Request_free left %#x", (unsigned)req);
    MPI_Status st = ck_status();
    CHECK_MPI(MPI_Recv(r, 50, MPI_INT, prev, 850, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 850, MPI_INT, 50);
    CHECK(r[0] == prev * 3 && r[49] == prev * 3 + 49, "a freed send delivered %d..%d", r[0], r[49]);
    long big = 1L << 20;
    unsigned char *sb = alloc_bytes(big), *rb = alloc_bytes(big);
    ck_fill(sb, big, rank, 85);
    CHECK_MPI(MPI_Isend(sb, (int)big, MPI_BYTE, next, 851, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Request_free(&req));
    CHECK_MPI(MPI_Recv(rb, (int)big, MPI_BYTE, prev, 851, MPI_COMM_WORLD, &st));
    CHECK_STATUS(st, prev, 851, MPI_BYTE, (int)big);
    CHECK_FILL(rb, big, prev, 85);
    /* Every receive is done after the barrier, so every freed send is too. */
    CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    free(sb);
    free(rb);
    ck_end();
}

static void request_get_status(void) {
    ck_begin("p2p.request-get-status");
    int s[20], r[20];
    for (int i = 0; i < 20; i++) s[i] = rank + 2 * i;
    MPI_Request req;
    CHECK_MPI(MPI_Irecv(r, 20, MPI_INT, prev, 870, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Send(s, 20, MPI_INT, next, 870, MPI_COMM_WORLD));
    int flag = 0;
    MPI_Status st = ck_status();
    double t0 = MPI_Wtime();
    while (!flag && MPI_Wtime() - t0 < CK_POLL_SECONDS) CHECK_MPI(MPI_Request_get_status(req, &flag, &st));
    CHECK(flag == 1, "MPI_Request_get_status never saw the receive finish");
    if (flag) CHECK_STATUS(st, prev, 870, MPI_INT, 20);
    CHECK(req != MPI_REQUEST_NULL, "MPI_Request_get_status freed the request");
    st = ck_status();
    CHECK_MPI(MPI_Wait(&req, &st));
    CHECK_STATUS(st, prev, 870, MPI_INT, 20);
    CHECK(r[0] == prev && r[19] == prev + 38, "the receive delivered %d..%d", r[0], r[19]);
    flag = -1;
    st = ck_status();
    CHECK_MPI(MPI_Request_get_status(MPI_REQUEST_NULL, &flag, &st));
    CHECK(flag == 1, "MPI_Request_get_status(MPI_REQUEST_NULL) gave flag %d", flag);
    empty_status_ok(&st, "MPI_Request_get_status(MPI_REQUEST_NULL)", __LINE__);
    /* A send request, and a large message the receiver must take. */
    long big = 4L << 20;
    unsigned char *sb = alloc_bytes(big), *rb = alloc_bytes(big);
    ck_fill(sb, big, rank, 87);
    MPI_Request rr, sr;
    CHECK_MPI(MPI_Irecv(rb, (int)big, MPI_BYTE, prev, 871, MPI_COMM_WORLD, &rr));
    CHECK_MPI(MPI_Isend(sb, (int)big, MPI_BYTE, next, 871, MPI_COMM_WORLD, &sr));
    int fr = 0, fs = 0;
    t0 = MPI_Wtime();
    st = ck_status();
    while ((!fr || !fs) && MPI_Wtime() - t0 < CK_POLL_SECONDS) {
        if (!fr) CHECK_MPI(MPI_Request_get_status(rr, &fr, &st));
        if (!fs) CHECK_MPI(MPI_Request_get_status(sr, &fs, MPI_STATUS_IGNORE));
    }
    CHECK(fr && fs, "MPI_Request_get_status polling alone did not finish a 4 MiB message in %g s (receive %d, send %d)",
          CK_POLL_SECONDS, fr, fs);
    if (fr) CHECK_STATUS(st, prev, 871, MPI_BYTE, (int)big);
    CHECK_MPI(MPI_Wait(&rr, MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Wait(&sr, MPI_STATUS_IGNORE));
    CHECK_FILL(rb, big, prev, 87);
    free(sb);
    free(rb);
    ck_end();
}

static void count_elements(void) {
    ck_begin("p2p.get-count-elements");
    MPI_Datatype pair;
    CHECK_MPI(MPI_Type_contiguous(2, MPI_INT, &pair));
    CHECK_MPI(MPI_Type_commit(&pair));
    int s[8] = {1, 2, 3, 4, 5, 6, 7, 8}, r[8];
    MPI_Request req;
    MPI_Status st = ck_status();
    /* Three ints into pairs: one and a half pairs. */
    CHECK_MPI(MPI_Isend(s, 3, MPI_INT, next, 900, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Recv(r, 4, pair, prev, 900, MPI_COMM_WORLD, &st));
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    int c = -1, e = -1;
    CHECK_MPI(MPI_Get_count(&st, pair, &c));
    CHECK(c == MPI_UNDEFINED, "MPI_Get_count of 3 ints as pairs gave %d, expected MPI_UNDEFINED", c);
    CHECK_MPI(MPI_Get_elements(&st, pair, &e));
    CHECK(e == 3, "MPI_Get_elements of 3 ints as pairs gave %d", e);
    MPI_Count ex = -1;
    CHECK_MPI(MPI_Get_elements_x(&st, pair, &ex));
    CHECK(ex == 3, "MPI_Get_elements_x of 3 ints as pairs gave %ld", (long)ex);
    CHECK(r[0] == 1 && r[2] == 3, "the partial pair holds %d %d %d", r[0], r[1], r[2]);
    /* Four ints: two whole pairs. */
    st = ck_status();
    CHECK_MPI(MPI_Isend(s, 4, MPI_INT, next, 901, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Recv(r, 4, pair, prev, 901, MPI_COMM_WORLD, &st));
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Get_count(&st, pair, &c));
    CHECK(c == 2, "MPI_Get_count of 4 ints as pairs gave %d", c);
    CHECK_MPI(MPI_Get_elements(&st, pair, &e));
    CHECK(e == 4, "MPI_Get_elements of 4 ints as pairs gave %d", e);
    /* Zero ints. */
    st = ck_status();
    CHECK_MPI(MPI_Isend(s, 0, MPI_INT, next, 902, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Recv(r, 8, MPI_INT, prev, 902, MPI_COMM_WORLD, &st));
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    CHECK_STATUS(st, prev, 902, MPI_INT, 0);
    CHECK_MPI(MPI_Get_elements(&st, MPI_INT, &e));
    CHECK(e == 0, "MPI_Get_elements of an empty message gave %d", e);
    CHECK_MPI(MPI_Type_free(&pair));
    ck_end();
}

static void truncation(void) {
    ck_begin("p2p.truncate");
    int s[10], r[10];
    for (int i = 0; i < 10; i++) {
        s[i] = rank * 10 + i;
        r[i] = -1;
    }
    MPI_Request req;
    CHECK_MPI(MPI_Isend(s, 10, MPI_INT, next, 950, MPI_COMM_WORLD, &req));
    int rc = MPI_Recv(r, 5, MPI_INT, prev, 950, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    CHECK_CLASS(rc, MPI_ERR_TRUNCATE);
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (rc != MPI_SUCCESS) {
        CHECK_MPI(MPI_Error_string(rc, text, &len));
        CHECK(len > 0, "the truncation error has an empty string");
    }
    CHECK(r[5] == -1, "a truncated receive wrote past its 5 ints");
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));

    /* Non-blocking, and a large message: the receive fails, the send completes. */
    long big = 1L << 20;
    unsigned char *sb = alloc_bytes(big), *rb = alloc_bytes(big);
    ck_fill(sb, big, rank, 95);
    memset(rb, 0, (size_t)big);
    guard_set(rb, 1000);
    MPI_Request rr, sr;
    CHECK_MPI(MPI_Irecv(rb, 1000, MPI_BYTE, prev, 951, MPI_COMM_WORLD, &rr));
    CHECK_MPI(MPI_Isend(sb, (int)big, MPI_BYTE, next, 951, MPI_COMM_WORLD, &sr));
    CHECK_CLASS(MPI_Wait(&rr, MPI_STATUS_IGNORE), MPI_ERR_TRUNCATE);
    CHECK_GUARD(rb, 1000);
    CHECK_MPI(MPI_Wait(&sr, MPI_STATUS_IGNORE));

    /* In MPI_Waitall: MPI_ERR_IN_STATUS, the error in the failed request's status. */
    MPI_Request two[2];
    MPI_Status sts[2] = {ck_status(), ck_status()};
    CHECK_MPI(MPI_Irecv(r, 2, MPI_INT, prev, 952, MPI_COMM_WORLD, &two[0]));
    CHECK_MPI(MPI_Isend(s, 4, MPI_INT, next, 952, MPI_COMM_WORLD, &two[1]));
    rc = MPI_Waitall(2, two, sts);
    CHECK_CLASS(rc, MPI_ERR_IN_STATUS);
    if (rc != MPI_SUCCESS) {
        CHECK(ck_class(sts[0].MPI_ERROR) == MPI_ERR_TRUNCATE, "the failed receive's status has error %d (class %d)", sts[0].MPI_ERROR, ck_class(sts[0].MPI_ERROR));
        CHECK(sts[1].MPI_ERROR == MPI_SUCCESS || sts[1].MPI_ERROR == MPI_ERR_PENDING, "the send's status has error %d", sts[1].MPI_ERROR);
    }
    if (two[1] != MPI_REQUEST_NULL) CHECK_MPI(MPI_Wait(&two[1], MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    free(sb);
    free(rb);
    ck_end();
}

int main(int argc, char **argv) {
    ck_init(&argc, &argv);
    rank = ck.rank;
    size = ck.size;
    next = (rank + 1) % size;
    prev = (rank + size - 1) % size;
    send_recv_sizes();
    ssend();
    rsend();
    bsend();
    completions();
    wildcards();
    proc_null();
    probes();
    sendrecv();
    persistent();
    cancel();
    request_free();
    request_get_status();
    count_elements();
    truncation();
    return ck_finish();
}
