/*
 * test_wal.c - unit tests for lib/storage/wal.c and lib/storage/wal_replay.c.
 *
 * Plain C, no framework: prints one line per failed check, then
 * "N passed, N failed" and exits nonzero if anything failed.  Every test
 * runs in its own mkdtemp directory under $TMPDIR (or /tmp), removed after.
 *
 * Unwritable directory: tests usually run as root, for whom permission bits
 * do not stop writes.  Two cases are used instead:
 *   - a data-dir path whose parent is a regular file (fails with ENOTDIR for
 *     everyone, root included);
 *   - a chmod 0555 directory opened by an unprivileged process: when running
 *     as root, a forked child drops to uid/gid 65534 (nobody) first.
 * ENOSPC is simulated with RLIMIT_FSIZE (SIGXFSZ ignored), which makes
 * writes past the limit fail with EFBIG - same code path as ENOSPC.
 * fdatasync is interposed by this test binary (dht_wal is linked statically,
 * so the library's calls bind to the definition below): it can be slowed
 * down, to make group commit independent of how fast the disk under $TMPDIR
 * syncs (tmpfs syncs instantly, leaving little to batch), or made to fail
 * with EIO, to test the sticky failed state.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "storage/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ fdatasync */

static atomic_int sync_delay_us; /* sleep before each fdatasync */
static atomic_int sync_fail;     /* errno to fail fdatasync with, 0 = real */

int fdatasync(int fd)
{
    int e = atomic_load(&sync_fail);
    if (e) {
        errno = e;
        return -1;
    }
    int us = atomic_load(&sync_delay_us);
    if (us > 0) {
        struct timespec ts = {0, (long)us * 1000};
        nanosleep(&ts, NULL);
    }
    return (int)syscall(SYS_fdatasync, fd);
}

/* ------------------------------------------------------------ harness */

static int n_passed, n_failed;
static int cur_failed;
static const char *cur_name;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "FAIL %s (%s:%d): %s\n", cur_name, __FILE__, __LINE__, #cond); \
            cur_failed = 1;                                                               \
        }                                                                                 \
    } while (0)

#define CHECKF(cond, ...)                                                                 \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "FAIL %s (%s:%d): %s: ", cur_name, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            cur_failed = 1;                                                               \
        }                                                                                 \
    } while (0)

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "warning: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* log sink capture */
static pthread_mutex_t cap_mu = PTHREAD_MUTEX_INITIALIZER;
static int cap_count[3];
static char cap_last[3][1024];

static void capture_log(void *arg, dht_wal_log_level lvl, const char *msg)
{
    (void)arg;
    pthread_mutex_lock(&cap_mu);
    cap_count[lvl]++;
    snprintf(cap_last[lvl], sizeof cap_last[lvl], "%s", msg);
    pthread_mutex_unlock(&cap_mu);
    if (getenv("WAL_TEST_VERBOSE"))
        fprintf(stderr, "  [log %d] %s\n", (int)lvl, msg);
}

static void cap_reset(void)
{
    pthread_mutex_lock(&cap_mu);
    memset(cap_count, 0, sizeof cap_count);
    memset(cap_last, 0, sizeof cap_last);
    pthread_mutex_unlock(&cap_mu);
}

static int cap_get(dht_wal_log_level lvl)
{
    pthread_mutex_lock(&cap_mu);
    int n = cap_count[lvl];
    pthread_mutex_unlock(&cap_mu);
    return n;
}

static void run_test(const char *name, void (*fn)(const char *dir))
{
    const char *base = getenv("TMPDIR");
    char dir[4096];
    if (!base || !*base)
        base = "/tmp";
    snprintf(dir, sizeof dir, "%s/test_wal.XXXXXX", base);
    cur_name = name;
    cur_failed = 0;
    cap_reset();
    if (!mkdtemp(dir)) {
        fprintf(stderr, "FAIL %s: mkdtemp(%s): %s\n", name, dir, strerror(errno));
        n_failed++;
        return;
    }
    fn(dir);
    chmod(dir, 0700);
    rm_rf(dir);
    if (cur_failed) {
        n_failed++;
        fprintf(stderr, "not ok - %s\n", name);
    } else {
        n_passed++;
        printf("ok - %s\n", name);
    }
    fflush(stdout);
}

/* ------------------------------------------------------------ helpers */

typedef struct {
    int64_t key, value;
    uint64_t counter, writer;
} rec_t;

typedef struct {
    rec_t *v;
    size_t n, cap;
} recs_t;

static void collect(void *arg, int64_t key, int64_t value, uint64_t counter, uint64_t writer)
{
    recs_t *r = arg;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 256;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        if (!r->v)
            abort();
    }
    r->v[r->n++] = (rec_t){key, value, counter, writer};
}

static void recs_free(recs_t *r)
{
    free(r->v);
    memset(r, 0, sizeof *r);
}

static void path_join(char *out, size_t len, const char *dir, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static bool exists(const char *dir, const char *name)
{
    char p[4096];
    struct stat st;
    path_join(p, sizeof p, dir, name);
    return stat(p, &st) == 0;
}

static long long file_size(const char *dir, const char *name)
{
    char p[4096];
    struct stat st;
    path_join(p, sizeof p, dir, name);
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* What a segment holds: its size less the zeros it was prefilled with,
 * in whole records (the rule of wal.c's used_length, kept apart here so
 * that a change there shows). */
static long long log_used(const char *dir, const char *name)
{
    char p[4096];
    path_join(p, sizeof p, dir, name);
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        return -1;
    long long last = 0, off = 0; /* one past the last nonzero byte */
    int c;
    while ((c = getc(f)) != EOF) {
        off++;
        if (c != 0)
            last = off;
    }
    fclose(f);
    long long used = (last + DHT_WAL_RECORD_SIZE - 1) / DHT_WAL_RECORD_SIZE * DHT_WAL_RECORD_SIZE;
    return used < off ? used : off;
}

#define SEG1 "log.0000000000000001"
#define SEG2 "log.0000000000000002"
#define SEG3 "log.0000000000000003"
#define SNAP2 "snap.0000000000000002"
#define SNAP3 "snap.0000000000000003"
#define R DHT_WAL_RECORD_SIZE

static dht_wal *open_ok(const char *dir, dht_fsync_mode mode, recs_t *recs)
{
    char err[512];
    dht_wal *w = NULL;
    int r = dht_wal_open(dir, mode, recs ? collect : NULL, recs, &w, err, sizeof err);
    CHECKF(r == 0 && w, "open %s: %d %s", dir, r, err);
    return w;
}

static void append_n(dht_wal *w, int from, int to, uint64_t writer)
{
    for (int i = from; i < to; i++) {
        int r = dht_wal_append(w, i, (int64_t)i * 10, (uint64_t)i + 1, writer);
        CHECKF(r == 0, "append %d: %d", i, r);
    }
}

static void check_seq(const recs_t *recs, int from, int to, uint64_t writer)
{
    CHECKF(recs->n == (size_t)(to - from), "got %zu records, want %d", recs->n, to - from);
    for (size_t k = 0; k < recs->n && k < (size_t)(to - from); k++) {
        const rec_t *x = &recs->v[k];
        int64_t i = from + (int64_t)k;
        if (x->key != i || x->value != i * 10 || x->counter != (uint64_t)i + 1 ||
            x->writer != writer) {
            CHECKF(0, "record %zu = (%" PRId64 ",%" PRId64 ",%" PRIu64 ",%" PRIu64 ")", k, x->key,
                   x->value, x->counter, x->writer);
            break;
        }
    }
}

static void rewrite_file(const char *dir, const char *name, long long truncate_to,
                         const void *append, size_t alen)
{
    char p[4096];
    path_join(p, sizeof p, dir, name);
    int fd = open(p, O_WRONLY);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    if (truncate_to >= 0)
        CHECK(ftruncate(fd, truncate_to) == 0);
    if (alen) {
        off_t end = lseek(fd, 0, SEEK_END);
        CHECK(pwrite(fd, append, alen, end) == (ssize_t)alen);
    }
    close(fd);
}

static void flip_byte(const char *dir, const char *name, off_t off)
{
    char p[4096];
    unsigned char c;
    path_join(p, sizeof p, dir, name);
    int fd = open(p, O_RDWR);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(pread(fd, &c, 1, off) == 1);
    c ^= 0x40;
    CHECK(pwrite(fd, &c, 1, off) == 1);
    close(fd);
}

/* ------------------------------------------------------------ pure tests */

static void t_crc32c(const char *dir)
{
    (void)dir;
    CHECK(dht_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(dht_crc32c(0, "", 0) == 0);
    uint32_t c = dht_crc32c(0, "1234", 4);
    CHECK(dht_crc32c(c, "56789", 5) == 0xE3069283u);
    uint8_t zeros[32] = {0};
    CHECK(dht_crc32c(0, zeros, 32) == 0x8A9136AAu); /* RFC 3720 B.4 */
}

static void t_mode_parse(const char *dir)
{
    (void)dir;
    dht_fsync_mode m = DHT_FSYNC_NEVER;
    CHECK(dht_fsync_mode_parse("always", &m) == 0 && m == DHT_FSYNC_ALWAYS);
    CHECK(dht_fsync_mode_parse("batch", &m) == 0 && m == DHT_FSYNC_BATCH);
    CHECK(dht_fsync_mode_parse("never", &m) == 0 && m == DHT_FSYNC_NEVER);
    CHECK(dht_fsync_mode_parse("Always", &m) == -EINVAL && m == DHT_FSYNC_NEVER);
    CHECK(dht_fsync_mode_parse("", &m) == -EINVAL);
    CHECK(dht_fsync_mode_parse(NULL, &m) == -EINVAL);
    CHECK(strcmp(dht_fsync_mode_name(DHT_FSYNC_BATCH), "batch") == 0);
}

static void t_parse(const char *dir)
{
    (void)dir;
    uint8_t buf[10 * R];
    char err[256];
    size_t v = 99;
    recs_t recs = {0};
    for (int i = 0; i < 10; i++)
        dht_wal_encode(buf + i * R, i, i * 10, (uint64_t)i + 1, 3);

    CHECK(dht_wal_parse(NULL, 0, collect, &recs, &v, err, sizeof err) == DHT_WAL_PARSE_OK);
    CHECK(v == 0 && recs.n == 0 && err[0] == '\0');

    CHECK(dht_wal_parse(buf, sizeof buf, collect, &recs, &v, err, sizeof err) ==
          DHT_WAL_PARSE_OK);
    CHECK(v == sizeof buf);
    check_seq(&recs, 0, 10, 3);
    recs_free(&recs);

    /* partial last record */
    CHECK(dht_wal_parse(buf, 9 * R + 7, collect, &recs, &v, err, sizeof err) ==
          DHT_WAL_PARSE_TORN);
    CHECK(v == 9 * R && recs.n == 9);
    CHECKF(strstr(err, "offset 396") != NULL, "%s", err);
    recs_free(&recs);

    /* bad checksum in the last record = torn */
    uint8_t b2[10 * R];
    memcpy(b2, buf, sizeof b2);
    b2[9 * R + 12] ^= 1;
    CHECK(dht_wal_parse(b2, sizeof b2, NULL, NULL, &v, err, sizeof err) == DHT_WAL_PARSE_TORN);
    CHECK(v == 9 * R);

    /* bad record in the middle = corrupt, valid prefix still reported */
    memcpy(b2, buf, sizeof b2);
    b2[3 * R + 20] ^= 1;
    CHECK(dht_wal_parse(b2, sizeof b2, collect, &recs, &v, err, sizeof err) ==
          DHT_WAL_PARSE_CORRUPT);
    CHECK(v == 3 * R && recs.n == 3);
    CHECKF(strstr(err, "byte offset 132") && strstr(err, "checksum"), "%s", err);
    recs_free(&recs);

    /* garbage then valid data at a misaligned offset = corrupt */
    uint8_t b3[3 * R];
    memset(b3, 0xEE, sizeof b3);
    dht_wal_encode(b3 + R + 5, 1, 2, 3, 4);
    CHECK(dht_wal_parse(b3, sizeof b3, NULL, NULL, &v, err, sizeof err) ==
          DHT_WAL_PARSE_CORRUPT);
    CHECK(v == 0);

    /* invalid tail longer than any single write = corrupt */
    size_t big = DHT_WAL_MAX_TORN_BYTES + 2 * R;
    uint8_t *b4 = calloc(1, big);
    CHECK(b4 != NULL);
    if (b4) {
        dht_wal_encode(b4, 1, 2, 3, 4);
        CHECK(dht_wal_parse(b4, big, NULL, NULL, &v, err, sizeof err) == DHT_WAL_PARSE_CORRUPT);
        CHECK(v == R);
        CHECK(dht_wal_parse(b4, DHT_WAL_MAX_TORN_BYTES + R, NULL, NULL, &v, NULL, 0) ==
              DHT_WAL_PARSE_TORN);
        free(b4);
    }
}

/* ------------------------------------------------------------ modes */

static void append_reopen(const char *dir, dht_fsync_mode mode)
{
    recs_t recs = {0};
    dht_wal *w = open_ok(dir, mode, &recs);
    if (!w)
        return;
    CHECK(dht_wal_fresh(w));
    CHECK(recs.n == 0);
    append_n(w, 0, 200, 9);
    CHECK(dht_wal_log_bytes(w) == 200 * R);
    dht_wal_stats st;
    dht_wal_get_stats(w, &st);
    CHECK(st.appends == 200 && st.append_errors == 0);
    if (mode == DHT_FSYNC_NEVER)
        CHECK(st.fsyncs == 0);
    else if (mode == DHT_FSYNC_ALWAYS)
        CHECK(st.fsyncs == 200);
    else
        CHECK(st.fsyncs >= 1 && st.fsyncs <= 200);
    dht_wal_close(w);
    CHECK(log_used(dir, SEG1) == 200 * R);
    CHECK(file_size(dir, SEG1) >= 200 * R);

    w = open_ok(dir, mode, &recs);
    if (!w)
        return;
    CHECK(!dht_wal_fresh(w));
    check_seq(&recs, 0, 200, 9);
    CHECK(dht_wal_log_bytes(w) == 200 * R);
    append_n(w, 200, 250, 9);
    dht_wal_close(w);
    recs_free(&recs);

    w = open_ok(dir, mode, &recs);
    check_seq(&recs, 0, 250, 9);
    dht_wal_close(w);
    recs_free(&recs);
    CHECK(cap_get(DHT_WAL_LOG_WARN) == 0 && cap_get(DHT_WAL_LOG_ERROR) == 0);
}

static void t_mode_always(const char *dir) { append_reopen(dir, DHT_FSYNC_ALWAYS); }
static void t_mode_batch(const char *dir) { append_reopen(dir, DHT_FSYNC_BATCH); }
static void t_mode_never(const char *dir) { append_reopen(dir, DHT_FSYNC_NEVER); }

static void t_fresh_flag(const char *dir)
{
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/a/b/data", dir); /* mkdir -p */
    dht_wal *w = open_ok(sub, DHT_FSYNC_ALWAYS, NULL);
    if (!w)
        return;
    CHECK(dht_wal_fresh(w));
    dht_wal_close(w);
    w = open_ok(sub, DHT_FSYNC_ALWAYS, NULL);
    CHECK(w && !dht_wal_fresh(w));
    dht_wal_close(w);
    /* an existing but empty directory is a fresh one too */
    w = open_ok(dir, DHT_FSYNC_NEVER, NULL);
    CHECK(w && dht_wal_fresh(w));
    dht_wal_close(w);
}

/* ------------------------------------------------------------ group commit */

#define GC_THREADS 8
#define GC_PER 1000

struct gc_arg {
    dht_wal *w;
    int t;
    int errors;
};

static void *gc_thread(void *p)
{
    struct gc_arg *a = p;
    for (int i = 0; i < GC_PER; i++)
        if (dht_wal_append(a->w, (int64_t)a->t * GC_PER + i, i, (uint64_t)i + 1,
                           (uint64_t)a->t) != 0)
            a->errors++;
    return NULL;
}

static void t_group_commit(const char *dir)
{
    dht_wal *w = open_ok(dir, DHT_FSYNC_BATCH, NULL);
    if (!w)
        return;
    atomic_store(&sync_delay_us, 100); /* a disk that takes >= 100 us per sync */
    pthread_t th[GC_THREADS];
    struct gc_arg args[GC_THREADS];
    for (int t = 0; t < GC_THREADS; t++) {
        args[t] = (struct gc_arg){w, t, 0};
        CHECK(pthread_create(&th[t], NULL, gc_thread, &args[t]) == 0);
    }
    for (int t = 0; t < GC_THREADS; t++) {
        pthread_join(th[t], NULL);
        CHECK(args[t].errors == 0);
    }
    atomic_store(&sync_delay_us, 0);
    dht_wal_stats st;
    dht_wal_get_stats(w, &st);
    printf("   group commit: %" PRIu64 " appends, %" PRIu64 " writes, %" PRIu64 " fsyncs\n",
           st.appends, st.writes, st.fsyncs);
    CHECK(st.appends == GC_THREADS * GC_PER);
    CHECKF(st.fsyncs < st.appends, "fsyncs %" PRIu64 " appends %" PRIu64, st.fsyncs, st.appends);
    CHECK(dht_wal_log_bytes(w) == (uint64_t)GC_THREADS * GC_PER * R);
    dht_wal_close(w);

    recs_t recs = {0};
    w = open_ok(dir, DHT_FSYNC_BATCH, &recs);
    dht_wal_close(w);
    CHECK(recs.n == GC_THREADS * GC_PER);
    int next[GC_THREADS] = {0};
    bool ok = true;
    for (size_t k = 0; k < recs.n; k++) {
        rec_t *x = &recs.v[k];
        int t = (int)x->writer;
        if (t < 0 || t >= GC_THREADS || x->value != next[t] ||
            x->key != (int64_t)t * GC_PER + next[t] || x->counter != (uint64_t)next[t] + 1) {
            ok = false;
            break;
        }
        next[t]++;
    }
    CHECK(ok); /* every thread's records, each in its own append order */
    for (int t = 0; t < GC_THREADS; t++)
        CHECK(next[t] == GC_PER);
    recs_free(&recs);
}

/* ------------------------------------------------------------ damage */

static void t_torn_tail(const char *dir)
{
    recs_t recs = {0};
    dht_wal *w = open_ok(dir, DHT_FSYNC_ALWAYS, NULL);
    if (!w)
        return;
    append_n(w, 0, 10, 1);
    dht_wal_close(w);

    /* crash mid-append: last record cut short, followed by a garbage partial */
    uint8_t junk[30];
    memset(junk, 0xAB, sizeof junk);
    rewrite_file(dir, SEG1, 9 * R + 20, junk, sizeof junk);
    cap_reset();
    w = open_ok(dir, DHT_FSYNC_ALWAYS, &recs);
    if (!w)
        return;
    CHECK(cap_get(DHT_WAL_LOG_WARN) == 1);
    CHECKF(strstr(cap_last[DHT_WAL_LOG_WARN], SEG1) &&
               strstr(cap_last[DHT_WAL_LOG_WARN], "offset 396"),
           "%s", cap_last[DHT_WAL_LOG_WARN]);
    check_seq(&recs, 0, 9, 1);
    CHECK(file_size(dir, SEG1) == 9 * R);
    CHECK(dht_wal_log_bytes(w) == 9 * R);
    recs_free(&recs);
    append_n(w, 9, 15, 1);
    dht_wal_close(w);

    cap_reset();
    w = open_ok(dir, DHT_FSYNC_ALWAYS, &recs);
    check_seq(&recs, 0, 15, 1);
    CHECK(cap_get(DHT_WAL_LOG_WARN) == 0);
    dht_wal_close(w);
    recs_free(&recs);

    /* a whole last record with a bad checksum is a torn tail too */
    flip_byte(dir, SEG1, 14 * R + 30);
    w = open_ok(dir, DHT_FSYNC_ALWAYS, &recs);
    check_seq(&recs, 0, 14, 1);
    CHECK(cap_get(DHT_WAL_LOG_WARN) == 1);
    dht_wal_close(w);
    recs_free(&recs);
}

static void t_corrupt_middle(const char *dir)
{
    char err[512];
    recs_t recs = {0};
    dht_wal *w = open_ok(dir, DHT_FSYNC_NEVER, NULL);
    if (!w)
        return;
    append_n(w, 0, 10, 1);
    dht_wal_close(w);
    flip_byte(dir, SEG1, 2 * R + 10);

    w = NULL;
    int r = dht_wal_open(dir, DHT_FSYNC_NEVER, collect, &recs, &w, err, sizeof err);
    CHECK(r == -EBADMSG && w == NULL);
    CHECKF(strstr(err, dir) && strstr(err, SEG1) && strstr(err, "byte offset 88"), "%s", err);
    CHECK(recs.n == 0);                      /* nothing applied */
    CHECK(log_used(dir, SEG1) == 10 * R);    /* nothing truncated */
    printf("   corrupt middle: %s\n", err);
    recs_free(&recs);
}

static void t_corrupt_other(const char *dir)
{
    char err[512];
    dht_wal *w = open_ok(dir, DHT_FSYNC_ALWAYS, NULL);
    if (!w)
        return;
    append_n(w, 0, 5, 1);
    CHECK(dht_wal_checkpoint_begin(w) == 0); /* log.2 */
    append_n(w, 5, 10, 1);
    CHECK(dht_wal_checkpoint_begin(w) == 0); /* log.3 */
    append_n(w, 10, 12, 1);
    dht_wal_close(w);

    /* torn tail in a segment that is not the last one: corruption */
    rewrite_file(dir, SEG2, 4 * R + 3, NULL, 0);
    int r = dht_wal_open(dir, DHT_FSYNC_ALWAYS, NULL, NULL, &w, err, sizeof err);
    CHECKF(r == -EBADMSG && strstr(err, SEG2) && strstr(err, "offset 176"), "%d %s", r, err);

    /* a missing segment in the middle */
    char p[4096];
    path_join(p, sizeof p, dir, SEG2);
    CHECK(unlink(p) == 0);
    r = dht_wal_open(dir, DHT_FSYNC_ALWAYS, NULL, NULL, &w, err, sizeof err);
    CHECKF(r == -EBADMSG && strstr(err, SEG2) && strstr(err, "missing"), "%d %s", r, err);
}

/* ------------------------------------------------------------ lock / perms */

static void t_lock(const char *dir)
{
    char err[512], want[128];
    dht_wal *w1 = open_ok(dir, DHT_FSYNC_ALWAYS, NULL);
    if (!w1)
        return;
    dht_wal *w2 = NULL;
    int r = dht_wal_open(dir, DHT_FSYNC_ALWAYS, NULL, NULL, &w2, err, sizeof err);
    snprintf(want, sizeof want, "is in use by another server (pid %ld)", (long)getpid());
    CHECKF(r == -EAGAIN && w2 == NULL && strstr(err, want) && strstr(err, dir), "%d %s", r, err);
    printf("   lock: %s\n", err);
    dht_wal_close(w1);
    w2 = open_ok(dir, DHT_FSYNC_ALWAYS, NULL);
    dht_wal_close(w2);
}

static void t_unwritable(const char *dir)
{
    char err[512], file[2048], sub[4096];
    dht_wal *w = NULL;

    /* (a) parent of the data dir is a regular file: ENOTDIR, even for root */
    path_join(file, sizeof file, dir, "plainfile");
    int fd = open(file, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    snprintf(sub, sizeof sub, "%s/data", file);
    int r = dht_wal_open(sub, DHT_FSYNC_ALWAYS, NULL, NULL, &w, err, sizeof err);
    CHECKF(r == -ENOTDIR && w == NULL && strstr(err, sub) && strstr(err, strerror(ENOTDIR)),
           "%d %s", r, err);
    printf("   unwritable (file parent): %s\n", err);

    /* (b) a read-only (0555) directory, opened by an unprivileged process */
    path_join(sub, sizeof sub, dir, "ro");
    CHECK(mkdir(sub, 0555) == 0 && chmod(sub, 0555) == 0);
    CHECK(chmod(dir, 0755) == 0); /* let 'nobody' reach it */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        char e2[512];
        dht_wal *w2 = NULL;
        int r2 = dht_wal_open(sub, DHT_FSYNC_ALWAYS, NULL, NULL, &w2, e2, sizeof e2);
        if (r2 == 0)
            _exit(1);
        printf("   unwritable (0555 dir, uid %ld): %s\n", (long)getuid(), e2);
        fflush(stdout);
        _exit(r2 == -EACCES && strstr(e2, sub) && strstr(e2, strerror(EACCES)) ? 0 : 2);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
}

/* ------------------------------------------------------------ checkpoint */

#define NKEYS 1000
struct store {
    pthread_mutex_t mu;
    bool live[NKEYS];
    rec_t v[NKEYS];
    int bad;
};

static void store_apply(void *arg, int64_t key, int64_t value, uint64_t counter, uint64_t writer)
{
    struct store *s = arg;
    pthread_mutex_lock(&s->mu);
    if (key < 0 || key >= NKEYS) {
        s->bad++;
    } else {
        rec_t *x = &s->v[key];
        if (!s->live[key] || counter > x->counter ||
            (counter == x->counter && writer > x->writer)) {
            *x = (rec_t){key, value, counter, writer};
            s->live[key] = true;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static int store_iter(void *arg, dht_wal_apply_fn emit, void *emit_arg)
{
    struct store *s = arg;
    for (int k = 0; k < NKEYS; k++) {
        pthread_mutex_lock(&s->mu);
        bool live = s->live[k];
        rec_t x = s->v[k];
        pthread_mutex_unlock(&s->mu);
        if (live)
            emit(emit_arg, x.key, x.value, x.counter, x.writer);
    }
    return 0;
}

static int iter_fail(void *arg, dht_wal_apply_fn emit, void *emit_arg)
{
    (void)arg;
    emit(emit_arg, 1, 2, 3, 4);
    return -EIO;
}

static bool store_eq(struct store *a, struct store *b)
{
    for (int k = 0; k < NKEYS; k++) {
        if (a->live[k] != b->live[k])
            return false;
        if (a->live[k] && memcmp(&a->v[k], &b->v[k], sizeof(rec_t)) != 0)
            return false;
    }
    return a->bad == 0 && b->bad == 0;
}

static struct store *store_new(void)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

static void store_free(struct store *s)
{
    pthread_mutex_destroy(&s->mu);
    free(s);
}

struct writer_arg {
    dht_wal *w;
    struct store *s;
    int from, to;
    uint64_t counter;
    int errors;
};

/* append then apply, like the replica does */
static void *writer_thread(void *p)
{
    struct writer_arg *a = p;
    for (int i = a->from; i < a->to; i++) {
        if (dht_wal_append(a->w, i, i * 7 + (int64_t)a->counter, a->counter, 1) != 0)
            a->errors++;
        else
            store_apply(a->s, i, i * 7 + (int64_t)a->counter, a->counter, 1);
    }
    return NULL;
}

static void t_checkpoint(const char *dir)
{
    struct store *s = store_new(), *s2 = store_new();
    dht_wal *w = open_ok(dir, DHT_FSYNC_BATCH, NULL);
    if (!w)
        goto out;
    CHECK(dht_wal_checkpoint_commit(w, store_iter, s) == -EINVAL); /* no begin */

    struct writer_arg wa = {w, s, 0, 300, 1, 0};
    writer_thread(&wa);
    CHECK(dht_wal_log_bytes(w) == 300 * R);

    CHECK(dht_wal_checkpoint_begin(w) == 0);
    CHECK(exists(dir, SEG2));
    CHECK(dht_wal_log_bytes(w) == 300 * R);

    /* a failing iterator aborts the commit and leaves everything in place */
    CHECK(dht_wal_checkpoint_commit(w, iter_fail, NULL) == -EIO);
    CHECK(exists(dir, SEG1) && !exists(dir, SNAP2) && !exists(dir, "snap.tmp"));

    /* appends (overwrites of 200..299 and new keys) concurrent with commit */
    pthread_t th;
    struct writer_arg wb = {w, s, 200, 600, 2, 0};
    CHECK(pthread_create(&th, NULL, writer_thread, &wb) == 0);
    CHECK(dht_wal_checkpoint_commit(w, store_iter, s) == 0);
    pthread_join(th, NULL);
    CHECK(wb.errors == 0);
    CHECK(!exists(dir, SEG1) && exists(dir, SEG2) && exists(dir, SNAP2));
    CHECK(!exists(dir, "snap.tmp"));
    CHECK(dht_wal_log_bytes(w) == 400 * R);
    CHECK(log_used(dir, SEG2) == 400 * R);
    dht_wal_stats st;
    dht_wal_get_stats(w, &st);
    CHECK(st.checkpoints == 1);
    dht_wal_close(w);

    char err[256];
    w = NULL;
    CHECK(dht_wal_open(dir, DHT_FSYNC_BATCH, store_apply, s2, &w, err, sizeof err) == 0);
    CHECK(store_eq(s, s2));
    CHECK(dht_wal_log_bytes(w) == 400 * R);

    /* second round: snapshot 3 replaces snapshot 2 and log.2 */
    struct writer_arg wc = {w, s, 500, 900, 3, 0};
    writer_thread(&wc);
    CHECK(dht_wal_checkpoint_begin(w) == 0);
    struct writer_arg wd = {w, s, 0, 50, 4, 0};
    CHECK(pthread_create(&th, NULL, writer_thread, &wd) == 0);
    CHECK(dht_wal_checkpoint_commit(w, store_iter, s) == 0);
    pthread_join(th, NULL);
    CHECK(!exists(dir, SEG2) && !exists(dir, SNAP2) && exists(dir, SNAP3) && exists(dir, SEG3));
    CHECK(dht_wal_log_bytes(w) == 50 * R);
    dht_wal_close(w);

    /* crash between snapshot rename and segment deletion: leftover log.2 */
    char p[4096];
    path_join(p, sizeof p, dir, SEG2);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    if (fd >= 0) {
        uint8_t rec[R];
        dht_wal_encode(rec, 1, 1, 1, 1);
        CHECK(write(fd, rec, R) == (ssize_t)R);
        close(fd);
    }
    store_free(s2);
    s2 = store_new();
    w = NULL;
    CHECK(dht_wal_open(dir, DHT_FSYNC_BATCH, store_apply, s2, &w, err, sizeof err) == 0);
    CHECK(store_eq(s, s2));
    CHECK(!exists(dir, SEG2));
    dht_wal_close(w);

    /* corrupt snapshot: open fails naming it */
    flip_byte(dir, SNAP3, 24 + 32 * 5 + 3);
    int r = dht_wal_open(dir, DHT_FSYNC_BATCH, NULL, NULL, &w, err, sizeof err);
    CHECKF(r == -EBADMSG && strstr(err, SNAP3) && strstr(err, "byte offset"), "%d %s", r, err);
    printf("   corrupt snapshot: %s\n", err);
out:
    store_free(s);
    store_free(s2);
}

/* ------------------------------------------------------------ meta */

static void t_meta(const char *dir)
{
    char buf[64];
    dht_wal *w = open_ok(dir, DHT_FSYNC_ALWAYS, NULL);
    if (!w)
        return;
    CHECK(dht_wal_meta_get(w, "cluster_id", buf, sizeof buf) == -ENOENT);
    CHECK(dht_wal_meta_set(w, "cluster_id", "c-1234") == 0);
    CHECK(dht_wal_meta_get(w, "cluster_id", buf, sizeof buf) == 6 && strcmp(buf, "c-1234") == 0);
    CHECK(dht_wal_meta_set(w, "cluster_id", "c-5678-longer") == 0);
    CHECK(dht_wal_meta_get(w, "cluster_id", buf, sizeof buf) == 13);
    CHECK(strcmp(buf, "c-5678-longer") == 0);
    CHECK(dht_wal_meta_get(w, "cluster_id", buf, 13) == -ERANGE);
    CHECK(dht_wal_meta_set(w, "empty", "") == 0);
    CHECK(dht_wal_meta_get(w, "empty", buf, sizeof buf) == 0 && buf[0] == '\0');
    CHECK(dht_wal_meta_set(w, "../evil", "x") == -EINVAL);
    CHECK(dht_wal_meta_set(w, "a.b", "x") == -EINVAL);
    CHECK(dht_wal_meta_set(w, "", "x") == -EINVAL);
    CHECK(dht_wal_meta_get(w, "a/b", buf, sizeof buf) == -EINVAL);
    char *big = malloc(DHT_WAL_META_MAX + 2);
    if (big) {
        memset(big, 'x', DHT_WAL_META_MAX + 1);
        big[DHT_WAL_META_MAX + 1] = '\0';
        CHECK(dht_wal_meta_set(w, "big", big) == -E2BIG);
        big[DHT_WAL_META_MAX] = '\0';
        CHECK(dht_wal_meta_set(w, "big", big) == 0);
        char *out = malloc(DHT_WAL_META_MAX + 1);
        CHECK(out && dht_wal_meta_get(w, "big", out, DHT_WAL_META_MAX + 1) == DHT_WAL_META_MAX);
        free(out);
        free(big);
    }
    dht_wal_close(w);
    CHECK(!exists(dir, "meta.cluster_id.tmp"));

    w = open_ok(dir, DHT_FSYNC_ALWAYS, NULL);
    if (!w)
        return;
    CHECK(!dht_wal_fresh(w));
    CHECK(dht_wal_meta_get(w, "cluster_id", buf, sizeof buf) == 13);
    CHECK(strcmp(buf, "c-5678-longer") == 0);
    flip_byte(dir, "meta.cluster_id", file_size(dir, "meta.cluster_id") - 2);
    CHECK(dht_wal_meta_get(w, "cluster_id", buf, sizeof buf) == -EBADMSG);
    dht_wal_close(w);
}

/* a directory holding only meta data is not fresh (the node had an identity) */
static void t_meta_only_not_fresh(const char *dir)
{
    dht_wal *w = open_ok(dir, DHT_FSYNC_ALWAYS, NULL);
    if (!w)
        return;
    CHECK(dht_wal_meta_set(w, "node_id", "7") == 0);
    dht_wal_close(w);
    char p[4096];
    path_join(p, sizeof p, dir, SEG1);
    CHECK(unlink(p) == 0);
    w = open_ok(dir, DHT_FSYNC_ALWAYS, NULL);
    CHECK(w && !dht_wal_fresh(w));
    dht_wal_close(w);
}

/* ------------------------------------------------------------ ENOSPC-ish */

static void efbig_mode(const char *dir, dht_fsync_mode mode)
{
    recs_t recs = {0};
    dht_wal *w = open_ok(dir, mode, NULL);
    if (!w)
        return;
    append_n(w, 0, 5, 2);

    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 6 * R + 20; /* room for one more record and a partial one */
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    CHECK(dht_wal_append(w, 5, 50, 6, 2) == 0);
    int errs_before = cap_get(DHT_WAL_LOG_ERROR);
    CHECK(dht_wal_append(w, 6, 60, 7, 2) == -EFBIG);
    CHECK(dht_wal_append(w, 6, 60, 7, 2) == -EFBIG);
    CHECK(dht_wal_append(w, 6, 60, 7, 2) == -EFBIG);
    CHECK(cap_get(DHT_WAL_LOG_ERROR) == errs_before + 1); /* logged once */
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    CHECK(file_size(dir, SEG1) == 6 * R); /* partial record truncated away */

    int infos = cap_get(DHT_WAL_LOG_INFO);
    append_n(w, 6, 8, 2); /* recovers */
    CHECK(cap_get(DHT_WAL_LOG_INFO) == infos + 1);
    dht_wal_stats st;
    dht_wal_get_stats(w, &st);
    CHECK(st.append_errors == 3 && st.appends == 8);
    dht_wal_close(w);

    int warns = cap_get(DHT_WAL_LOG_WARN);
    w = open_ok(dir, mode, &recs);
    check_seq(&recs, 0, 8, 2);
    CHECK(cap_get(DHT_WAL_LOG_WARN) == warns); /* no torn tail left behind */
    dht_wal_close(w);
    recs_free(&recs);
}

static void t_efbig_always(const char *dir) { efbig_mode(dir, DHT_FSYNC_ALWAYS); }
static void t_efbig_batch(const char *dir) { efbig_mode(dir, DHT_FSYNC_BATCH); }
static void t_efbig_never(const char *dir) { efbig_mode(dir, DHT_FSYNC_NEVER); }

/* snapshot write failing for lack of space: commit fails cleanly, retry ok */
static void t_checkpoint_efbig(const char *dir)
{
    struct store *s = store_new(), *s2 = store_new();
    dht_wal *w = open_ok(dir, DHT_FSYNC_ALWAYS, NULL);
    if (!w)
        goto out;
    struct writer_arg wa = {w, s, 0, NKEYS, 1, 0};
    writer_thread(&wa);
    CHECK(dht_wal_checkpoint_begin(w) == 0);
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 4096;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int r = dht_wal_checkpoint_commit(w, store_iter, s);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    CHECK(r == -EFBIG);
    CHECK(exists(dir, SEG1) && !exists(dir, SNAP2) && !exists(dir, "snap.tmp"));
    CHECK(dht_wal_checkpoint_commit(w, store_iter, s) == 0);
    CHECK(!exists(dir, SEG1) && exists(dir, SNAP2));
    dht_wal_close(w);
    char err[256];
    w = NULL;
    CHECK(dht_wal_open(dir, DHT_FSYNC_ALWAYS, store_apply, s2, &w, err, sizeof err) == 0);
    CHECK(store_eq(s, s2));
    dht_wal_close(w);
out:
    store_free(s);
    store_free(s2);
}

/* ------------------------------------------------------------ EIO */

struct eio_arg {
    dht_wal *w;
    int t;
    int ok, eio, other;
};

static void *eio_thread(void *p)
{
    struct eio_arg *a = p;
    for (int i = 0; i < 50; i++) {
        int r = dht_wal_append(a->w, 1000 + a->t * 100 + i, 1, 1, 1);
        if (r == 0)
            a->ok++;
        else if (r == -EIO)
            a->eio++;
        else
            a->other++;
    }
    return NULL;
}

static void eio_mode(const char *dir, dht_fsync_mode mode)
{
    recs_t recs = {0};
    dht_wal *w = open_ok(dir, mode, NULL);
    if (!w)
        return;
    append_n(w, 0, 3, 5);
    int errs = cap_get(DHT_WAL_LOG_ERROR);
    atomic_store(&sync_fail, EIO);
    if (mode == DHT_FSYNC_BATCH) {
        pthread_t th[4];
        struct eio_arg a[4];
        for (int t = 0; t < 4; t++) {
            a[t] = (struct eio_arg){w, t, 0, 0, 0};
            CHECK(pthread_create(&th[t], NULL, eio_thread, &a[t]) == 0);
        }
        for (int t = 0; t < 4; t++) {
            pthread_join(th[t], NULL);
            CHECK(a[t].ok == 0 && a[t].eio == 50 && a[t].other == 0);
        }
    } else {
        CHECK(dht_wal_append(w, 3, 30, 4, 5) == -EIO);
    }
    atomic_store(&sync_fail, 0);
    /* sticky: a later fsync might succeed without the lost pages being on disk */
    CHECK(dht_wal_append(w, 3, 30, 4, 5) == -EIO);
    CHECK(dht_wal_append(w, 3, 30, 4, 5) == -EIO);
    CHECK(dht_wal_checkpoint_begin(w) == -EIO);
    CHECK(cap_get(DHT_WAL_LOG_ERROR) == errs + 1); /* logged once */
    dht_wal_stats st;
    dht_wal_get_stats(w, &st);
    CHECK(st.appends == 3 && st.append_errors >= 3);
    dht_wal_close(w);

    /* reopen recovers; the unacknowledged record may or may not be there */
    w = open_ok(dir, mode, &recs);
    if (!w)
        return;
    CHECK(recs.n >= 3);
    recs.n = 3;
    check_seq(&recs, 0, 3, 5);
    recs_free(&recs);
    CHECK(dht_wal_append(w, 3, 30, 4, 5) == 0);
    dht_wal_close(w);
}

static void t_eio_always(const char *dir) { eio_mode(dir, DHT_FSYNC_ALWAYS); }
static void t_eio_batch(const char *dir) { eio_mode(dir, DHT_FSYNC_BATCH); }


/* ------------------------------------------------------------ prefill */

static void t_prefill(const char *dir)
{
    /* New segments are zero-filled in advance, so appends overwrite and the
     * file never grows; the zeros are neither replayed nor taken for a torn
     * tail, and a record that ends in zero bytes is not cut short. */
    recs_t recs = {0};
    dht_wal *w = open_ok(dir, DHT_FSYNC_BATCH, NULL);
    if (!w)
        return;
    long long size0 = file_size(dir, SEG1);
    CHECKF(size0 >= 1 << 20, "segment size %lld", size0);
    /* a value whose record's checksum ends in a zero byte */
    int64_t v = 0;
    uint8_t rec[R];
    for (;; v++) {
        dht_wal_encode(rec, 7, v, 1, 1);
        if (rec[R - 1] == 0)
            break;
    }
    append_n(w, 0, 50, 3);
    CHECK(dht_wal_append(w, 7, v, 1, 1) == 0);
    dht_wal_close(w);
    CHECK(file_size(dir, SEG1) == size0); /* appends did not grow it */
    CHECK(log_used(dir, SEG1) == 51 * R);

    cap_reset();
    w = open_ok(dir, DHT_FSYNC_BATCH, &recs);
    if (!w)
        return;
    CHECK(cap_get(DHT_WAL_LOG_WARN) == 0); /* the zeros are not a torn tail */
    CHECK(recs.n == 51);
    if (recs.n == 51)
        CHECK(recs.v[50].key == 7 && recs.v[50].value == v);
    CHECK(dht_wal_log_bytes(w) == 51 * R);
    append_n(w, 100, 110, 3); /* appends go on after the last record */
    dht_wal_close(w);
    recs_free(&recs);
    w = open_ok(dir, DHT_FSYNC_BATCH, &recs);
    CHECK(recs.n == 61);
    dht_wal_close(w);
    recs_free(&recs);

    /* a torn append inside the prefill is still a torn tail */
    uint8_t junk[20];
    memset(junk, 0xCD, sizeof junk);
    char p[4096];
    path_join(p, sizeof p, dir, SEG1);
    int fd = open(p, O_WRONLY);
    CHECK(fd >= 0);
    CHECK(pwrite(fd, junk, sizeof junk, 61 * R) == (ssize_t)sizeof junk);
    close(fd);
    cap_reset();
    w = open_ok(dir, DHT_FSYNC_BATCH, &recs);
    CHECK(cap_get(DHT_WAL_LOG_WARN) == 1);
    CHECK(recs.n == 61);
    dht_wal_close(w);
    recs_free(&recs);
    CHECK(log_used(dir, SEG1) == 61 * R);
}

/* ------------------------------------------------------------ main */

int main(void)
{
    signal(SIGXFSZ, SIG_IGN);
    dht_wal_set_log_fn(capture_log, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    run_test("crc32c", t_crc32c);
    run_test("mode_parse", t_mode_parse);
    run_test("parse", t_parse);
    run_test("mode_always", t_mode_always);
    run_test("mode_batch", t_mode_batch);
    run_test("mode_never", t_mode_never);
    run_test("fresh_flag", t_fresh_flag);
    run_test("group_commit", t_group_commit);
    run_test("torn_tail", t_torn_tail);
    run_test("corrupt_middle", t_corrupt_middle);
    run_test("corrupt_other", t_corrupt_other);
    run_test("lock", t_lock);
    run_test("unwritable", t_unwritable);
    run_test("checkpoint", t_checkpoint);
    run_test("meta", t_meta);
    run_test("meta_only_not_fresh", t_meta_only_not_fresh);
    run_test("efbig_always", t_efbig_always);
    run_test("efbig_batch", t_efbig_batch);
    run_test("efbig_never", t_efbig_never);
    run_test("checkpoint_efbig", t_checkpoint_efbig);
    run_test("eio_always", t_eio_always);
    run_test("eio_batch", t_eio_batch);
    run_test("prefill", t_prefill);

    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
