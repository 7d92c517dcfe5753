/* Durable replica glue.  Checkpoint order matters (see wal.h): the replica's
 * writes are quiesced only around the segment rotation, so every record in
 * the old segments is already applied in memory when the snapshot walks the
 * replica; the snapshot itself runs concurrently with new writes, which land
 * in the new segment and are replayed after it. */
#include "storage/durable.h"

#include <errno.h>
#include <pthread.h>
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
    free(d);
}
