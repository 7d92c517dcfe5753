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
#include <stdatomic.h>
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

    /* Start-up question (all peers asked at once): each peer's state,
     * cluster id and whether it takes us for a founder. */
    peer_state *st;
    uint64_t *peer_cluster, *peer_inc;
    bool *peer_founder;
    int asks_pending;
    bool announced, copy_announced;

    /* The cluster id known (0: none); read by Scan handlers on any thread. */
    _Atomic uint64_t cluster_id;
    /* If this node formed the cluster: the incarnations it saw empty (mu). */
    uint64_t *founders;
    int nfounders;

    /* Recovery copy: per partition, complete copies made from its other
     * replicas (only partitions this node stores count); which peers were
     * pulled; the next candidate. */
    uint8_t *copies;
    bool *pulled; /* complete copy made and counted: never again */
    bool *tried;  /* pulled or failed since the last ask round */
    atomic_int pending; /* partitions stored here and not yet complete */
    int said_pending;   /* what say_waiting last reported (-1: nothing) */
    int next_source;
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

/* Positions of departed members (or of hosts not yet members) take no part. */
static bool member(const dht_recovery *s, int p)
{
    return dht_membership_is_member(s->cfg.members, p);
}
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
    /* A recovery copy counts only from the complete process the ask saw:
     * one that restarted since (another incarnation) or now recovers a
     * partition we share may lack acknowledged writes. */
    if (s->then == AFTER_RECOVERY_PULL &&
        (rep->recovering || rep->incarnation != s->peer_inc[s->peer])) {
        DHT_WARN("recovery: peer %d %s during the copy; not counted", s->peer + 1,
                 rep->recovering ? "is recovering itself" : "restarted");
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
    /* Only the keys both store: the peer filters by our member id. */
    dht_msg req = {.type = DHT_MSG_SCAN, .key = s->cur.after, .from_start = s->cur.from_start,
                   .stripe = s->cur.stripe, .limit = s->cfg.page,
                   .member = dht_membership_member_id(s->cfg.members, s->self),
                   .incarnation = s->cfg.incarnation};
    if (s->cfg.stamp != NULL)
        s->cfg.stamp(s->cfg.arg, &req);
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
    atomic_store(&s->pending, 0);
    after(s, s->cfg.ae_interval_ns, ae_pass_start);
}

static int record_cluster_id(dht_recovery *s, uint64_t id)
{
    if (atomic_load(&s->cluster_id) == id)
        return 0;
    if (s->cfg.set_cluster_id != NULL && s->cfg.set_cluster_id(s->cfg.arg, id) != 0) {
        DHT_WARN("recovery: could not record the cluster id %016llx; will retry",
                 (unsigned long long)id);
        return -1;
    }
    atomic_store(&s->cluster_id, id);
    return 0;
}

/* The id of a cluster formed now: a hash of what every member that forms
 * it concurrently saw (the configuration and the smallest incarnation), so
 * concurrent formers agree without another round. */
static uint64_t formation_id(dht_recovery *s)
{
    uint64_t lo = s->cfg.incarnation;
    for (int i = 0; i < s->nfounders; i++)
        lo = s->founders[i] < lo ? s->founders[i] : lo;
    uint64_t x = dht_mix64(dht_membership_fingerprint(s->cfg.members) ^ (lo * DHT_GOLDEN_GAMMA));
    return x ? x : 1;
}

static void start_copy(dht_recovery *s);

static void decide(dht_recovery *s)
{
    int ready = 0, answered = 0;
    uint64_t known = atomic_load(&s->cluster_id), founded_by = 0;
    for (int p = 0; p < s->n; p++) {
        if (p == s->self || !member(s, p))
            continue;
        ready += s->st[p] == PEER_READY;
        answered += s->st[p] != PEER_SILENT;
        /* A complete replica without an id predates cluster ids: its
         * cluster exists, under the id such replicas derive (node.c). */
        uint64_t id = s->st[p] == PEER_READY && s->peer_cluster[p] == 0
                          ? dht_membership_fingerprint(s->cfg.members)
                          : s->peer_cluster[p];
        if (s->st[p] != PEER_SILENT && id != 0) {
            if (known == 0)
                known = id;
            if (s->peer_founder[p] && s->st[p] == PEER_READY)
                founded_by = s->peer_cluster[p];
        }
    }
    if (founded_by != 0) {
        /* A peer formed the cluster having seen this very process empty:
         * nothing was acknowledged without it (no lock was granted before
         * the cluster existed) and it has lost nothing since (the same
         * process), so it is complete as it is, even if it had already
         * started to copy (it may have asked while the former was still
         * recording its decision). */
        if (record_cluster_id(s, founded_by) != 0) {
            after(s, s->cfg.retry_ns, ask_all);
            return;
        }
        DHT_INFO("a new cluster was formed with this node as a founder (cluster %016llx)",
                 (unsigned long long)founded_by);
        become_ready(s, "new cluster");
        return;
    }
    if (known == 0 && answered == dht_membership_members(s->cfg.members) - 1 && ready == 0) {
        /* Every member is empty and none has been part of a cluster. */
        pthread_mutex_lock(&s->mu);
        s->nfounders = 0;
        for (int p = 0; p < s->n; p++)
            if (p != s->self && member(s, p))
                s->founders[s->nfounders++] = s->peer_inc[p];
        pthread_mutex_unlock(&s->mu);
        uint64_t id = formation_id(s);
        if (record_cluster_id(s, id) != 0) {
            after(s, s->cfg.retry_ns, ask_all);
            return;
        }
        DHT_INFO("every member is new: this is a new cluster (%016llx)", (unsigned long long)id);
        become_ready(s, "new cluster");
        return;
    }
    if (known != 0) {
        if (record_cluster_id(s, known) != 0) {
            after(s, s->cfg.retry_ns, ask_all);
            return;
        }
        start_copy(s);
        return;
    }
    if (!s->announced)
        DHT_INFO("empty data directory: waiting for all %d members to answer, to tell a new "
                 "cluster from a lost disk (%d answer; not serving reads meanwhile)",
                 dht_membership_members(s->cfg.members), answered + 1);
    s->announced = true;
    after(s, s->cfg.retry_ns, ask_all);
}

/* Whether peer stores partition part too (self does, by the caller). */
static bool shares(const dht_recovery *s, int peer, uint32_t part)
{
    return dht_peerset_has(dht_membership_partition_replicas(s->cfg.members, part), peer);
}

static void start_copy(dht_recovery *s)
{
    if (!s->copy_announced)
        DHT_INFO("joining a cluster that holds data (this node is new or lost its disk): "
                 "copying each of its %d partitions from %d of its other replicas",
                 dht_membership_partition_count(s->cfg.members, s->self),
                 dht_membership_recovery_sources(s->cfg.members));
    s->copy_announced = true;
    s->next_source = 0; /* pulled[] stays: each peer's copy counts once */
    for (int p = 0; p < s->n; p++)
        s->tried[p] = false; /* a failed pull is tried again, once per round */
    recovery_next_source(s);
}

/* Says once per change of the count which partitions wait and why: one
 * of them with the state of its other replicas. */
static void say_waiting(dht_recovery *s, int need)
{
    int pending = atomic_load(&s->pending);
    if (pending == s->said_pending)
        return;
    s->said_pending = pending;
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
        if (!dht_replica_partition_recovering(s->r, part))
            continue;
        char who[512] = "";
        size_t used = 0;
        const dht_peerset *set = dht_membership_partition_replicas(s->cfg.members, part);
        for (int p = 0; p < s->n && used < sizeof who; p++)
            if (p != s->self && dht_peerset_has(set, p))
                used += (size_t)snprintf(who + used, sizeof who - used, "%s%s %s",
                                         used ? ", " : "", dht_membership_addr(s->cfg.members, p),
                                         s->st[p] == PEER_READY        ? "complete"
                                         : s->st[p] == PEER_RECOVERING ? "recovering"
                                                                       : "silent");
        DHT_WARN("recovery: %d partitions wait for %d complete copies from their other "
                 "replicas (not serving them meanwhile), e.g. partition %u: %d copied; %s",
                 pending, need, part, s->copies[part], who);
        return;
    }
}

static void recovery_next_source(dht_recovery *s)
{
    if (atomic_load(&s->pending) == 0) {
        DHT_INFO("recovery complete: %ld entries installed, %zu keys held", s->copied_entries,
                 dht_replica_size(s->r));
        become_ready(s, "recovered from peers");
        return;
    }
    /* The next complete peer that shares a partition still short of
     * copies; a pull takes every key both store. */
    int need = dht_membership_recovery_sources(s->cfg.members);
    for (; s->next_source < s->n; s->next_source++) {
        int p = s->next_source;
        if (p == s->self || s->pulled[p] || s->tried[p] || s->st[p] != PEER_READY)
            continue;
        for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
            if (s->copies[part] < need && dht_replica_partition_recovering(s->r, part) &&
                shares(s, p, part)) {
                s->tried[p] = true;
                pull_start(s, s->next_source++, false, AFTER_RECOVERY_PULL);
                return;
            }
        }
    }
    say_waiting(s, need);
    /* Too few complete copies for some partitions: ask again.  If others
     * already serve, keep them current meanwhile with an anti-entropy pass
     * (it ends by asking again, since partitions are still pending). */
    if (atomic_load(&s->pending) < dht_membership_partition_count(s->cfg.members, s->self))
        after(s, s->cfg.ae_interval_ns, ae_pass_start);
    else
        after(s, s->cfg.retry_ns, ask_all);
}

/* A pull from s->peer completed: each partition both store has one more
 * complete copy; those with enough serve from now on. */
static void count_copy(dht_recovery *s)
{
    int need = dht_membership_recovery_sources(s->cfg.members);
    int done = 0;
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++)
        if (dht_replica_partition_recovering(s->r, part) && shares(s, s->peer, part) &&
            s->copies[part] + 1 >= need)
            done++;
    if (done > 0 && done == atomic_load(&s->pending)) {
        /* The last ones: become_ready serves them all, after the node has
         * recorded that it is complete (on_ready). */
        atomic_store(&s->pending, 0);
        return;
    }
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
        if (!dht_replica_partition_recovering(s->r, part) || !shares(s, s->peer, part))
            continue;
        if (++s->copies[part] >= need) {
            dht_replica_set_partition_recovering(s->r, part, false);
            atomic_fetch_sub(&s->pending, 1);
        }
    }
    if (done > 0)
        DHT_INFO("recovery: %d partitions complete after copying from peer %d (%d to go)", done,
                 s->peer + 1, atomic_load(&s->pending));
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
    s->peer_cluster[peer] = st == DHT_OK && rep->ok ? rep->cluster_id : 0;
    s->peer_founder[peer] = st == DHT_OK && rep->ok && rep->founder;
    s->peer_inc[peer] = st == DHT_OK && rep->ok ? rep->incarnation : 0;
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
    if (s->self < 0 || dht_membership_members(s->cfg.members) == 1) {
        if (s->self >= 0 && record_cluster_id(s, formation_id(s)) != 0) {
            after(s, s->cfg.retry_ns, ask_all);
            return;
        }
        become_ready(s, "single-node cluster");
        return;
    }
    dht_msg req = {.type = DHT_MSG_SCAN, .from_start = true, .limit = 0,
                   .member = dht_membership_member_id(s->cfg.members, s->self),
                   .incarnation = s->cfg.incarnation};
    if (s->cfg.stamp != NULL)
        s->cfg.stamp(s->cfg.arg, &req);
    int64_t deadline = dht_transport_now(s->t) + s->cfg.rpc_timeout_ns;
    /* One extra count while the asks go out, so a reply that arrives
     * before the loop ends cannot run decide() early. */
    pthread_mutex_lock(&s->mu);
    s->asks_pending = 1;
    for (int p = 0; p < s->n; p++)
        s->st[p] = PEER_SILENT;
    pthread_mutex_unlock(&s->mu);
    for (int p = 0; p < s->n; p++) {
        if (p == s->self || !member(s, p))
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
    while (s->ae_next < s->n && (s->ae_next == s->self || !member(s, s->ae_next)))
        s->ae_next++;
    if (s->ae_next >= s->n) {
        if (atomic_load(&s->pending) > 0) /* a recovery still waiting for sources */
            after(s, 0, ask_all);
        else
            after(s, s->cfg.ae_interval_ns, ae_pass_start);
        return;
    }
    pull_start(s, s->ae_next++, true, AFTER_AE_PULL);
}

static void pull_finished(dht_recovery *s, bool ok)
{
    if (s->then == AFTER_RECOVERY_PULL) {
        if (ok) {
            s->pulled[s->peer] = true;
            count_copy(s);
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

static void free_arrays(dht_recovery *s)
{
    free(s->st);
    free(s->peer_cluster);
    free(s->peer_inc);
    free(s->peer_founder);
    free(s->founders);
    free(s->pulled);
    free(s->tried);
    free(s->copies);
}

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
        dht_membership_size(cfg->members) > t->npeers)
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
    size_t n = (size_t)s->n;
    s->st = calloc(n, sizeof *s->st);
    s->peer_cluster = calloc(n, sizeof *s->peer_cluster);
    s->peer_inc = calloc(n, sizeof *s->peer_inc);
    s->peer_founder = calloc(n, sizeof *s->peer_founder);
    s->founders = calloc(n, sizeof *s->founders);
    s->pulled = calloc(n, sizeof *s->pulled);
    s->tried = calloc(n, sizeof *s->tried);
    s->copies = calloc(DHT_PARTITIONS, sizeof *s->copies);
    if (s->st == NULL || s->peer_cluster == NULL || s->peer_inc == NULL ||
        s->peer_founder == NULL || s->founders == NULL || s->pulled == NULL || s->tried == NULL ||
        s->copies == NULL) {
        free_arrays(s);
        free(s);
        return NULL;
    }
    atomic_init(&s->cluster_id, cfg->cluster_id);
    atomic_init(&s->pending, 0);
    s->said_pending = -1;
    if (dht_replica_recovering(r)) {
        /* Only the partitions stored here have anything to recover. */
        for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
            if (s->self >= 0 && dht_peerset_has(dht_membership_partition_replicas(cfg->members,
                                                                                  part), s->self))
                atomic_fetch_add(&s->pending, 1);
            else
                dht_replica_set_partition_recovering(r, part, false);
        }
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    /* The first step runs from the transport, never inside this call, so
     * the caller has its handle before any callback can use it. */
    s->inflight = 1;
    if (dht_transport_after(t, 0, on_start, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->idle);
        free_arrays(s);
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

void dht_recovery_halt(dht_recovery *s)
{
    if (s == NULL)
        return;
    dht_recovery_request_stop(s);
    pthread_mutex_lock(&s->mu);
    while (s->inflight > 0)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void dht_recovery_stop(dht_recovery *s)
{
    if (s == NULL)
        return;
    dht_recovery_halt(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle);
    free_page(s);
    free_arrays(s);
    free(s);
}

uint64_t dht_recovery_cluster_id(const dht_recovery *s)
{
    return atomic_load(&((dht_recovery *)s)->cluster_id);
}

bool dht_recovery_founder(const dht_recovery *s, uint64_t incarnation)
{
    dht_recovery *w = (dht_recovery *)s;
    bool found = false;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < w->nfounders && incarnation != 0; i++)
        found = found || w->founders[i] == incarnation;
    pthread_mutex_unlock(&w->mu);
    return found;
}

int dht_recovery_partitions_pending(const dht_recovery *s)
{
    return atomic_load(&((dht_recovery *)s)->pending);
}
