/* Durable replica glue.  Checkpoint order matters (see wal.h): the replica's
 * writes are quiesced only around the segment rotation, so every record in
 * the old segments is already applied in memory when the snapshot walks the
 * replica; the snapshot itself runs concurrently with new writes, which land
 * in the new segment and are replayed after it. */
#include "storage/durable.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/util.h"

#define CHECK_EVERY_NS (500 * DHT_NS_PER_MS)
#define MIN_LOG_BYTES (1u << 20)

struct dht_durable {
    dht_wal *wal;
    dht_replica *r;
    bool initialized;
    char *config;                 /* meta.config, or NULL */
    _Atomic uint64_t cluster_id;  /* meta.cluster_id, or 0 */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

static void replay_apply(void *arg, int64_t key, int64_t value, uint64_t counter,
                         uint64_t writer)
{
    dht_replica_apply(arg, key, value, (dht_version){counter, writer});
}

static int persist(void *arg, const dht_entry *writes, size_t n)
{
    if (n == 1)
        return dht_wal_append(arg, writes[0].key, writes[0].value, writes[0].version.counter,
                              writes[0].version.writer);
    dht_wal_record *recs = malloc(n * sizeof *recs);
    if (recs == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        recs[i] = (dht_wal_record){writes[i].key, writes[i].value, writes[i].version.counter,
                                   writes[i].version.writer};
    int rc = dht_wal_append_many(arg, recs, n);
    free(recs);
    return rc;
}

static void wal_log(void *arg, dht_wal_log_level level, const char *msg)
{
    (void)arg;
    dht_log(level == DHT_WAL_LOG_ERROR  ? DHT_LOG_ERROR
            : level == DHT_WAL_LOG_WARN ? DHT_LOG_WARN
                                        : DHT_LOG_INFO,
            "storage: %s", msg);
}

typedef struct {
    dht_wal_apply_fn emit;
    void *emit_arg;
} emit_ctx;

static void emit_entry(void *arg, int64_t key, int64_t value, dht_version ver)
{
    emit_ctx *e = arg;
    e->emit(e->emit_arg, key, value, ver.counter, ver.writer);
}

static int iterate(void *arg, dht_wal_apply_fn emit, void *emit_arg)
{
    emit_ctx e = {emit, emit_arg};
    dht_replica_foreach(arg, emit_entry, &e);
    return 0;
}

int dht_durable_checkpoint(dht_durable *d)
{
    dht_replica_quiesce_begin(d->r);
    int rc = dht_wal_checkpoint_begin(d->wal);
    dht_replica_quiesce_end(d->r);
    if (rc == 0)
        rc = dht_wal_checkpoint_commit(d->wal, iterate, d->r);
    return rc;
}

static void *checkpoint_main(void *arg)
{
    dht_durable *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t abs = (int64_t)ts.tv_sec * DHT_NS_PER_SEC + ts.tv_nsec + CHECK_EVERY_NS;
        ts.tv_sec = abs / DHT_NS_PER_SEC;
        ts.tv_nsec = abs % DHT_NS_PER_SEC;
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
        if (d->stop)
            break;
        pthread_mutex_unlock(&d->mu);
        /* Snapshot once the log holds twice what a snapshot would. */
        uint64_t live = (uint64_t)dht_replica_size(d->r) * DHT_WAL_RECORD_SIZE;
        uint64_t limit = 2 * live > MIN_LOG_BYTES ? 2 * live : MIN_LOG_BYTES;
        if (dht_wal_log_bytes(d->wal) > limit) {
            int rc = dht_durable_checkpoint(d);
            if (rc != 0)
                DHT_ERROR("storage: checkpoint failed: %s", strerror(-rc));
            else
                DHT_DEBUG("storage: checkpoint written (%zu keys)", dht_replica_size(d->r));
        }
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* Reads meta.NAME: 0 with a malloc'ed copy in *out (NULL when it was never
 * recorded), or -1 with a reason. */
static int read_meta(dht_wal *wal, const char *dir, const char *name, char **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    char *buf = malloc(DHT_WAL_META_MAX + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = dht_wal_meta_get(wal, name, buf, DHT_WAL_META_MAX + 1);
    if (rc >= 0) {
        *out = buf;
        return 0;
    }
    free(buf);
    if (rc == -ENOENT)
        return 0;
    snprintf(err, errlen, "data directory %s: cannot read meta.%s: %s", dir, name,
             rc == -EBADMSG ? "damaged (bad header or checksum)" : strerror(-rc));
    return -1;
}

/* 1..16 hex digits, not all zero. */
static int parse_cluster_id(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    uint64_t v = 0;
    if (n == 0 || n > 16)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int digit = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
        if (digit < 0)
            return -1;
        v = v << 4 | (uint64_t)digit;
    }
    if (v == 0)
        return -1;
    *out = v;
    return 0;
}

/* The directory's configuration and cluster id, into d. */
static int load_identity(dht_durable *d, const char *dir, char *err, size_t errlen)
{
    char *id = NULL;
    uint64_t v = 0;
    if (read_meta(d->wal, dir, "config", &d->config, err, errlen) != 0 ||
        read_meta(d->wal, dir, "cluster_id", &id, err, errlen) != 0)
        return -1;
    if (id != NULL && parse_cluster_id(id, &v) != 0) {
        snprintf(err, errlen, "data directory %s: meta.cluster_id holds '%.40s', not a "
                 "cluster id (1-16 hex digits, not 0)", dir, id);
        free(id);
        return -1;
    }
    free(id);
    atomic_init(&d->cluster_id, v);
    return 0;
}

int dht_durable_open(const char *dir, dht_fsync_mode mode, dht_replica *r, dht_durable **out,
                     char *err, size_t errlen)
{
    dht_durable *d = calloc(1, sizeof *d);
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    dht_wal_set_log_fn(wal_log, NULL);
    if (dht_wal_open(dir, mode, replay_apply, r, &d->wal, err, errlen) != 0) {
        free(d);
        return -1;
    }
    char buf[128];
    d->initialized = dht_wal_meta_get(d->wal, "initialized", buf, sizeof buf) >= 0;
    if (load_identity(d, dir, err, errlen) != 0) {
        dht_wal_close(d->wal);
        free(d->config);
        free(d);
        return -1;
    }
    d->r = r;
    dht_replica_set_recovering(r, !d->initialized);
    dht_replica_set_persist(r, persist, d->wal);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (pthread_create(&d->thread, NULL, checkpoint_main, d) != 0) {
        snprintf(err, errlen, "cannot start the checkpoint thread");
        dht_replica_set_persist(r, NULL, NULL);
        dht_wal_close(d->wal);
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv);
        free(d->config);
        free(d);
        return -1;
    }
    *out = d;
    return 0;
}

bool dht_durable_initialized(dht_durable *d)
{
    return d->initialized;
}

int dht_durable_mark_initialized(dht_durable *d, const char *why)
{
    int rc = dht_wal_meta_set(d->wal, "initialized", why);
    if (rc == 0)
        d->initialized = true;
    else
        DHT_ERROR("storage: cannot record that the node is initialized: %s", strerror(-rc));
    return rc;
}

const char *dht_durable_config(dht_durable *d)
{
    return d->config;
}

int dht_durable_set_config(dht_durable *d, const char *line)
{
    char *copy = strdup(line);
    if (copy == NULL)
        return -ENOMEM;
    int rc = dht_wal_meta_set(d->wal, "config", line);
    if (rc != 0) {
        free(copy);
        return rc;
    }
    free(d->config);
    d->config = copy;
    return 0;
}

uint64_t dht_durable_cluster_id(dht_durable *d)
{
    return atomic_load(&d->cluster_id);
}

int dht_durable_set_cluster_id(dht_durable *d, uint64_t id)
{
    char hex[17];
    if (id == 0)
        return -EINVAL;
    snprintf(hex, sizeof hex, "%016" PRIx64, id);
    int rc = dht_wal_meta_set(d->wal, "cluster_id", hex);
    if (rc == 0)
        atomic_store(&d->cluster_id, id);
    else
        DHT_ERROR("storage: cannot record the cluster id %s: %s", hex, strerror(-rc));
    return rc;
}

int64_t dht_durable_disk_bytes(dht_durable *d)
{
    return dht_wal_disk_bytes(d->wal);
}

void dht_durable_close(dht_durable *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    dht_replica_set_persist(d->r, NULL, NULL);
    dht_wal_close(d->wal);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d->config);
    free(d);
}
