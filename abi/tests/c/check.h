/* check.h: what every program of the C suite shares.
 *
 * A program is a sequence of check groups: ck_begin("name"), then CHECK(...) and CHECK_MPI(...)
 * as many as it likes, then ck_end(). Every rank prints, for each group, one line
 * `PASS name [rank R/N]` when all its checks held, and one `FAIL name: ...` line per failed
 * check (at most CK_MAX_FAILS per group and rank). A check never changes the control flow, so a
 * failure on one rank does not leave the others waiting for a message that never comes.
 * ck_finish() finalizes MPI and gives the exit status: 0 if nothing failed on this rank.
 *
 * The programs are correct MPI and pass under MPICH (mpicc.mpich, mpiexec.mpich) as well as
 * under onecopy; ck_onecopy() says which library runs, ck_launched() whether `onecopy run`
 * started the job. */
#ifndef CK_CHECK_H
#define CK_CHECK_H

#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* MPICH's prototypes declare status arguments as arrays (MPI_Status array_of_statuses[]), and
 * GCC 11 and later take MPI_STATUSES_IGNORE, ((MPI_Status *)1), for a region of size 0 and warn
 * under -Wall: a false positive that -Werror would make fatal. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif

#define CK_MAX_FAILS 8

struct ck_state {
    int rank, size;
    const char *group;
    int group_fails, total_fails;
    int onecopy;
};

static struct ck_state ck = {-1, 0, "setup", 0, 0, 0};

static inline void ck_vfail(int line, const char *fmt, va_list ap) {
    ck.group_fails++;
    ck.total_fails++;
    if (ck.group_fails > CK_MAX_FAILS) return;
    char text[1024];
    vsnprintf(text, sizeof text, fmt, ap);
    if (ck.group_fails == CK_MAX_FAILS)
        printf("FAIL %s: rank %d/%d line %d: %s (further failures of this group on this rank not shown)\n",
               ck.group, ck.rank, ck.size, line, text);
    else
        printf("FAIL %s: rank %d/%d line %d: %s\n", ck.group, ck.rank, ck.size, line, text);
    fflush(stdout);
}

__attribute__((format(printf, 2, 3))) static inline void ck_fail(int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ck_vfail(line, fmt, ap);
    va_end(ap);
}

/* CHECK(condition, printf-format, args...): a failed condition is one FAIL line. */
#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        if (!(cond)) ck_fail_cond(__LINE__, #cond, __VA_ARGS__);                               \
    } while (0)

__attribute__((format(printf, 3, 4))) static inline void ck_fail_cond(int line, const char *cond, const char *fmt, ...) {
    char text[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    ck_fail(line, "check `%s` failed: %s", cond, text);
}

/* The error string of `code`, for messages. */
static inline const char *ck_errstr(int code) {
    static char text[MPI_MAX_ERROR_STRING + 64];
    int len = 0, cls = -1;
    char s[MPI_MAX_ERROR_STRING];
    if (MPI_Error_string(code, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "(no error string)");
    if (MPI_Error_class(code, &cls) != MPI_SUCCESS) cls = -1;
    snprintf(text, sizeof text, "code %d, class %d: %s", code, cls, s);
    return text;
}

/* CHECK_MPI(call): the call returns MPI_SUCCESS. Evaluates to the return code. */
#define CHECK_MPI(call) ck_mpi((call), __LINE__, #call)

static inline int ck_mpi(int rc, int line, const char *what) {
    if (rc != MPI_SUCCESS) ck_fail(line, "%s returned %s", what, ck_errstr(rc));
    return rc;
}

/* The error class of `rc` (-1 if MPI_Error_class fails). */
static inline int ck_class(int rc) {
    int cls = -1;
    if (MPI_Error_class(rc, &cls) != MPI_SUCCESS) return -1;
    return cls;
}

/* CHECK_CLASS(call, class): the call fails with an error of that class. Evaluates to the code. */
#define CHECK_CLASS(call, cls) ck_expect_class((call), (cls), 0, __LINE__, #call, #cls)
/* CHECK_CLASS2(call, class, other): either class is accepted (where MPI allows both). */
#define CHECK_CLASS2(call, cls, other) ck_expect_class((call), (cls), (other), __LINE__, #call, #cls)

static inline int ck_expect_class(int rc, int cls, int other, int line, const char *what, const char *name) {
    if (rc == MPI_SUCCESS) {
        ck_fail(line, "%s returned MPI_SUCCESS, expected an error of class %s (%d)", what, name, cls);
        return rc;
    }
    int got = ck_class(rc);
    if (got != cls && (other == 0 || got != other))
        ck_fail(line, "%s returned %s, expected class %s (%d)", what, ck_errstr(rc), name, cls);
    return rc;
}

static inline void ck_begin(const char *group) {
    ck.group = group;
    ck.group_fails = 0;
}

static inline void ck_end(void) {
    if (ck.group_fails == 0) printf("PASS %s [rank %d/%d]\n", ck.group, ck.rank, ck.size);
    fflush(stdout);
    ck.group = "(between groups)";
    ck.group_fails = 0;
}

/* A group that does not apply at this size passes as skipped. */
static inline void ck_skip(const char *group, const char *why) {
    printf("PASS %s: skipped-by-size (%s) [rank %d/%d]\n", group, why, ck.rank, ck.size);
    fflush(stdout);
}

/* Whether the library is onecopy's (its version string names it). */
static inline int ck_is_onecopy_library(void) {
    char v[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (MPI_Get_library_version(v, &len) != MPI_SUCCESS) return 0;
    return strstr(v, "onecopy") != NULL;
}

/* Whether `onecopy run` started this job. */
static inline int ck_launched(void) { return getenv("ONECOPY_RANK") != NULL; }

static inline int ck_onecopy(void) { return ck.onecopy; }

/* After MPI_Init: rank, size, MPI_ERRORS_RETURN on MPI_COMM_WORLD, unbuffered lines. */
static inline void ck_setup(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    MPI_Comm_rank(MPI_COMM_WORLD, &ck.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ck.size);
    ck.onecopy = ck_is_onecopy_library();
    int rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) ck_fail(__LINE__, "MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN) returned %d", rc);
}

static inline void ck_init(int *argc, char ***argv) {
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS) {
        printf("FAIL init: MPI_Init returned %d\n", rc);
        exit(1);
    }
    ck_setup();
}

/* Finalizes MPI; the exit status for main. */
static inline int ck_finish(void) {
    int rc = MPI_Finalize();
    if (rc != MPI_SUCCESS) {
        ck.group = "finalize";
        ck_fail(__LINE__, "MPI_Finalize returned %d", rc);
    }
    fflush(stdout);
    return ck.total_fails ? 1 : 0;
}

/* Deterministic test data: byte `i` of a message from `rank` with salt `salt`. */
static inline unsigned char ck_byte(int rank, long i, int salt) {
    return (unsigned char)((i * 131 + rank * 17 + salt * 7 + (i >> 8) * 3) & 0xff);
}

static inline void ck_fill(unsigned char *p, long n, int rank, int salt) {
    for (long i = 0; i < n; i++) p[i] = ck_byte(rank, i, salt);
}

/* Checks `n` bytes of `p` against ck_fill(rank, salt); reports the first difference. */
#define CHECK_FILL(p, n, rank, salt) ck_check_fill((p), (n), (rank), (salt), __LINE__, #p)

static inline void ck_check_fill(const unsigned char *p, long n, int rank, int salt, int line, const char *what) {
    for (long i = 0; i < n; i++) {
        if (p[i] != ck_byte(rank, i, salt)) {
            ck_fail(line, "%s[%ld] = %d, expected %d (from rank %d, %ld bytes)", what, i, p[i],
                    ck_byte(rank, i, salt), rank, n);
            return;
        }
    }
}

/* A status whose fields are garbage, to see which ones a call writes. */
static inline MPI_Status ck_status(void) {
    MPI_Status s;
    memset(&s, 0x5a, sizeof s);
    return s;
}

/* Any tag, for CHECK_STATUS. */
#define CK_ANY (-12345)

/* CHECK_STATUS(status, source, tag, datatype, count): MPI_SOURCE, MPI_TAG (unless CK_ANY) and
 * MPI_Get_count with the datatype. */
#define CHECK_STATUS(st, src, tag, dt, n) ck_check_status(&(st), (src), (tag), (dt), (n), __LINE__, #st)

static inline void ck_check_status(const MPI_Status *st, int src, int tag, MPI_Datatype dt, int n, int line, const char *what) {
    if (st->MPI_SOURCE != src) ck_fail(line, "%s.MPI_SOURCE = %d, expected %d", what, st->MPI_SOURCE, src);
    if (tag != CK_ANY && st->MPI_TAG != tag) ck_fail(line, "%s.MPI_TAG = %d, expected %d", what, st->MPI_TAG, tag);
    int count = -777;
    int rc = MPI_Get_count(st, dt, &count);
    if (rc != MPI_SUCCESS) ck_fail(line, "MPI_Get_count(%s) returned %s", what, ck_errstr(rc));
    else if (count != n) ck_fail(line, "MPI_Get_count(%s) = %d, expected %d", what, count, n);
}

/* Seconds a polling loop (MPI_Test and friends) may take before it counts as a failure. */
#define CK_POLL_SECONDS 5.0

#endif
