#include "protocol/transfer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/util.h"

struct dht_transfer {
    dht_transport *t;
    dht_replica *r;
    dht_transfer_config cfg;
    const dht_membership *old, *next;
    int self, n;

    pthread_mutex_t mu;
    pthread_cond_t idle;
    int inflight;
    bool stop, done_said;
    void *timer;     /* pending cancelable timer (mu) */
    void *timer_ctx; /* its context, freed by whoever revokes it */

    /* Per partition: copies still needed (0: none or complete). */
    uint8_t *need;
    atomic_int pending;
    bool counted[DHT_MAX_MEMBERS]; /* a complete copy from this source counted */
    bool tried[DHT_MAX_MEMBERS];   /* tried this round */
    int next_source;

    /* The pull in progress. */
    int peer;
    uint64_t peer_inc; /* the source's incarnation at its first page */
    dht_scan_cursor cur;
    dht_msg *reqs, *reps;
    size_t nreqs;
    bool more;
    long copied;
};

bool dht_transfer_wants(const dht_view *v, int p, uint32_t part)
{
    const dht_membership *next = dht_view_next(v);
    if (next == NULL)
        return false;
    const dht_peerset *a = dht_membership_partition_replicas(dht_view_current(v), part);
    const dht_peerset *b = dht_membership_partition_replicas(next, part);
    return dht_peerset_has(b, p) && !dht_peerset_equal(a, b);
}

/* ---- step bookkeeping (as in recovery.c: a completion holds its count) ---- */

static void step_end(dht_transfer *x)
{
    pthread_mutex_lock(&x->mu);
    if (--x->inflight == 0)
        pthread_cond_broadcast(&x->idle);
    pthread_mutex_unlock(&x->mu);
}

static bool step_continue(dht_transfer *x)
{
    pthread_mutex_lock(&x->mu);
    bool stop = x->stop;
    pthread_mutex_unlock(&x->mu);
    if (stop)
        step_end(x);
    return !stop;
}

static void step_begin(dht_transfer *x)
{
    pthread_mutex_lock(&x->mu);
    x->inflight++;
    pthread_mutex_unlock(&x->mu);
}

typedef void (*step_fn)(dht_transfer *x);

static void next_source(dht_transfer *x);
static void pull_page(dht_transfer *x);

typedef struct {
    dht_transfer *x;
    step_fn fn;
} timer_ctx;

static void on_timer(void *arg)
{
    timer_ctx *tc = arg;
    dht_transfer *x = tc->x;
    step_fn fn = tc->fn;
    pthread_mutex_lock(&x->mu);
    if (x->timer_ctx == tc) {
        x->timer = NULL;
        x->timer_ctx = NULL;
    }
    pthread_mutex_unlock(&x->mu);
    free(tc);
    if (!step_continue(x))
        return;
    fn(x);
    step_end(x);
}

static void after(dht_transfer *x, int64_t delay, step_fn fn)
{
    timer_ctx *tc = malloc(sizeof *tc);
    pthread_mutex_lock(&x->mu);
    if (x->stop || tc == NULL) {
        pthread_mutex_unlock(&x->mu);
        free(tc);
        if (tc == NULL)
            DHT_ERROR("transfer: out of memory; the membership change cannot complete here");
        return;
    }
    *tc = (timer_ctx){x, fn};
    x->inflight++;
    dht_transport *t = x->t;
    if (t->ops->after_cancelable != NULL) {
        x->timer = t->ops->after_cancelable(t, delay, on_timer, tc);
        if (x->timer != NULL) {
            x->timer_ctx = tc;
            pthread_mutex_unlock(&x->mu);
            return;
        }
    }
    pthread_mutex_unlock(&x->mu);
    if (dht_transport_after(t, delay, on_timer, tc) != 0) {
        free(tc);
        DHT_ERROR("transfer: the transport could not arm a timer; the copy stops here");
        step_end(x);
    }
}

/* ---- pulls ------------------------------------------------------------------ */

static void free_page(dht_transfer *x)
{
    free(x->reqs);
    free(x->reps);
    x->reqs = x->reps = NULL;
    x->nreqs = 0;
}

/* A complete copy came from x->peer: count it for the partitions it holds
 * under the old configuration. */
static void count_copy(dht_transfer *x)
{
    x->counted[x->peer] = true;
    const dht_peerset *set;
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
        if (x->need[part] == 0)
            continue;
        set = dht_membership_partition_replicas(x->old, part);
        if (dht_peerset_has(set, x->peer) && --x->need[part] == 0)
            atomic_fetch_sub(&x->pending, 1);
    }
}

static void pull_finished(dht_transfer *x, bool ok)
{
    free_page(x);
    if (ok)
        count_copy(x);
    else
        DHT_DEBUG("transfer: pull from %s failed; another source or a retry follows",
                  dht_membership_addr(x->old, x->peer));
    next_source(x);
}

static void on_installed(void *arg)
{
    dht_transfer *x = arg;
    bool ok = true;
    for (size_t i = 0; i < x->nreqs; i++)
        ok = ok && x->reps[i].ok;
    x->copied += ok ? (long)x->nreqs : 0;
    bool more = x->more;
    free_page(x);
    if (!step_continue(x))
        return;
    if (!ok)
        pull_finished(x, false);
    else if (more)
        after(x, x->cfg.page_pause_ns, pull_page);
    else
        pull_finished(x, true);
    step_end(x);
}

static void page_received(dht_transfer *x, dht_status st, const dht_msg *rep)
{
    bool first = x->cur.from_start;
    if (st != DHT_OK || !rep->ok || rep->recovering ||
        (!first && rep->incarnation != x->peer_inc)) {
        /* Refused (another view), failed, or the source lacks data it may
         * have acknowledged (recovering, or restarted mid-copy). */
        pull_finished(x, false);
        return;
    }
    if (first)
        x->peer_inc = rep->incarnation;
    size_t n = 0;
    if (rep->nentries > 0) {
        x->reqs = calloc(rep->nentries, sizeof *x->reqs);
        x->reps = calloc(rep->nentries, sizeof *x->reps);
        if (x->reqs == NULL || x->reps == NULL) {
            pull_finished(x, false);
            return;
        }
    }
    for (uint32_t i = 0; i < rep->nentries; i++) {
        const dht_entry *e = &rep->entries[i];
        int64_t v;
        dht_version have;
        dht_replica_lookup(x->r, e->key, &v, &have);
        if (dht_version_cmp(e->version, have) > 0)
            x->reqs[n++] = (dht_msg){.type = DHT_MSG_WRITE, .key = e->key, .value = e->value,
                                     .version = e->version};
    }
    x->nreqs = n;
    x->more = rep->more;
    x->cur = (dht_scan_cursor){rep->stripe, rep->key, rep->from_start};
    if (n == 0) {
        bool more = x->more;
        free_page(x);
        if (more)
            after(x, x->cfg.page_pause_ns, pull_page);
        else
            pull_finished(x, true);
        return;
    }
    step_begin(x);
    if (x->cfg.install(x->cfg.install_arg, x->reqs, x->reps, n, on_installed, x) != 0) {
        step_end(x);
        pull_finished(x, false);
    }
}

static void on_page(void *arg, dht_status st, const dht_msg *rep)
{
    dht_transfer *x = arg;
    if (!step_continue(x))
        return;
    page_received(x, st, rep);
    step_end(x);
}

static void pull_page(dht_transfer *x)
{
    dht_msg req = {.type = DHT_MSG_SCAN, .key = x->cur.after, .from_start = x->cur.from_start,
                   .stripe = x->cur.stripe, .limit = x->cfg.page,
                   .member = dht_membership_member_id(x->next, x->self),
                   .incarnation = x->cfg.incarnation, .transfer = true,
                   .view = dht_view_number(x->cfg.view),
                   .config = dht_membership_fingerprint(x->next)};
    int64_t deadline = dht_transport_now(x->t) + x->cfg.rpc_timeout_ns;
    step_begin(x);
    if (dht_transport_send(x->t, x->peer, &req, deadline, on_page, x) != 0) {
        step_end(x);
        pull_finished(x, false);
    }
}

static void say_done(dht_transfer *x)
{
    pthread_mutex_lock(&x->mu);
    bool first = !x->done_said;
    x->done_said = true;
    pthread_mutex_unlock(&x->mu);
    if (first) {
        DHT_INFO("membership change: copy complete (%ld entries installed)", x->copied);
        x->cfg.on_done(x->cfg.arg);
    }
}

static void next_round(dht_transfer *x)
{
    for (int p = 0; p < x->n; p++)
        x->tried[p] = false;
    x->next_source = 0;
    next_source(x);
}

/* The next source that holds, under the old configuration, a partition
 * still short of copies. */
static void next_source(dht_transfer *x)
{
    if (atomic_load(&x->pending) == 0) {
        say_done(x);
        return;
    }
    for (; x->next_source < x->n; x->next_source++) {
        int p = x->next_source;
        if (p == x->self || x->counted[p] || x->tried[p])
            continue;
        for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
            if (x->need[part] > 0 &&
                dht_peerset_has(dht_membership_partition_replicas(x->old, part), p)) {
                x->tried[p] = true;
                x->next_source++;
                x->peer = p;
                x->cur = (dht_scan_cursor){0, 0, true};
                pull_page(x);
                return;
            }
        }
    }
    after(x, x->cfg.retry_ns, next_round);
}

static void on_start(void *arg)
{
    dht_transfer *x = arg;
    if (!step_continue(x))
        return;
    next_source(x);
    step_end(x);
}

dht_transfer *dht_transfer_start(dht_transport *t, dht_replica *r, const dht_transfer_config *cfg)
{
    if (cfg->view == NULL || cfg->install == NULL || cfg->on_done == NULL ||
        !dht_view_joint(cfg->view))
        return NULL;
    const dht_membership *old = dht_view_current(cfg->view), *next = dht_view_next(cfg->view);
    int self = dht_membership_self(next);
    if (self < 0 || t->npeers < dht_view_size(cfg->view))
        return NULL;
    dht_transfer *x = calloc(1, sizeof *x);
    if (x == NULL)
        return NULL;
    x->need = calloc(DHT_PARTITIONS, 1);
    if (x->need == NULL) {
        free(x);
        return NULL;
    }
    x->t = t;
    x->r = r;
    x->cfg = *cfg;
    if (x->cfg.page == 0)
        x->cfg.page = 512;
    if (x->cfg.rpc_timeout_ns == 0)
        x->cfg.rpc_timeout_ns = 2 * DHT_NS_PER_SEC;
    if (x->cfg.retry_ns == 0)
        x->cfg.retry_ns = 200 * DHT_NS_PER_MS;
    if (x->cfg.page_pause_ns == 0)
        x->cfg.page_pause_ns = DHT_NS_PER_MS;
    dht_view_ref(cfg->view);
    x->old = old;
    x->next = next;
    x->self = self;
    x->n = dht_view_size(cfg->view);
    int sources = dht_membership_recovery_sources(old);
    int pending = 0;
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
        if (!dht_transfer_wants(cfg->view, self, part))
            continue;
        int need = sources - dht_peerset_has(dht_membership_partition_replicas(old, part), self);
        if (need > 0) {
            x->need[part] = (uint8_t)need;
            pending++;
        }
    }
    atomic_init(&x->pending, pending);
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->idle, NULL);
    x->inflight = 1;
    if (dht_transport_after(t, 0, on_start, x) != 0) {
        pthread_mutex_destroy(&x->mu);
        pthread_cond_destroy(&x->idle);
        dht_view_unref(cfg->view);
        free(x->need);
        free(x);
        return NULL;
    }
    if (pending > 0)
        DHT_INFO("membership change: copying %d partitions from %d of their old replicas each",
                 pending, sources);
    return x;
}

void dht_transfer_request_stop(dht_transfer *x)
{
    if (x == NULL)
        return;
    pthread_mutex_lock(&x->mu);
    x->stop = true;
    if (x->timer != NULL && x->t->ops->cancel(x->t, x->timer) == 1) {
        x->timer = NULL;
        free(x->timer_ctx); /* the timer that owned it will never run */
        x->timer_ctx = NULL;
        if (--x->inflight == 0)
            pthread_cond_broadcast(&x->idle);
    }
    pthread_mutex_unlock(&x->mu);
}

void dht_transfer_stop(dht_transfer *x)
{
    if (x == NULL)
        return;
    dht_transfer_request_stop(x);
    pthread_mutex_lock(&x->mu);
    while (x->inflight > 0)
        pthread_cond_wait(&x->idle, &x->mu);
    pthread_mutex_unlock(&x->mu);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->idle);
    free_page(x);
    dht_view_unref(x->cfg.view);
    free(x->need);
    free(x);
}

bool dht_transfer_idle(dht_transfer *x)
{
    pthread_mutex_lock(&x->mu);
    bool idle = x->stop && x->inflight == 0;
    pthread_mutex_unlock(&x->mu);
    return idle;
}

int dht_transfer_pending(const dht_transfer *x)
{
    return atomic_load(&((dht_transfer *)x)->pending);
}
