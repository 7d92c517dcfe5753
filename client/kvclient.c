#include "kvclient.h"

#include "protocol/blocking_call.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"
#include "follow.h"
#include "net/transport_grpc.h"
#include "base/util.h"

/* One operation in flight; freed when its callback has run. */
typedef struct {
    kvclient *c;
    bool is_put;
    kv_cb cb;
    void *arg;
} pending;

static pending *pending_new(kvclient *c, bool is_put, kv_cb cb, void *arg)
{
    pending *p = malloc(sizeof *p);
    if (p != NULL)
        *p = (pending){c, is_put, cb, arg};
    return p;
}

static void finish(pending *p, kv_result *r)
{
    r->is_put = p->is_put;
    if (r->reason == NULL)
        r->reason = "";
    kv_cb cb = p->cb;
    void *arg = p->arg;
    free(p);
    cb(arg, r);
}

/* After a failed call: the next call goes to the next listed node (the
 * next member, when following them). */
static void next_peer(kvclient *c)
{
    if (c->via != NULL)
        c->peer = follow_via_peer(c->via, c->peer, c->slot, true);
    else if (c->t->npeers > 1)
        c->peer = (c->peer + 1) % c->t->npeers;
}

void kv_set_slot(kvclient *c, int i)
{
    /* The listed nodes, not npeers: a follower adds the members it learns
     * to the transport, and the load starts where the user sent it. */
    int n = c->via != NULL ? follow_via_listed(c->via) : c->t->npeers;
    c->slot = i;
    c->peer = i % (n > 0 ? n : 1);
}

/* ---- fan-out: the client coordinates ------------------------------------ */

static void coord_put_done(void *arg, dht_put_outcome outcome, const char *reason)
{
    kv_result r = {.outcome = outcome, .reason = reason};
    finish(arg, &r);
}

static void coord_get_done(void *arg, int ok, int64_t value, const char *reason)
{
    kv_result r = {.ok = ok, .value = value, .reason = reason};
    finish(arg, &r);
}

/* ---- --via: one node's public service ----------------------------------- */

static void via_done(void *arg, dht_status st, const dht_msg *rep)
{
    pending *p = arg;
    kvclient *c = p->c;
    char why[320];
    kv_result r = {0};
    if (st == DHT_OK) {
        if (p->is_put) {
            r.outcome = (dht_put_outcome)rep->outcome;
            if (r.outcome != DHT_PUT_APPLIED) {
                snprintf(why, sizeof why, "node answered %s", dht_put_outcome_name(r.outcome));
                r.reason = why;
            }
        } else {
            r.ok = 1;
            r.value = rep->value;
        }
    } else {
        /* The transport describes the failure only during this callback. */
        const char *err = c->t->ops->last_error ? c->t->ops->last_error(c->t) : "";
        if (err == NULL || !*err)
            err = dht_status_name(st);
        if (st == DHT_ERR_UNAVAILABLE || st == DHT_ERR_TIMEOUT) {
            /* Unreachable, removed, joining: the members may have changed. */
            if (c->via != NULL)
                follow_via_failed(c->via, c->peer, err);
            next_peer(c);
        }
        /* A put may have reached the node before the failure. */
        snprintf(why, sizeof why, p->is_put ? "node call failed (%s): outcome unknown"
                                            : "node call failed (%s)", err);
        r.outcome = DHT_PUT_UNKNOWN;
        r.reason = why;
    }
    finish(p, &r);
}

static int via_start(kvclient *c, pending *p, int64_t key, int64_t value)
{
    /* The members may have changed since this client's last call. */
    if (c->via != NULL)
        c->peer = follow_via_peer(c->via, c->peer, c->slot, false);
    dht_msg req = {.type = p->is_put ? DHT_MSG_PUT : DHT_MSG_GET, .key = key, .value = value};
    return dht_transport_send(c->t, c->peer, &req, dht_transport_now(c->t) + c->deadline_ns,
                              via_done, p);
}

/* ---- --etcd -------------------------------------------------------------- */

static void etcd_done(void *arg, const etcd_result *er)
{
    pending *p = arg;
    kvclient *c = p->c;
    char why[200];
    kv_result r = {.outcome = DHT_PUT_UNKNOWN};
    /* UNAVAILABLE (14), DEADLINE_EXCEEDED (4) or no call: the member may be
     * gone. */
    if (er->status == 14 || er->status == 4 || er->status < 0)
        next_peer(c);
    const char *what = p->is_put ? "Put" : "Range";
    const char *tail = p->is_put ? ": outcome unknown" : "";
    if (er->status == 0 && er->decoded) {
        r.outcome = DHT_PUT_APPLIED;
        r.ok = 1;
        r.value = er->value;
    } else if (er->status == 0) {
        snprintf(why, sizeof why, "etcd %s answered OK but %s%s", what, er->why, tail);
        r.reason = why;
    } else {
        snprintf(why, sizeof why, "etcd %s failed (%s)%s", what,
                 er->status < 0 ? "SHUTDOWN" : dht_grpc_status_name(er->status), tail);
        r.reason = why;
    }
    finish(p, &r);
}

/* ---- entry points ---------------------------------------------------------- */

static int start(kvclient *c, bool is_put, int64_t key, int64_t value, kv_cb cb, void *arg)
{
    pending *p = pending_new(c, is_put, cb, arg);
    if (p == NULL)
        return -1;
    int rc;
    if (c->coord)
        rc = is_put ? dht_coord_put(c->coord, key, value, coord_put_done, p)
                    : dht_coord_get(c->coord, key, coord_get_done, p);
    else if (c->etcd)
        rc = etcd_call_async(c->etcd, c->peer, c->deadline_ns, !is_put, key, value, etcd_done, p);
    else
        rc = via_start(c, p, key, value);
    if (rc != 0)
        free(p);
    return rc;
}

int kv_put_async(kvclient *c, int64_t key, int64_t value, kv_cb cb, void *arg)
{
    return start(c, true, key, value, cb, arg);
}

int kv_get_async(kvclient *c, int64_t key, kv_cb cb, void *arg)
{
    return start(c, false, key, 0, cb, arg);
}

/* ---- blocking forms ---------------------------------------------------------- */

typedef struct {
    dht_latch latch;
    kv_result r;
    char reason[256];
} waiter;

static void wake(void *arg, const kv_result *r)
{
    waiter *w = arg;
    w->r = *r;
    snprintf(w->reason, sizeof w->reason, "%s", r->reason);
    dht_latch_open(&w->latch);
}

/* Runs one operation to its end; false if it could not start. */
static bool run_sync(kvclient *c, bool is_put, int64_t key, int64_t value, waiter *w)
{
    dht_latch_init(&w->latch);
    bool started = start(c, is_put, key, value, wake, w) == 0;
    if (started)
        dht_latch_wait(&w->latch);
    dht_latch_destroy(&w->latch);
    return started;
}

dht_put_outcome kv_put(kvclient *c, int64_t key, int64_t value, char *reason, size_t len)
{
    waiter w;
    if (!run_sync(c, true, key, value, &w)) {
        snprintf(reason, len, "call could not start: not applied");
        return DHT_PUT_NOT_APPLIED;
    }
    snprintf(reason, len, "%s", w.reason);
    return w.r.outcome;
}

int kv_get(kvclient *c, int64_t key, int64_t *value, char *reason, size_t len)
{
    waiter w;
    if (!run_sync(c, false, key, 0, &w)) {
        snprintf(reason, len, "call could not start");
        return 0;
    }
    snprintf(reason, len, "%s", w.reason);
    if (w.r.ok)
        *value = w.r.value;
    return w.r.ok;
}

int kv_replica_read(kvclient *c, int64_t key, int64_t *value, dht_version *ver, char *reason,
                    size_t len)
{
    dht_msg req = {.type = DHT_MSG_READ, .key = key}, rep;
    char err[256];
    int64_t deadline = dht_transport_now(c->t) + c->deadline_ns;
    dht_status st = dht_call_blocking(c->t, c->peer, &req, deadline, &rep, err, sizeof err);
    if (st == DHT_ERR_UNAVAILABLE || st == DHT_ERR_TIMEOUT)
        next_peer(c);
    if (st != DHT_OK || !rep.ok) {
        snprintf(reason, len, "%s", st != DHT_OK ? err : "replica is recovering");
        return 0;
    }
    *value = rep.value;
    *ver = rep.version;
    return 1;
}
