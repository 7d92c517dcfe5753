#include "etcd.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_kv.pb-c.h"
#include "transport_grpc.h"
#include "util.h"

#define ETCD_PUT_METHOD "/etcdserverpb.KV/Put"
#define ETCD_RANGE_METHOD "/etcdserverpb.KV/Range"

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    bool is_get;
    int status;     /* gRPC status, -1 on transport shutdown */
    int decoded;    /* 1: reply parsed */
    int64_t value;  /* get: the value read */
    char why[96];   /* decode problem, if any */
} etcd_wait;

static int64_t le64_decode(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return (int64_t)v;
}

static void le64_encode(int64_t v, uint8_t *p)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

/* Runs on a transport worker: decode while the reply bytes are valid. */
static void etcd_cb(void *arg, int status, const uint8_t *resp, size_t len)
{
    etcd_wait *w = arg;
    int decoded = 0;
    int64_t value = 0;
    char why[96] = "";
    if (status == 0 && w->is_get) {
        Etcdserverpb__RangeResponse *r = etcdserverpb__range_response__unpack(NULL, len, resp);
        if (r == NULL) {
            snprintf(why, sizeof why, "undecodable RangeResponse (%zu bytes)", len);
        } else {
            if (r->n_kvs == 0) {
                decoded = 1; /* never written: 0, as in our store */
            } else if (r->kvs[0]->value.len == 8) {
                value = le64_decode(r->kvs[0]->value.data);
                decoded = 1;
            } else {
                snprintf(why, sizeof why, "value of %zu bytes, expected 8",
                         r->kvs[0]->value.len);
            }
            etcdserverpb__range_response__free_unpacked(r, NULL);
        }
    } else if (status == 0) {
        Etcdserverpb__PutResponse *r = etcdserverpb__put_response__unpack(NULL, len, resp);
        if (r == NULL) {
            snprintf(why, sizeof why, "undecodable PutResponse (%zu bytes)", len);
        } else {
            decoded = 1;
            etcdserverpb__put_response__free_unpacked(r, NULL);
        }
    }
    pthread_mutex_lock(&w->mu);
    w->status = status;
    w->decoded = decoded;
    w->value = value;
    memcpy(w->why, why, sizeof why);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* One call; fills w.  Returns 0 when the call ran (see w->status). */
static int etcd_call(struct dht_grpc *g, int peer, const char *method, const uint8_t *req,
                     size_t len, int64_t timeout_ns, etcd_wait *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = false;
    w->status = -1;
    int rc = dht_grpc_call_async(g, peer, method, req, len, dht_now_ns() + timeout_ns, etcd_cb,
                                 w);
    if (rc == 0) {
        pthread_mutex_lock(&w->mu);
        while (!w->done)
            pthread_cond_wait(&w->cv, &w->mu);
        pthread_mutex_unlock(&w->mu);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return rc;
}

static size_t key_text(int64_t key, char *buf, size_t cap)
{
    return (size_t)snprintf(buf, cap, "%lld", (long long)key);
}

dht_put_outcome etcd_put(struct dht_grpc *g, int peer, int64_t timeout_ns, int64_t key,
                         int64_t value, int *grpc_status, char *reason, size_t len)
{
    char k[24];
    uint8_t v[8], buf[64];
    le64_encode(value, v);
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key.data = (uint8_t *)k;
    req.key.len = key_text(key, k, sizeof k);
    req.value.data = v;
    req.value.len = sizeof v;
    size_t n = etcdserverpb__put_request__pack(&req, buf); /* <= 2+20+2+8 bytes */
    etcd_wait w = {.is_get = false};
    if (etcd_call(g, peer, ETCD_PUT_METHOD, buf, n, timeout_ns, &w) != 0) {
        *grpc_status = -1;
        snprintf(reason, len, "etcd call could not start: not applied");
        return DHT_PUT_NOT_APPLIED;
    }
    *grpc_status = w.status;
    if (w.status == 0 && w.decoded)
        return DHT_PUT_APPLIED;
    if (w.status == 0)
        snprintf(reason, len, "etcd Put answered OK but %s: outcome unknown", w.why);
    else
        snprintf(reason, len, "etcd Put failed (%s): outcome unknown",
                 w.status < 0 ? "SHUTDOWN" : dht_grpc_status_name(w.status));
    return DHT_PUT_UNKNOWN;
}

int etcd_get(struct dht_grpc *g, int peer, int64_t timeout_ns, int64_t key, int64_t *value,
             int *grpc_status, char *reason, size_t len)
{
    char k[24];
    uint8_t buf[64];
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key.data = (uint8_t *)k;
    req.key.len = key_text(key, k, sizeof k);
    req.serializable = 0; /* linearizable */
    size_t n = etcdserverpb__range_request__pack(&req, buf);
    etcd_wait w = {.is_get = true};
    if (etcd_call(g, peer, ETCD_RANGE_METHOD, buf, n, timeout_ns, &w) != 0) {
        *grpc_status = -1;
        snprintf(reason, len, "etcd call could not start");
        return 0;
    }
    *grpc_status = w.status;
    if (w.status == 0 && w.decoded) {
        *value = w.value;
        return 1;
    }
    if (w.status == 0)
        snprintf(reason, len, "etcd Range answered OK but %s", w.why);
    else
        snprintf(reason, len, "etcd Range failed (%s)",
                 w.status < 0 ? "SHUTDOWN" : dht_grpc_status_name(w.status));
    return 0;
}
