/* The node's wiring: see node.h.  Every path a request takes is here, so
 * the binaries only start and stop it. */
#include "node/node.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"

typedef struct {
    const dht_membership *m;
    int member;
} member_keys;

static bool stored_by(void *arg, int64_t key)
{
    const member_keys *f = arg;
    return dht_membership_stores(f->m, f->member, key);
}

struct dht_node {
    dht_node_config cfg;
    dht_service svc;
    dht_transport *t;
    dht_coord *_Atomic coord;          /* published by dht_node_start */
    dht_recovery *_Atomic recovery;    /* likewise */
    uint64_t incarnation;              /* random, drawn per process start */
    _Atomic uint64_t cluster_id;       /* the data directory's, at start */
    /* The keys this node stores, as the replica's owner filter. */
    member_keys own;
    /* For Stats: members' normalised addresses, sorted; owned. */
    const char **sorted;
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

/* A Scan says who asks: the page holds the keys the asker stores too, and
 * the reply says what recovery needs to know of this node. */
static void on_scan(dht_node *n, const dht_msg *req, dht_msg *reply)
{
    dht_recovery *rec = atomic_load(&n->recovery);
    member_keys f = {n->cfg.members, dht_membership_find_id(n->cfg.members, req->member)};
    if (req->member != 0 && f.member < 0) {
        reply->type = DHT_MSG_SCAN; /* not a member: ok=false, nothing */
        return;
    }
    dht_replica_handle_scan(n->cfg.replica, req, reply, req->member ? stored_by : NULL, &f);
    if (f.member >= 0 && reply->recovering) {
        /* For the asker, only the partitions both store matter: a peer
         * still recovering partitions it does not share is a complete
         * source for it. */
        reply->recovering = false;
        int self = dht_membership_self(n->cfg.members);
        for (uint32_t part = 0; part < DHT_PARTITIONS && !reply->recovering; part++) {
            const dht_peerset *set = dht_membership_partition_replicas(n->cfg.members, part);
            reply->recovering = dht_peerset_has(set, f.member) && dht_peerset_has(set, self) &&
                                dht_replica_partition_recovering(n->cfg.replica, part);
        }
    }
    reply->cluster_id = rec ? dht_recovery_cluster_id(rec) : atomic_load(&n->cluster_id);
    reply->incarnation = n->incarnation;
    reply->founder = rec != NULL && dht_recovery_founder(rec, req->incarnation);
}

static void on_replica(void *arg, const dht_msg *req, dht_msg *reply)
{
    dht_node *n = arg;
    if (req->type == DHT_MSG_SCAN)
        on_scan(n, req, reply);
    else
        dht_replica_handle(n->cfg.replica, node_now(n), req, reply);
}

static void on_stats(void *arg, dht_stats *out)
{
    dht_node *n = arg;
    const dht_membership *m = n->cfg.members;
    dht_recovery *rec = atomic_load(&n->recovery);
    int self = dht_membership_self(m);
    *out = (dht_stats){
        .self = dht_membership_norm(m, self),
        .members = n->sorted,
        .nmembers = dht_membership_size(m),
        .replicas = dht_membership_replica_count(m),
        .fingerprint = dht_membership_fingerprint(m),
        .cluster_id = rec ? dht_recovery_cluster_id(rec) : atomic_load(&n->cluster_id),
        .keys = dht_replica_size(n->cfg.replica),
        .partitions = dht_membership_partition_count(m, self),
        .partitions_recovering = rec ? dht_recovery_partitions_pending(rec)
                                     : dht_membership_partition_count(m, self),
        .log_bytes = n->cfg.log_bytes ? n->cfg.log_bytes(n->cfg.storage_arg) : -1,
    };
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Batches with writes go to group commit (no fsync on a transport
 * thread); the rest is answered at once. */
static void on_replica_batch(void *arg, const dht_msg *reqs, dht_msg *reps, size_t count,
                             void (*done)(void *), void *done_arg)
{
    dht_node *n = arg;
    if (count == 1 && reqs[0].type == DHT_MSG_SCAN) { /* a transport that batches scans */
        on_scan(n, &reqs[0], &reps[0]);
        done(done_arg);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        if (reqs[i].type == DHT_MSG_WRITE &&
            n->cfg.commit(n->cfg.commit_arg, reqs, reps, count, done, done_arg) == 0)
            return;
    }
    dht_replica_handle_batch(n->cfg.replica, node_now(n), reqs, reps, count);
    done(done_arg);
}

/* ---- recovery's hooks ---------------------------------------------------------------- */

static int set_cluster_id(void *arg, uint64_t id)
{
    dht_node *n = arg;
    return n->cfg.set_cluster_id ? n->cfg.set_cluster_id(n->cfg.storage_arg, id) : 0;
}

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
                           .client = on_public, .stats = on_stats, .arg = n};
    atomic_init(&n->coord, NULL);
    atomic_init(&n->recovery, NULL);
    n->incarnation = cfg->incarnation;
    while (n->incarnation == 0)
        n->incarnation = dht_random_seed();
    atomic_init(&n->cluster_id, cfg->cluster_id ? cfg->cluster_id(cfg->storage_arg) : 0);
    int count = dht_membership_size(cfg->members);
    n->sorted = malloc((size_t)count * sizeof *n->sorted);
    if (n->sorted == NULL) {
        free(n);
        return NULL;
    }
    for (int p = 0; p < count; p++)
        n->sorted[p] = dht_membership_norm(cfg->members, p);
    qsort(n->sorted, (size_t)count, sizeof *n->sorted, cmp_str);
    n->own = (member_keys){cfg->members, dht_membership_self(cfg->members)};
    dht_replica_set_owner(cfg->replica, stored_by, &n->own);
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
    if (atomic_load(&n->cluster_id) == 0 && !dht_replica_recovering(n->cfg.replica)) {
        /* A complete replica from before cluster ids were recorded: its
         * cluster exists.  Every such member derives the same id. */
        uint64_t id = dht_membership_fingerprint(n->cfg.members);
        if (set_cluster_id(n, id) == 0)
            atomic_store(&n->cluster_id, id);
    }
    dht_recovery_config rc = n->cfg.recovery;
    rc.members = n->cfg.members;
    rc.install = install;
    rc.on_ready = on_ready;
    rc.set_cluster_id = set_cluster_id;
    rc.cluster_id = atomic_load(&n->cluster_id);
    rc.incarnation = n->incarnation;
    rc.arg = n;
    dht_recovery *rec = dht_recovery_start(t, n->cfg.replica, &rc);
    atomic_store(&n->recovery, rec);
    if (rec == NULL) {
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
    dht_recovery_request_stop(atomic_load(&n->recovery));
}

void dht_node_stop(dht_node *n)
{
    /* Halted, not freed: Scans may still be answered until the transport
     * stops, and they read the recovery's cluster id. */
    dht_recovery_halt(atomic_load(&n->recovery));
}

void dht_node_free(dht_node *n)
{
    if (n == NULL)
        return;
    dht_recovery_stop(atomic_exchange(&n->recovery, NULL)); /* if dht_node_stop was not */
    dht_coord_free(atomic_load(&n->coord));
    free(n->sorted);
    free(n);
}
