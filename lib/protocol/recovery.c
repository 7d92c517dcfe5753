/* Recovery and anti-entropy as a chain of steps: see recovery.h for the
 * protocol and why it is safe.
 *
 * Every step (a Scan, an install, a timer) counts in `inflight` while it
 * is outstanding; its completion drops the count and, unless a stop was
 * requested, starts the next step.  dht_recovery_stop waits for the count
 * to reach zero, so the object is never freed under a callback.  A step
 * that cannot be started (send refused, out of memory) is turned into a
 * retry timer instead of a recursive call, so chains never grow the stack.
 */
#include "protocol/recovery.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"

typedef enum { PEER_SILENT, PEER_RECOVERING, PEER_READY } peer_state;

/* What a finished pull continues with. */
typedef enum { AFTER_RECOVERY_PULL, AFTER_AE_PULL } pull_next;

typedef void (*step_fn)(dht_recovery *s);

struct dht_recovery {
    dht_transport *t;
    dht_replica *r;
    dht_recovery_config cfg;
    int n, self;

    pthread_mutex_t mu;
    pthread_cond_t idle;
    int inflight;
    bool stop;
    void *timer;       /* pending cancelable timer, if any (mu) */
    step_fn timer_step; /* what the pending timer starts; NULL: a failed pull */

    /* Start-up question (all peers asked at once). */
    peer_state *st;
    int asks_pending;
    bool announced;

    /* Recovery copy: sources done so far, next candidate peer. */
    int copied, next_source;
    long copied_entries;

    /* The pull in progress (one at a time). */
    int peer;
    pull_next then;
    bool pace;
    dht_scan_cursor cur;
    long installed;
    dht_msg *reqs, *reps; /* the page being installed; owned */
    size_t nreqs;
    bool more;

    /* Anti-entropy pass: next peer to pull. */
    int ae_next;
};

void dht_recovery_config_default(dht_recovery_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->page = 512;
    cfg->rpc_timeout_ns = 2 * DHT_NS_PER_SEC;
    cfg->ae_interval_ns = DHT_NS_PER_SEC;
    cfg->page_pause_ns = 5 * DHT_NS_PER_MS;
    cfg->retry_ns = 200 * DHT_NS_PER_MS;
}

/* ---- step bookkeeping ------------------------------------------------------ */

/* A completion keeps its step's count while it works, so that a stop
 * cannot free s under it, and drops it last (step_end), after the next
 * step began; nothing may touch s after step_end. */
static void step_end(dht_recovery *s)
{
    pthread_mutex_lock(&s->mu);
    if (--s->inflight == 0)
        pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

/* At the top of a completion: false (and the count dropped) if a stop was
 * requested, true to go on. */
static bool step_continue(dht_recovery *s)
{
    pthread_mutex_lock(&s->mu);
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    if (stop)
        step_end(s);
    return !stop;
}

static void step_begin(dht_recovery *s)
{
    pthread_mutex_lock(&s->mu);
    s->inflight++;
    pthread_mutex_unlock(&s->mu);
}

/* Starts `next` after delay_ns (NULL: fail the current pull then).  One
 * chain, so one timer at a time: its step is kept in s. */
static void after(dht_recovery *s, int64_t delay_ns, step_fn next);

/* ---- pulls: paged Scan of one peer, newer entries installed ------------------- */

static void pull_page(dht_recovery *s);
static void pull_finished(dht_recovery *s, bool ok);
static void ask_all(dht_recovery *s);
static void recovery_next_source(dht_recovery *s);
static void ae_pass_start(dht_recovery *s);
static void ae_next_peer(dht_recovery *s);

static void free_page(dht_recovery *s)
{
    free(s->reqs);
    free(s->reps);
    s->reqs = s->reps = NULL;
    s->nreqs = 0;
}

static void on_installed(void *arg)
{
    dht_recovery *s = arg;
    bool ok = true;
    for (size_t i = 0; i < s->nreqs; i++)
        ok = ok && s->reps[i].ok;
    s->installed += ok ? (long)s->nreqs : 0;
    bool more = s->more;
    free_page(s);
    if (!step_continue(s))
        return;
    if (!ok) {
        DHT_WARN("recovery: could not store copied entries locally");
        pull_finished(s, false);
    } else if (!more) {
        pull_finished(s, true);
    } else {
        after(s, s->pace ? s->cfg.page_pause_ns : 0, pull_page);
    }
    step_end(s);
}

static void page_received(dht_recovery *s, dht_status st, const dht_msg *rep);

static void on_page(void *arg, dht_status st, const dht_msg *rep)
{
    dht_recovery *s = arg;
    if (!step_continue(s))
        return;
    page_received(s, st, rep);
    step_end(s);
}

static void page_received(dht_recovery *s, dht_status st, const dht_msg *rep)
{
    if (st != DHT_OK || !rep->ok) {
        pull_finished(s, false);
        return;
    }
    /* Only entries newer than ours go to the write path: equal ones would
     * be refused anyway, and copying them would cost a log write each. */
    size_t n = 0;
    if (rep->nentries > 0) {
        s->reqs = calloc(rep->nentries, sizeof *s->reqs);
        s->reps = calloc(rep->nentries, sizeof *s->reps);
        if (s->reqs == NULL || s->reps == NULL) {
            free_page(s);
            pull_finished(s, false);
            return;
        }
    }
    for (uint32_t i = 0; i < rep->nentries; i++) {
        const dht_entry *e = &rep->entries[i];
        int64_t v;
        dht_version cur;
        dht_replica_lookup(s->r, e->key, &v, &cur);
        if (dht_version_cmp(e->version, cur) > 0)
            s->reqs[n++] = (dht_msg){.type = DHT_MSG_WRITE, .key = e->key, .value = e->value,
                                     .version = e->version};
    }
    s->nreqs = n;
    s->more = rep->more;
    s->cur = (dht_scan_cursor){rep->stripe, rep->key, rep->from_start};
    if (n == 0) {
        free_page(s);
        if (!s->more)
            pull_finished(s, true);
        else
            after(s, s->pace ? s->cfg.page_pause_ns : 0, pull_page);
        return;
    }
    step_begin(s);
    if (s->cfg.install(s->cfg.arg, s->reqs, s->reps, n, on_installed, s) != 0) {
        step_end(s);
        free_page(s);
        pull_finished(s, false);
    }
}

static void pull_page(dht_recovery *s)
{
    dht_msg req = {.type = DHT_MSG_SCAN, .key = s->cur.after, .from_start = s->cur.from_start,
                   .stripe = s->cur.stripe, .limit = s->cfg.page};
    int64_t deadline = dht_transport_now(s->t) + s->cfg.rpc_timeout_ns;
    step_begin(s);
    if (dht_transport_send(s->t, s->peer, &req, deadline, on_page, s) != 0) {
        step_end(s);
        after(s, s->cfg.retry_ns, NULL); /* counts as a failed pull, later */
    }
}

static void pull_start(dht_recovery *s, int peer, bool pace, pull_next then)
{
    s->peer = peer;
    s->pace = pace;
    s->then = then;
    s->cur = (dht_scan_cursor){0, 0, true};
    s->installed = 0;
    pull_page(s);
}

/* ---- start-up decision and recovery ----------------------------------------- */

static void become_ready(dht_recovery *s, const char *why)
{
    s->cfg.on_ready(s->cfg.arg, why);
    dht_replica_set_recovering(s->r, false);
    after(s, s->cfg.ae_interval_ns, ae_pass_start);
}

static void decide(dht_recovery *s)
{
    int need = dht_membership_recovery_sources(s->cfg.members);
    int ready = 0, recovering = 0;
    for (int p = 0; p < s->n; p++) {
        ready += s->st[p] == PEER_READY;
        recovering += s->st[p] == PEER_RECOVERING;
    }
    if (recovering > 0) {
        /* Two empty nodes at once would be two failures, beyond the model:
         * the cluster is new.  Peers that already decided so hold only
         * writes made since, each also acknowledged by a node that kept
         * it, so nothing is missing here.  (Requiring them to be copied
         * would deadlock three new nodes once the first one decided.) */
        DHT_INFO("%d peer(s) are new too: this is a new cluster", recovering);
        become_ready(s, "new cluster");
        return;
    }
    if (ready == 0 || ready < need) {
        if (!s->announced) {
            if (ready == 0)
                DHT_INFO("empty data directory: waiting for peers to tell a new cluster from "
                         "a lost disk (not serving reads meanwhile)");
            else
                DHT_WARN("lost or new data directory: recovery needs %d peers with data, %d "
                         "answer; waiting (not serving reads meanwhile)", need, ready);
        }
        s->announced = true;
        after(s, s->cfg.retry_ns, ask_all);
        return;
    }
    DHT_INFO("joining a cluster that holds data (this node is new or lost its disk): "
             "copying every key from %d peers", need);
    s->copied = 0;
    s->next_source = 0;
    s->copied_entries = 0;
    recovery_next_source(s);
}

static void recovery_next_source(dht_recovery *s)
{
    int need = dht_membership_recovery_sources(s->cfg.members);
    if (s->copied >= need) {
        DHT_INFO("recovery complete: %ld entries installed, %zu keys held", s->copied_entries,
                 dht_replica_size(s->r));
        become_ready(s, "recovered from peers");
        return;
    }
    while (s->next_source < s->n && s->st[s->next_source] != PEER_READY)
        s->next_source++;
    if (s->next_source >= s->n) {
        after(s, s->cfg.retry_ns, ask_all); /* too few complete copies: ask again */
        return;
    }
    pull_start(s, s->next_source++, false, AFTER_RECOVERY_PULL);
}

static void on_answer(void *arg, dht_status st, const dht_msg *rep)
{
    void **ctx = arg; /* {s, peer}: see ask_all */
    dht_recovery *s = ctx[0];
    int peer = (int)(intptr_t)ctx[1];
    free(ctx);
    pthread_mutex_lock(&s->mu);
    s->st[peer] = st != DHT_OK || !rep->ok    ? PEER_SILENT
                  : rep->recovering ? PEER_RECOVERING
                                    : PEER_READY;
    bool last = --s->asks_pending == 0;
    pthread_mutex_unlock(&s->mu);
    if (!step_continue(s))
        return;
    if (last)
        decide(s);
    step_end(s);
}

static void ask_all(dht_recovery *s)
{
    if (!dht_replica_recovering(s->r)) { /* restarted with its data */
        after(s, s->cfg.ae_interval_ns, ae_pass_start);
        return;
    }
    if (s->self < 0 || s->n == 1) {
        become_ready(s, "single-node cluster");
        return;
    }
    dht_msg req = {.type = DHT_MSG_SCAN, .from_start = true, .limit = 0};
    int64_t deadline = dht_transport_now(s->t) + s->cfg.rpc_timeout_ns;
    /* One extra count while the asks go out, so a reply that arrives
     * before the loop ends cannot run decide() early. */
    pthread_mutex_lock(&s->mu);
    s->asks_pending = 1;
    for (int p = 0; p < s->n; p++)
        s->st[p] = PEER_SILENT;
    pthread_mutex_unlock(&s->mu);
    for (int p = 0; p < s->n; p++) {
        if (p == s->self)
            continue;
        void **ctx = malloc(2 * sizeof *ctx);
        if (ctx == NULL)
            continue;
        ctx[0] = s;
        ctx[1] = (void *)(intptr_t)p;
        pthread_mutex_lock(&s->mu);
        s->asks_pending++;
        pthread_mutex_unlock(&s->mu);
        step_begin(s);
        if (dht_transport_send(s->t, p, &req, deadline, on_answer, ctx) != 0) {
            free(ctx);
            pthread_mutex_lock(&s->mu);
            s->asks_pending--;
            pthread_mutex_unlock(&s->mu);
            step_end(s);
        }
    }
    pthread_mutex_lock(&s->mu);
    bool last = --s->asks_pending == 0;
    pthread_mutex_unlock(&s->mu);
    if (last)
        decide(s);
}

/* ---- anti-entropy ------------------------------------------------------------ */

static void ae_pass_start(dht_recovery *s)
{
    s->ae_next = 0;
    ae_next_peer(s);
}

static void ae_next_peer(dht_recovery *s)
{
    if (s->ae_next == s->self)
        s->ae_next++;
    if (s->ae_next >= s->n) {
        after(s, s->cfg.ae_interval_ns, ae_pass_start);
        return;
    }
    pull_start(s, s->ae_next++, true, AFTER_AE_PULL);
}

static void pull_finished(dht_recovery *s, bool ok)
{
    if (s->then == AFTER_RECOVERY_PULL) {
        if (ok) {
            s->copied++;
            s->copied_entries += s->installed;
        } else {
            DHT_WARN("recovery from peer %d interrupted; will retry", s->peer + 1);
        }
        recovery_next_source(s);
        return;
    }
    if (ok && s->installed > 0)
        DHT_INFO("anti-entropy: %ld newer entries from peer %d", s->installed, s->peer + 1);
    ae_next_peer(s);
}

/* ---- timers -------------------------------------------------------------------- */

static void on_timer(void *arg)
{
    dht_recovery *s = arg;
    pthread_mutex_lock(&s->mu);
    s->timer = NULL;
    step_fn next = s->timer_step;
    pthread_mutex_unlock(&s->mu);
    if (!step_continue(s))
        return;
    if (next == NULL)
        pull_finished(s, false);
    else
        next(s);
    step_end(s);
}

static void after(dht_recovery *s, int64_t delay_ns, step_fn next)
{
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->inflight++;
    s->timer_step = next;
    dht_transport *t = s->t;
    if (t->ops->after_cancelable != NULL) {
        /* Under mu, so a stop cannot look for the handle before it is set;
         * the callback takes mu too and never runs inside this call. */
        s->timer = t->ops->after_cancelable(t, delay_ns, on_timer, s);
        if (s->timer != NULL) {
            pthread_mutex_unlock(&s->mu);
            return;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (dht_transport_after(t, delay_ns, on_timer, s) != 0) {
        /* No timer at all: the transport is shutting down (a node stops
         * recovery first, so then s->stop is set and we never got here) or
         * out of memory.  The chain ends; say so, since nothing else will. */
        DHT_ERROR("recovery and anti-entropy stopped: the transport could not arm a timer "
                  "(out of memory?); restart this node to resume them");
        step_end(s);
    }
}

/* ---- start and stop ------------------------------------------------------------- */

static void on_start(void *arg)
{
    dht_recovery *s = arg;
    if (!step_continue(s))
        return;
    ask_all(s);
    step_end(s);
}

dht_recovery *dht_recovery_start(dht_transport *t, dht_replica *r, const dht_recovery_config *cfg)
{
    if (cfg->members == NULL || cfg->install == NULL || cfg->on_ready == NULL ||
        dht_membership_size(cfg->members) != t->npeers)
        return NULL;
    dht_recovery *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->t = t;
    s->r = r;
    s->cfg = *cfg;
    if (s->cfg.page == 0)
        s->cfg.page = 512;
    s->n = dht_membership_size(cfg->members);
    s->self = dht_membership_self(cfg->members);
    s->st = calloc((size_t)s->n, sizeof *s->st);
    if (s->st == NULL) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    /* The first step runs from the transport, never inside this call, so
     * the caller has its handle before any callback can use it. */
    s->inflight = 1;
    if (dht_transport_after(t, 0, on_start, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->idle);
        free(s->st);
        free(s);
        return NULL;
    }
    return s;
}

void dht_recovery_request_stop(dht_recovery *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    if (s->timer != NULL && s->t->ops->cancel(s->t, s->timer) == 1) {
        s->timer = NULL;
        if (--s->inflight == 0)
            pthread_cond_broadcast(&s->idle);
    }
    pthread_mutex_unlock(&s->mu);
}

void dht_recovery_stop(dht_recovery *s)
{
    if (s == NULL)
        return;
    dht_recovery_request_stop(s);
    pthread_mutex_lock(&s->mu);
    while (s->inflight > 0)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle);
    free_page(s);
    free(s->st);
    free(s);
}
