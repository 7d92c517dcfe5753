/* The node's wiring: see node.h.  Every path a request takes is here, so
 * the binaries only start and stop it. */
#include "node/node.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/util.h"

struct dht_node {
    dht_node_config cfg;
    dht_service svc;
    dht_transport *t;
    dht_coord *_Atomic coord; /* published by dht_node_start */
    dht_recovery *recovery;
};

/* ---- public service: the coordinator acts for the caller --------------------- */

typedef struct {
    dht_node *n;
    dht_done_fn done;
    void *done_arg;
    int64_t key, value;
    int64_t start; /* for the debug log's latency */
} public_call;

static int64_t node_now(const dht_node *n)
{
    return n->cfg.now(n->cfg.clock_arg);
}

static void public_put_done(void *arg, dht_put_outcome outcome, const char *reason)
{
    public_call *p = arg;
    dht_msg rep = {.type = DHT_MSG_PUT, .ok = outcome == DHT_PUT_APPLIED, .outcome = outcome};
    DHT_DEBUG("put(%lld, %lld) -> %s%s%s (%.2f ms)", (long long)p->key, (long long)p->value,
              dht_put_outcome_name(outcome), reason ? ": " : "", reason ? reason : "",
              (double)(node_now(p->n) - p->start) / 1e6);
    p->done(p->done_arg, DHT_OK, &rep, reason);
    free(p);
}

static void public_get_done(void *arg, int ok, int64_t value, const char *reason)
{
    public_call *p = arg;
    dht_msg rep = {.type = DHT_MSG_GET, .value = value, .ok = true};
    DHT_DEBUG("get(%lld) -> %s %lld (%.2f ms)", (long long)p->key, ok ? "ok" : "failed",
              (long long)value, (double)(node_now(p->n) - p->start) / 1e6);
    p->done(p->done_arg, ok ? DHT_OK : DHT_ERR_UNAVAILABLE, ok ? &rep : NULL, reason);
    free(p);
}

static void on_public(void *arg, const dht_msg *req, int64_t deadline_ns, dht_done_fn done,
                      void *done_arg)
{
    dht_node *n = arg;
    dht_coord *coord = atomic_load(&n->coord);
    if (coord == NULL) {
        done(done_arg, DHT_ERR_UNAVAILABLE, NULL, "node is starting");
        return;
    }
    public_call *p = malloc(sizeof *p);
    int rc = -1;
    if (p != NULL) {
        *p = (public_call){n, done, done_arg, req->key, req->value, node_now(n)};
        /* Finish a little before the caller gives up, so that it hears
         * the outcome rather than a timeout. */
        int64_t dl = deadline_ns == INT64_MAX ? INT64_MAX : deadline_ns - 5 * DHT_NS_PER_MS;
        rc = req->type == DHT_MSG_PUT
                 ? dht_coord_put_by(coord, req->key, req->value, dl, public_put_done, p)
                 : dht_coord_get_by(coord, req->key, dl, public_get_done, p);
    }
    if (rc != 0) {
        free(p);
        done(done_arg, DHT_ERR_UNAVAILABLE, NULL, "out of memory");
    }
}

/* ---- replica service ------------------------------------------------------------ */

static void on_replica(void *arg, const dht_msg *req, dht_msg *reply)
{
    dht_node *n = arg;
    dht_replica_handle(n->cfg.replica, node_now(n), req, reply);
}

/* Batches with writes go to group commit (no fsync on a transport
 * thread); the rest is answered at once. */
static void on_replica_batch(void *arg, const dht_msg *reqs, dht_msg *reps, size_t count,
                             void (*done)(void *), void *done_arg)
{
    dht_node *n = arg;
    for (size_t i = 0; i < count; i++) {
        if (reqs[i].type == DHT_MSG_WRITE &&
            n->cfg.commit(n->cfg.commit_arg, reqs, reps, count, done, done_arg) == 0)
            return;
    }
    dht_replica_handle_batch(n->cfg.replica, node_now(n), reqs, reps, count);
    done(done_arg);
}

/* ---- recovery's hooks ---------------------------------------------------------------- */

static int install(void *arg, const dht_msg *reqs, dht_msg *reps, size_t count,
                   void (*done)(void *), void *done_arg)
{
    dht_node *n = arg;
    return n->cfg.commit(n->cfg.commit_arg, reqs, reps, count, done, done_arg);
}

/* Runs once per start-up, on whichever thread completed recovery's last
 * step (a transport worker or the group-commit thread): one fsync there is
 * the price of not having a thread of its own. */
static void on_ready(void *arg, const char *why)
{
    dht_node *n = arg;
    if (n->cfg.mark_initialized(n->cfg.storage_arg, why) != 0)
        DHT_WARN("could not record that this replica is complete; it will recover again "
                 "after a restart");
    DHT_INFO("serving reads (%s)", why);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

dht_node *dht_node_new(const dht_node_config *cfg)
{
    dht_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->cfg = *cfg;
    n->svc = (dht_service){.replica = on_replica, .replica_batch = on_replica_batch,
                           .client = on_public, .arg = n};
    atomic_init(&n->coord, NULL);
    return n;
}

const dht_service *dht_node_service(dht_node *n)
{
    return &n->svc;
}

int dht_node_start(dht_node *n, dht_transport *t, char *err, size_t errlen)
{
    n->t = t;
    dht_coord_config cc = n->cfg.coord;
    cc.members = n->cfg.members;
    dht_coord *coord = dht_coord_new(t, &cc);
    if (coord == NULL) {
        snprintf(err, errlen, dht_membership_size(n->cfg.members) != t->npeers
                                  ? "the transport's peers are not the members"
                                  : "cannot start the coordinator: out of memory");
        return -1;
    }
    dht_recovery_config rc = n->cfg.recovery;
    rc.members = n->cfg.members;
    rc.install = install;
    rc.on_ready = on_ready;
    rc.arg = n;
    n->recovery = dht_recovery_start(t, n->cfg.replica, &rc);
    if (n->recovery == NULL) {
        dht_coord_free(coord);
        snprintf(err, errlen, "cannot start recovery (out of memory)");
        return -1;
    }
    atomic_store(&n->coord, coord);
    return 0;
}

bool dht_node_serving(const dht_node *n)
{
    return !dht_replica_recovering(n->cfg.replica);
}

void dht_node_request_stop(dht_node *n)
{
    dht_recovery_request_stop(n->recovery);
}

void dht_node_stop(dht_node *n)
{
    dht_recovery_stop(n->recovery);
    n->recovery = NULL;
}

void dht_node_free(dht_node *n)
{
    if (n == NULL)
        return;
    dht_recovery_stop(n->recovery); /* if dht_node_stop was not called */
    dht_coord_free(atomic_load(&n->coord));
    free(n);
}
