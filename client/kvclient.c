#include "kvclient.h"

#include "call_sync.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "etcd.h"

/* After a failed call: the next call goes to the next listed node. */
static void next_peer(kvclient *c)
{
    if (c->t->npeers > 1)
        c->peer = (c->peer + 1) % c->t->npeers;
}

/* gRPC codes UNAVAILABLE (14) and DEADLINE_EXCEEDED (4), or a transport
 * that could not make the call: the node may be gone. */
static void etcd_after(kvclient *c, int grpc_status)
{
    if (grpc_status == 14 || grpc_status == 4 || grpc_status < 0)
        next_peer(c);
}

/* One public call to the --via node; returns the transport status and, on
 * failure, the node's gRPC status and details in err. */
static dht_status via_call(kvclient *c, const dht_msg *req, dht_msg *reply, char *err,
                           size_t errlen)
{
    int64_t deadline = dht_transport_now(c->t) + c->deadline_ns;
    dht_status st = dht_call_sync(c->t, c->peer, req, deadline, reply, err, errlen);
    if (st == DHT_ERR_UNAVAILABLE || st == DHT_ERR_TIMEOUT)
        next_peer(c);
    return st;
}

dht_put_outcome kv_put(kvclient *c, int64_t key, int64_t value, char *reason, size_t len)
{
    if (c->coord)
        return dht_coord_put_sync(c->coord, key, value, reason, len);
    if (c->etcd) {
        int gs;
        dht_put_outcome out =
            etcd_put(c->etcd, c->peer, c->deadline_ns, key, value, &gs, reason, len);
        etcd_after(c, gs);
        return out;
    }
    dht_msg req = {.type = DHT_MSG_PUT, .key = key, .value = value}, rep;
    char err[256];
    dht_status st = via_call(c, &req, &rep, err, sizeof err);
    if (st == DHT_OK) {
        if (rep.outcome != DHT_PUT_APPLIED)
            snprintf(reason, len, "node answered %s", dht_put_outcome_name(rep.outcome));
        return (dht_put_outcome)rep.outcome;
    }
    /* The request may have reached the node before the failure. */
    snprintf(reason, len, "node call failed (%s): outcome unknown", err);
    return DHT_PUT_UNKNOWN;
}

int kv_get(kvclient *c, int64_t key, int64_t *value, char *reason, size_t len)
{
    if (c->coord)
        return dht_coord_get_sync(c->coord, key, value, reason, len);
    if (c->etcd) {
        int gs;
        int ok = etcd_get(c->etcd, c->peer, c->deadline_ns, key, value, &gs, reason, len);
        etcd_after(c, gs);
        return ok;
    }
    dht_msg req = {.type = DHT_MSG_GET, .key = key}, rep;
    char err[256];
    dht_status st = via_call(c, &req, &rep, err, sizeof err);
    if (st != DHT_OK) {
        snprintf(reason, len, "node call failed (%s)", err);
        return 0;
    }
    *value = rep.value;
    return 1;
}

int kv_replica_read(kvclient *c, int64_t key, int64_t *value, dht_version *ver, char *reason,
                    size_t len)
{
    dht_msg req = {.type = DHT_MSG_READ, .key = key}, rep;
    char err[256];
    dht_status st = via_call(c, &req, &rep, err, sizeof err);
    if (st != DHT_OK || !rep.ok) {
        snprintf(reason, len, "%s", st != DHT_OK ? err : "replica is recovering");
        return 0;
    }
    *value = rep.value;
    *ver = rep.version;
    return 1;
}
