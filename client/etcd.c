#include "etcd.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_kv.pb-c.h"
#include "base/le.h"
#include "net/transport_grpc.h"
#include "base/util.h"

#define ETCD_PUT_METHOD "/etcdserverpb.KV/Put"
#define ETCD_RANGE_METHOD "/etcdserverpb.KV/Range"

typedef struct {
    bool is_get;
    etcd_cb cb;
    void *arg;
} etcd_call;

/* Runs on a transport worker: decode while the reply bytes are valid. */
static void etcd_done(void *arg, int status, const uint8_t *resp, size_t len)
{
    etcd_call *c = arg;
    char why[96] = "";
    etcd_result r = {.status = status, .why = why};
    if (status == 0 && c->is_get) {
        Etcdserverpb__RangeResponse *rr = etcdserverpb__range_response__unpack(NULL, len, resp);
        if (rr == NULL) {
            snprintf(why, sizeof why, "undecodable RangeResponse (%zu bytes)", len);
        } else {
            if (rr->n_kvs == 0) {
                r.decoded = true; /* never written: 0, as in our store */
            } else if (rr->kvs[0]->value.len == 8) {
                r.value = (int64_t)dht_le_get64(rr->kvs[0]->value.data);
                r.decoded = true;
            } else {
                snprintf(why, sizeof why, "value of %zu bytes, expected 8",
                         rr->kvs[0]->value.len);
            }
            etcdserverpb__range_response__free_unpacked(rr, NULL);
        }
    } else if (status == 0) {
        Etcdserverpb__PutResponse *pr = etcdserverpb__put_response__unpack(NULL, len, resp);
        if (pr == NULL) {
            snprintf(why, sizeof why, "undecodable PutResponse (%zu bytes)", len);
        } else {
            r.decoded = true;
            etcdserverpb__put_response__free_unpacked(pr, NULL);
        }
    }
    etcd_cb cb = c->cb;
    void *cb_arg = c->arg;
    free(c);
    cb(cb_arg, &r);
}

int etcd_call_async(struct dht_grpc *g, int peer, int64_t timeout_ns, bool is_get, int64_t key,
                    int64_t value, etcd_cb cb, void *arg)
{
    char k[24];
    uint8_t v[8], buf[64]; /* either request is <= 2+20+2+8 bytes */
    size_t n;
    int klen = snprintf(k, sizeof k, "%lld", (long long)key);
    if (is_get) {
        Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
        req.key.data = (uint8_t *)k;
        req.key.len = (size_t)klen;
        req.serializable = 0; /* linearizable */
        n = etcdserverpb__range_request__pack(&req, buf);
    } else {
        dht_le_put64(v, (uint64_t)value);
        Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
        req.key.data = (uint8_t *)k;
        req.key.len = (size_t)klen;
        req.value.data = v;
        req.value.len = sizeof v;
        n = etcdserverpb__put_request__pack(&req, buf);
    }
    etcd_call *c = malloc(sizeof *c);
    if (c == NULL)
        return -1;
    *c = (etcd_call){is_get, cb, arg};
    if (dht_grpc_call_async(g, peer, is_get ? ETCD_RANGE_METHOD : ETCD_PUT_METHOD, buf, n,
                            dht_now_ns() + timeout_ns, etcd_done, c) != 0) {
        free(c);
        return -1;
    }
    return 0;
}
