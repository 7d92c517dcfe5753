#include "etcd.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_kv.pb-c.h"
#include "le.h"
#include "transport_grpc.h"
#include "util.h"

#define ETCD_PUT_METHOD "/etcdserverpb.KV/Put"
#define ETCD_RANGE_METHOD "/etcdserverpb.KV/Range"

typedef struct {
    dht_latch latch;
    bool is_get;
    int status;     /* gRPC status, -1 on transport shutdown */
    int decoded;    /* 1: reply parsed */
    int64_t value;  /* get: the value read */
    char why[96];   /* decode problem, if any */
} etcd_wait;

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
                value = (int64_t)dht_le_get64(r->kvs[0]->value.data);
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
    w->status = status;
    w->decoded = decoded;
    w->value = value;
    memcpy(w->why, why, sizeof why);
    dht_latch_open(&w->latch);
}

/* One call; fills w.  Returns 0 when the call ran (see w->status). */
static int etcd_call(struct dht_grpc *g, int peer, const char *method, const uint8_t *req,
                     size_t len, int64_t timeout_ns, etcd_wait *w)
{
    dht_latch_init(&w->latch);
    w->status = -1;
    int rc = dht_grpc_call_async(g, peer, method, req, len, dht_now_ns() + timeout_ns, etcd_cb,
                                 w);
    if (rc == 0)
        dht_latch_wait(&w->latch);
    dht_latch_destroy(&w->latch);
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
    dht_le_put64(v, (uint64_t)value);
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
