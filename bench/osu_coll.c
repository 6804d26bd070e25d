/*
 * osu_coll.c: collective latency on N MPI ranks, measured the way the OSU
 * micro-benchmarks (osu_allreduce, osu_bcast, osu_alltoall, osu_allgather,
 * osu_reduce, osu_barrier) define it, so that any MPI library can be put
 * beside `onecopy bench coll`.
 *
 * For each collective and size: a warm-up, an MPI_Barrier, then every rank
 * times ITER calls; the value is the mean over ranks of each rank's time per
 * call, in us. Sizes are bytes of each rank's contribution (for alltoall,
 * bytes sent to each peer); allreduce and reduce sum MPI_DOUBLEs (size / 8 of
 * them), bcast and reduce use root 0; barrier is measured once, as size 0.
 * Buffers are page-aligned and written before timing starts. Rank 0 prints
 * one JSON array on stdout:
 *
 *   [{"bench": "allreduce", "transport": NAME, "ranks": N, "bytes": B, "value": X, "unit": "us"}, ...]
 *
 * Usage: mpirun -n N osu_coll [-b allreduce|bcast|alltoall|allgather|reduce|barrier|all]
 *                             [-s SIZES] [-t NAME] [-q]
 *   -s  comma list of sizes in bytes; K (KiB) and M (MiB) suffixes, e.g. 8,4K,8M
 *   -t  the label printed as "transport" (default "mpi")
 *   -q  quick: a tenth of the iterations, for a smoke run
 * A bad option exits 2.
 */
#define _POSIX_C_SOURCE 200809L

#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static const char *const NAMES[] = {"allreduce", "bcast", "alltoall", "allgather", "reduce", "barrier"};
#define NBENCH 6

static int nranks, quick;

#define PROGRAM "osu_coll"
#define USAGE "usage: mpirun -n N osu_coll [-b BENCH|all] [-s SIZES] [-t NAME] [-q]\n"
#include "osu_common.h"

/* Iterations as the OSU suite scales them: many for small messages, few for large. */
static int iterations(size_t bytes)
{
    int iters = bytes <= 8192 ? 1000 : bytes <= (1 << 20) ? 100 : 20;
    if (quick)
        iters /= 10;
    return iters < 5 ? 5 : iters;
}

static void one_call(int bench, size_t size, char *send, char *recv)
{
    int count = (int)(size / sizeof(double));
    switch (bench) {
    case 0:
        CHECK(MPI_Allreduce(send, recv, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
        break;
    case 1:
        CHECK(MPI_Bcast(recv, (int)size, MPI_CHAR, 0, MPI_COMM_WORLD));
        break;
    case 2:
        CHECK(MPI_Alltoall(send, (int)size, MPI_CHAR, recv, (int)size, MPI_CHAR, MPI_COMM_WORLD));
        break;
    case 3:
        CHECK(MPI_Allgather(send, (int)size, MPI_CHAR, recv, (int)size, MPI_CHAR, MPI_COMM_WORLD));
        break;
    case 4:
        CHECK(MPI_Reduce(send, recv, count, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));
        break;
    default:
        CHECK(MPI_Barrier(MPI_COMM_WORLD));
    }
}

/* The mean over ranks of each rank's microseconds per call. */
static double measure(int bench, size_t size, char *send, char *recv)
{
    int iters = iterations(size), warmup = iters / 10 + 1;
    for (int i = 0; i < warmup; i++)
        one_call(bench, size, send, recv);
    CHECK(MPI_Barrier(MPI_COMM_WORLD));
    double start = MPI_Wtime();
    for (int i = 0; i < iters; i++)
        one_call(bench, size, send, recv);
    double mine = (MPI_Wtime() - start) * 1e6 / iters, total = 0;
    CHECK(MPI_Reduce(&mine, &total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));
    return total / nranks;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    int which = -1; /* all */
    const char *label = "mpi";
    size_t sizes[MAX_SIZES] = {8, 1024, 65536, 1 << 20};
    int nsizes = 4, opt;
    while ((opt = getopt(argc, argv, "b:s:t:q")) != -1) {
        switch (opt) {
        case 'b':
            if (strcmp(optarg, "all") == 0) {
                which = -1;
                break;
            }
            which = -2;
            for (int b = 0; b < NBENCH; b++)
                if (strcmp(optarg, NAMES[b]) == 0)
                    which = b;
            if (which == -2)
                usage_error("unknown benchmark '%s'", optarg);
            break;
        case 's':
            /* "0" alone: the barrier's only size. */
            nsizes = strcmp(optarg, "0") == 0 ? 0 : parse_sizes(optarg, sizes);
            break;
        case 't':
            label = optarg;
            break;
        case 'q':
            quick = 1;
            break;
        default:
            usage_error("bad option%s", "");
        }
    }
    size_t largest = 8;
    for (int i = 0; i < nsizes; i++)
        if (sizes[i] > largest)
            largest = sizes[i];
    size_t bytes = largest * (size_t)nranks;
    long page = sysconf(_SC_PAGESIZE);
    char *send = NULL, *recv = NULL;
    if (posix_memalign((void **)&send, (size_t)page, bytes) || posix_memalign((void **)&recv, (size_t)page, bytes)) {
        fprintf(stderr, "osu_coll: cannot allocate %zu bytes\n", bytes);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (size_t i = 0; i < bytes / sizeof(double); i++)
        ((double *)send)[i] = (double)(i % 1000) * 0.5;
    memset(recv, 0, bytes);

    int first = 1;
    if (rank == 0)
        printf("[\n");
    for (int b = 0; b < NBENCH; b++) {
        if (which != -1 && which != b)
            continue;
        int n = b == 5 ? 1 : nsizes;
        for (int i = 0; i < n; i++) {
            size_t size = b == 5 ? 0 : sizes[i];
            double us = measure(b, size, send, recv);
            if (rank == 0) {
                printf("%s  {\"bench\": \"%s\", \"transport\": \"%s\", \"ranks\": %d, \"bytes\": %zu, "
                       "\"value\": %.4f, \"unit\": \"us\"}",
                       first ? "" : ",\n", NAMES[b], label, nranks, size, us);
                first = 0;
            }
        }
    }
    if (rank == 0)
        printf("\n]\n");
    free(send);
    free(recv);
    MPI_Finalize();
    return 0;
}
