/* env.c: the environment. Init_thread, Initialized/Finalized (before, during and after),
 * versions, processor name, time, threads, error classes and strings, added error classes,
 * codes and strings, Alloc_mem/Free_mem, info objects, and the predefined attributes of
 * MPI_COMM_WORLD. No communication but the Finalize barrier: it runs at any size. */
#define _POSIX_C_SOURCE 200809L
#include <unistd.h>

#include "check.h"

static void before_init(void) {
    ck_begin("env.before-init");
    int flag = -1;
    CHECK_MPI(MPI_Initialized(&flag));
    CHECK(flag == 0, "MPI_Initialized before MPI_Init gave %d", flag);
    flag = -1;
    CHECK_MPI(MPI_Finalized(&flag));
    CHECK(flag == 0, "MPI_Finalized before MPI_Init gave %d", flag);
    int v = -1, sv = -1;
    CHECK_MPI(MPI_Get_version(&v, &sv));
    CHECK(v >= 3 && sv >= 0, "MPI_Get_version before MPI_Init gave %d.%d", v, sv);
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = -1;
    CHECK_MPI(MPI_Get_library_version(lib, &len));
    CHECK(len > 0 && (size_t)len == strlen(lib), "MPI_Get_library_version before MPI_Init: len %d, strlen %zu", len, strlen(lib));
    /* Printed once the rank is known. */
}

static void versions(void) {
    ck_begin("env.versions");
    int v = -1, sv = -1;
    CHECK_MPI(MPI_Get_version(&v, &sv));
    CHECK(v >= 3 && sv >= 0 && sv <= 2, "MPI_Get_version gave %d.%d", v, sv);
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    memset(lib, 'x', sizeof lib);
    int len = -1;
    CHECK_MPI(MPI_Get_library_version(lib, &len));
    CHECK(memchr(lib, 0, sizeof lib) != NULL, "MPI_Get_library_version wrote no NUL");
    CHECK(len > 0 && (size_t)len == strlen(lib) && len < MPI_MAX_LIBRARY_VERSION_STRING,
          "MPI_Get_library_version: len %d, strlen %zu", len, strlen(lib));
    if (ck_launched())
        CHECK(strstr(lib, "onecopy") != NULL, "under onecopy run, the library version does not name onecopy: \"%.200s\"", lib);
    ck_end();
}

static void processor_name(void) {
    ck_begin("env.processor-name");
    char name[MPI_MAX_PROCESSOR_NAME];
    memset(name, 'x', sizeof name);
    int len = -1;
    CHECK_MPI(MPI_Get_processor_name(name, &len));
    CHECK(memchr(name, 0, sizeof name) != NULL, "no NUL in the processor name");
    CHECK(len > 0 && (size_t)len == strlen(name) && len < MPI_MAX_PROCESSOR_NAME, "len %d, strlen %zu", len, strlen(name));
    char host[256] = "";
    if (gethostname(host, sizeof host) == 0) {
        host[sizeof host - 1] = 0;
        CHECK(strcmp(host, name) == 0, "processor name \"%s\", host name \"%s\"", name, host);
    }
    ck_end();
}

static void time_functions(void) {
    ck_begin("env.wtime-wtick");
    double tick = MPI_Wtick();
    CHECK(tick > 0.0 && tick <= 1.0, "MPI_Wtick gave %g", tick);
    double t0 = MPI_Wtime(), t1 = t0;
    CHECK(t0 == t0 && t0 >= 0.0, "MPI_Wtime gave %g", t0);
    /* Wait, without sleeping, until the clock moves by at least 5 ms. */
    long spins = 0;
    while (t1 - t0 < 0.005 && spins < 2000000000L) {
        double t = MPI_Wtime();
        CHECK(t >= t1, "MPI_Wtime went back from %.9f to %.9f", t1, t);
        t1 = t;
        spins++;
    }
    CHECK(t1 - t0 >= 0.005, "MPI_Wtime moved only %g s", t1 - t0);
    ck_end();
}

static void threads(int provided) {
    ck_begin("env.threads");
    CHECK(provided >= MPI_THREAD_SINGLE && provided <= MPI_THREAD_MULTIPLE, "MPI_Init_thread provided %d", provided);
    int q = -1;
    CHECK_MPI(MPI_Query_thread(&q));
    CHECK(q == provided, "MPI_Query_thread gave %d, MPI_Init_thread provided %d", q, provided);
    int main_flag = -1;
    CHECK_MPI(MPI_Is_thread_main(&main_flag));
    CHECK(main_flag == 1, "MPI_Is_thread_main gave %d on the thread that called MPI_Init_thread", main_flag);
    int flag = -1;
    CHECK_MPI(MPI_Initialized(&flag));
    CHECK(flag == 1, "MPI_Initialized after MPI_Init gave %d", flag);
    flag = -1;
    CHECK_MPI(MPI_Finalized(&flag));
    CHECK(flag == 0, "MPI_Finalized before MPI_Finalize gave %d", flag);
    ck_end();
}

static const int classes[] = {
    MPI_SUCCESS,   MPI_ERR_BUFFER,  MPI_ERR_COUNT,     MPI_ERR_TYPE,    MPI_ERR_TAG,   MPI_ERR_COMM,
    MPI_ERR_RANK,  MPI_ERR_ROOT,    MPI_ERR_GROUP,     MPI_ERR_OP,      MPI_ERR_ARG,   MPI_ERR_UNKNOWN,
    MPI_ERR_TRUNCATE, MPI_ERR_OTHER, MPI_ERR_INTERN,   MPI_ERR_IN_STATUS, MPI_ERR_PENDING, MPI_ERR_REQUEST,
    MPI_ERR_INFO,  MPI_ERR_INFO_KEY, MPI_ERR_INFO_VALUE, MPI_ERR_INFO_NOKEY, MPI_ERR_NO_MEM, MPI_ERR_NOT_SAME,
    MPI_ERR_UNSUPPORTED_OPERATION, MPI_ERR_WIN, MPI_ERR_KEYVAL, MPI_ERR_SIZE,
};

static void error_classes(void) {
    ck_begin("env.error-class-string");
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        int c = classes[i], cls = -1;
        CHECK_MPI(MPI_Error_class(c, &cls));
        CHECK(cls == c, "MPI_Error_class(%d) gave %d", c, cls);
        char s[MPI_MAX_ERROR_STRING];
        memset(s, 'x', sizeof s);
        int len = -1;
        CHECK_MPI(MPI_Error_string(c, s, &len));
        CHECK(memchr(s, 0, sizeof s) != NULL, "MPI_Error_string(%d) wrote no NUL", c);
        CHECK(len > 0 && (size_t)len == strlen(s) && len < MPI_MAX_ERROR_STRING, "MPI_Error_string(%d): len %d, strlen %zu", c, len, strlen(s));
    }
    char a[MPI_MAX_ERROR_STRING], b[MPI_MAX_ERROR_STRING];
    int la = 0, lb = 0;
    CHECK_MPI(MPI_Error_string(MPI_ERR_TAG, a, &la));
    CHECK_MPI(MPI_Error_string(MPI_ERR_RANK, b, &lb));
    CHECK(strcmp(a, b) != 0, "MPI_ERR_TAG and MPI_ERR_RANK have the same string \"%s\"", a);
    ck_end();
}

static void added_errors(void) {
    ck_begin("env.add-error-class-code-string");
    int cls = -1, cls2 = -1, code = -1, code2 = -1;
    CHECK_MPI(MPI_Add_error_class(&cls));
    CHECK_MPI(MPI_Add_error_class(&cls2));
    CHECK(cls != cls2, "two added classes are both %d", cls);
    CHECK(cls != MPI_SUCCESS && cls2 != MPI_SUCCESS, "an added class is MPI_SUCCESS");
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        CHECK(cls != classes[i] && cls2 != classes[i], "added class %d/%d is predefined class %d", cls, cls2, classes[i]);
    CHECK_MPI(MPI_Add_error_code(cls, &code));
    CHECK_MPI(MPI_Add_error_code(cls, &code2));
    CHECK(code != code2, "two added codes are both %d", code);
    int got = -1;
    CHECK_MPI(MPI_Error_class(code, &got));
    CHECK(got == cls, "MPI_Error_class(added code %d) gave %d, expected %d", code, got, cls);
    got = -1;
    CHECK_MPI(MPI_Error_class(cls2, &got));
    CHECK(got == cls2, "MPI_Error_class(added class %d) gave %d", cls2, got);
    CHECK_MPI(MPI_Add_error_string(code, "the first added code"));
    CHECK_MPI(MPI_Add_error_string(cls, "the added class"));
    char s[MPI_MAX_ERROR_STRING];
    int len = -1;
    CHECK_MPI(MPI_Error_string(code, s, &len));
    CHECK(strcmp(s, "the first added code") == 0 && len == (int)strlen(s), "MPI_Error_string(added code) gave \"%s\" (len %d)", s, len);
    CHECK_MPI(MPI_Error_string(cls, s, &len));
    CHECK(strcmp(s, "the added class") == 0, "MPI_Error_string(added class) gave \"%s\"", s);
    /* Replacing a string. */
    CHECK_MPI(MPI_Add_error_string(code, "replaced"));
    CHECK_MPI(MPI_Error_string(code, s, &len));
    CHECK(strcmp(s, "replaced") == 0, "MPI_Error_string after a second MPI_Add_error_string gave \"%s\"", s);
    /* MPI_LASTUSEDCODE covers the added classes (MPICH's does not cover its added codes, which
     * it numbers above their classes, so codes are not checked). */
    int *last = NULL, flag = 0;
    CHECK_MPI(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_LASTUSEDCODE, &last, &flag));
    CHECK(flag == 1 && last != NULL, "MPI_LASTUSEDCODE: flag %d", flag);
    if (flag && last) {
        CHECK(*last >= cls && *last >= cls2, "MPI_LASTUSEDCODE is %d; added classes %d and %d", *last, cls, cls2);
    }
    ck_end();
}

static void memory(void) {
    ck_begin("env.alloc-free-mem");
    for (MPI_Aint n = 1; n <= (1 << 22); n *= 64) {
        unsigned char *p = NULL;
        CHECK_MPI(MPI_Alloc_mem(n, MPI_INFO_NULL, &p));
        CHECK(p != NULL, "MPI_Alloc_mem(%ld) gave NULL", (long)n);
        if (p) {
            memset(p, 0xa5, (size_t)n);
            CHECK(p[n - 1] == 0xa5, "memory from MPI_Alloc_mem does not hold a write");
            CHECK_MPI(MPI_Free_mem(p));
        }
    }
    double *d = NULL;
    MPI_Info info;
    CHECK_MPI(MPI_Info_create(&info));
    CHECK_MPI(MPI_Alloc_mem((MPI_Aint)(100 * sizeof(double)), info, &d));
    CHECK(d != NULL && ((size_t)d % sizeof(double)) == 0, "MPI_Alloc_mem with an info gave %p", (void *)d);
    if (d) {
        for (int i = 0; i < 100; i++) d[i] = i;
        CHECK_MPI(MPI_Free_mem(d));
    }
    CHECK_MPI(MPI_Info_free(&info));
    ck_end();
}

static int has_key(MPI_Info info, const char *key) {
    int n = 0;
    if (MPI_Info_get_nkeys(info, &n) != MPI_SUCCESS) return 0;
    for (int i = 0; i < n; i++) {
        char k[MPI_MAX_INFO_KEY + 1];
        if (MPI_Info_get_nthkey(info, i, k) == MPI_SUCCESS && strcmp(k, key) == 0) return 1;
    }
    return 0;
}

static void info_objects(void) {
    ck_begin("env.info");
    MPI_Info info = MPI_INFO_NULL, dup = MPI_INFO_NULL;
    CHECK_MPI(MPI_Info_create(&info));
    CHECK(info != MPI_INFO_NULL, "MPI_Info_create gave MPI_INFO_NULL");
    int n = -1;
    CHECK_MPI(MPI_Info_get_nkeys(info, &n));
    CHECK(n == 0, "a new info has %d keys", n);
    CHECK_MPI(MPI_Info_set(info, "alpha", "1"));
    CHECK_MPI(MPI_Info_set(info, "beta", "hello world"));
    CHECK_MPI(MPI_Info_set(info, "alpha", "22"));
    CHECK_MPI(MPI_Info_get_nkeys(info, &n));
    CHECK(n == 2, "after setting alpha, beta, alpha: %d keys", n);
    CHECK(has_key(info, "alpha") && has_key(info, "beta"), "MPI_Info_get_nthkey does not give alpha and beta");
    char k0[MPI_MAX_INFO_KEY + 1] = "", k1[MPI_MAX_INFO_KEY + 1] = "";
    CHECK_MPI(MPI_Info_get_nthkey(info, 0, k0));
    CHECK_MPI(MPI_Info_get_nthkey(info, 1, k1));
    CHECK(strcmp(k0, k1) != 0, "keys 0 and 1 are both \"%s\"", k0);

    char val[MPI_MAX_INFO_VAL + 1];
    int flag = -1, vlen = -1, rc;
    CHECK_MPI(MPI_Info_get_valuelen(info, "beta", &vlen, &flag));
    CHECK(flag == 1 && vlen == 11, "MPI_Info_get_valuelen(beta): flag %d, len %d", flag, vlen);
    flag = -1;
    CHECK_MPI(MPI_Info_get(info, "alpha", MPI_MAX_INFO_VAL, val, &flag));
    CHECK(flag == 1 && strcmp(val, "22") == 0, "MPI_Info_get(alpha): flag %d, \"%s\"", flag, flag == 1 ? val : "");
    flag = -1;
    memset(val, 'x', sizeof val);
    /* MPI-3.1 truncates a value longer than valuelen; MPICH 4.0 refuses it with
     * MPI_ERR_INFO_VALUE instead. Either is accepted. */
    rc = MPI_Info_get(info, "beta", 5, val, &flag);
    if (rc == MPI_SUCCESS)
        CHECK(flag == 1 && strcmp(val, "hello") == 0, "MPI_Info_get(beta, valuelen 5): flag %d, \"%.20s\"", flag, val);
    else
        CHECK(ck_class(rc) == MPI_ERR_INFO_VALUE, "MPI_Info_get(beta, valuelen 5) returned %s", ck_errstr(rc));
    flag = -1;
    CHECK_MPI(MPI_Info_get(info, "gamma", MPI_MAX_INFO_VAL, val, &flag));
    CHECK(flag == 0, "MPI_Info_get(missing key) gave flag %d", flag);
    flag = -1;
    CHECK_MPI(MPI_Info_get_valuelen(info, "gamma", &vlen, &flag));
    CHECK(flag == 0, "MPI_Info_get_valuelen(missing key) gave flag %d", flag);

    CHECK_MPI(MPI_Info_dup(info, &dup));
    CHECK(dup != MPI_INFO_NULL && dup != info, "MPI_Info_dup gave %#x for %#x", (unsigned)dup, (unsigned)info);
    CHECK_MPI(MPI_Info_set(dup, "gamma", "3"));
    CHECK_MPI(MPI_Info_delete(info, "alpha"));
    CHECK_MPI(MPI_Info_get_nkeys(info, &n));
    CHECK(n == 1, "after deleting alpha: %d keys", n);
    CHECK(!has_key(info, "alpha") && has_key(info, "beta"), "after deleting alpha the keys are wrong");
    CHECK_MPI(MPI_Info_get_nkeys(dup, &n));
    CHECK(n == 3, "the duplicate has %d keys, expected alpha, beta, gamma", n);
    flag = -1;
    CHECK_MPI(MPI_Info_get(dup, "alpha", MPI_MAX_INFO_VAL, val, &flag));
    CHECK(flag == 1 && strcmp(val, "22") == 0, "the duplicate's alpha: flag %d", flag);
    flag = -1;
    CHECK_MPI(MPI_Info_get(info, "gamma", MPI_MAX_INFO_VAL, val, &flag));
    CHECK(flag == 0, "gamma set on the duplicate shows on the original");

    CHECK_CLASS(MPI_Info_delete(info, "alpha"), MPI_ERR_INFO_NOKEY);

    CHECK_MPI(MPI_Info_free(&info));
    CHECK(info == MPI_INFO_NULL, "MPI_Info_free left %#x", (unsigned)info);
    CHECK_MPI(MPI_Info_free(&dup));
    CHECK(dup == MPI_INFO_NULL, "MPI_Info_free left %#x", (unsigned)dup);

    CHECK_MPI(MPI_Info_get_nkeys(MPI_INFO_ENV, &n));
    CHECK(n >= 0, "MPI_INFO_ENV has %d keys", n);
    ck_end();
}

static void attributes(void) {
    ck_begin("env.world-attributes");
    int *v = NULL, flag = -1;
    CHECK_MPI(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &v, &flag));
    CHECK(flag == 1 && v != NULL, "MPI_TAG_UB: flag %d", flag);
    if (flag == 1 && v) CHECK(*v >= 32767, "MPI_TAG_UB is %d", *v);
    flag = -1;
    v = NULL;
    CHECK_MPI(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_WTIME_IS_GLOBAL, &v, &flag));
    CHECK(flag == 0 || flag == 1, "MPI_WTIME_IS_GLOBAL: flag %d", flag);
    if (flag == 1) CHECK(v != NULL && (*v == 0 || *v == 1), "MPI_WTIME_IS_GLOBAL is %d", v ? *v : -999);
    flag = -1;
    v = NULL;
    CHECK_MPI(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_HOST, &v, &flag));
    CHECK(flag == 1 && v != NULL, "MPI_HOST: flag %d", flag);
    if (flag == 1 && v) CHECK(*v == MPI_PROC_NULL || (*v >= 0 && *v < ck.size), "MPI_HOST is %d", *v);
    flag = -1;
    v = NULL;
    CHECK_MPI(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_IO, &v, &flag));
    CHECK(flag == 1 && v != NULL, "MPI_IO: flag %d", flag);
    if (flag == 1 && v)
        CHECK(*v == MPI_PROC_NULL || *v == MPI_ANY_SOURCE || (*v >= 0 && *v < ck.size), "MPI_IO is %d", *v);
    ck_end();
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    before_init();
    int before_fails = ck.group_fails;
    int provided = -1;
    int rc = MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) {
        printf("FAIL env.init: MPI_Init_thread returned %d\n", rc);
        return 1;
    }
    ck_setup();
    if (before_fails == 0) printf("PASS env.before-init [rank %d/%d]\n", ck.rank, ck.size);

    versions();
    processor_name();
    time_functions();
    threads(provided);
    error_classes();
    added_errors();
    memory();
    info_objects();
    attributes();

    int status = ck_finish();
    ck_begin("env.after-finalize");
    int flag = -1;
    CHECK(MPI_Initialized(&flag) == MPI_SUCCESS && flag == 1, "MPI_Initialized after MPI_Finalize gave %d", flag);
    flag = -1;
    CHECK(MPI_Finalized(&flag) == MPI_SUCCESS && flag == 1, "MPI_Finalized after MPI_Finalize gave %d", flag);
    int v = -1, sv = -1;
    CHECK(MPI_Get_version(&v, &sv) == MPI_SUCCESS && v >= 3, "MPI_Get_version after MPI_Finalize gave %d.%d", v, sv);
    ck_end();
    return status || ck.total_fails ? 1 : 0;
}
