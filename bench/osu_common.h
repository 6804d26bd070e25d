/*
 * osu_common.h: what the osu_*.c programs share: the MPI error check, usage errors, size lists
 * and transport labels. Define PROGRAM (the program's name, a string) and USAGE (its usage text,
 * ending in a newline) before including it.
 */
#ifndef OSU_COMMON_H
#define OSU_COMMON_H

#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIZES 64
#define MAX_MESSAGE (1UL << 30)
#define MAX_LABEL 64

static int rank;

/* Every MPI call goes through this: a failure names the call and aborts the job. */
#define CHECK(call)                                                                     \
    do {                                                                                \
        int rc_ = (call);                                                               \
        if (rc_ != MPI_SUCCESS) {                                                       \
            char msg_[MPI_MAX_ERROR_STRING];                                            \
            int len_ = 0;                                                               \
            MPI_Error_string(rc_, msg_, &len_);                                         \
            fprintf(stderr, PROGRAM ": rank %d: %s failed: %s\n", rank, #call, msg_);   \
            MPI_Abort(MPI_COMM_WORLD, 1);                                               \
        }                                                                               \
    } while (0)

static void usage_error(const char *fmt, const char *arg)
{
    if (rank == 0) {
        fprintf(stderr, PROGRAM ": ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, "\n" USAGE);
    }
    MPI_Finalize();
    exit(2);
}

/* "4K" -> 4096; returns 0 on anything that is not a size from 1 byte to 1 GiB. */
static size_t parse_size(const char *s, size_t len)
{
    size_t value = 0, mult = 1, i = 0;
    if (len == 0)
        return 0;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (value > MAX_MESSAGE)
            return 0;
        value = value * 10 + (size_t)(s[i] - '0');
    }
    if (i == 0)
        return 0;
    if (i < len) {
        char c = s[i++];
        if (c == 'K' || c == 'k')
            mult = 1024;
        else if (c == 'M' || c == 'm')
            mult = 1024 * 1024;
        else
            return 0;
        if (i + 1 < len && (s[i] == 'i' || s[i] == 'I') && (s[i + 1] == 'B' || s[i + 1] == 'b'))
            i += 2; /* 4KiB */
    }
    if (i != len || value == 0 || value > MAX_MESSAGE / mult)
        return 0;
    return value * mult;
}

/* A comma list of sizes into `out` (MAX_SIZES at most); a bad one is a usage error. */
static int parse_sizes(const char *list, size_t *out)
{
    int n = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        size_t v = parse_size(p, len);
        if (v == 0)
            usage_error("bad size in '%s' (want e.g. 1,4K,1M; each from 1 byte to 1 GiB)", list);
        if (n == MAX_SIZES)
            usage_error("too many sizes in '%s' (64 at most)", list);
        out[n++] = v;
        if (!comma)
            break;
        p = comma + 1;
    }
    return n;
}

/* A "transport" label goes into JSON unescaped, so it is kept to a safe alphabet. */
static inline int label_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= MAX_LABEL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '+'))
            return 0;
    }
    return 1;
}

#endif
