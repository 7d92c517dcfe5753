/* Simulated nodes: see sim_cluster.h.
 *
 * Ownership: the cluster owns its hosts; a host owns its stable log and
 * its current incarnation; a crashed incarnation (a "ghost": its state
 * machines may still hold timers and calls in the event queue) moves to
 * the cluster's ghost list and is freed with the cluster, after the
 * network has drained, because only then has every callback that points
 * into it run. */
#include "sim/sim_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "node/node.h"
#include "protocol/control.h"
#include "protocol/membership.h"
#include "protocol/reconfig.h"

typedef struct batch {
    struct batch *next;
    const dht_msg *reqs;
    dht_msg *reps;
    size_t n;
    void (*done)(void *);
    void *done_arg;
} batch;

typedef struct host host;

typedef struct incarnation {
    struct incarnation *next_ghost;
    host *h;
    unsigned number;
    bool dead;
    dht_membership *members;
    dht_replica *replica;
    dht_node *node;
    int endpoint;
    batch *qhead, *qtail; /* not yet synced */
    size_t queued_writes;
    bool round_armed;
} incarnation;

struct host {
    sim_cluster *c;
    int index;
    /* Stable storage: survives crashes, not wipes. */
    dht_entry *log;
    size_t nlog, caplog;
    bool initialized;
    uint64_t cluster_id;
    /* The recorded configuration state (reconfig.h); epoch 0: none yet. */
    uint64_t epoch;
    char *cur, *next;
    bool transfer_done, removed, joining;
    uint8_t *acceptor;
    size_t acceptor_len;
    incarnation *inc; /* NULL while crashed or never started */
    unsigned incarnations;
};

struct sim_cluster {
    sim_cluster_config cfg;
    sim_world *w;
    char *member_list;       /* the first cfg.members hosts: epoch 1 */
    char *slot_list;         /* every host, in slot order: positions */
    dht_membership *members; /* placement, for sim_cluster_stores */
    int admin;               /* the endpoint administrators' calls come from */
    host *hosts;
    incarnation *ghosts;
};

/* ---- storage and group commit ----------------------------------------------- */

static int persist(void *arg, const dht_entry *writes, size_t n)
{
    host *h = arg;
    if (h->nlog + n > h->caplog) {
        size_t cap = h->caplog ? h->caplog * 2 : 256;
        while (cap < h->nlog + n)
            cap *= 2;
        dht_entry *log = realloc(h->log, cap * sizeof *log);
        if (log == NULL)
            return -12; /* -ENOMEM: the writes are refused, not acknowledged */
        h->log = log;
        h->caplog = cap;
    }
    memcpy(h->log + h->nlog, writes, n * sizeof *writes);
    h->nlog += n;
    return 0;
}

static uint64_t get_cluster_id(void *arg)
{
    return ((host *)arg)->cluster_id;
}

static int set_cluster_id(void *arg, uint64_t id)
{
    host *h = arg;
    sim_tracef(h->c->w, "%lld node %d cluster id %016llx", (long long)sim_now(h->c->w),
               h->index + 1, (unsigned long long)id);
    h->cluster_id = id;
    return 0;
}

static int mark_initialized(void *arg, const char *why)
{
    host *h = arg;
    sim_tracef(h->c->w, "%lld node %d initialized (%s)", (long long)sim_now(h->c->w),
               h->index + 1, why);
    h->initialized = true;
    return 0;
}

/* One fsync: every queued batch is written to the stable log, then
 * answered. */
static void commit_round(void *arg)
{
    incarnation *inc = arg;
    inc->round_armed = false;
    if (inc->dead)
        return;
    batch *list = inc->qhead;
    inc->qhead = inc->qtail = NULL;
    size_t writes = inc->queued_writes;
    inc->queued_writes = 0;
    sim_world *w = inc->h->c->w;
    sim_tracef(w, "%lld node %d commit %zu writes", (long long)sim_now(w), inc->h->index + 1,
               writes);
    while (list) {
        batch *b = list;
        list = b->next;
        dht_replica_handle_batch(inc->replica, sim_now(w), b->reqs, b->reps, b->n);
        b->done(b->done_arg);
        free(b);
    }
}

static int commit_submit(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n,
                         void (*done)(void *), void *done_arg)
{
    incarnation *inc = arg;
    if (inc->dead)
        return -1;
    batch *b = malloc(sizeof *b);
    if (b == NULL)
        return -1;
    *b = (batch){NULL, reqs, reps, n, done, done_arg};
    if (inc->qtail)
        inc->qtail->next = b;
    else
        inc->qhead = b;
    inc->qtail = b;
    for (size_t i = 0; i < n; i++)
        inc->queued_writes += reqs[i].type == DHT_MSG_WRITE;
    if (!inc->round_armed) {
        inc->round_armed = true;
        sim_cluster *c = inc->h->c;
        sim_world *w = c->w;
        sim_at(w, sim_now(w) + sim_rand_between(w, c->cfg.fsync_min_ns, c->cfg.fsync_max_ns),
               commit_round, inc);
    }
    return 0;
}

static int64_t sim_clock(void *arg)
{
    return sim_now(arg);
}

static char *dup_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

/* The configuration state survives crashes (not wipes), like the data
 * directory's record. */
static int persist_config(void *arg, const dht_reconfig_state *st)
{
    host *h = arg;
    free(h->cur);
    free(h->next);
    free(h->acceptor);
    h->epoch = st->epoch;
    h->cur = dup_or_null(st->cur);
    h->next = dup_or_null(st->next);
    h->transfer_done = st->transfer_done;
    h->removed = st->removed;
    h->acceptor = malloc(st->acceptor_len ? st->acceptor_len : 1);
    if (h->acceptor == NULL)
        abort();
    memcpy(h->acceptor, st->acceptor, st->acceptor_len);
    h->acceptor_len = st->acceptor_len;
    if (st->cluster_id != 0)
        h->cluster_id = st->cluster_id;
    sim_tracef(h->c->w, "%lld node %d records epoch %llu%s%s", (long long)sim_now(h->c->w),
               h->index + 1, (unsigned long long)st->epoch, st->next ? " (joint)" : "",
               st->removed ? " removed" : "");
    return 0;
}

static void forget_config(host *h)
{
    free(h->cur);
    free(h->next);
    free(h->acceptor);
    h->cur = h->next = NULL;
    h->acceptor = NULL;
    h->acceptor_len = 0;
    h->epoch = 0;
    h->transfer_done = h->removed = false;
}

/* ---- incarnations ---------------------------------------------------------------- */

static void boot(host *h)
{
    sim_cluster *c = h->c;
    incarnation *inc = calloc(1, sizeof *inc);
    if (inc == NULL)
        abort();
    inc->h = h;
    inc->number = ++h->incarnations;
    char self[64], err[256];
    snprintf(self, sizeof self, "127.0.0.1:%d", 7001 + h->index);
    /* Positions are slots (the transport's peers): every host's address in
     * slot order, and the configuration derived from that. */
    dht_membership *book;
    if (dht_membership_new(c->slot_list, self, 1, &book, err, sizeof err) != 0) {
        fprintf(stderr, "sim_cluster: %s\n", err);
        abort();
    }
    if (h->joining && h->epoch == 0) {
        inc->members = book;
    } else {
        char list[DHT_CONTROL_TEXT_MAX];
        int r = c->cfg.replicas;
        if (h->epoch >= 1 &&
            dht_config_line_parse(h->cur, strlen(h->cur), &r, list, sizeof list, err,
                                  sizeof err) != 0) {
            fprintf(stderr, "sim_cluster: %s\n", err);
            abort();
        }
        if (dht_membership_derive(book, h->epoch >= 1 ? list : c->member_list, r,
                                  &inc->members, err, sizeof err) != 0) {
            fprintf(stderr, "sim_cluster: %s\n", err);
            abort();
        }
        dht_membership_free(book);
    }
    inc->replica = dht_replica_new();
    if (inc->replica == NULL)
        abort();
    for (size_t i = 0; i < h->nlog; i++) /* replay */
        dht_replica_apply(inc->replica, h->log[i].key, h->log[i].value, h->log[i].version);
    dht_replica_set_persist(inc->replica, persist, h);
    dht_replica_set_recovering(inc->replica, !h->initialized);

    dht_node_config nc = {.members = inc->members, .replica = inc->replica,
                          .mark_initialized = mark_initialized, .cluster_id = get_cluster_id,
                          .set_cluster_id = set_cluster_id, .storage_arg = h,
                          .commit = commit_submit, .commit_arg = inc, .now = sim_clock,
                          .clock_arg = c->w, .epoch = h->epoch, .next = h->next,
                          .transfer_done = h->transfer_done, .removed = h->removed,
                          .joining = h->joining && h->epoch == 0, .acceptor = h->acceptor,
                          .acceptor_len = h->acceptor_len, .persist_config = persist_config};
    dht_coord_config_default(&nc.coord);
    /* Owner ids must differ between incarnations, as random ids do in
     * processes; here they come from the seed. */
    nc.coord.id = (uint32_t)sim_rand(c->w, UINT32_MAX - 1) + 1;
    nc.coord.seed = sim_rand(c->w, UINT64_MAX - 1) + 1;
    nc.incarnation = sim_rand(c->w, UINT64_MAX - 1) + 1;
    dht_recovery_config_default(&nc.recovery);
    inc->node = dht_node_new(&nc);
    inc->endpoint = sim_endpoint_add(c->w);
    if (inc->node == NULL || inc->endpoint < 0)
        abort();
    sim_restart_bound(c->w, h->index, dht_node_service(inc->node));
    if (dht_node_start(inc->node, sim_endpoint(c->w, inc->endpoint), err, sizeof err) != 0) {
        fprintf(stderr, "sim_cluster: %s\n", err);
        abort();
    }
    h->inc = inc;
    sim_tracef(c->w, "%lld node %d boot #%u with %zu logged writes%s", (long long)sim_now(c->w),
               h->index + 1, inc->number, h->nlog, h->initialized ? "" : ", recovering");
}

static void incarnation_free(incarnation *inc)
{
    dht_node_stop(inc->node);
    dht_node_free(inc->node);
    while (inc->qhead) { /* cannot happen after a drain; kept for safety */
        batch *b = inc->qhead;
        inc->qhead = b->next;
        free(b);
    }
    dht_replica_free(inc->replica);
    dht_membership_free(inc->members);
    free(inc);
}

sim_cluster *sim_cluster_new(const sim_cluster_config *cfg)
{
    if (cfg->nodes < 1 || cfg->nodes > DHT_MAX_MEMBERS)
        return NULL;
    sim_cluster *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->cfg = *cfg;
    if (c->cfg.fsync_max_ns == 0) {
        c->cfg.fsync_min_ns = 50 * 1000;
        c->cfg.fsync_max_ns = DHT_NS_PER_MS;
    }
    /* Nodes are 127.0.0.1:7001.. (member_list below): add_peer maps those. */
    sim_config sc = {.seed = cfg->seed, .replicas = cfg->nodes, .endpoints = 0,
                     .loss = cfg->loss, .first_port = 7001};
    c->w = sim_new(&sc);
    if (c->cfg.members <= 0 || c->cfg.members > cfg->nodes)
        c->cfg.members = cfg->nodes;
    c->hosts = calloc((size_t)cfg->nodes, sizeof *c->hosts);
    c->member_list = malloc((size_t)cfg->nodes * 24 + 1);
    c->slot_list = malloc((size_t)cfg->nodes * 24 + 1);
    if (c->w == NULL || c->hosts == NULL || c->member_list == NULL || c->slot_list == NULL)
        abort();
    sim_trace_enable(c->w, cfg->trace);
    size_t off = 0;
    for (int i = 0; i < cfg->nodes; i++)
        off += (size_t)sprintf(c->slot_list + off, "%s127.0.0.1:%d", i ? "," : "", 7001 + i);
    off = 0;
    for (int i = 0; i < c->cfg.members; i++)
        off += (size_t)sprintf(c->member_list + off, "%s127.0.0.1:%d", i ? "," : "", 7001 + i);
    c->admin = sim_endpoint_add(c->w);
    if (c->admin < 0)
        abort();
    char err[256];
    if (dht_membership_new(c->member_list, NULL, cfg->replicas, &c->members, err,
                           sizeof err) != 0) {
        fprintf(stderr, "sim_cluster: %s\n", err);
        abort();
    }
    for (int i = 0; i < cfg->nodes; i++) {
        c->hosts[i] = (host){.c = c, .index = i};
        if (i < c->cfg.members)
            boot(&c->hosts[i]);
    }
    return c;
}

void sim_cluster_free(sim_cluster *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->cfg.nodes; i++) {
        if (c->hosts[i].inc)
            dht_node_request_stop(c->hosts[i].inc->node);
    }
    sim_heal_all(c->w);
    sim_run(c->w); /* every operation, timer and commit round ends */
    for (int i = 0; i < c->cfg.nodes; i++) {
        if (c->hosts[i].inc)
            incarnation_free(c->hosts[i].inc);
        free(c->hosts[i].log);
        forget_config(&c->hosts[i]);
    }
    while (c->ghosts) {
        incarnation *g = c->ghosts;
        c->ghosts = g->next_ghost;
        incarnation_free(g);
    }
    sim_free(c->w);
    free(c->hosts);
    free(c->member_list);
    free(c->slot_list);
    dht_membership_free(c->members);
    free(c);
}

sim_world *sim_cluster_world(sim_cluster *c)
{
    return c->w;
}

void sim_cluster_crash(sim_cluster *c, int node)
{
    host *h = &c->hosts[node];
    incarnation *inc = h->inc;
    if (inc == NULL)
        return;
    sim_tracef(c->w, "%lld node %d crash, %zu unsynced writes lost", (long long)sim_now(c->w),
               node + 1, inc->queued_writes);
    inc->dead = true;
    h->inc = NULL;
    sim_crash(c->w, node);
    sim_endpoint_kill(c->w, inc->endpoint);
    dht_node_request_stop(inc->node);
    /* The unsynced batches are gone.  Their requesters never hear back
     * (the network drops replies of a dead incarnation); recovery's own
     * installs see a refusal and stop. */
    while (inc->qhead) {
        batch *b = inc->qhead;
        inc->qhead = b->next;
        b->done(b->done_arg);
        free(b);
    }
    inc->qtail = NULL;
    inc->queued_writes = 0;
    inc->next_ghost = c->ghosts;
    c->ghosts = inc;
}

void sim_cluster_restart(sim_cluster *c, int node, bool wipe)
{
    host *h = &c->hosts[node];
    if (h->inc != NULL)
        sim_cluster_crash(c, node);
    if (wipe) {
        h->nlog = 0;
        h->initialized = false;
        h->cluster_id = 0;
        forget_config(h);
    }
    boot(h);
}

void sim_cluster_pause(sim_cluster *c, int node)
{
    sim_pause(c->w, node);
}

void sim_cluster_resume(sim_cluster *c, int node)
{
    sim_resume(c->w, node);
}

bool sim_cluster_up(const sim_cluster *c, int node)
{
    return c->hosts[node].inc != NULL;
}

bool sim_cluster_serving(const sim_cluster *c, int node)
{
    return c->hosts[node].inc != NULL && dht_node_serving(c->hosts[node].inc->node);
}

dht_replica *sim_cluster_replica(sim_cluster *c, int node)
{
    return c->hosts[node].inc ? c->hosts[node].inc->replica : NULL;
}

size_t sim_cluster_synced(const sim_cluster *c, int node)
{
    return c->hosts[node].nlog;
}

size_t sim_cluster_unsynced(const sim_cluster *c, int node)
{
    return c->hosts[node].inc ? c->hosts[node].inc->queued_writes : 0;
}

/* ---- public calls ------------------------------------------------------------------ */

typedef struct {
    sim_cluster *c;
    incarnation *inc;
    bool is_put;
    sim_put_cb put_cb;
    sim_get_cb get_cb;
    void *arg;
} public_call;

static void public_done(void *arg, dht_status st, const dht_msg *reply, const char *reason)
{
    (void)reason;
    public_call *p = arg;
    bool alive = !p->inc->dead;
    if (p->is_put) {
        int ok = -1;
        if (alive && st == DHT_OK)
            ok = reply->outcome == DHT_PUT_APPLIED ? 1 : reply->outcome == DHT_PUT_NOT_APPLIED ? 0 : -1;
        p->put_cb(p->arg, ok);
    } else {
        bool ok = alive && st == DHT_OK;
        p->get_cb(p->arg, ok, ok ? reply->value : 0);
    }
    free(p);
}

static void public_call_start(sim_cluster *c, int node, const dht_msg *req, int64_t timeout_ns,
                              public_call *p)
{
    incarnation *inc = c->hosts[node].inc;
    if (inc == NULL) { /* connection refused: nothing was started */
        if (p->is_put)
            p->put_cb(p->arg, 0);
        else
            p->get_cb(p->arg, 0, 0);
        free(p);
        return;
    }
    p->inc = inc;
    const dht_service *svc = dht_node_service(inc->node);
    svc->client(svc->arg, req, sim_now(c->w) + timeout_ns, public_done, p);
}

void sim_cluster_put(sim_cluster *c, int node, int64_t key, int64_t value, int64_t timeout_ns,
                     sim_put_cb cb, void *arg)
{
    public_call *p = malloc(sizeof *p);
    if (p == NULL)
        abort();
    *p = (public_call){.c = c, .is_put = true, .put_cb = cb, .arg = arg};
    dht_msg req = {.type = DHT_MSG_PUT, .key = key, .value = value};
    public_call_start(c, node, &req, timeout_ns, p);
}

void sim_cluster_get(sim_cluster *c, int node, int64_t key, int64_t timeout_ns, sim_get_cb cb,
                     void *arg)
{
    public_call *p = malloc(sizeof *p);
    if (p == NULL)
        abort();
    *p = (public_call){.c = c, .is_put = false, .get_cb = cb, .arg = arg};
    dht_msg req = {.type = DHT_MSG_GET, .key = key};
    public_call_start(c, node, &req, timeout_ns, p);
}

bool sim_cluster_stores(const sim_cluster *c, int node, int64_t key)
{
    return dht_membership_stores(c->members, node, key);
}

uint64_t sim_cluster_id(const sim_cluster *c, int node)
{
    return c->hosts[node].cluster_id;
}

/* ---- membership changes ------------------------------------------------------------ */

void sim_cluster_start_joiner(sim_cluster *c, int node)
{
    host *h = &c->hosts[node];
    if (h->inc != NULL)
        return;
    h->joining = true;
    boot(h);
}

typedef struct {
    sim_change_cb cb;
    void *arg;
} change_call;

static void on_changed(void *arg, dht_status st, const uint8_t *rep, size_t len)
{
    change_call *x = arg;
    dht_control_msg m;
    char err[200];
    if (st != DHT_OK) {
        x->cb(x->arg, false, dht_status_name(st));
    } else if (dht_control_decode(rep, len, &m, err, sizeof err) != 0 ||
               m.type != DHT_CTL_CHANGED) {
        x->cb(x->arg, false, "undecodable reply");
    } else {
        char text[1300];
        snprintf(text, sizeof text, "%.*s", (int)m.text_len, m.text);
        x->cb(x->arg, m.ok, text);
    }
    free(x);
}

void sim_cluster_change(sim_cluster *c, int node, bool add, int target, int64_t timeout_ns,
                        sim_change_cb cb, void *arg)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", 7001 + target);
    dht_control_msg m = {.type = DHT_CTL_CHANGE, .op = add ? DHT_CHANGE_ADD : DHT_CHANGE_REMOVE,
                         .addr = addr, .addr_len = strlen(addr)};
    uint8_t *buf;
    size_t len;
    change_call *x = malloc(sizeof *x);
    if (x == NULL || dht_control_encode(&m, &buf, &len) != 0)
        abort();
    *x = (change_call){cb, arg};
    dht_transport *t = sim_endpoint(c->w, c->admin);
    if (t->ops->control(t, node, buf, len, sim_now(c->w) + timeout_ns, on_changed, x) != 0) {
        free(x);
        cb(arg, false, "not sent");
    }
    free(buf);
}

uint64_t sim_cluster_view_number(sim_cluster *c, int node)
{
    host *h = &c->hosts[node];
    if (h->inc == NULL)
        return 2 * h->epoch + (h->next != NULL);
    dht_reconfig *rc = dht_node_reconfig(h->inc->node);
    dht_view *v = rc ? dht_reconfig_view(rc) : NULL;
    uint64_t num = v ? dht_view_number(v) : 0;
    dht_view_unref(v);
    return num;
}

bool sim_cluster_removed(sim_cluster *c, int node)
{
    return c->hosts[node].removed;
}

bool sim_cluster_stores_now(sim_cluster *c, int node, int64_t key)
{
    host *h = &c->hosts[node];
    if (h->inc == NULL)
        return false;
    dht_reconfig *rc = dht_node_reconfig(h->inc->node);
    dht_view *v = rc ? dht_reconfig_view(rc) : NULL;
    bool st = v != NULL && !h->removed &&
              dht_membership_stores(dht_view_current(v), node, key);
    dht_view_unref(v);
    return st;
}
