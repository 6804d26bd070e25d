/*
 * osu_p2p.c: point-to-point latency and bandwidth between two MPI ranks,
 * measured the way the OSU micro-benchmarks define them, so that any MPI
 * library can be put beside `onecopy bench p2p`.
 *
 *   latency  half the round trip of a blocking ping-pong (MPI_Send/MPI_Recv), in us
 *   bw       rank 0 posts a window of 64 MPI_Isend, waits for all of them, then
 *            receives a 4-byte ack from rank 1 (which posted 64 MPI_Irecv);
 *            MB/s = bytes * 64 * iterations / seconds / 10^6
 *   bibw     both ranks post the window in both directions at once;
 *            MB/s counts the bytes of both directions
 *
 * Every window uses one send buffer and one receive buffer, as the OSU suite
 * does. Buffers are page-aligned and written before timing starts, so no page
 * fault is timed. Rank 0 prints one JSON array on stdout:
 *
 *   [{"bench": "latency", "transport": NAME, "ranks": 2, "bytes": N, "value": X, "unit": "us"}, ...]
 *
 * Usage: mpirun -n 2 osu_p2p [-b latency|bw|bibw|all] [-s SIZES] [-t NAME] [-q]
 *   -s  comma list of sizes in bytes; K (KiB) and M (MiB) suffixes, e.g. 1,4K,64M
 *   -t  the label printed as "transport" (default "mpi")
 *   -q  quick: a tenth of the iterations, for a smoke run
 * A bad option, or a world that is not two ranks, exits 2.
 */
#define _POSIX_C_SOURCE 200809L

#include <mpi.h>

/* MPI_STATUSES_IGNORE is a sentinel pointer that GCC mistakes for an array of size 0. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USAGE                                                                \
    "usage: mpirun -n 2 osu_p2p [-b latency|bw|bibw|all] [-s SIZES] [-t NAME] [-q]\n" \
    "  SIZES: comma list of byte counts, K = KiB, M = MiB (e.g. 1,4K,1M)\n"

#define PROGRAM "osu_p2p"
#include "osu_common.h"

#define WINDOW 64
#define TAG_DATA 1
#define TAG_ACK 2
#define LATENCY_DEFAULT_MAX (4UL << 20)
#define BW_DEFAULT_MAX (64UL << 20)

enum bench { BENCH_LATENCY = 1, BENCH_BW = 2, BENCH_BIBW = 4 };

struct record {
    const char *bench;
    size_t bytes;
    double value;
    const char *unit;
};

static int quick;
static struct record records[3 * MAX_SIZES];
static int nrecords;

static int default_sizes(size_t max, size_t *out)
{
    int n = 0;
    for (size_t s = 1; s <= max; s *= 4)
        out[n++] = s;
    return n;
}

static void *alloc_touched(size_t bytes, int fill)
{
    void *p = NULL;
    long page = sysconf(_SC_PAGESIZE);
    int err = posix_memalign(&p, page > 0 ? (size_t)page : 4096, bytes);
    if (err != 0) {
        fprintf(stderr, "osu_p2p: rank %d: cannot allocate %zu bytes: %s\n", rank, bytes,
                strerror(err));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    memset(p, fill, bytes);
    return p;
}

static void add_record(const char *bench, size_t bytes, double value, const char *unit)
{
    records[nrecords].bench = bench;
    records[nrecords].bytes = bytes;
    records[nrecords].value = value;
    records[nrecords].unit = unit;
    nrecords++;
}

/* Iteration counts: as many as the small sizes need for a steady average,
 * scaled down with the size so that one measurement stays well under a second
 * or two at memory speed. */
static long scaled(long iters)
{
    if (quick) {
        iters /= 10;
        if (iters < 2)
            iters = 2;
    }
    return iters;
}

static long latency_iters(size_t size)
{
    long it = size <= 8192 ? 10000 : (long)(10000UL * 8192 / size);
    return scaled(it < 100 ? 100 : it);
}

static long window_iters(size_t size)
{
    unsigned long budget = 2UL << 30; /* bytes per measurement, one direction */
    long it = (long)(budget / (size * WINDOW));
    if (it > 100)
        it = 100;
    if (it < 3)
        it = 3;
    return scaled(it);
}

static long warmup(long iters)
{
    long w = iters / 10;
    return w < 1 ? 1 : w;
}

/* The receiver checks the pattern of the last message it got: a stack that
 * reports a number for bytes it did not move is wrong, not fast. */
static void verify(const unsigned char *buf, size_t size, unsigned char want, const char *bench)
{
    if (buf[0] != want || buf[size - 1] != want || buf[size / 2] != want) {
        fprintf(stderr, "osu_p2p: rank %d: %s at %zu bytes: received data is wrong\n", rank,
                bench, size);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

static void run_latency(size_t size)
{
    unsigned char *sbuf = alloc_touched(size, 'a' + rank);
    unsigned char *rbuf = alloc_touched(size, 0);
    int peer = 1 - rank;
    long iters = latency_iters(size), skip = warmup(iters);
    double t0 = 0.0, t1;

    CHECK(MPI_Barrier(MPI_COMM_WORLD));
    for (long i = 0; i < skip + iters; i++) {
        if (i == skip) {
            CHECK(MPI_Barrier(MPI_COMM_WORLD));
            t0 = MPI_Wtime();
        }
        if (rank == 0) {
            CHECK(MPI_Send(sbuf, (int)size, MPI_BYTE, peer, TAG_DATA, MPI_COMM_WORLD));
            CHECK(MPI_Recv(rbuf, (int)size, MPI_BYTE, peer, TAG_DATA, MPI_COMM_WORLD,
                           MPI_STATUS_IGNORE));
        } else {
            CHECK(MPI_Recv(rbuf, (int)size, MPI_BYTE, peer, TAG_DATA, MPI_COMM_WORLD,
                           MPI_STATUS_IGNORE));
            CHECK(MPI_Send(sbuf, (int)size, MPI_BYTE, peer, TAG_DATA, MPI_COMM_WORLD));
        }
    }
    t1 = MPI_Wtime();
    verify(rbuf, size, (unsigned char)('a' + peer), "latency");
    if (rank == 0)
        add_record("latency", size, (t1 - t0) * 1e6 / (2.0 * (double)iters), "us");
    free(sbuf);
    free(rbuf);
}

static void run_bw(size_t size)
{
    unsigned char *sbuf = alloc_touched(size, 'a' + rank);
    unsigned char *rbuf = alloc_touched(size, 0);
    MPI_Request req[WINDOW];
    int ack = 0;
    long iters = window_iters(size), skip = warmup(iters);
    double t0 = 0.0, t1;

    CHECK(MPI_Barrier(MPI_COMM_WORLD));
    for (long i = 0; i < skip + iters; i++) {
        if (i == skip) {
            CHECK(MPI_Barrier(MPI_COMM_WORLD));
            t0 = MPI_Wtime();
        }
        if (rank == 0) {
            for (int w = 0; w < WINDOW; w++)
                CHECK(MPI_Isend(sbuf, (int)size, MPI_BYTE, 1, TAG_DATA, MPI_COMM_WORLD, &req[w]));
            CHECK(MPI_Waitall(WINDOW, req, MPI_STATUSES_IGNORE));
            CHECK(MPI_Recv(&ack, 1, MPI_INT, 1, TAG_ACK, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        } else {
            for (int w = 0; w < WINDOW; w++)
                CHECK(MPI_Irecv(rbuf, (int)size, MPI_BYTE, 0, TAG_DATA, MPI_COMM_WORLD, &req[w]));
            CHECK(MPI_Waitall(WINDOW, req, MPI_STATUSES_IGNORE));
            CHECK(MPI_Send(&ack, 1, MPI_INT, 0, TAG_ACK, MPI_COMM_WORLD));
        }
    }
    t1 = MPI_Wtime();
    if (rank == 1)
        verify(rbuf, size, 'a', "bw");
    if (rank == 0)
        add_record("bw", size, (double)size * WINDOW * (double)iters / (t1 - t0) / 1e6, "MB/s");
    free(sbuf);
    free(rbuf);
}

static void run_bibw(size_t size)
{
    unsigned char *sbuf = alloc_touched(size, 'a' + rank);
    unsigned char *rbuf = alloc_touched(size, 0);
    MPI_Request req[2 * WINDOW];
    int peer = 1 - rank;
    long iters = window_iters(size), skip = warmup(iters);
    double t0 = 0.0, t1;

    CHECK(MPI_Barrier(MPI_COMM_WORLD));
    for (long i = 0; i < skip + iters; i++) {
        if (i == skip) {
            CHECK(MPI_Barrier(MPI_COMM_WORLD));
            t0 = MPI_Wtime();
        }
        for (int w = 0; w < WINDOW; w++)
            CHECK(MPI_Irecv(rbuf, (int)size, MPI_BYTE, peer, TAG_DATA, MPI_COMM_WORLD, &req[w]));
        for (int w = 0; w < WINDOW; w++)
            CHECK(MPI_Isend(sbuf, (int)size, MPI_BYTE, peer, TAG_DATA, MPI_COMM_WORLD,
                            &req[WINDOW + w]));
        CHECK(MPI_Waitall(2 * WINDOW, req, MPI_STATUSES_IGNORE));
    }
    t1 = MPI_Wtime();
    verify(rbuf, size, (unsigned char)('a' + peer), "bibw");
    if (rank == 0)
        add_record("bibw", size, 2.0 * (double)size * WINDOW * (double)iters / (t1 - t0) / 1e6,
                   "MB/s");
    free(sbuf);
    free(rbuf);
}

int main(int argc, char **argv)
{
    int world = 0, benches = BENCH_LATENCY | BENCH_BW | BENCH_BIBW, opt;
    const char *label = "mpi";
    size_t sizes[MAX_SIZES];
    int nsizes = 0;

    CHECK(MPI_Init(&argc, &argv));
    CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world));

    opterr = 0;
    while ((opt = getopt(argc, argv, ":b:s:t:qh")) != -1) {
        switch (opt) {
        case 'b':
            if (strcmp(optarg, "latency") == 0)
                benches = BENCH_LATENCY;
            else if (strcmp(optarg, "bw") == 0)
                benches = BENCH_BW;
            else if (strcmp(optarg, "bibw") == 0)
                benches = BENCH_BIBW;
            else if (strcmp(optarg, "all") == 0)
                benches = BENCH_LATENCY | BENCH_BW | BENCH_BIBW;
            else
                usage_error("unknown benchmark '%s' (latency, bw, bibw or all)", optarg);
            break;
        case 's':
            nsizes = parse_sizes(optarg, sizes);
            break;
        case 't':
            if (!label_ok(optarg))
                usage_error("bad transport label '%s' (letters, digits, - _ . +; under 64)",
                            optarg);
            label = optarg;
            break;
        case 'q':
            quick = 1;
            break;
        case 'h':
            if (rank == 0)
                printf(USAGE);
            MPI_Finalize();
            return 0;
        case ':':
            usage_error("option -%s needs a value", (char[]){(char)optopt, 0});
            break;
        default:
            usage_error("unknown option -%s", (char[]){(char)optopt, 0});
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (world != 2) {
        char n[16];
        snprintf(n, sizeof n, "%d", world);
        usage_error("needs exactly 2 ranks, got %s (mpirun -n 2 ...)", n);
    }

    if (benches & BENCH_LATENCY) {
        size_t def[MAX_SIZES];
        int n = nsizes ? nsizes : default_sizes(LATENCY_DEFAULT_MAX, def);
        for (int i = 0; i < n; i++)
            run_latency(nsizes ? sizes[i] : def[i]);
    }
    if (benches & (BENCH_BW | BENCH_BIBW)) {
        size_t def[MAX_SIZES];
        int n = nsizes ? nsizes : default_sizes(BW_DEFAULT_MAX, def);
        for (int i = 0; i < n && (benches & BENCH_BW); i++)
            run_bw(nsizes ? sizes[i] : def[i]);
        for (int i = 0; i < n && (benches & BENCH_BIBW); i++)
            run_bibw(nsizes ? sizes[i] : def[i]);
    }

    if (rank == 0) {
        printf("[");
        for (int i = 0; i < nrecords; i++)
            printf("%s\n {\"bench\": \"%s\", \"transport\": \"%s\", \"ranks\": 2, \"bytes\": %zu, "
                   "\"value\": %.4f, \"unit\": \"%s\"}",
                   i ? "," : "", records[i].bench, label, records[i].bytes, records[i].value,
                   records[i].unit);
        printf("\n]\n");
        if (fflush(stdout) != 0) {
            fprintf(stderr, "osu_p2p: writing the results failed: %s\n", strerror(errno));
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    CHECK(MPI_Finalize());
    return 0;
}
