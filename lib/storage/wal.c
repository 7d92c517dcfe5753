/*
 * wal.c - durability layer: write-ahead log + snapshot in one data directory.
 *
 * DESIGN
 * ======
 * Files in the data directory:
 *
 *   LOCK              flock(LOCK_EX|LOCK_NB) for as long as the handle is
 *                     open; holds the owner's pid (text) for error messages.
 *                     Never unlinked: replacing it would let two processes
 *                     lock two different inodes.
 *   log.NNNNNNNNNNNNNNNN
 *                     log segment number N (16 decimal digits, so names sort
 *                     in numeric order).  Numbers start at 1 and are
 *                     contiguous; a gap is reported as a missing segment.
 *   snap.NNNNNNNNNNNNNNNN
 *                     snapshot covering every record of segments < N.  Only
 *                     the newest is kept.  Replay = snap.N, then log.N,
 *                     log.N+1, ...
 *   meta.<name>       small named value, see "Meta" below.
 *   snap.tmp, meta.<name>.tmp, probe.tmp, log.tmp
 *                     in-progress atomic writes / writability probe / the
 *                     next segment being prefilled; removed at open.
 *
 * Prefill: a segment starts as SEG_PREFILL zero bytes (fdatasync'ed), and
 *   records overwrite them from offset 0, so the file only grows past that
 *   size; fdatasync of an append then has no inode (size) to write.  What a
 *   segment holds is its size less its trailing zeros, rounded up to whole
 *   records (used_length): the torn-tail and corruption rules below apply
 *   to that part.
 *
 * Log record (fixed 44 bytes, all integers little-endian):
 *
 *   off size field
 *     0   4  magic   0x4c415744 ("DWAL" as bytes)
 *     4   1  type    1 = PUT (the only type)
 *     5   1  flags   0 (reserved)
 *     6   2  length  32 = payload length
 *     8   8  key     int64
 *    16   8  value   int64
 *    24   8  counter uint64  } version, compared (counter, writer)
 *    32   8  writer  uint64  }
 *    40   4  crc32c  CRC32C of bytes 0..39
 *
 *   Why fixed size and binary: framing needs no trusted length (a damaged
 *   length field cannot make the reader skip or invent records), a torn
 *   append can only damage the end of the file, records never straddle
 *   anything, and the valid prefix is always a multiple of 44 bytes.  The
 *   magic/type/length fields cost 8 bytes but let a future record kind be
 *   rejected explicitly instead of misparsed, and make a resync scan cheap.
 *   CRC32C detects torn writes and bit rot; it is the checksum used by
 *   ext4/iSCSI/LevelDB for this purpose.
 *
 *   Torn tail vs corruption: records are only appended, and every
 *   ALWAYS/BATCH acknowledgement is preceded by fdatasync, so a crash can
 *   only leave garbage at the END of the LAST segment, at most one write
 *   (<= DHT_WAL_MAX_TORN_BYTES, the batch cap) long.  Such a tail (no valid
 *   record at any byte offset after the first bad byte) is truncated with a
 *   warning: it holds only records that were never acknowledged.  Anything
 *   else - a bad record with valid data after it, an invalid tail in a
 *   non-final segment, an over-long invalid tail, a corrupt snapshot, a
 *   missing segment - means acknowledged data may be damaged, so open fails
 *   and names the file and byte offset rather than silently dropping data.
 *   Segments are fdatasync'ed before rotation (also in NEVER mode) so only
 *   the last one can ever be torn.
 *
 * Snapshot file (little-endian):
 *
 *   header  0  8  magic "DHTSNAP1"
 *           8  4  version 1
 *          12  4  record size 32
 *          16  8  N (must match the file name)
 *   body   24     count x { key i64, value i64, counter u64, writer u64 }
 *   trailer       8 magic "DHTSEND1", 8 count, 4 crc32c of every byte
 *                 before the crc, 4 zero
 *
 *   The count and CRC live in a trailer so the snapshot is written in one
 *   streaming pass over the caller's state (count unknown in advance).  It is
 *   written to snap.tmp, fsync'ed, renamed to snap.N and the directory is
 *   fsync'ed, so snap.N is either absent or complete; any mismatch is
 *   therefore real corruption and fails open.  Only then are log.<N and the
 *   previous snapshot deleted (a crash in between leaves them behind; open
 *   deletes them after validating snap.N).
 *
 * Meta file meta.<name>: one text line "dhtmeta1 <crc32c hex8> <len>\n"
 *   followed by exactly <len> value bytes.  Human-readable (cat works),
 *   checked, replaced atomically by tmp + fsync + rename + fsync(dir).
 *
 * Open: everything (snapshot, all live segments) is mmap'ed and validated
 *   first; then the torn tail (if any) is truncated, leftovers are deleted,
 *   the last segment is fdatasync'ed (it may hold NEVER-mode data that only
 *   reached the page cache) and opened for appending; only then is apply
 *   called, so a failed open never fed the caller partial state.
 *
 * Group commit (BATCH): leader/follower on the handle's mutex + condvar, no
 *   background thread.  An appender copies its encoded record into the
 *   pending buffer and queues a stack-allocated waiter.  If no I/O is in
 *   progress it becomes the leader: it takes the whole pending buffer (and
 *   swaps in the spare one, so followers keep queueing), drops the mutex,
 *   does one pwrite + one fdatasync, re-takes the mutex, stores the result in
 *   every waiter of its batch and broadcasts.  Followers that arrived during
 *   the I/O form the next batch, led by the first of them to wake.  Why not a
 *   flusher thread: no thread lifecycle or shutdown handshake, no timer
 *   latency when idle (a lone appender syncs immediately, like ALWAYS), and
 *   batching emerges exactly when there is contention.  Pending data is
 *   capped at DHT_WAL_MAX_TORN_BYTES (appenders wait beyond that), which is
 *   what bounds a torn tail.
 * ALWAYS and NEVER: each appender waits for the I/O slot and writes its own
 *   record (ALWAYS then fdatasyncs).
 *
 * Errors: see dht_wal_append in wal.h (write errors are retried by later
 *   appends after truncating back; fsync errors are sticky until reopen).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "storage/wal.h"

#include "base/le.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define SEG_PREFIX "log."
#define SNAP_PREFIX "snap."
#define META_PREFIX "meta."
#define SNAP_TMP "snap.tmp"
#define PROBE_TMP "probe.tmp"
#define SEG_TMP "log.tmp"
/* New segments are filled with this many zero bytes before use (see
 * prefill). */
#define SEG_PREFILL (2u << 20)
#define NUM_DIGITS 16
#define NAME_MAX_LEN 96
#define SNAP_HDR 24u
#define SNAP_TRAILER 24u
#define SNAP_REC 32u
#define META_NAME_MAX 64
#define MAX_BATCH DHT_WAL_MAX_TORN_BYTES

/* ================================================================ logging */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static dht_wal_log_fn log_fn;
static void *log_arg;

void dht_wal_set_log_fn(dht_wal_log_fn fn, void *arg)
{
    pthread_mutex_lock(&log_mu);
    log_fn = fn;
    log_arg = arg;
    pthread_mutex_unlock(&log_mu);
}

__attribute__((format(printf, 2, 3))) static void wal_log(dht_wal_log_level lvl,
                                                          const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_mu);
    if (log_fn) {
        log_fn(log_arg, lvl, msg);
    } else {
        static const char *const names[] = {"info", "warning", "error"};
        fprintf(stderr, "wal: %s: %s\n", names[lvl], msg);
    }
    pthread_mutex_unlock(&log_mu);
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
                                                          const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ================================================================ modes */

int dht_fsync_mode_parse(const char *s, dht_fsync_mode *out)
{
    if (!s || !out)
        return -EINVAL;
    if (strcmp(s, "always") == 0)
        *out = DHT_FSYNC_ALWAYS;
    else if (strcmp(s, "batch") == 0)
        *out = DHT_FSYNC_BATCH;
    else if (strcmp(s, "never") == 0)
        *out = DHT_FSYNC_NEVER;
    else
        return -EINVAL;
    return 0;
}

const char *dht_fsync_mode_name(dht_fsync_mode m)
{
    switch (m) {
    case DHT_FSYNC_ALWAYS: return "always";
    case DHT_FSYNC_BATCH: return "batch";
    case DHT_FSYNC_NEVER: return "never";
    }
    return "?";
}

/* ================================================================ handle */

struct waiter {
    struct waiter *next;
    int done;
    int result;
};

struct dht_wal {
    char *dir;
    int dirfd;
    int lockfd;
    dht_fsync_mode mode;
    bool fresh;

    pthread_mutex_t mu; /* protects everything down to 'stats' */
    pthread_cond_t cv;
    int seg_fd;
    uint64_t seg_no;
    uint64_t seg_size;  /* bytes of good records in the current segment */
    uint64_t old_bytes; /* bytes in older segments not yet covered by a snapshot */
    bool io_busy;       /* someone owns seg_fd for I/O or rotation */
    int failed;         /* sticky -errno, 0 if healthy */
    int io_err;         /* last transient write error (log-once state) */
    uint8_t *pend, *spare;
    size_t pend_len, pend_cap, spare_cap;
    struct waiter *wq_head, **wq_tail;
    dht_wal_stats stats;

    pthread_mutex_t ckpt_mu; /* serialises begin/commit; protects below */
    uint64_t ckpt_seg;       /* segment started by the pending begin, or 0 */
    uint64_t ckpt_covered;   /* bytes in segments < ckpt_seg */
    uint64_t min_seg;        /* lowest segment still on disk */
    uint64_t snap_seg;       /* current snapshot's N, or 0 */
    int ckpt_err;            /* last commit error (log-once state) */

    pthread_mutex_t meta_mu;
};

static void seg_name(char *buf, size_t len, uint64_t no)
{
    snprintf(buf, len, SEG_PREFIX "%016" PRIu64, no);
}

static void snap_name(char *buf, size_t len, uint64_t no)
{
    snprintf(buf, len, SNAP_PREFIX "%016" PRIu64, no);
}

/* "<prefix><16 digits>" -> number */
static bool parse_numbered(const char *name, const char *prefix, uint64_t *out)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0 || strlen(name) != pl + NUM_DIGITS)
        return false;
    uint64_t v = 0;
    for (const char *p = name + pl; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return true;
}

static bool meta_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > META_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* ================================================================ I/O helpers */

static int pwrite_all(int fd, const uint8_t *buf, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, buf, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            return -EIO;
        buf += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

static int write_all(int fd, const void *vbuf, size_t n)
{
    const uint8_t *buf = vbuf;
    while (n > 0) {
        ssize_t k = write(fd, buf, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            return -EIO;
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

static int fsync_fd(int fd)
{
    return fsync(fd) == 0 ? 0 : -errno;
}

/* Write name atomically: name.tmp-style 'tmp', fsync, rename, fsync(dir). */
static int atomic_write(int dirfd, const char *tmp, const char *name, const void *a, size_t alen,
                        const void *b, size_t blen)
{
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, a, alen);
    if (r == 0)
        r = write_all(fd, b, blen);
    if (r == 0)
        r = fsync_fd(fd);
    if (close(fd) != 0 && r == 0)
        r = -errno;
    if (r == 0 && renameat(dirfd, tmp, dirfd, name) != 0)
        r = -errno;
    if (r == 0)
        r = fsync_fd(dirfd);
    if (r != 0)
        unlinkat(dirfd, tmp, 0);
    return r;
}

/* mkdir -p; *created = the last component did not exist before. */
static int mkdir_p(const char *path, bool *created)
{
    *created = false;
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return -e;
        }
        *s = '/';
    }
    int r = 0;
    if (mkdir(p, 0777) == 0) {
        *created = true;
        /* make the new directory entry itself durable */
        char *slash = strrchr(p, '/');
        const char *parent = ".";
        if (slash == p)
            parent = "/";
        else if (slash) {
            *slash = '\0';
            parent = p;
        }
        int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd >= 0) {
            fsync(pfd);
            close(pfd);
        }
    } else if (errno != EEXIST) {
        r = -errno;
    }
    free(p);
    return r;
}

/* ================================================================ snapshot parse */

/* Validate (apply == NULL) or replay a snapshot image.  0 or -1 with *bad_off
 * and why set. */
static int snap_parse(const uint8_t *b, size_t n, uint64_t expect_no, dht_wal_apply_fn apply,
                      void *arg, size_t *bad_off, char *why, size_t whylen)
{
    *bad_off = 0;
    if (n < SNAP_HDR + SNAP_TRAILER) {
        *bad_off = n;
        snprintf(why, whylen, "file too short (%zu bytes)", n);
        return -1;
    }
    if (memcmp(b, "DHTSNAP1", 8) != 0) {
        snprintf(why, whylen, "bad header magic");
        return -1;
    }
    if (dht_le_get32(b + 8) != 1 || dht_le_get32(b + 12) != SNAP_REC) {
        *bad_off = 8;
        snprintf(why, whylen, "unsupported version %u / record size %u", (unsigned)dht_le_get32(b + 8),
                 (unsigned)dht_le_get32(b + 12));
        return -1;
    }
    if (dht_le_get64(b + 16) != expect_no) {
        *bad_off = 16;
        snprintf(why, whylen, "covers segment %" PRIu64 " but is named for %" PRIu64,
                 dht_le_get64(b + 16), expect_no);
        return -1;
    }
    const uint8_t *t = b + n - SNAP_TRAILER;
    if (memcmp(t, "DHTSEND1", 8) != 0) {
        *bad_off = n - SNAP_TRAILER;
        snprintf(why, whylen, "bad trailer magic (truncated or damaged)");
        return -1;
    }
    size_t body = n - SNAP_HDR - SNAP_TRAILER;
    uint64_t count = dht_le_get64(t + 8);
    if (body % SNAP_REC != 0 || count != body / SNAP_REC) {
        *bad_off = n - SNAP_TRAILER + 8;
        snprintf(why, whylen, "record count %" PRIu64 " does not match file size %zu", count, n);
        return -1;
    }
    uint32_t stored = dht_le_get32(t + 16);
    if (!apply) {
        uint32_t computed = dht_crc32c(0, b, n - 8);
        if (stored != computed || dht_le_get32(t + 20) != 0) {
            *bad_off = n - 8;
            snprintf(why, whylen,
                     "checksum mismatch: stored 0x%08x, computed 0x%08x over bytes 0..%zu "
                     "(damage anywhere in the file)",
                     (unsigned)stored, (unsigned)computed, n - 9);
            return -1;
        }
        return 0;
    }
    for (const uint8_t *p = b + SNAP_HDR; p < t; p += SNAP_REC)
        apply(arg, (int64_t)dht_le_get64(p), (int64_t)dht_le_get64(p + 8), dht_le_get64(p + 16), dht_le_get64(p + 24));
    return 0;
}

/* ================================================================ open */

typedef struct {
    uint64_t *v;
    size_t n, cap;
} u64vec;

static int vec_push(u64vec *v, uint64_t x)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 16;
        uint64_t *nv = realloc(v->v, nc * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        v->v = nv;
        v->cap = nc;
    }
    v->v[v->n++] = x;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct mapped {
    char name[NAME_MAX_LEN];
    uint64_t no;
    const uint8_t *map;
    size_t size;  /* file size when mapped */
    size_t used;  /* size less the zeros of its prefill (see used_length) */
    size_t valid; /* bytes to replay */
};

/* How much of a segment was written: its size less the zeros it was
 * prefilled with, rounded up to whole records since a record may end in
 * zero bytes.  Records are never all zero (magic), so nothing written is
 * lost; a torn append within the prefill still shows as a torn tail. */
static size_t used_length(const uint8_t *map, size_t size)
{
    size_t end = size;
    while (end > 0 && map[end - 1] == 0)
        end--;
    size_t used = (end + DHT_WAL_RECORD_SIZE - 1) / DHT_WAL_RECORD_SIZE * DHT_WAL_RECORD_SIZE;
    return used < size ? used : size;
}

static int map_file(int dirfd, const char *name, struct mapped *m)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    m->size = (size_t)st.st_size;
    m->map = NULL;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return -e;
        }
        m->map = p;
    }
    m->used = m->size;
    close(fd);
    return 0;
}

static void unmap_file(struct mapped *m)
{
    if (m->map)
        munmap((void *)m->map, m->size);
    m->map = NULL;
}

struct scan {
    u64vec segs, snaps;
    bool has_meta;
};

/* A directory stream of its own on dirfd's directory (a dup of dirfd would
 * share the read offset with any other caller); NULL with errno set. */
static DIR *open_dir(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return d;
}

static int scan_dir(const char *dir, int dirfd, struct scan *s)
{
    DIR *d = open_dir(dirfd);
    if (!d)
        return -errno;
    int r = 0;
    struct dirent *de;
    (void)dir;
    while (r == 0 && (errno = 0, de = readdir(d)) != NULL) {
        uint64_t no;
        if (parse_numbered(de->d_name, SEG_PREFIX, &no))
            r = vec_push(&s->segs, no);
        else if (parse_numbered(de->d_name, SNAP_PREFIX, &no))
            r = vec_push(&s->snaps, no);
        else if (strncmp(de->d_name, META_PREFIX, strlen(META_PREFIX)) == 0 &&
                 meta_name_ok(de->d_name + strlen(META_PREFIX)))
            s->has_meta = true;
    }
    if (r == 0 && errno != 0)
        r = -errno;
    closedir(d);
    if (s->segs.n > 1)
        qsort(s->segs.v, s->segs.n, sizeof(uint64_t), cmp_u64);
    if (s->snaps.n > 1)
        qsort(s->snaps.v, s->snaps.n, sizeof(uint64_t), cmp_u64);
    return r;
}

/* Remove our own temporary files (never anything we did not create). */
static void remove_tmp_files(int dirfd)
{
    DIR *d = open_dir(dirfd);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        size_t len = strlen(n);
        bool ours = strcmp(n, SNAP_TMP) == 0 || strcmp(n, PROBE_TMP) == 0 ||
                    strcmp(n, SEG_TMP) == 0;
        if (!ours && strncmp(n, META_PREFIX, strlen(META_PREFIX)) == 0 && len > 4 &&
            strcmp(n + len - 4, ".tmp") == 0)
            ours = true;
        if (ours)
            unlinkat(dirfd, n, 0);
    }
    closedir(d);
}

static dht_wal *wal_alloc(void)
{
    dht_wal *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->dirfd = w->lockfd = w->seg_fd = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_mutex_init(&w->ckpt_mu, NULL);
    pthread_mutex_init(&w->meta_mu, NULL);
    w->wq_tail = &w->wq_head;
    return w;
}

static void wal_free(dht_wal *w)
{
    if (!w)
        return;
    if (w->seg_fd >= 0)
        close(w->seg_fd);
    if (w->dirfd >= 0)
        close(w->dirfd);
    if (w->lockfd >= 0)
        close(w->lockfd); /* releases the flock */
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->ckpt_mu);
    pthread_mutex_destroy(&w->meta_mu);
    free(w->pend);
    free(w->spare);
    free(w->dir);
    free(w);
}

static int take_lock(dht_wal *w, char *err, size_t errlen)
{
    w->lockfd = openat(w->dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (w->lockfd < 0) {
        int e = errno;
        set_err(err, errlen, "data directory %s is not writable: cannot open %s/LOCK: %s",
                w->dir, w->dir, strerror(e));
        return -e;
    }
    if (flock(w->lockfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK || e == EAGAIN) {
            char buf[32] = {0};
            ssize_t k = pread(w->lockfd, buf, sizeof buf - 1, 0);
            long pid = k > 0 ? strtol(buf, NULL, 10) : 0;
            if (pid > 0)
                set_err(err, errlen, "data directory %s is in use by another server (pid %ld)",
                        w->dir, pid);
            else
                set_err(err, errlen,
                        "data directory %s is in use by another server (pid unknown)", w->dir);
            return -EAGAIN;
        }
        set_err(err, errlen, "cannot lock %s/LOCK: %s", w->dir, strerror(e));
        return -e;
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    int r = ftruncate(w->lockfd, 0) == 0 ? 0 : -errno;
    if (r == 0)
        r = pwrite_all(w->lockfd, (const uint8_t *)buf, (size_t)n, 0);
    if (r != 0) {
        set_err(err, errlen, "data directory %s is not writable: cannot write %s/LOCK: %s",
                w->dir, w->dir, strerror(-r));
        return r;
    }
    return 0;
}

static int probe_writable(dht_wal *w, char *err, size_t errlen)
{
    int fd = openat(w->dirfd, PROBE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        set_err(err, errlen, "data directory %s is not writable: cannot create files: %s",
                w->dir, strerror(e));
        return -e;
    }
    close(fd);
    if (unlinkat(w->dirfd, PROBE_TMP, 0) != 0) {
        int e = errno;
        set_err(err, errlen, "data directory %s is not writable: cannot delete files: %s",
                w->dir, strerror(e));
        return -e;
    }
    return 0;
}

/* Fills an empty segment with zeros and syncs it, so that appends overwrite
 * blocks that exist: the file never grows, and a group commit's fdatasync
 * has only the data to write, not the inode as well (on ext4 that was half
 * of its I/O).  Best effort: on an error (a full disk) the file is cut back
 * to empty and simply grows as it is written. */
static void prefill(int fd)
{
    static const uint8_t zeros[64 * 1024];
    for (size_t off = 0; off < SEG_PREFILL; off += sizeof zeros) {
        if (pwrite_all(fd, zeros, sizeof zeros, off) != 0)
            goto undo;
    }
    if (fdatasync(fd) == 0)
        return;
undo:
    if (ftruncate(fd, 0) != 0) {
        /* appends truncate back on their own errors too */
    }
}

/* A prefilled segment-to-be under SEG_TMP (the caller renames it), made
 * before the checkpoint holds up appends; -1 if it cannot be. */
static int prepare_segment(dht_wal *w)
{
    int fd = openat(w->dirfd, SEG_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0)
        prefill(fd);
    return fd;
}

/* Drops a prepared segment that will not be used. */
static void discard_prepared(dht_wal *w, int fd)
{
    if (fd < 0)
        return;
    close(fd);
    unlinkat(w->dirfd, SEG_TMP, 0);
}

/* Creates segment no: from the prepared file if there is one (taken
 * over), else a new prefilled one. */
static int create_segment(dht_wal *w, uint64_t no, int prepared, int *fd_out)
{
    char name[NAME_MAX_LEN];
    seg_name(name, sizeof name, no);
    int fd = prepared;
    if (fd >= 0 && renameat(w->dirfd, SEG_TMP, w->dirfd, name) != 0) {
        discard_prepared(w, fd);
        fd = -1;
    }
    if (fd < 0) {
        fd = openat(w->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        prefill(fd);
    }
    int r = fsync_fd(w->dirfd);
    if (r != 0) {
        close(fd);
        unlinkat(w->dirfd, name, 0);
        return r;
    }
    *fd_out = fd;
    return 0;
}

int dht_wal_open(const char *dir, dht_fsync_mode mode, dht_wal_apply_fn apply, void *apply_arg,
                 dht_wal **out, char *err, size_t errlen)
{
    char why[256];
    char name[NAME_MAX_LEN];
    struct scan sc = {0};
    struct mapped snap = {0};
    struct mapped *segs = NULL;
    size_t nsegs = 0;
    int r;

    set_err(err, errlen, "%s", "");
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!dir || !*dir || (mode != DHT_FSYNC_ALWAYS && mode != DHT_FSYNC_BATCH &&
                          mode != DHT_FSYNC_NEVER)) {
        set_err(err, errlen, "invalid arguments to dht_wal_open");
        return -EINVAL;
    }
    dht_wal *w = wal_alloc();
    if (!w || !(w->dir = strdup(dir))) {
        wal_free(w);
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    w->mode = mode;

    bool created;
    r = mkdir_p(dir, &created);
    if (r != 0) {
        set_err(err, errlen, "cannot create data directory %s: %s", dir, strerror(-r));
        goto fail;
    }
    w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        r = -errno;
        set_err(err, errlen, "cannot open data directory %s: %s", dir, strerror(-r));
        goto fail;
    }
    if ((r = take_lock(w, err, errlen)) != 0 || (r = probe_writable(w, err, errlen)) != 0)
        goto fail;

    if ((r = scan_dir(dir, w->dirfd, &sc)) != 0) {
        set_err(err, errlen, "cannot list data directory %s: %s", dir, strerror(-r));
        goto fail;
    }
    w->fresh = sc.segs.n == 0 && sc.snaps.n == 0 && !sc.has_meta;

    /* ---- pass 1: map and validate everything, modify nothing ---- */
    uint64_t S = sc.snaps.n ? sc.snaps.v[sc.snaps.n - 1] : 0;
    if (S) {
        snap.no = S;
        snap_name(snap.name, sizeof snap.name, S);
        if ((r = map_file(w->dirfd, snap.name, &snap)) != 0) {
            set_err(err, errlen, "cannot read snapshot %s/%s: %s", dir, snap.name,
                    strerror(-r));
            goto fail;
        }
        size_t off;
        if (snap_parse(snap.map, snap.size, S, NULL, NULL, &off, why, sizeof why) != 0) {
            r = -EBADMSG;
            set_err(err, errlen, "snapshot %s/%s is corrupt at byte offset %zu: %s", dir,
                    snap.name, off, why);
            goto fail;
        }
    }
    size_t first = 0;
    while (first < sc.segs.n && sc.segs.v[first] < S)
        first++;
    nsegs = sc.segs.n - first;
    uint64_t expect = S ? S : 1;
    if (nsegs == 0 && S) {
        r = -EBADMSG;
        seg_name(name, sizeof name, S);
        set_err(err, errlen, "log segment %s/%s is missing (snapshot %s needs it)", dir, name,
                snap.name);
        goto fail;
    }
    segs = calloc(nsegs ? nsegs : 1, sizeof *segs);
    if (!segs) {
        r = -ENOMEM;
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nsegs; i++, expect++) {
        struct mapped *m = &segs[i];
        m->no = sc.segs.v[first + i];
        if (m->no != expect) {
            r = -EBADMSG;
            seg_name(name, sizeof name, expect);
            set_err(err, errlen, "log segment %s/%s is missing (found segments up to %016" PRIu64
                    ")", dir, name, sc.segs.v[sc.segs.n - 1]);
            goto fail;
        }
        seg_name(m->name, sizeof m->name, m->no);
        if ((r = map_file(w->dirfd, m->name, m)) != 0) {
            set_err(err, errlen, "cannot read log segment %s/%s: %s", dir, m->name, strerror(-r));
            goto fail;
        }
        m->used = used_length(m->map, m->size);
        int pr = dht_wal_parse(m->map, m->used, NULL, NULL, &m->valid, why, sizeof why);
        bool last = i + 1 == nsegs;
        if (pr == DHT_WAL_PARSE_CORRUPT || (pr == DHT_WAL_PARSE_TORN && !last)) {
            r = -EBADMSG;
            set_err(err, errlen, "log segment %s/%s is corrupt: %s%s", dir, m->name, why,
                    pr == DHT_WAL_PARSE_TORN ? " (and it is not the last segment)" : "");
            goto fail;
        }
    }

    /* ---- modifications: truncate torn tail, delete leftovers ---- */
    if (nsegs) {
        struct mapped *m = &segs[nsegs - 1];
        w->seg_fd = openat(w->dirfd, m->name, O_WRONLY | O_CLOEXEC);
        if (w->seg_fd < 0) {
            r = -errno;
            set_err(err, errlen, "cannot open log segment %s/%s for writing: %s", dir, m->name,
                    strerror(-r));
            goto fail;
        }
        if (m->valid != m->used) {
            char msg[256];
            dht_wal_parse(m->map, m->used, NULL, NULL, &m->valid, msg, sizeof msg);
            if (ftruncate(w->seg_fd, (off_t)m->valid) != 0) {
                r = -errno;
                set_err(err, errlen, "cannot truncate torn tail of %s/%s: %s", dir, m->name,
                        strerror(-r));
                goto fail;
            }
            wal_log(DHT_WAL_LOG_WARN,
                    "log segment %s/%s: %s; truncated to %zu bytes (%zu bytes of an "
                    "unacknowledged append discarded)",
                    dir, m->name, msg, m->valid, m->used - m->valid);
        }
        if ((r = fsync_fd(w->seg_fd)) != 0) {
            set_err(err, errlen, "cannot sync log segment %s/%s: %s", dir, m->name,
                    strerror(-r));
            goto fail;
        }
        w->seg_no = m->no;
        w->seg_size = m->valid;
        for (size_t i = 0; i + 1 < nsegs; i++)
            w->old_bytes += segs[i].valid;
    } else {
        w->seg_no = S ? S : 1;
        if ((r = create_segment(w, w->seg_no, -1, &w->seg_fd)) != 0) {
            seg_name(name, sizeof name, w->seg_no);
            set_err(err, errlen, "cannot create log segment %s/%s: %s", dir, name,
                    strerror(-r));
            goto fail;
        }
    }
    bool removed = false;
    for (size_t i = 0; i < first; i++) { /* covered by snap.S */
        seg_name(name, sizeof name, sc.segs.v[i]);
        removed |= unlinkat(w->dirfd, name, 0) == 0;
    }
    for (size_t i = 0; i + 1 < sc.snaps.n; i++) {
        snap_name(name, sizeof name, sc.snaps.v[i]);
        removed |= unlinkat(w->dirfd, name, 0) == 0;
    }
    remove_tmp_files(w->dirfd);
    if (removed)
        fsync(w->dirfd);
    w->min_seg = nsegs ? segs[0].no : w->seg_no;
    w->snap_seg = S;

    /* ---- pass 2: replay ---- */
    if (apply) {
        size_t off;
        if (snap.map)
            snap_parse(snap.map, snap.size, S, apply, apply_arg, &off, why, sizeof why);
        for (size_t i = 0; i < nsegs; i++) {
            size_t v;
            dht_wal_parse(segs[i].map, segs[i].valid, apply, apply_arg, &v, NULL, 0);
        }
    }
    for (size_t i = 0; i < nsegs; i++)
        unmap_file(&segs[i]);
    unmap_file(&snap);
    free(segs);
    free(sc.segs.v);
    free(sc.snaps.v);
    *out = w;
    return 0;

fail:
    for (size_t i = 0; segs && i < nsegs; i++)
        unmap_file(&segs[i]);
    unmap_file(&snap);
    free(segs);
    free(sc.segs.v);
    free(sc.snaps.v);
    wal_free(w);
    return r;
}

bool dht_wal_fresh(const dht_wal *w)
{
    return w && w->fresh;
}

/* ================================================================ append */

/* Outcome of one write (+ sync) of a batch at 'off'.  Called without mu;
 * the caller owns the I/O slot (io_busy). */
struct io_result {
    int r;       /* 0 or -errno for the batch */
    bool fatal;  /* file state unknown: sticky failure */
    bool synced; /* an fdatasync was attempted */
    int trunc_errno;
};

static struct io_result do_io(int fd, uint64_t off, const uint8_t *buf, size_t n, bool sync)
{
    struct io_result res = {0, false, false, 0};
    if (fd < 0) {
        res.r = -EBADF;
        res.fatal = true;
        return res;
    }
    res.r = pwrite_all(fd, buf, n, off);
    if (res.r != 0) {
        /* drop whatever part of the batch made it, so the file stays a
         * clean sequence of records and the next append lands aligned */
        if (ftruncate(fd, (off_t)off) != 0) {
            res.trunc_errno = errno;
            res.fatal = true;
        }
        return res;
    }
    if (sync) {
        res.synced = true;
        if (fdatasync(fd) != 0) {
            res.r = -errno;
            res.fatal = true;
        }
    }
    return res;
}

/* Account for an I/O outcome; mu held. */
static void finish_io_locked(dht_wal *w, const struct io_result *res, size_t n, size_t nrec)
{
    char name[NAME_MAX_LEN];
    w->stats.writes++;
    if (res->synced)
        w->stats.fsyncs++;
    if (res->r == 0) {
        w->seg_size += n;
        w->stats.appends += nrec;
        if (w->io_err) {
            wal_log(DHT_WAL_LOG_INFO, "%s: appends succeed again after error: %s", w->dir,
                    strerror(-w->io_err));
            w->io_err = 0;
        }
        return;
    }
    w->stats.append_errors += nrec;
    seg_name(name, sizeof name, w->seg_no);
    if (res->fatal) {
        w->failed = res->r;
        if (res->trunc_errno)
            wal_log(DHT_WAL_LOG_ERROR,
                    "write to %s/%s failed (%s) and truncating it back failed (%s); "
                    "all appends fail until the log is reopened",
                    w->dir, name, strerror(-res->r), strerror(res->trunc_errno));
        else
            wal_log(DHT_WAL_LOG_ERROR,
                    "fdatasync of %s/%s failed: %s; unsynced data may be lost, all appends "
                    "fail until the log is reopened",
                    w->dir, name, strerror(-res->r));
    } else if (w->io_err != res->r) {
        w->io_err = res->r;
        wal_log(DHT_WAL_LOG_ERROR, "append to %s/%s failed: %s; later appends will retry",
                w->dir, name, strerror(-res->r));
    }
}

/* BATCH leader: write everything pending in one go.  mu held, !io_busy. */
static void lead_batch_locked(dht_wal *w)
{
    uint8_t *buf = w->pend;
    size_t n = w->pend_len, cap = w->pend_cap;
    struct waiter *list = w->wq_head;
    w->pend = w->spare;
    w->pend_cap = w->spare_cap;
    w->pend_len = 0;
    w->wq_head = NULL;
    w->wq_tail = &w->wq_head;

    size_t nrec = n / DHT_WAL_RECORD_SIZE;
    struct io_result res = {w->failed, false, false, 0};
    if (!w->failed) {
        int fd = w->seg_fd;
        uint64_t off = w->seg_size;
        w->io_busy = true;
        pthread_mutex_unlock(&w->mu);
        res = do_io(fd, off, buf, n, true);
        pthread_mutex_lock(&w->mu);
        w->io_busy = false;
        finish_io_locked(w, &res, n, nrec);
    } else {
        w->stats.append_errors += nrec;
    }
    for (struct waiter *q = list; q; q = q->next) {
        q->result = res.r;
        q->done = 1;
    }
    w->spare = buf;
    w->spare_cap = cap;
    pthread_cond_broadcast(&w->cv);
}

/* Appends len bytes of whole records (len <= MAX_BATCH) and returns once
 * they are durable per the mode.  In BATCH mode they join the pending
 * group and share its fsync; a caller bringing many records (a replica
 * batch) thus pays one fsync for all of them. */
static int append_records(dht_wal *w, const uint8_t *rec, size_t len)
{
    int r;
    size_t nrec = len / DHT_WAL_RECORD_SIZE;
    pthread_mutex_lock(&w->mu);
    if (w->mode == DHT_FSYNC_BATCH) {
        while (!w->failed && w->pend_len + len > MAX_BATCH)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->failed) {
            r = w->failed;
            w->stats.append_errors += nrec;
            pthread_mutex_unlock(&w->mu);
            return r;
        }
        if (w->pend_len + len > w->pend_cap) {
            size_t nc = w->pend_cap ? w->pend_cap * 2 : 64 * DHT_WAL_RECORD_SIZE;
            while (nc < w->pend_len + len)
                nc *= 2;
            if (nc > MAX_BATCH)
                nc = MAX_BATCH;
            uint8_t *nb = realloc(w->pend, nc);
            if (!nb) {
                w->stats.append_errors += nrec;
                pthread_mutex_unlock(&w->mu);
                return -ENOMEM;
            }
            w->pend = nb;
            w->pend_cap = nc;
        }
        memcpy(w->pend + w->pend_len, rec, len);
        w->pend_len += len;
        struct waiter me = {NULL, 0, 0};
        *w->wq_tail = &me;
        w->wq_tail = &me.next;
        while (!me.done) {
            if (!w->io_busy)
                lead_batch_locked(w); /* my records are still pending: lead */
            else
                pthread_cond_wait(&w->cv, &w->mu);
        }
        r = me.result;
    } else {
        while (w->io_busy)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->failed) {
            r = w->failed;
            w->stats.append_errors += nrec;
        } else {
            int fd = w->seg_fd;
            uint64_t off = w->seg_size;
            w->io_busy = true;
            pthread_mutex_unlock(&w->mu);
            struct io_result res = do_io(fd, off, rec, len, w->mode == DHT_FSYNC_ALWAYS);
            pthread_mutex_lock(&w->mu);
            w->io_busy = false;
            finish_io_locked(w, &res, len, nrec);
            r = res.r;
            pthread_cond_broadcast(&w->cv);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return r;
}

int dht_wal_append(dht_wal *w, int64_t key, int64_t value, uint64_t counter, uint64_t writer)
{
    uint8_t rec[DHT_WAL_RECORD_SIZE];
    if (!w)
        return -EINVAL;
    dht_wal_encode(rec, key, value, counter, writer);
    return append_records(w, rec, sizeof rec);
}

int dht_wal_append_many(dht_wal *w, const dht_wal_record *recs, size_t n)
{
    enum { CHUNK = 1024 }; /* records per write: well under MAX_BATCH */
    if (!w)
        return -EINVAL;
    uint8_t *buf = malloc((n < CHUNK ? n : CHUNK) * DHT_WAL_RECORD_SIZE + 1);
    if (buf == NULL)
        return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < k; j++) {
            const dht_wal_record *x = &recs[i + j];
            dht_wal_encode(buf + j * DHT_WAL_RECORD_SIZE, x->key, x->value, x->counter,
                           x->writer);
        }
        r = append_records(w, buf, k * DHT_WAL_RECORD_SIZE);
    }
    free(buf);
    return r;
}

/* ================================================================ checkpoint */

int dht_wal_checkpoint_begin(dht_wal *w)
{
    char name[NAME_MAX_LEN];
    if (!w)
        return -EINVAL;
    pthread_mutex_lock(&w->ckpt_mu);
    /* Zero-filling the next segment takes a while: do it before appends
     * have to wait for this checkpoint. */
    int prepared = prepare_segment(w);
    pthread_mutex_lock(&w->mu);
    while (w->io_busy)
        pthread_cond_wait(&w->cv, &w->mu);
    int r = w->failed;
    if (r) {
        pthread_mutex_unlock(&w->mu);
        discard_prepared(w, prepared);
        pthread_mutex_unlock(&w->ckpt_mu);
        return r;
    }
    int old_fd = w->seg_fd;
    uint64_t old_no = w->seg_no;
    w->io_busy = true;
    pthread_mutex_unlock(&w->mu);

    /* the old segment must be complete on disk before a newer one exists:
     * only the last segment may ever hold a torn tail */
    int new_fd = -1;
    bool fatal = false;
    r = fsync_fd(old_fd);
    if (r != 0) {
        fatal = true;
        seg_name(name, sizeof name, old_no);
        wal_log(DHT_WAL_LOG_ERROR,
                "fdatasync of %s/%s failed: %s; all appends fail until the log is reopened",
                w->dir, name, strerror(-r));
    } else if ((r = create_segment(w, old_no + 1, prepared, &new_fd)) != 0) {
        prepared = -1; /* create_segment took it */
        seg_name(name, sizeof name, old_no + 1);
        wal_log(DHT_WAL_LOG_ERROR, "checkpoint: cannot create log segment %s/%s: %s", w->dir,
                name, strerror(-r));
    }

    if (fatal)
        discard_prepared(w, prepared);
    pthread_mutex_lock(&w->mu);
    if (fatal) {
        w->failed = r;
    } else if (r == 0) {
        close(old_fd);
        w->seg_fd = new_fd;
        w->seg_no = old_no + 1;
        w->old_bytes += w->seg_size;
        w->seg_size = 0;
        w->ckpt_seg = w->seg_no;
        w->ckpt_covered = w->old_bytes;
    }
    w->io_busy = false;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_unlock(&w->ckpt_mu);
    return r;
}

struct snap_writer {
    int fd;
    int err;
    uint32_t crc;
    uint64_t count;
    size_t used;
    uint8_t buf[64 * 1024];
};

static void snap_flush(struct snap_writer *sw)
{
    if (sw->err == 0 && sw->used > 0) {
        sw->crc = dht_crc32c(sw->crc, sw->buf, sw->used);
        sw->err = write_all(sw->fd, sw->buf, sw->used);
    }
    sw->used = 0;
}

static void snap_emit(void *arg, int64_t key, int64_t value, uint64_t counter, uint64_t writer)
{
    struct snap_writer *sw = arg;
    if (sw->err)
        return;
    if (sw->used + SNAP_REC > sizeof sw->buf)
        snap_flush(sw);
    uint8_t *p = sw->buf + sw->used;
    dht_le_put64(p, (uint64_t)key);
    dht_le_put64(p + 8, (uint64_t)value);
    dht_le_put64(p + 16, counter);
    dht_le_put64(p + 24, writer);
    sw->used += SNAP_REC;
    sw->count++;
}

/* Write snap.<no> atomically via SNAP_TMP. */
static int write_snapshot(dht_wal *w, uint64_t no, dht_wal_iter_fn iter, void *iter_arg)
{
    char name[NAME_MAX_LEN];
    struct snap_writer *sw = malloc(sizeof *sw);
    if (!sw)
        return -ENOMEM;
    sw->err = 0;
    sw->crc = 0;
    sw->count = 0;
    sw->used = 0;
    sw->fd = openat(w->dirfd, SNAP_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (sw->fd < 0) {
        int e = errno;
        free(sw);
        return -e;
    }
    memcpy(sw->buf, "DHTSNAP1", 8);
    dht_le_put32(sw->buf + 8, 1);
    dht_le_put32(sw->buf + 12, SNAP_REC);
    dht_le_put64(sw->buf + 16, no);
    sw->used = SNAP_HDR;

    int r = iter ? iter(iter_arg, snap_emit, sw) : 0;
    if (r > 0)
        r = -ECANCELED;
    if (r == 0) {
        snap_flush(sw);
        memcpy(sw->buf, "DHTSEND1", 8);
        dht_le_put64(sw->buf + 8, sw->count);
        uint32_t crc = dht_crc32c(sw->crc, sw->buf, 16);
        dht_le_put32(sw->buf + 16, crc);
        dht_le_put32(sw->buf + 20, 0);
        if (sw->err == 0)
            sw->err = write_all(sw->fd, sw->buf, SNAP_TRAILER);
        r = sw->err;
    }
    if (r == 0)
        r = fsync_fd(sw->fd);
    if (close(sw->fd) != 0 && r == 0)
        r = -errno;
    free(sw);
    snap_name(name, sizeof name, no);
    if (r == 0 && renameat(w->dirfd, SNAP_TMP, w->dirfd, name) != 0)
        r = -errno;
    if (r == 0)
        r = fsync_fd(w->dirfd);
    if (r != 0)
        unlinkat(w->dirfd, SNAP_TMP, 0);
    return r;
}

int dht_wal_checkpoint_commit(dht_wal *w, dht_wal_iter_fn iter, void *iter_arg)
{
    char name[NAME_MAX_LEN];
    if (!w)
        return -EINVAL;
    pthread_mutex_lock(&w->ckpt_mu);
    uint64_t no = w->ckpt_seg;
    if (no == 0) {
        pthread_mutex_unlock(&w->ckpt_mu);
        return -EINVAL;
    }
    int r = write_snapshot(w, no, iter, iter_arg);
    if (r != 0) {
        if (r != w->ckpt_err)
            wal_log(DHT_WAL_LOG_ERROR, "checkpoint of %s failed: %s; the log keeps growing",
                    w->dir, strerror(-r));
        w->ckpt_err = r;
        pthread_mutex_unlock(&w->ckpt_mu);
        return r;
    }
    if (w->ckpt_err)
        wal_log(DHT_WAL_LOG_INFO, "checkpoint of %s succeeds again", w->dir);
    w->ckpt_err = 0;

    /* snap.<no> is durable: everything older is redundant */
    bool removed = false;
    for (uint64_t k = w->min_seg; k < no; k++) {
        seg_name(name, sizeof name, k);
        if (unlinkat(w->dirfd, name, 0) == 0)
            removed = true;
        else if (errno != ENOENT)
            wal_log(DHT_WAL_LOG_WARN, "cannot delete %s/%s: %s (will retry at next open)",
                    w->dir, name, strerror(errno));
    }
    if (w->snap_seg && w->snap_seg != no) {
        snap_name(name, sizeof name, w->snap_seg);
        if (unlinkat(w->dirfd, name, 0) == 0)
            removed = true;
    }
    if (removed)
        fsync(w->dirfd);
    w->min_seg = no;
    w->snap_seg = no;
    w->ckpt_seg = 0;

    pthread_mutex_lock(&w->mu);
    w->old_bytes -= w->ckpt_covered;
    w->stats.checkpoints++;
    pthread_mutex_unlock(&w->mu);
    w->ckpt_covered = 0;
    pthread_mutex_unlock(&w->ckpt_mu);
    return 0;
}

uint64_t dht_wal_log_bytes(dht_wal *w)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    uint64_t n = w->old_bytes + w->seg_size;
    pthread_mutex_unlock(&w->mu);
    return n;
}

int64_t dht_wal_disk_bytes(dht_wal *w)
{
    DIR *d = w ? open_dir(w->dirfd) : NULL;
    if (!d)
        return w ? -errno : -EINVAL;
    int64_t total = 0;
    int r = 0;
    struct dirent *de;
    while (r == 0 && (errno = 0, de = readdir(d)) != NULL) {
        uint64_t no;
        struct stat st;
        if (!parse_numbered(de->d_name, SEG_PREFIX, &no) &&
            !parse_numbered(de->d_name, SNAP_PREFIX, &no))
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            total += (int64_t)st.st_size;
        else if (errno != ENOENT) /* ENOENT: a checkpoint just deleted it */
            r = -errno;
    }
    if (r == 0 && errno != 0)
        r = -errno;
    closedir(d);
    return r != 0 ? r : total;
}

void dht_wal_get_stats(dht_wal *w, dht_wal_stats *out)
{
    if (!w || !out)
        return;
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    pthread_mutex_unlock(&w->mu);
}

/* ================================================================ meta */

int dht_wal_meta_set(dht_wal *w, const char *name, const char *value)
{
    char fname[NAME_MAX_LEN], tname[NAME_MAX_LEN], hdr[64];
    if (!w || !value || !meta_name_ok(name))
        return -EINVAL;
    size_t len = strlen(value);
    if (len > DHT_WAL_META_MAX)
        return -E2BIG;
    snprintf(fname, sizeof fname, META_PREFIX "%s", name);
    snprintf(tname, sizeof tname, META_PREFIX "%s.tmp", name);
    int hl = snprintf(hdr, sizeof hdr, "dhtmeta1 %08x %zu\n",
                      (unsigned)dht_crc32c(0, value, len), len);
    pthread_mutex_lock(&w->meta_mu);
    int r = atomic_write(w->dirfd, tname, fname, hdr, (size_t)hl, value, len);
    pthread_mutex_unlock(&w->meta_mu);
    return r;
}

int dht_wal_meta_get(dht_wal *w, const char *name, char *buf, size_t len)
{
    char fname[NAME_MAX_LEN];
    if (!w || !meta_name_ok(name) || (!buf && len))
        return -EINVAL;
    snprintf(fname, sizeof fname, META_PREFIX "%s", name);
    size_t cap = 64 + DHT_WAL_META_MAX + 1;
    char *data = malloc(cap);
    if (!data)
        return -ENOMEM;
    pthread_mutex_lock(&w->meta_mu);
    int r = 0;
    size_t n = 0;
    int fd = openat(w->dirfd, fname, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
    } else {
        while (n < cap) {
            ssize_t k = read(fd, data + n, cap - n);
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                r = -errno;
                break;
            }
            if (k == 0)
                break;
            n += (size_t)k;
        }
        close(fd);
    }
    pthread_mutex_unlock(&w->meta_mu);
    if (r == 0) {
        /* "dhtmeta1 XXXXXXXX LEN\n" VALUE */
        char *nl = memchr(data, '\n', n < 64 ? n : 64);
        unsigned crc = 0;
        size_t vlen = 0;
        int used = 0;
        if (!nl || n - (size_t)(nl + 1 - data) > DHT_WAL_META_MAX) {
            r = -EBADMSG;
        } else {
            *nl = '\0';
            if (sscanf(data, "dhtmeta1 %8x %zu%n", &crc, &vlen, &used) != 2 ||
                data + used != nl || vlen != n - (size_t)(nl + 1 - data) ||
                dht_crc32c(0, nl + 1, vlen) != crc || memchr(nl + 1, '\0', vlen))
                r = -EBADMSG;
        }
        if (r == 0) {
            if (len <= vlen) {
                r = -ERANGE;
            } else {
                memcpy(buf, nl + 1, vlen);
                buf[vlen] = '\0';
                r = (int)vlen;
            }
        }
    }
    free(data);
    return r;
}

/* ================================================================ close */

void dht_wal_close(dht_wal *w)
{
    if (!w)
        return;
    if (w->seg_fd >= 0 && !w->failed && fdatasync(w->seg_fd) != 0) {
        char name[NAME_MAX_LEN];
        seg_name(name, sizeof name, w->seg_no);
        wal_log(DHT_WAL_LOG_ERROR, "fdatasync of %s/%s at close failed: %s", w->dir, name,
                strerror(errno));
    }
    wal_free(w);
}
