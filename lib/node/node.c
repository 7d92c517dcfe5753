/* The node's wiring: see node.h.  Every path a request takes is here, so
 * the binaries only start and stop it. */
#include "node/node.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "protocol/transfer.h"

/* Which keys a member stores under a view: those of either configuration
 * while it changes; with transfer, only those of the partitions the change
 * gives it (what a change's copy asks for, transfer.h). */
typedef struct {
    const dht_view *v;
    int member;
    bool transfer;
} member_keys;

static bool stored_by(void *arg, int64_t key)
{
    const member_keys *f = arg;
    if (f->transfer)
        return dht_transfer_wants(f->v, f->member, dht_partition_of(key));
    const dht_membership *next = dht_view_next(f->v);
    return dht_membership_stores(dht_view_current(f->v), f->member, key) ||
           (next != NULL && dht_membership_stores(next, f->member, key));
}

/* A view the node no longer runs on: request handlers may still read it
 * without a reference (the hot path takes none), so it is freed only a
 * while later, when no handler can still be inside. */
typedef struct retired_view {
    struct retired_view *next;
    dht_view *v;
    int64_t at;
    /* Stats' sorted member arrays of that view: the transport encodes a
     * Stats answer after on_stats returned, so they retire with it. */
    const char **sorted, **next_sorted;
} retired_view;
#define VIEW_GRACE_NS (60 * DHT_NS_PER_SEC)

struct dht_node {
    dht_node_config cfg;
    dht_service svc;
    dht_transport *t;
    dht_coord *_Atomic coord;          /* published by dht_node_start */
    dht_recovery *_Atomic recovery;    /* likewise */
    uint64_t incarnation;              /* random, drawn per process start */
    _Atomic uint64_t cluster_id;       /* the data directory's, at start */
    dht_reconfig *_Atomic rc;          /* membership changes; NULL before start */
    /* The lowest view number a stamped request may carry to be served:
     * the replica's fence (replica.h), moved before a new view is
     * acknowledged to whoever installed it. */
    _Atomic uint64_t lowest_view;
    /* The view the node runs on (a reference), read without one by
     * request handlers; old ones wait in retired (view_mu). */
    dht_view *_Atomic view;
    pthread_mutex_t view_mu;
    retired_view *retired;
    _Atomic bool removed;
    int self;
    /* The view recovery runs on (a reference; NULL while it has none), and
     * recoveries of earlier configurations, stopped, freed with the node
     * (a step of theirs may still be in flight). */
    dht_view *recovery_view;
    struct old_recovery {
        struct old_recovery *next;
        dht_recovery *rec;
        dht_view *view;
    } *old_recoveries;
    /* The keys this node stores, as the replica's owner filter. */
    member_keys own;
    /* For Stats: the members' normalised addresses, sorted, of the view it
     * was made for (stats_view, a reference); rebuilt on a change. */
    const char **sorted, **next_sorted;
    int nsorted, nnext;
    dht_view *stats_view;
};

/* The replica's owner filter: the keys of the view now. */
static bool own_key(void *arg, int64_t key)
{
    dht_node *n = arg;
    dht_view *v = atomic_load(&n->view);
    if (v == NULL || atomic_load(&n->removed))
        return false;
    member_keys f = {v, n->self, false};
    return stored_by(&f, key);
}

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
    if (coord == NULL || atomic_load(&n->removed)) {
        done(done_arg, DHT_ERR_UNAVAILABLE, NULL,
             atomic_load(&n->removed) ? "this node was removed from the cluster"
             : n->cfg.joining        ? "this node is joining the cluster and is not a member yet"
                                     : "node is starting");
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
    dht_view *v = atomic_load(&n->view);
    if (v == NULL || (req->transfer && (!dht_view_joint(v) || req->view != dht_view_number(v)))) {
        reply->type = DHT_MSG_SCAN; /* no view, or another change: ok=false, nothing */
        return;
    }
    const dht_membership *cur = dht_view_current(v), *next = dht_view_next(v);
    int asker = dht_membership_find_id(next ? next : cur, req->member);
    if (asker < 0)
        asker = dht_membership_find_id(cur, req->member);
    member_keys f = {v, asker, req->transfer};
    if ((req->member != 0 || req->transfer) && asker < 0) {
        reply->type = DHT_MSG_SCAN; /* not a member: ok=false, nothing */
        return;
    }
    dht_replica_handle_scan(n->cfg.replica, req, reply, req->member ? stored_by : NULL, &f);
    if (f.member >= 0 && reply->recovering) {
        /* For the asker, only the partitions both store matter (for a
         * copy: those it copies, which we store under the old
         * configuration): a peer still recovering partitions it does not
         * share is a complete source for it. */
        reply->recovering = false;
        for (uint32_t part = 0; part < DHT_PARTITIONS && !reply->recovering; part++) {
            const dht_peerset *set = dht_membership_partition_replicas(cur, part);
            bool shared = req->transfer ? dht_transfer_wants(v, f.member, part)
                                        : dht_peerset_has(set, f.member);
            reply->recovering = shared && dht_peerset_has(set, n->self) &&
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
    dht_recovery *rec = atomic_load(&n->recovery);
    pthread_mutex_lock(&n->view_mu);
    dht_view *v = n->stats_view;
    const dht_membership *m = v ? dht_view_current(v) : n->cfg.members;
    const dht_membership *next = v ? dht_view_next(v) : NULL;
    int self = n->self;
    int parts = dht_membership_partition_count(m, self) +
                (next ? dht_membership_partition_count(next, self) : 0);
    if (next != NULL) /* partitions in both count once */
        for (uint32_t part = 0; part < DHT_PARTITIONS; part++)
            parts -= dht_peerset_has(dht_membership_partition_replicas(m, part), self) &&
                     dht_peerset_has(dht_membership_partition_replicas(next, part), self);
    *out = (dht_stats){
        .self = dht_membership_norm(n->cfg.members, dht_membership_self(n->cfg.members)),
        .members = n->sorted,
        .nmembers = n->nsorted,
        .replicas = dht_membership_replica_count(m),
        .fingerprint = v ? dht_view_fingerprint(v) : dht_membership_fingerprint(m),
        .cluster_id = rec ? dht_recovery_cluster_id(rec) : atomic_load(&n->cluster_id),
        .keys = dht_replica_size(n->cfg.replica),
        .partitions = parts,
        .partitions_recovering = rec ? dht_recovery_partitions_pending(rec)
                                     : dht_replica_recovering(n->cfg.replica) ? parts : 0,
        .log_bytes = n->cfg.log_bytes ? n->cfg.log_bytes(n->cfg.storage_arg) : -1,
        .epoch = v ? dht_view_epoch(v) : 0,
        .view = v ? dht_view_number(v) : 0,
        .next_members = n->next_sorted,
        .nnext = n->nnext,
        .next_replicas = next ? dht_membership_replica_count(next) : 0,
        .removed = atomic_load(&n->removed),
    };
    pthread_mutex_unlock(&n->view_mu);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The members of m, normalised and sorted (pointers into m); NULL when m
 * has none or memory is short. */
static const char **sorted_members(const dht_membership *m, int *count)
{
    *count = 0;
    if (m == NULL)
        return NULL;
    const char **out = malloc((size_t)dht_membership_size(m) * sizeof *out + 1);
    if (out == NULL)
        return NULL;
    for (int p = 0; p < dht_membership_size(m); p++)
        if (dht_membership_is_member(m, p))
            out[(*count)++] = dht_membership_norm(m, p);
    qsort(out, (size_t)*count, sizeof *out, cmp_str);
    return out;
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

static void stamp(void *arg, dht_msg *m)
{
    dht_node *n = arg;
    dht_reconfig *rc = atomic_load(&n->rc);
    if (rc != NULL)
        dht_reconfig_stamp(rc, m);
}

static int start_recovery(dht_node *n, dht_view *v)
{
    dht_recovery_config rc = n->cfg.recovery;
    rc.members = dht_view_current(v);
    rc.install = install;
    rc.on_ready = on_ready;
    rc.set_cluster_id = set_cluster_id;
    rc.cluster_id = atomic_load(&n->cluster_id);
    if (n->cfg.cluster_id != NULL && n->cfg.cluster_id(n->cfg.storage_arg) != 0)
        rc.cluster_id = n->cfg.cluster_id(n->cfg.storage_arg);
    rc.incarnation = n->incarnation;
    rc.stamp = stamp;
    rc.arg = n;
    n->recovery_view = dht_view_ref(v);
    dht_recovery *rec = dht_recovery_start(n->t, n->cfg.replica, &rc);
    if (rec == NULL) {
        dht_view_unref(n->recovery_view);
        n->recovery_view = NULL;
        return -1;
    }
    atomic_store(&n->recovery, rec);
    return 0;
}

/* ---- membership changes' hooks --------------------------------------------------- */

static void free_retired(retired_view *r)
{
    dht_view_unref(r->v);
    free(r->sorted);
    free(r->next_sorted);
    free(r);
}

/* A replica refused a request outright: perhaps our view is stale. */
static void on_refused(void *arg)
{
    dht_node *n = arg;
    dht_reconfig *rc = atomic_load(&n->rc);
    if (rc != NULL)
        dht_reconfig_catch_up(rc);
}

/* The replica's fence: a request stamped with a view this node no longer
 * serves is refused at the moment it would act (unstamped ones were
 * vetted by the check, and recovery's installs carry versions found on
 * replicas, safe at any time). */
static bool fence_ok(void *arg, const dht_msg *req)
{
    dht_node *n = arg;
    if (atomic_load(&n->removed))
        return false;
    return req->view == 0 || req->view >= atomic_load(&n->lowest_view);
}

/* Runs with the engine's lock held: must not call back into it. */
static void on_view(void *arg, dht_view *v, bool removed)
{
    dht_node *n = arg;
    int64_t t = node_now(n);
    pthread_mutex_lock(&n->view_mu);
    dht_view *cur = atomic_load(&n->view);
    if (cur != NULL && dht_view_number(cur) >= dht_view_number(v) && !removed) {
        pthread_mutex_unlock(&n->view_mu); /* never backwards */
        return;
    }
    /* The fence first: once the engine acknowledges v, no request of an
     * older view may act here any more. */
    uint64_t num = dht_view_number(v);
    atomic_store(&n->lowest_view, dht_view_joint(v) ? num : num - 1);
    atomic_store(&n->removed, removed);
    dht_view *old = atomic_exchange(&n->view, dht_view_ref(v));
    int cnt, ncnt;
    const char **sorted = sorted_members(dht_view_current(v), &cnt);
    const char **next_sorted = sorted_members(dht_view_next(v), &ncnt);
    if (sorted != NULL && (dht_view_next(v) == NULL || next_sorted != NULL)) {
        /* The old arrays point into the old stats view: both retire. */
        retired_view *rs = malloc(sizeof *rs);
        if (rs != NULL) {
            *rs = (retired_view){n->retired, n->stats_view, t, n->sorted, n->next_sorted};
            n->retired = rs;
            n->sorted = sorted;
            n->next_sorted = next_sorted;
            n->nsorted = cnt;
            n->nnext = ncnt;
            n->stats_view = dht_view_ref(v);
        } else {
            free(sorted);
            free(next_sorted);
        }
    } else {
        free(sorted);
        free(next_sorted);
    }
    if (old != NULL) {
        retired_view *r = malloc(sizeof *r);
        if (r != NULL) {
            *r = (retired_view){n->retired, old, t, NULL, NULL};
            n->retired = r;
        } /* else: kept for good rather than freed under a reader */
    }
    /* Views retired long enough ago that no handler can still read them
     * (the list is newest first: cut where they become old). */
    for (retired_view **pp = &n->retired; *pp != NULL; pp = &(*pp)->next) {
        if (t - (*pp)->at > VIEW_GRACE_NS) {
            retired_view *r = *pp;
            *pp = NULL;
            while (r != NULL) {
                retired_view *next = r->next;
                free_retired(r);
                r = next;
            }
            break;
        }
    }
    pthread_mutex_unlock(&n->view_mu);
    dht_coord *coord = atomic_load(&n->coord);
    if (coord != NULL) {
        dht_coord_set_view(coord, v);
    } else if (!removed && n->t != NULL) {
        dht_coord_config cc = n->cfg.coord;
        cc.view = v;
        cc.on_refused = on_refused;
        cc.refused_arg = n;
        atomic_store(&n->coord, dht_coord_new(n->t, &cc));
    }
    /* Recovery follows the settled configuration: a node that joined starts
     * it once it is a member (anti-entropy, or first a copy from its
     * partitions' replicas if the change completed without its own copy);
     * a member's moves to the new configuration's peers and partitions. */
    dht_recovery *rec = atomic_load(&n->recovery);
    bool settled = !dht_view_joint(v) && dht_membership_is_member(dht_view_current(v), n->self);
    if (rec != NULL && (removed || settled) && n->recovery_view != NULL &&
        dht_membership_fingerprint(dht_view_current(n->recovery_view)) !=
            dht_membership_fingerprint(dht_view_current(v))) {
        struct old_recovery *o = malloc(sizeof *o);
        if (o != NULL) {
            dht_recovery_request_stop(rec);
            *o = (struct old_recovery){n->old_recoveries, rec, n->recovery_view};
            n->old_recoveries = o;
            n->recovery_view = NULL;
            atomic_store(&n->recovery, NULL);
            rec = NULL;
        }
    }
    if (!removed && rec == NULL && settled && n->t != NULL)
        if (start_recovery(n, v) != 0)
            DHT_WARN("could not start anti-entropy (out of memory)");
}

/* The copy of a change is complete: a joining node holds its data now. */
static void on_copied(void *arg)
{
    dht_node *n = arg;
    if (dht_replica_recovering(n->cfg.replica) && atomic_load(&n->recovery) == NULL) {
        on_ready(n, "copied from the members as it joined");
        dht_replica_set_recovering(n->cfg.replica, false);
    }
}

static int persist_config(void *arg, const dht_reconfig_state *st)
{
    dht_node *n = arg;
    /* The record first: it decides what the node is at its next start; a
     * cluster id recorded without it would make an empty joining node look
     * like one that holds data. */
    if (n->cfg.persist_config != NULL &&
        n->cfg.persist_config(n->cfg.persist_arg ? n->cfg.persist_arg : n->cfg.storage_arg,
                              st) != 0)
        return -1;
    if (st->cluster_id != 0 && atomic_load(&n->cluster_id) != st->cluster_id) {
        if (set_cluster_id(n, st->cluster_id) != 0)
            return -1;
        atomic_store(&n->cluster_id, st->cluster_id);
    }
    return 0;
}

static uint64_t cluster_id_of(void *arg)
{
    dht_node *n = arg;
    dht_recovery *rec = atomic_load(&n->recovery);
    uint64_t id = rec ? dht_recovery_cluster_id(rec) : 0;
    return id ? id : atomic_load(&n->cluster_id);
}

static int on_check(void *arg, uint64_t config, uint64_t view, char *why, size_t len)
{
    dht_node *n = arg;
    dht_reconfig *rc = atomic_load(&n->rc);
    if (rc == NULL) {
        snprintf(why, len, "node is starting");
        return -1;
    }
    return dht_reconfig_check(rc, config, view, why, len);
}

static void on_control(void *arg, const uint8_t *req, size_t len, dht_control_done done,
                       void *done_arg)
{
    dht_node *n = arg;
    dht_reconfig *rc = atomic_load(&n->rc);
    if (rc == NULL) {
        done(done_arg, NULL, 0, "node is starting");
        return;
    }
    dht_reconfig_control(rc, req, len, done, done_arg);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

dht_node *dht_node_new(const dht_node_config *cfg)
{
    dht_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->cfg = *cfg;
    n->svc = (dht_service){.replica = on_replica, .replica_batch = on_replica_batch,
                           .client = on_public, .stats = on_stats, .check_config = on_check,
                           .control = on_control, .arg = n};
    atomic_init(&n->coord, NULL);
    atomic_init(&n->recovery, NULL);
    atomic_init(&n->view, NULL);
    atomic_init(&n->rc, NULL);
    atomic_init(&n->lowest_view, 0);
    atomic_init(&n->removed, cfg->removed);
    pthread_mutex_init(&n->view_mu, NULL);
    n->incarnation = cfg->incarnation;
    while (n->incarnation == 0)
        n->incarnation = dht_random_seed();
    atomic_init(&n->cluster_id, cfg->cluster_id ? cfg->cluster_id(cfg->storage_arg) : 0);
    n->self = dht_membership_self(cfg->members);
    n->sorted = sorted_members(cfg->joining ? NULL : cfg->members, &n->nsorted);
    dht_replica_set_owner(cfg->replica, own_key, n);
    dht_replica_set_fence(cfg->replica, fence_ok, n);
    return n;
}

const dht_service *dht_node_service(dht_node *n)
{
    return &n->svc;
}

int dht_node_start(dht_node *n, dht_transport *t, char *err, size_t errlen)
{
    n->t = t;
    if (!n->cfg.joining && atomic_load(&n->cluster_id) == 0 &&
        !dht_replica_recovering(n->cfg.replica)) {
        /* A complete replica from before cluster ids were recorded: its
         * cluster exists.  Every such member derives the same id. */
        uint64_t id = dht_membership_fingerprint(n->cfg.members);
        if (set_cluster_id(n, id) == 0)
            atomic_store(&n->cluster_id, id);
    }
    dht_reconfig_config rcfg = {
        .replica = n->cfg.replica, .base = n->cfg.members,
        .epoch = n->cfg.joining ? 0 : n->cfg.epoch ? n->cfg.epoch : 1, .next = n->cfg.next,
        .transfer_done = n->cfg.transfer_done, .removed = n->cfg.removed,
        .acceptor = n->cfg.acceptor, .acceptor_len = n->cfg.acceptor_len,
        .incarnation = n->incarnation, .seed = n->cfg.coord.seed,
        .persist = persist_config, .on_view = on_view, .on_copied = on_copied,
        .cluster_id = cluster_id_of, .install = install, .arg = n};
    dht_reconfig *rc = dht_reconfig_new(t, &rcfg, err, errlen);
    if (rc == NULL)
        return -1;
    /* The first view comes through the engine, under its lock, like every
     * later one: an INSTALL that arrives meanwhile cannot be overtaken. */
    dht_reconfig_publish(rc);
    atomic_store(&n->rc, rc);
    dht_view *v = dht_reconfig_view(rc);
    if (v != NULL) {
        if (atomic_load(&n->coord) == NULL && !n->cfg.removed) {
            snprintf(err, errlen, dht_view_size(v) > t->npeers
                                      ? "the transport's peers are not the members"
                                      : "cannot start the coordinator: out of memory");
            dht_view_unref(v);
            return -1;
        }
        if (!n->cfg.removed && atomic_load(&n->recovery) == NULL &&
            dht_membership_is_member(dht_view_current(v), n->self) &&
            start_recovery(n, v) != 0) {
            dht_view_unref(v);
            snprintf(err, errlen, "cannot start recovery (out of memory)");
            return -1;
        }
        dht_view_unref(v);
    }
    if (dht_reconfig_start(rc) != 0) {
        snprintf(err, errlen, "cannot start the membership engine");
        return -1;
    }
    return 0;
}

bool dht_node_serving(const dht_node *n)
{
    return !dht_replica_recovering(n->cfg.replica) && !atomic_load(&((dht_node *)n)->removed) &&
           atomic_load(&((dht_node *)n)->view) != NULL;
}

void dht_node_request_stop(dht_node *n)
{
    dht_reconfig_request_stop(atomic_load(&n->rc));
    dht_recovery_request_stop(atomic_load(&n->recovery));
}

void dht_node_stop(dht_node *n)
{
    /* Halted, not freed: Scans may still be answered until the transport
     * stops, and they read the recovery's cluster id. */
    dht_reconfig_request_stop(atomic_load(&n->rc));
    dht_recovery_halt(atomic_load(&n->recovery));
}

void dht_node_free(dht_node *n)
{
    if (n == NULL)
        return;
    dht_reconfig_free(atomic_load(&n->rc));
    dht_recovery_stop(atomic_exchange(&n->recovery, NULL)); /* if dht_node_stop was not */
    while (n->old_recoveries != NULL) {
        struct old_recovery *o = n->old_recoveries;
        n->old_recoveries = o->next;
        dht_recovery_stop(o->rec);
        dht_view_unref(o->view);
        free(o);
    }
    dht_coord_free(atomic_load(&n->coord));
    dht_view_unref(n->recovery_view);
    dht_view_unref(atomic_load(&n->view));
    dht_view_unref(n->stats_view);
    while (n->retired != NULL) {
        retired_view *r = n->retired;
        n->retired = r->next;
        free_retired(r);
    }
    pthread_mutex_destroy(&n->view_mu);
    free(n->sorted);
    free(n->next_sorted);
    free(n);
}

dht_reconfig *dht_node_reconfig(dht_node *n)
{
    return atomic_load(&n->rc);
}
