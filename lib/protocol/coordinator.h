/* The coordinator: runs put (lease lock, then fan-out write) and get (quorum
 * read, write-back when replicas disagree) over a dht_transport.
 *
 * Shared by the client binary (fan-out mode) and the server's public
 * KeyValue service.  Operations are asynchronous state machines driven by
 * transport callbacks; nothing here blocks a transport thread.  The
 * synchronous wrappers (dht_coord_put_blocking/get_sync) are for callers that
 * own their thread, such as the client's load generator.
 */
#ifndef DHT_COORDINATOR_H
#define DHT_COORDINATOR_H

#include <stddef.h>
#include <stdint.h>

#include "base/msg.h"
#include "protocol/membership.h"
#include "protocol/transport.h"
#include "protocol/view.h"

typedef struct dht_coord dht_coord;

typedef struct dht_coord_config {
    int64_t deadline_ns;        /* whole operation; default 2 s                  */
    int64_t rpc_timeout_ns;     /* one replica RPC, capped by the deadline; 500 ms */
    uint32_t lease_ms;          /* lock lease; default 500                       */
    int64_t contention_wait_ns; /* wait for stragglers once a lock is refused; 5 ms */
    int64_t backoff_min_ns;     /* first retry backoff; default 2 ms             */
    int64_t backoff_max_ns;     /* cap of the doubling backoff; default 64 ms    */
    int64_t write_retry_ns;     /* resend of a failed write/write-back; 10 ms    */
    /* Who the replicas are, which of them is this process's own
     * (dht_membership_self, -1: none) and how many make a quorum.  The
     * caller owns it and it must outlive the coordinator; the transport's
     * peers are its members, in order (npeers == its size).  Required. */
    const dht_membership *members;
    /* Or the view to start with (it takes a reference; members is then
     * ignored): see dht_coord_set_view. */
    dht_view *view;
    /* Test-only: during a change, ask only the new configuration's quorum,
     * which is unsafe; the simulation must find the broken histories. */
    bool test_new_quorum_only;
    /* Called (from a transport thread) when a replica refuses a request
     * outright, e.g. for a stale configuration: the owner of the view may
     * look for a newer one.  NULL: nothing. */
    void (*on_refused)(void *arg);
    void *refused_arg;
    /* Locks and reads go first to a quorum only: this process's own
     * replica and the peers after it in ring order.  The rest are asked
     * when one of those fails or refuses, or when the quorum has not
     * answered within hedge_ns (0: always ask everyone). */
    int64_t hedge_ns;           /* default 20 ms                                  */
    uint32_t id;                /* coordinator id, high half of every owner id; 0: random */
    uint64_t seed;              /* backoff jitter; 0: random                     */
} dht_coord_config;

void dht_coord_config_default(dht_coord_config *cfg);

/* t must outlive the coordinator.  Returns NULL on allocation failure,
 * without cfg->members or cfg->view, or when t has fewer peers than its
 * positions. */
dht_coord *dht_coord_new(dht_transport *t, const dht_coord_config *cfg);
/* Waits until every started operation, with its stragglers (late unlocks,
 * write retries, all bounded by RPC deadlines), is gone, then frees c.  The
 * transport must still be delivering callbacks. */
void dht_coord_free(dht_coord *c);
/* A quorum of the current configuration (of the view now). */
int dht_coord_quorum(dht_coord *c);
/* The view new operations run on: a new reference (the caller unrefs). */
dht_view *dht_coord_view(dht_coord *c);
/* Operations started from now on run on v (the coordinator takes a
 * reference); those in flight finish on theirs.  -1 when the transport has
 * fewer peers than v has positions. */
int dht_coord_set_view(dht_coord *c, dht_view *v);

/* reason is NULL for APPLIED and a short human text otherwise; it is only
 * valid during the callback. */
typedef void (*dht_put_cb)(void *arg, dht_put_outcome outcome, const char *reason);
/* ok=0: the get failed (no quorum within the deadline); value is then 0. */
typedef void (*dht_get_cb)(void *arg, int ok, int64_t value, const char *reason);

/* Start an operation; the callback runs exactly once, on a transport thread
 * (never inside this call).  Returns nonzero only on allocation failure, in
 * which case the callback never runs. */
int dht_coord_put(dht_coord *c, int64_t key, int64_t value, dht_put_cb cb, void *arg);
int dht_coord_get(dht_coord *c, int64_t key, dht_get_cb cb, void *arg);
/* The same with an absolute deadline (transport clock), capped by the
 * configured one: for a server acting for a caller who set its own. */
int dht_coord_put_by(dht_coord *c, int64_t key, int64_t value, int64_t deadline_ns,
                     dht_put_cb cb, void *arg);
int dht_coord_get_by(dht_coord *c, int64_t key, int64_t deadline_ns, dht_get_cb cb, void *arg);

/* Blocking forms.  reason (may be NULL) receives the failure text. */
dht_put_outcome dht_coord_put_blocking(dht_coord *c, int64_t key, int64_t value,
                                   char *reason, size_t reason_len);
int dht_coord_get_blocking(dht_coord *c, int64_t key, int64_t *value, char *reason,
                       size_t reason_len);

#endif
