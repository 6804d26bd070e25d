/*
 * osu_datatype.c: latency of one message whose layout is a derived datatype,
 * between two MPI ranks, so that any MPI library's datatype engine can be put
 * beside `onecopy bench datatype`.
 *
 * The measurement is osu_latency's: rank 0 MPI_Sends one message, rank 1
 * MPI_Recvs it and sends it back; the value is half the round trip, in us.
 * The message is one element of a strided type, the same on both sides:
 *
 *   vector  MPI_Type_vector(n, 8, 16, MPI_DOUBLE): 64-byte blocks at a 128-byte stride
 *   column  MPI_Type_vector(n, 1, 64, MPI_DOUBLE): one double per row of a
 *           row-major matrix of 64 doubles per row (a 512-byte stride)
 *
 * A size is the payload, the bytes of data that move, not the extent: n =
 * size / 64 blocks for vector, size / 8 rows for column, so the buffers span
 * about 2x (vector) or 64x (column) the size. A size must be a whole number of
 * blocks of every layout measured (64 bytes for vector, 8 for column).
 *
 * Buffers are page-aligned, allocated to the extent and written before timing
 * starts, so no page fault is timed. Each rank sends from one buffer and
 * receives into another, as osu_latency does. The data bytes of the send
 * buffer hold numbered doubles, its gaps a filler that must never travel; the
 * receive buffer starts as another filler. After timing, each rank checks
 * every element it received and that no gap byte changed: a wrong byte names
 * the layout, size and offset and aborts the job (nonzero exit). When the four
 * buffers of a size (two per rank) would not fit in the memory available, that
 * size is skipped with a note on stderr and gives no record.
 *
 * Rank 0 prints one JSON array on stdout:
 *
 *   [{"bench": "datatype", "layout": "vector", "transport": NAME, "ranks": 2, "bytes": N,
 *     "value": X, "unit": "us"}, ...]
 *
 * Usage: mpirun -n 2 osu_datatype [-b vector|column|all] [-s SIZES] [-t NAME] [-q]
 *   -s  comma list of payload sizes in bytes; K (KiB) and M (MiB) suffixes
 *       (default 4K..64M in 4x steps)
 *   -t  the label printed as "transport" (default "mpi")
 *   -q  quick: a tenth of the iterations, for a smoke run
 * A bad option, a size that is not a whole number of blocks, or a world that
 * is not two ranks, exits 2.
 */
#define _POSIX_C_SOURCE 200809L

#include <mpi.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USAGE                                                                          \
    "usage: mpirun -n 2 osu_datatype [-b vector|column|all] [-s SIZES] [-t NAME] [-q]\n" \
    "  SIZES: comma list of payload byte counts, K = KiB, M = MiB (e.g. 4K,1M,64M);\n"  \
    "  multiples of 64 for vector, of 8 for column\n"

#define PROGRAM "osu_datatype"
#include "osu_common.h"

#define TAG_DATA 1
#define DEFAULT_MIN (4UL << 10)
#define DEFAULT_MAX (64UL << 20)
/* Filler bytes: the sender's gaps (must never arrive anywhere) and the receive buffer's start. */
#define SEND_GAP 0x5a
#define RECV_FILL 0xee

/* A strided layout of doubles: blocks of `block` doubles, one every `stride` doubles. */
struct layout {
    const char *name;
    int block;
    int stride;
};

static const struct layout LAYOUTS[] = {
    {"vector", 8, 16},
    {"column", 1, 64},
};
#define NLAYOUTS 2

struct record {
    const char *layout;
    size_t bytes;
    double value;
};

static int quick;
static struct record records[NLAYOUTS * MAX_SIZES];
static int nrecords;

static size_t block_bytes(const struct layout *l)
{
    return (size_t)l->block * sizeof(double);
}

/* Bytes from the first data byte to the last of `nblocks` blocks. */
static size_t extent_bytes(const struct layout *l, size_t nblocks)
{
    return ((nblocks - 1) * (size_t)l->stride + (size_t)l->block) * sizeof(double);
}

/* Where the i-th double of the payload lives, in doubles from the start of the buffer. */
static size_t element_offset(const struct layout *l, size_t i)
{
    return i / (size_t)l->block * (size_t)l->stride + i % (size_t)l->block;
}

/* The i-th double that `sender` puts in a message: distinct for every element and sender, and
 * exact in a double up to 2^52 elements, so a misplaced or stale element cannot pass. */
static double element_value(size_t i, int sender)
{
    return (double)i * 2.0 + (double)sender;
}

/* Iterations as osu_p2p's latency: 10000 round trips up to 8 KiB of payload, then fewer as the
 * size grows, never under 100; a tenth with -q. */
static long latency_iters(size_t size)
{
    long it = size <= 8192 ? 10000 : (long)(10000UL * 8192 / size);
    if (it < 100)
        it = 100;
    if (quick) {
        it /= 10;
        if (it < 2)
            it = 2;
    }
    return it;
}

static long warmup(long iters)
{
    long w = iters / 10;
    return w < 1 ? 1 : w;
}

/* MemAvailable from /proc/meminfo, in bytes; 0 when it cannot be read (then nothing is skipped). */
static unsigned long long available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kib = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            break;
    fclose(f);
    return kib * 1024;
}

static unsigned char *alloc_filled(size_t bytes, int fill)
{
    void *p = NULL;
    long page = sysconf(_SC_PAGESIZE);
    int err = posix_memalign(&p, page > 0 ? (size_t)page : 4096, bytes);
    if (err != 0) {
        fprintf(stderr, PROGRAM ": rank %d: cannot allocate %zu bytes: %s\n", rank, bytes,
                strerror(err));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    memset(p, fill, bytes);
    return p;
}

/* The send buffer: filler everywhere, then this rank's numbered doubles in the blocks. */
static void fill_send(unsigned char *buf, const struct layout *l, size_t nelems)
{
    for (size_t i = 0; i < nelems; i++) {
        double v = element_value(i, rank);
        memcpy(buf + element_offset(l, i) * sizeof(double), &v, sizeof v);
    }
}

/* Checks what this rank received from `sender`: every element, and every gap byte untouched. */
static void verify(const unsigned char *buf, const struct layout *l, size_t size, size_t nblocks,
                   int sender)
{
    size_t blk = block_bytes(l), gap = (size_t)l->stride * sizeof(double) - blk;
    unsigned char fill[64 * sizeof(double)];
    memset(fill, RECV_FILL, sizeof fill);
    for (size_t b = 0; b < nblocks; b++) {
        const unsigned char *p = buf + b * (blk + gap);
        for (int j = 0; j < l->block; j++) {
            size_t i = b * (size_t)l->block + (size_t)j;
            double want = element_value(i, sender), got;
            memcpy(&got, p + (size_t)j * sizeof(double), sizeof got);
            if (memcmp(&got, &want, sizeof got) != 0) {
                fprintf(stderr,
                        PROGRAM ": rank %d: %s at %zu bytes: received data is wrong: "
                        "payload double %zu (buffer offset %zu) is %g, want %g\n",
                        rank, l->name, size, i, (size_t)(p - buf) + (size_t)j * sizeof(double),
                        got, want);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
        }
        if (b + 1 < nblocks && memcmp(p + blk, fill, gap) != 0) {
            size_t k = 0;
            while (p[blk + k] == RECV_FILL)
                k++;
            fprintf(stderr,
                    PROGRAM ": rank %d: %s at %zu bytes: a byte between blocks was written: "
                    "buffer offset %zu is 0x%02x, want 0x%02x\n",
                    rank, l->name, size, (size_t)(p - buf) + blk + k, p[blk + k], RECV_FILL);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
}

static void run_layout(const struct layout *l, size_t size)
{
    size_t nblocks = size / block_bytes(l), nelems = size / sizeof(double);
    size_t extent = extent_bytes(l, nblocks);
    int peer = 1 - rank, skip_size = 0;
    MPI_Datatype type;
    MPI_Aint lb = 0, mpi_extent = 0;

    /* Two buffers on each of two ranks; better no record than the OOM killer. */
    if (rank == 0) {
        unsigned long long avail = available_bytes();
        if (avail != 0 && 4.0 * (double)extent > (double)avail) {
            fprintf(stderr,
                    PROGRAM ": %s at %zu bytes skipped: its 4 buffers of %zu bytes (the extent) "
                    "need %.1f GiB, %.1f GiB available\n",
                    l->name, size, extent, 4.0 * (double)extent / (1 << 30),
                    (double)avail / (1 << 30));
            skip_size = 1;
        }
    }
    CHECK(MPI_Bcast(&skip_size, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (skip_size)
        return;

    CHECK(MPI_Type_vector((int)nblocks, l->block, l->stride, MPI_DOUBLE, &type));
    CHECK(MPI_Type_commit(&type));
    CHECK(MPI_Type_get_extent(type, &lb, &mpi_extent));
    if (lb != 0 || (size_t)mpi_extent != extent) {
        fprintf(stderr, PROGRAM ": rank %d: %s at %zu bytes: MPI says the extent is %ld, not %zu\n",
                rank, l->name, size, (long)mpi_extent, extent);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    unsigned char *sbuf = alloc_filled(extent, SEND_GAP);
    unsigned char *rbuf = alloc_filled(extent, RECV_FILL);
    long iters = latency_iters(size), skip = warmup(iters);
    double t0 = 0.0, t1;
    fill_send(sbuf, l, nelems);

    CHECK(MPI_Barrier(MPI_COMM_WORLD));
    for (long i = 0; i < skip + iters; i++) {
        if (i == skip) {
            CHECK(MPI_Barrier(MPI_COMM_WORLD));
            t0 = MPI_Wtime();
        }
        if (rank == 0) {
            CHECK(MPI_Send(sbuf, 1, type, peer, TAG_DATA, MPI_COMM_WORLD));
            CHECK(MPI_Recv(rbuf, 1, type, peer, TAG_DATA, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        } else {
            CHECK(MPI_Recv(rbuf, 1, type, peer, TAG_DATA, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
            CHECK(MPI_Send(sbuf, 1, type, peer, TAG_DATA, MPI_COMM_WORLD));
        }
    }
    t1 = MPI_Wtime();
    verify(rbuf, l, size, nblocks, peer);
    if (rank == 0) {
        records[nrecords].layout = l->name;
        records[nrecords].bytes = size;
        records[nrecords].value = (t1 - t0) * 1e6 / (2.0 * (double)iters);
        nrecords++;
    }
    CHECK(MPI_Type_free(&type));
    free(sbuf);
    free(rbuf);
}

int main(int argc, char **argv)
{
    int world = 0, which = -1, opt; /* which: index into LAYOUTS, -1 for all */
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
            which = -2;
            if (strcmp(optarg, "all") == 0)
                which = -1;
            for (int i = 0; i < NLAYOUTS; i++)
                if (strcmp(optarg, LAYOUTS[i].name) == 0)
                    which = i;
            if (which == -2)
                usage_error("unknown benchmark '%s' (vector, column or all)", optarg);
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
    if (nsizes == 0)
        for (size_t s = DEFAULT_MIN; s <= DEFAULT_MAX; s *= 4)
            sizes[nsizes++] = s;
    for (int l = 0; l < NLAYOUTS; l++) {
        if (which != -1 && which != l)
            continue;
        for (int i = 0; i < nsizes; i++)
            if (sizes[i] % block_bytes(&LAYOUTS[l]) != 0) {
                char what[96];
                snprintf(what, sizeof what, "%zu bytes is not a whole number of %s blocks (%zu B)",
                         sizes[i], LAYOUTS[l].name, block_bytes(&LAYOUTS[l]));
                usage_error("%s", what);
            }
    }

    for (int l = 0; l < NLAYOUTS; l++) {
        if (which != -1 && which != l)
            continue;
        for (int i = 0; i < nsizes; i++)
            run_layout(&LAYOUTS[l], sizes[i]);
    }

    if (rank == 0) {
        printf("[");
        for (int i = 0; i < nrecords; i++)
            printf("%s\n {\"bench\": \"datatype\", \"layout\": \"%s\", \"transport\": \"%s\", "
                   "\"ranks\": 2, \"bytes\": %zu, \"value\": %.4f, \"unit\": \"us\"}",
                   i ? "," : "", records[i].layout, label, records[i].bytes, records[i].value);
        printf("\n]\n");
        if (fflush(stdout) != 0) {
            fprintf(stderr, PROGRAM ": writing the results failed: %s\n", strerror(errno));
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    CHECK(MPI_Finalize());
    return 0;
}
