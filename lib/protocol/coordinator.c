/* Coordinator state machines.
 *
 * put(k, v):
 *   LOCK    send Lock(k, owner, lease) to every replica; Q grants move on to
 *           WRITE with version (max counter seen + 1, owner).  When Q grants
 *           become impossible, or a refusal shows another writer and the
 *           stragglers do not answer within contention_wait, the round is
 *           abandoned: grants are released, a randomised doubling backoff
 *           runs, and a new round (new owner id) starts if the deadline
 *           allows; otherwise the put is NOT_APPLIED (no Write was sent).
 *   WRITE   send Write(k, v, version, release=owner) to every replica and
 *           resend to those that fail until Q acknowledge (APPLIED) or the
 *           deadline passes (UNKNOWN: some replicas may hold the value).
 * get(k):
 *   READ    send Read(k) to every replica; with Q answers take the highest
 *           version.  If all Q agree, return it; otherwise WRITEBACK that
 *           value with its own version until Q replicas hold it (replicas
 *           that already reported it count), then return it.
 *
 * The lock phase doubles as the version query of multi-writer ABD, so
 * linearizability rests on quorum intersection and unique versions only;
 * the lock just keeps writers of one key from trampling each other.
 *
 * Concurrency: one mutex per operation; every in-flight RPC and armed timer
 * holds a reference (op->refs), so late replies after completion are safe.
 * Replies from an abandoned round are recognised by their round number; a
 * late grant is released at once so it does not block the key for a lease.
 * The user callback runs outside the mutex, exactly once.
 */
#include "protocol/coordinator.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "protocol/replica.h"
#include "protocol/view.h"

/* A peer whose request failed is not asked first for this long. */
#define SUSPECT_NS (1000 * DHT_NS_PER_MS)

typedef struct op op;

struct dht_coord {
    dht_transport *t;
    dht_coord_config cfg;
    /* The view new operations run on (each keeps a reference to the one it
     * started with); view_mu guards the pointer only. */
    pthread_mutex_t view_mu;
    dht_view *view;
    int self; /* our own replica's position, or -1 */
    atomic_uint_fast32_t seq;
    pthread_mutex_t rng_mu;
    dht_rng rng;
    /* Operations still allocated, stragglers included (late unlocks, write
     * retries): dht_coord_free waits for them. */
    pthread_mutex_t live_mu;
    pthread_cond_t live_cv;
    int live;
    atomic_uint rr; /* first peer of a quorum when there is no self */
    /* Per position (DHT_MAX_MEMBERS: views may add positions). */
    _Atomic int64_t suspect_until[DHT_MAX_MEMBERS];
    _Atomic int64_t last_heard[DHT_MAX_MEMBERS]; /* last reply from each peer */
    /* Rounds that asked only a quorum, in start order, until their hedge
     * time; one timer ticks while any are queued. */
    pthread_mutex_t hedge_mu;
    op *hhead, *htail;
    bool hedge_armed;
};

typedef enum { PH_LOCK, PH_BACKOFF, PH_WRITE, PH_READ, PH_WRITEBACK, PH_DONE } phase;

struct op {
    pthread_mutex_t mu;
    int refs;
    dht_coord *c;
    bool is_put;
    int64_t key, value;
    int64_t deadline;
    phase ph;
    uint32_t round;
    uint64_t owner;
    dht_view *view;       /* the view the op runs on: a reference */
    int n;                /* its positions */
    dht_key_replicas kr;  /* the key's replica groups under it */
    dht_peerset replicas; /* kr.all: the peers that store key */
    /* current round's tallies */
    int pending, refusals, failures;
    dht_peerset asked;    /* peers asked this round */
    dht_peerset answered; /* peers that answered this round, any way */
    dht_peerset granted;  /* peers holding our lock this round */
    dht_peerset refused;  /* peers that answered "held by another" this round */
    dht_peerset failed;   /* peers whose request failed this round */
    dht_peerset replied;  /* READ: peers that answered with their state */
    dht_peerset holders;  /* peers known to hold (value, ver)  */
    int outstanding;   /* WRITE/WRITEBACK: RPCs + retry timers */
    dht_version ver;   /* put: the version written; get: the highest read */
    uint64_t max_counter;
    int64_t backoff;
    bool contention_armed;
    bool write_sent;   /* put: Write(release=owner) went to every peer */
    bool notified;
    void *deadline_timer; /* cancelable transports: ends the op on time */
    dht_put_outcome outcome;
    int get_ok;
    char reason[400];
    /* The first error a replica answered with (e.g. a configuration
     * mismatch), for the reason of a failure: "" if none. */
    char remote[240];
    dht_put_cb put_cb;
    dht_get_cb get_cb;
    void *arg;
    /* hedge queue */
    op *hnext, *hprev;
    int64_t hedge_at;
    uint32_t hedge_round;
    bool hedge_queued; /* holds a reference for the hedge tick (o->mu) */
    bool in_fifo;      /* still in the FIFO, not taken by a tick (hedge_mu) */
};

/* Context of one RPC or timer; owns one reference on its op. */
typedef struct {
    op *o;
    uint32_t round;
    int peer;
    uint64_t owner;
} rpc_ctx;

void dht_coord_config_default(dht_coord_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->deadline_ns = 2 * DHT_NS_PER_SEC;
    cfg->rpc_timeout_ns = 500 * DHT_NS_PER_MS;
    cfg->lease_ms = 500;
    cfg->contention_wait_ns = 5 * DHT_NS_PER_MS;
    cfg->backoff_min_ns = 2 * DHT_NS_PER_MS;
    cfg->backoff_max_ns = 64 * DHT_NS_PER_MS;
    cfg->write_retry_ns = 10 * DHT_NS_PER_MS;
    cfg->hedge_ns = 20 * DHT_NS_PER_MS;
}

dht_coord *dht_coord_new(dht_transport *t, const dht_coord_config *cfg)
{
    dht_coord *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->view = cfg->view ? dht_view_ref(cfg->view)
              : cfg->members ? dht_view_new(1, cfg->members, NULL, false)
                             : NULL;
    if (c->view == NULL || t->npeers < dht_view_size(c->view)) {
        dht_view_unref(c->view);
        free(c);
        return NULL;
    }
    c->t = t;
    c->cfg = *cfg;
    c->self = dht_membership_self(dht_view_current(c->view));
    uint64_t seed = cfg->seed ? cfg->seed : dht_random_seed();
    dht_rng_seed(&c->rng, seed);
    while (c->cfg.id == 0)
        c->cfg.id = (uint32_t)dht_rng_next(&c->rng);
    atomic_init(&c->seq, 0);
    atomic_init(&c->rr, 0);
    for (int i = 0; i < DHT_MAX_MEMBERS; i++) {
        atomic_init(&c->suspect_until[i], 0);
        atomic_init(&c->last_heard[i], 0);
    }
    pthread_mutex_init(&c->view_mu, NULL);
    pthread_mutex_init(&c->hedge_mu, NULL);
    pthread_mutex_init(&c->rng_mu, NULL);
    pthread_mutex_init(&c->live_mu, NULL);
    pthread_cond_init(&c->live_cv, NULL);
    return c;
}

void dht_coord_free(dht_coord *c)
{
    if (c == NULL)
        return;
    /* Bounded: every straggler is an RPC or timer with a deadline. */
    pthread_mutex_lock(&c->live_mu);
    while (c->live > 0)
        pthread_cond_wait(&c->live_cv, &c->live_mu);
    pthread_mutex_unlock(&c->live_mu);
    pthread_mutex_destroy(&c->live_mu);
    pthread_cond_destroy(&c->live_cv);
    pthread_mutex_destroy(&c->hedge_mu);
    pthread_mutex_destroy(&c->rng_mu);
    pthread_mutex_destroy(&c->view_mu);
    dht_view_unref(c->view);
    free(c);
}

static void live_add(dht_coord *c, int d)
{
    pthread_mutex_lock(&c->live_mu);
    c->live += d;
    if (c->live == 0)
        pthread_cond_broadcast(&c->live_cv);
    pthread_mutex_unlock(&c->live_mu);
}

int dht_coord_quorum(dht_coord *c)
{
    dht_view *v = dht_coord_view(c);
    int q = dht_membership_quorum(dht_view_current(v));
    dht_view_unref(v);
    return q;
}

dht_view *dht_coord_view(dht_coord *c)
{
    pthread_mutex_lock(&c->view_mu);
    dht_view *v = dht_view_ref(c->view);
    pthread_mutex_unlock(&c->view_mu);
    return v;
}

int dht_coord_set_view(dht_coord *c, dht_view *v)
{
    if (v == NULL || c->t->npeers < dht_view_size(v))
        return -1;
    dht_view_ref(v);
    pthread_mutex_lock(&c->view_mu);
    dht_view *old = c->view;
    c->view = v;
    pthread_mutex_unlock(&c->view_mu);
    dht_view_unref(old);
    return 0;
}

/* Whether set holds a quorum of every replica group of o's key. */
static bool quorum_of(const op *o, const dht_peerset *set)
{
    return dht_key_replicas_quorum(&o->kr, set);
}

/* The peers that may still answer yes this round: those in `yes` and those
 * asked that have not answered. */
static dht_peerset still_possible(const op *o, const dht_peerset *yes)
{
    dht_peerset s = *yes;
    for (size_t i = 0; i < sizeof s.w / sizeof s.w[0]; i++)
        s.w[i] |= o->asked.w[i] & ~o->answered.w[i];
    return s;
}

/* "a of R (quorum Q)" for the group a failure falls shortest in. */
static void describe_short(const op *o, const dht_peerset *set, char *buf, size_t len)
{
    int have, size, q;
    dht_key_replicas_shortest(&o->kr, set, &have, &size, &q);
    snprintf(buf, len, "%d of %d replicas%s, no majority of %d", have, size,
             o->kr.ngroups > 1 ? " of one configuration" : "", q);
}

/* Unique per put attempt: coordinator id in the high half, a sequence
 * number in the low half (never 0, so owner 0 can mean "no lock"). */
static uint64_t next_owner(dht_coord *c)
{
    uint32_t s;
    do
        s = (uint32_t)atomic_fetch_add(&c->seq, 1) + 1;
    while (s == 0);
    return ((uint64_t)c->cfg.id << 32) | s;
}

static int64_t jitter(dht_coord *c, int64_t max)
{
    pthread_mutex_lock(&c->rng_mu);
    int64_t d = max / 2 + (int64_t)dht_rng_below(&c->rng, (uint64_t)(max / 2 + 1));
    pthread_mutex_unlock(&c->rng_mu);
    return d;
}

/* Whether o's round has asked every replica of its key. */
static bool asked_all(const op *o)
{
    return dht_peerset_equal(&o->asked, &o->replicas);
}

static void note_heard(dht_coord *c, int peer)
{
    if (peer >= 0 && peer < DHT_MAX_MEMBERS)
        atomic_store_explicit(&c->last_heard[peer], dht_transport_now(c->t),
                              memory_order_relaxed);
}

static void note_failure(dht_coord *c, int peer)
{
    if (peer >= 0 && peer < DHT_MAX_MEMBERS)
        atomic_store(&c->suspect_until[peer], dht_transport_now(c->t) + SUSPECT_NS);
}

/* The peers a lock or read round asks first: a quorum of peers that have
 * not failed lately, starting with our own replica (no request leaves the
 * process) and going round the ring, so that every node is the first
 * remote of another and the load stays even.  Everyone when hedging is off
 * or too few peers look healthy.  Any quorum will do for safety: two
 * quorums always intersect, whichever peers they are. */
static dht_peerset first_ask(const op *o)
{
    dht_coord *c = o->c;
    if (c->cfg.hedge_ns <= 0)
        return o->replicas;
    int n = o->n;
    int first = c->self >= 0 && c->self < n ? c->self
                                             : (int)(atomic_fetch_add(&c->rr, 1) % (unsigned)n);
    int64_t now = dht_transport_now(c->t);
    dht_peerset set = {{0}};
    bool enough = false;
    for (int i = 0; i < n && !enough; i++) {
        int p = (first + i) % n;
        if (dht_peerset_has(&o->replicas, p) && atomic_load(&c->suspect_until[p]) <= now) {
            dht_peerset_add(&set, p);
            enough = quorum_of(o, &set);
        }
    }
    return enough ? set : o->replicas;
}

static void hedge_forget(op *o);

static void op_unref_locked_release(op *o)
{
    /* Called with o->mu held; drops a reference and unlocks (freeing the op
     * when that was the last). */
    bool last = --o->refs == 0;
    pthread_mutex_unlock(&o->mu);
    if (last) {
        dht_coord *c = o->c;
        pthread_mutex_destroy(&o->mu);
        dht_view_unref(o->view);
        free(o);
        live_add(c, -1);
    }
}

static rpc_ctx *ctx_new(op *o, int peer)
{
    rpc_ctx *x = malloc(sizeof *x);
    if (x == NULL)
        return NULL;
    x->o = o;
    x->round = o->round;
    x->peer = peer;
    x->owner = o->owner;
    o->refs++;
    return x;
}

static void ctx_drop(rpc_ctx *x)
{
    x->o->refs--; /* caller holds o->mu and another reference */
    free(x);
}

/* Sends req to peer on behalf of o (locked); returns 0 if the reply will
 * arrive through cb. */
static int op_send(op *o, int peer, const dht_msg *req, dht_reply_cb cb)
{
    dht_coord *c = o->c;
    rpc_ctx *x = ctx_new(o, peer);
    if (x == NULL)
        return -1;
    int64_t now = dht_transport_now(c->t);
    int64_t dl = now + c->cfg.rpc_timeout_ns;
    if (dl > o->deadline && req->type != DHT_MSG_UNLOCK)
        dl = o->deadline;
    /* Stamped with the op's view: a replica that has moved on refuses it,
     * so an operation on an old configuration alone cannot complete once a
     * change has reached a quorum (view.h). */
    dht_msg m = *req;
    m.view = dht_view_number(o->view);
    m.config = dht_view_fingerprint(o->view);
    if (dht_transport_send(c->t, peer, &m, dl, cb, x) != 0) {
        ctx_drop(x);
        return -1;
    }
    return 0;
}

static int op_timer(op *o, int peer, int64_t delay, dht_timer_cb cb)
{
    rpc_ctx *x = ctx_new(o, peer);
    if (x == NULL)
        return -1;
    if (dht_transport_after(o->c->t, delay, cb, x) != 0) {
        ctx_drop(x);
        return -1;
    }
    return 0;
}

/* Keeps what a replica answered with when it refused a request outright
 * (an error status, not a "no"): the transport describes it only during
 * the callback. */
static void note_remote(op *o, dht_status st)
{
    dht_transport *t = o->c->t;
    if (st != DHT_ERR_REMOTE || o->remote[0] != '\0' || t->ops->last_error == NULL)
        return;
    const char *e = t->ops->last_error(t);
    if (e != NULL)
        snprintf(o->remote, sizeof o->remote, "%s", e);
}

/* Appends the remote error, if any, to a failure's reason. */
static void with_remote(const op *o, char *why, size_t len)
{
    size_t used = strlen(why);
    if (o->remote[0] != '\0' && used < len)
        snprintf(why + used, len - used, " (a replica answered: %s)", o->remote);
}

/* Sends m to every peer of set not asked yet this round, counting it
 * pending (or failed, if it cannot be sent). */
static void ask(op *o, const dht_peerset *set, const dht_msg *m, dht_reply_cb cb)
{
    for (int p = 0; p < o->n; p++) {
        if (!dht_peerset_has(set, p) || dht_peerset_has(&o->asked, p))
            continue;
        dht_peerset_add(&o->asked, p);
        o->pending++;
        if (op_send(o, p, m, cb) != 0) {
            o->pending--;
            o->failures++;
            dht_peerset_add(&o->answered, p);
            dht_peerset_add(&o->failed, p);
        }
    }
}

static void finish_put(op *o, dht_put_outcome outcome, const char *reason)
{
    o->ph = PH_DONE;
    o->outcome = outcome;
    snprintf(o->reason, sizeof o->reason, "%s", reason ? reason : "");
}

static void finish_get(op *o, int ok, const char *reason)
{
    o->ph = PH_DONE;
    o->get_ok = ok;
    snprintf(o->reason, sizeof o->reason, "%s", reason ? reason : "");
}

/* Ends a callback: delivers the result if the op just completed, then drops
 * the callback's reference.  Called with o->mu held; returns with it
 * released. */
static void op_leave(op *o)
{
    bool notify = o->ph == PH_DONE && !o->notified;
    o->notified |= notify;
    if (notify)
        hedge_forget(o);
    if (notify && o->deadline_timer != NULL) {
        /* Done before the deadline: revoke the timer and its reference
         * (ours keeps refs above zero here). */
        if (o->c->t->ops->cancel(o->c->t, o->deadline_timer))
            o->refs--;
        o->deadline_timer = NULL;
    }
    dht_put_outcome outcome = o->outcome;
    int get_ok = o->get_ok;
    int64_t value = o->value;
    char reason[sizeof o->reason];
    memcpy(reason, o->reason, sizeof reason);
    bool is_put = o->is_put;
    dht_put_cb put_cb = o->put_cb;
    dht_get_cb get_cb = o->get_cb;
    void *arg = o->arg;
    op_unref_locked_release(o);
    if (!notify)
        return;
    if (is_put)
        put_cb(arg, outcome, outcome == DHT_PUT_APPLIED ? NULL : reason);
    else
        get_cb(arg, get_ok, get_ok ? value : 0, get_ok ? NULL : reason);
}

/* ---- shared write machinery (put WRITE and get WRITEBACK) ---------------- */

/* The key's replica groups under o's view (the test knob applied). */
static void set_view(op *o, dht_view *v)
{
    dht_view_unref(o->view);
    o->view = v;
    o->n = dht_view_size(v);
    dht_view_key_replicas(v, o->key, &o->kr);
    if (o->c->cfg.test_new_quorum_only && o->kr.ngroups == 2) {
        /* Test knob only: forget the old configuration's quorum. */
        o->kr.group[0] = o->kr.group[1];
        o->kr.quorum[0] = o->kr.quorum[1];
        o->kr.ngroups = 1;
        o->kr.all = o->kr.group[1];
    }
    o->replicas = o->kr.all;
}

/* A new round runs on the newest view: a change installed meanwhile (a
 * replica refused the old one) is followed without failing the op.  Only
 * between rounds: a round is one attempt on one view. */
static void refresh_view(op *o)
{
    dht_view *v = dht_coord_view(o->c);
    if (v == o->view || dht_view_number(v) <= dht_view_number(o->view)) {
        dht_view_unref(v);
        return;
    }
    set_view(o, v);
}

/* Whether the coordinator has a newer view than o's. */
static bool newer_view(op *o)
{
    dht_view *v = dht_coord_view(o->c);
    bool newer = dht_view_number(v) > dht_view_number(o->view);
    dht_view_unref(v);
    return newer;
}

static void refused(op *o, dht_status st)
{
    if (st == DHT_ERR_REMOTE && o->c->cfg.on_refused != NULL)
        o->c->cfg.on_refused(o->c->cfg.refused_arg);
}

static void start_lock_round(op *o);
static void on_write_reply(void *arg, dht_status st, const dht_msg *rep);

static void send_write(op *o, int peer)
{
    dht_msg m = {.type = DHT_MSG_WRITE, .key = o->key, .value = o->value, .version = o->ver,
                 .owner = o->is_put ? o->owner : 0};
    if (op_send(o, peer, &m, on_write_reply) == 0)
        o->outstanding++;
}

static void write_settle(op *o)
{
    if (o->ph != PH_WRITE && o->ph != PH_WRITEBACK)
        return;
    if (quorum_of(o, &o->holders)) {
        if (o->is_put)
            finish_put(o, DHT_PUT_APPLIED, NULL);
        else
            finish_get(o, 1, NULL);
    } else if (o->outstanding == 0) {
        char why[400], n[160];
        describe_short(o, &o->holders, n, sizeof n);
        snprintf(why, sizeof why, "deadline passed with write acks from %s", n);
        if (o->is_put)
            finish_put(o, DHT_PUT_UNKNOWN, why);
        else
            finish_get(o, 0, why);
    }
}

static void start_write(op *o, phase ph);

/* A write (or write-back) of this round reached a replica that no longer
 * serves the op's view, and a newer one is known: the same version goes
 * on to the newer view's replicas, and the op completes when a quorum of
 * each of its groups holds it.  Never a new version: a reader may already
 * have seen this one, and writing the value again under another version
 * after someone else's would make it reappear.  The version is still
 * above every completed write's: the lock round that chose it met a
 * quorum that a write on the newer view alone could not have bypassed
 * (view.h).  Replicas that acknowledged it keep it (or newer). */
static void rewrite_in_newer_view(op *o)
{
    refresh_view(o);
    start_write(o, o->ph);
}

static bool writing(const op *o, const rpc_ctx *x)
{
    return (o->ph == PH_WRITE || o->ph == PH_WRITEBACK) && x->round == o->round;
}

static void on_write_retry(void *arg)
{
    rpc_ctx *x = arg;
    op *o = x->o;
    pthread_mutex_lock(&o->mu);
    if (writing(o, x)) {
        o->outstanding--;
        if (newer_view(o) && !quorum_of(o, &o->holders))
            rewrite_in_newer_view(o); /* the refusal was a stale view */
        else {
            if (!dht_peerset_has(&o->holders, x->peer))
                send_write(o, x->peer);
            write_settle(o);
        }
    }
    free(x);
    op_leave(o);
}

static void on_write_reply(void *arg, dht_status st, const dht_msg *rep)
{
    rpc_ctx *x = arg;
    op *o = x->o;
    pthread_mutex_lock(&o->mu);
    if (st == DHT_OK)
        note_heard(o->c, x->peer);
    refused(o, st);
    if (writing(o, x)) {
        o->outstanding--;
        if (st == DHT_OK && rep->ok) {
            dht_peerset_add(&o->holders, x->peer);
        } else if (st == DHT_ERR_REMOTE && newer_view(o)) {
            rewrite_in_newer_view(o);
        } else {
            if (st != DHT_OK)
                note_failure(o->c, x->peer);
            int64_t now = dht_transport_now(o->c->t);
            int64_t delay = jitter(o->c, o->c->cfg.write_retry_ns);
            if (now + delay < o->deadline && op_timer(o, x->peer, delay, on_write_retry) == 0)
                o->outstanding++;
        }
        write_settle(o);
    }
    free(x);
    op_leave(o);
}

static void start_write(op *o, phase ph)
{
    o->ph = ph;
    o->round++;
    o->outstanding = 0;
    for (int p = 0; p < o->n; p++) {
        if (dht_peerset_has(&o->replicas, p) && !dht_peerset_has(&o->holders, p))
            send_write(o, p);
    }
    write_settle(o);
}

/* ---- put: lock rounds ---------------------------------------------------- */

static void on_lock_reply(void *arg, dht_status st, const dht_msg *rep);
static void start_lock_round(op *o);
static bool hedge_watch(op *o);


static dht_msg lock_msg(const op *o)
{
    return (dht_msg){.type = DHT_MSG_LOCK, .key = o->key, .owner = o->owner,
                     .lease_ms = o->c->cfg.lease_ms};
}

/* Asks the peers the round has not asked yet. */
static void expand_lock(op *o)
{
    dht_msg m = lock_msg(o);
    ask(o, &o->replicas, &m, on_lock_reply);
}

static void on_unlock_reply(void *arg, dht_status st, const dht_msg *rep)
{
    (void)st;
    (void)rep;
    rpc_ctx *x = arg;
    op *o = x->o;
    pthread_mutex_lock(&o->mu);
    free(x);
    op_leave(o);
}

static void send_unlock(op *o, int peer, uint64_t owner)
{
    dht_msg m = {.type = DHT_MSG_UNLOCK, .key = o->key, .owner = owner};
    op_send(o, peer, &m, on_unlock_reply);
}

static void on_backoff_done(void *arg)
{
    rpc_ctx *x = arg;
    op *o = x->o;
    pthread_mutex_lock(&o->mu);
    if (o->ph == PH_BACKOFF && x->round == o->round)
        start_lock_round(o);
    free(x);
    op_leave(o);
}

/* Gives up the current lock round: release grants, back off, retry or fail. */
static void abandon_lock_round(op *o)
{
    dht_coord *c = o->c;
    /* Release every peer that did not refuse, not only those whose grant
     * arrived: with replies lost (one-way loss, a timeout) a grant may sit
     * unseen and block the key for a lease.  Unlock frees only our own. */
    for (int p = 0; p < o->n; p++) {
        if (dht_peerset_has(&o->asked, p) && !dht_peerset_has(&o->refused, p))
            send_unlock(o, p, o->owner);
    }
    dht_peerset alive = o->replicas;
    for (size_t i = 0; i < sizeof alive.w / sizeof alive.w[0]; i++)
        alive.w[i] &= ~o->failed.w[i];
    bool unreachable = !quorum_of(o, &alive);
    o->round++; /* stragglers of this round are now stale */
    o->ph = PH_BACKOFF;
    int64_t now = dht_transport_now(c->t);
    int64_t delay = jitter(c, o->backoff);
    o->backoff = o->backoff * 2 > c->cfg.backoff_max_ns ? c->cfg.backoff_max_ns : o->backoff * 2;
    if (now + delay >= o->deadline || op_timer(o, -1, delay, on_backoff_done) != 0) {
        char why[400];
        if (unreachable) {
            char n[160];
            describe_short(o, &alive, n, sizeof n);
            snprintf(why, sizeof why, "unavailable: %d replicas failed to answer; answering: %s",
                     o->failures, n);
            with_remote(o, why, sizeof why);
        } else
            snprintf(why, sizeof why, "lock not obtained before the deadline (contention)");
        finish_put(o, DHT_PUT_NOT_APPLIED, why);
    }
}

static void on_contention_timer(void *arg)
{
    rpc_ctx *x = arg;
    op *o = x->o;
    pthread_mutex_lock(&o->mu);
    if (o->ph == PH_LOCK && x->round == o->round && !quorum_of(o, &o->granted))
        abandon_lock_round(o);
    free(x);
    op_leave(o);
}

static bool lock_possible(const op *o)
{
    dht_peerset possible = still_possible(o, &o->granted);
    return quorum_of(o, &possible);
}

static void check_lock_round(op *o)
{
    dht_coord *c = o->c;
    bool locked = quorum_of(o, &o->granted);
    if (locked && o->max_counter >= DHT_COUNTER_MAX) {
        /* No successor version is left (only a hostile or broken member
         * writes such a counter): writing would wrap or be refused. */
        for (int p = 0; p < o->n; p++) {
            if (dht_peerset_has(&o->asked, p) && !dht_peerset_has(&o->refused, p))
                send_unlock(o, p, o->owner);
        }
        o->round++;
        char why[400];
        snprintf(why, sizeof why, "key %lld has no version left (counter %llu is the maximum)",
                 (long long)o->key, (unsigned long long)o->max_counter);
        finish_put(o, DHT_PUT_NOT_APPLIED, why);
    } else if (locked) {
        o->ver.counter = o->max_counter + 1;
        o->ver.writer = o->owner;
        o->holders = (dht_peerset){{0}};
        o->write_sent = true;
        start_write(o, PH_WRITE);
    } else if ((o->refusals > 0 || o->failures > 0) && !asked_all(o)) {
        /* One of the quorum asked first cannot grant: ask the rest now. */
        expand_lock(o);
        check_lock_round(o);
    } else if (!lock_possible(o)) {
        abandon_lock_round(o);
    } else if (o->refusals > 0 && !o->contention_armed) {
        o->contention_armed = true;
        if (op_timer(o, -1, c->cfg.contention_wait_ns, on_contention_timer) != 0)
            abandon_lock_round(o);
    }
}

static void start_lock_round(op *o)
{
    dht_coord *c = o->c;
    refresh_view(o);
    o->ph = PH_LOCK;
    o->round++;
    o->owner = next_owner(c);
    o->pending = 0;
    o->asked = o->answered = (dht_peerset){{0}};
    o->refusals = o->failures = 0;
    o->granted = o->refused = o->failed = (dht_peerset){{0}};
    o->max_counter = 0;
    o->contention_armed = false;
    dht_msg m = lock_msg(o);
    dht_peerset first = first_ask(o);
    ask(o, &first, &m, on_lock_reply);
    if (!hedge_watch(o))
        expand_lock(o);
    check_lock_round(o);
}

static void on_lock_reply(void *arg, dht_status st, const dht_msg *rep)
{
    rpc_ctx *x = arg;
    op *o = x->o;
    pthread_mutex_lock(&o->mu);
    bool granted = st == DHT_OK && rep->ok;
    refused(o, st);
    /* Late or not: a peer that failed is not asked first for a while (most
     * failures of a paused peer arrive after their round moved on). */
    if (st != DHT_OK)
        note_failure(o->c, x->peer);
    else
        note_heard(o->c, x->peer);
    if (x->round != o->round || o->ph != PH_LOCK) {
        /* A straggler.  If it granted a lock nobody will use (the round was
         * abandoned, or the put finished without writing), free it now
         * rather than leave the key blocked for a lease.  A grant of the
         * round that went on to write needs nothing: the Write sent to
         * that peer releases it, and this late third grant came with
         * every put, so an Unlock here would cost a message per put. */
        if (granted && !(o->write_sent && x->owner == o->owner))
            send_unlock(o, x->peer, x->owner);
    } else {
        o->pending--;
        dht_peerset_add(&o->answered, x->peer);
        if (granted) {
            dht_peerset_add(&o->granted, x->peer);
            if (rep->version.counter > o->max_counter)
                o->max_counter = rep->version.counter;
        } else if (st == DHT_OK) {
            o->refusals++;
            dht_peerset_add(&o->refused, x->peer);
        } else {
            o->failures++;
            dht_peerset_add(&o->failed, x->peer);
            note_remote(o, st);
        }
        check_lock_round(o);
    }
    free(x);
    op_leave(o);
}

/* ---- get: read rounds ---------------------------------------------------- */

static void on_read_reply(void *arg, dht_status st, const dht_msg *rep);

static void on_read_backoff_done(void *arg);

static dht_msg read_msg(const op *o)
{
    return (dht_msg){.type = DHT_MSG_READ, .key = o->key};
}

static void expand_read(op *o)
{
    dht_msg m = read_msg(o);
    ask(o, &o->replicas, &m, on_read_reply);
}

static void start_read_round(op *o)
{
    refresh_view(o);
    o->ph = PH_READ;
    o->round++;
    o->pending = 0;
    o->asked = o->answered = (dht_peerset){{0}};
    o->failures = 0;
    o->holders = o->replied = o->failed = (dht_peerset){{0}};
    o->ver = (dht_version){0, 0};
    o->value = 0;
    dht_msg m = read_msg(o);
    dht_peerset first = first_ask(o);
    ask(o, &first, &m, on_read_reply);
    if (o->failures > 0 || !hedge_watch(o))
        expand_read(o);
    dht_peerset possible = still_possible(o, &o->replied);
    if (!quorum_of(o, &possible)) {
        o->round++;
        finish_get(o, 0, "unavailable: could not reach a quorum");
    }
}

static void on_read_backoff_done(void *arg)
{
    rpc_ctx *x = arg;
    op *o = x->o;
    pthread_mutex_lock(&o->mu);
    if (o->ph == PH_BACKOFF && x->round == o->round)
        start_read_round(o);
    free(x);
    op_leave(o);
}

static void read_settle(op *o)
{
    dht_coord *c = o->c;
    dht_peerset possible = still_possible(o, &o->replied);
    if (quorum_of(o, &o->replied)) {
        if (dht_peerset_equal(&o->holders, &o->replied))
            finish_get(o, 1, NULL); /* a quorum already holds the latest */
        else
            start_write(o, PH_WRITEBACK);
    } else if (o->failures > 0 && !asked_all(o)) {
        /* One of the quorum asked first cannot answer: ask the rest now. */
        expand_read(o);
        read_settle(o);
    } else if (!quorum_of(o, &possible)) {
        char why[400], n[160];
        describe_short(o, &possible, n, sizeof n);
        snprintf(why, sizeof why, "unavailable: %d replicas failed to answer; answering: %s",
                 o->failures, n);
        with_remote(o, why, sizeof why);
        o->round++;
        o->ph = PH_BACKOFF;
        int64_t now = dht_transport_now(c->t);
        int64_t delay = jitter(c, o->backoff);
        o->backoff = o->backoff * 2 > c->cfg.backoff_max_ns ? c->cfg.backoff_max_ns : o->backoff * 2;
        if (now + delay >= o->deadline || op_timer(o, -1, delay, on_read_backoff_done) != 0)
            finish_get(o, 0, why);
    }
}

static void on_read_reply(void *arg, dht_status st, const dht_msg *rep)
{
    rpc_ctx *x = arg;
    op *o = x->o;
    pthread_mutex_lock(&o->mu);
    bool good = st == DHT_OK && rep->ok;
    refused(o, st);
    if (!good)
        note_failure(o->c, x->peer); /* unreachable, or recovering */
    else
        note_heard(o->c, x->peer);
    if (x->round == o->round && o->ph == PH_READ) {
        o->pending--;
        dht_peerset_add(&o->answered, x->peer);
        if (good) {
            bool first = dht_peerset_count(&o->replied) == 0;
            dht_peerset_add(&o->replied, x->peer);
            int cmp = dht_version_cmp(rep->version, o->ver);
            if (first || cmp > 0) {
                o->ver = rep->version;
                o->value = rep->value;
                o->holders = (dht_peerset){{0}};
                dht_peerset_add(&o->holders, x->peer);
            } else if (cmp == 0) {
                dht_peerset_add(&o->holders, x->peer);
            }
        } else {
            o->failures++;
            dht_peerset_add(&o->failed, x->peer);
            note_remote(o, st);
        }
        read_settle(o);
    } else if (x->round + 1 == o->round && o->ph == PH_WRITEBACK && good &&
               dht_version_cmp(rep->version, o->ver) >= 0) {
        /* A late reader of the same round already holds what we write back. */
        dht_peerset_add(&o->holders, x->peer);
        write_settle(o);
    }
    free(x);
    op_leave(o);
}

/* ---- hedging: asking the rest when a quorum is slow ------------------------
 *
 * A round that asked only a quorum joins a FIFO with a reference (and
 * leaves it, dropping the reference, when its op finishes); a timer
 * that ticks while the FIFO is not empty (never more often than every
 * hedge_ns/4, however many operations there are) asks the rest of the
 * peers for each round still waiting at its hedge time.  So a stalled peer
 * delays the operations that chose it before the first hedge by about
 * hedge_ns, and hardly any after that: a peer silent at a hedge that has
 * answered nothing for hedge_ns, like one whose request failed, is not
 * asked first for a while.  Lock order: op->mu, then hedge_mu. */

static void hedge_tick(void *arg);

/* Must hold hedge_mu: arms the tick unless armed; false if it cannot. */
static bool hedge_arm(dht_coord *c, int64_t delay)
{
    if (c->hedge_armed)
        return true;
    if (dht_transport_after(c->t, delay, hedge_tick, c) != 0)
        return false;
    c->hedge_armed = true;
    live_add(c, 1); /* dht_coord_free waits for the tick: ops leave the FIFO early */
    return true;
}

/* Queues o's current round (o locked) for its hedge time.  True if queued
 * or nothing to watch; false if no timer can be had (ask everyone now). */
static bool hedge_watch(op *o)
{
    dht_coord *c = o->c;
    if (asked_all(o) || o->hedge_queued)
        return true; /* a queued op is re-queued for its new round when it pops */
    pthread_mutex_lock(&c->hedge_mu);
    bool ok = hedge_arm(c, c->cfg.hedge_ns);
    if (ok) {
        o->hedge_at = dht_transport_now(c->t) + c->cfg.hedge_ns;
        o->hedge_round = o->round;
        o->hedge_queued = true;
        o->in_fifo = true;
        o->refs++;
        o->hnext = NULL;
        o->hprev = c->htail;
        if (c->htail)
            c->htail->hnext = o;
        else
            c->hhead = o;
        c->htail = o;
    }
    pthread_mutex_unlock(&c->hedge_mu);
    return ok;
}

/* A finished op leaves the FIFO at once (o locked), dropping the FIFO's
 * reference: left until its hedge time, each op was freed by the tick on
 * the timer thread, nearly all of them 20 ms after they had finished. */
static void hedge_forget(op *o)
{
    if (!o->hedge_queued)
        return;
    dht_coord *c = o->c;
    pthread_mutex_lock(&c->hedge_mu);
    bool taken = !o->in_fifo; /* a tick has it: the tick drops its reference */
    if (!taken) {
        if (o->hprev)
            o->hprev->hnext = o->hnext;
        else
            c->hhead = o->hnext;
        if (o->hnext)
            o->hnext->hprev = o->hprev;
        else
            c->htail = o->hprev;
        o->in_fifo = false;
    }
    pthread_mutex_unlock(&c->hedge_mu);
    if (!taken) {
        o->hedge_queued = false;
        o->refs--; /* the caller holds another */
    }
}

static void hedge_tick(void *arg)
{
    dht_coord *c = arg;
    int64_t now = dht_transport_now(c->t);
    op *due = NULL, **tail = &due;
    pthread_mutex_lock(&c->hedge_mu);
    c->hedge_armed = false;
    while (c->hhead != NULL && c->hhead->hedge_at <= now) {
        op *o = c->hhead;
        c->hhead = o->hnext;
        o->in_fifo = false;
        *tail = o;
        tail = &o->hnext;
    }
    if (c->hhead != NULL) {
        int64_t wait = c->hhead->hedge_at - now, min = c->cfg.hedge_ns / 4;
        if (!hedge_arm(c, wait > min ? wait : min)) {
            *tail = c->hhead; /* no timer: hedge them all now */
            tail = &c->htail->hnext;
            for (op *o = c->hhead; o != NULL; o = o->hnext)
                o->in_fifo = false;
            c->hhead = NULL;
        }
    }
    if (c->hhead != NULL)
        c->hhead->hprev = NULL;
    *tail = NULL;
    if (c->hhead == NULL)
        c->htail = NULL;
    pthread_mutex_unlock(&c->hedge_mu);
    while (due != NULL) {
        op *o = due;
        due = o->hnext;
        pthread_mutex_lock(&o->mu);
        o->hedge_queued = false;
        /* A round that started while an earlier one was queued gets its
         * own hedge time. */
        bool waiting = o->ph == PH_LOCK || o->ph == PH_READ;
        if (waiting && o->round == o->hedge_round) {
            /* A peer asked and still silent, that has answered nothing at
             * all for a hedge time, is paused or gone: others ask someone
             * else first for a while.  (A merely busy peer answers other
             * requests meanwhile and keeps its place.) */
            for (int p = 0; p < o->n; p++)
                if (dht_peerset_has(&o->asked, p) && !dht_peerset_has(&o->answered, p) &&
                    now - atomic_load_explicit(&c->last_heard[p], memory_order_relaxed) >
                        c->cfg.hedge_ns)
                    note_failure(c, p);
        }
        if (waiting && (o->round == o->hedge_round || !hedge_watch(o))) {
            if (o->ph == PH_LOCK) {
                expand_lock(o);
                check_lock_round(o);
            } else {
                expand_read(o);
                read_settle(o);
            }
        }
        op_leave(o);
    }
    live_add(c, -1); /* the last touch of c: dht_coord_free may run now */
}

/* ---- entry points -------------------------------------------------------- */

static op *op_new(dht_coord *c, bool is_put, int64_t key, int64_t value, int64_t deadline,
                  void *arg)
{
    op *o = calloc(1, sizeof *o);
    if (o == NULL)
        return NULL;
    live_add(c, 1);
    pthread_mutex_init(&o->mu, NULL);
    o->refs = 1; /* the starter's, dropped by op_leave below */
    o->c = c;
    o->is_put = is_put;
    o->key = key;
    o->value = value;
    o->deadline = dht_transport_now(c->t) + c->cfg.deadline_ns;
    if (deadline < o->deadline)
        o->deadline = deadline;
    o->backoff = c->cfg.backoff_min_ns;
    set_view(o, dht_coord_view(c));
    o->arg = arg;
    return o;
}

/* The deadline passed and the op is still waiting (for replies delayed in
 * the network or the transport's queues): end it now.  Without a Write sent
 * a put is definitely not applied; with one it is unknown. */
static void on_op_deadline(void *arg)
{
    op *o = arg;
    pthread_mutex_lock(&o->mu);
    o->deadline_timer = NULL;
    if (o->ph != PH_DONE) {
        char why[400];
        if (o->ph == PH_WRITE || o->ph == PH_WRITEBACK)
        {
            char n[160];
            describe_short(o, &o->holders, n, sizeof n);
            snprintf(why, sizeof why, "deadline passed with write acks from %s", n);
        }
        else
            snprintf(why, sizeof why, "deadline passed before a majority answered");
        if (o->is_put && o->ph == PH_LOCK) {
            for (int p = 0; p < o->n; p++)
                if (dht_peerset_has(&o->granted, p))
                    send_unlock(o, p, o->owner);
        }
        if (o->is_put)
            finish_put(o, o->ph == PH_WRITE ? DHT_PUT_UNKNOWN : DHT_PUT_NOT_APPLIED, why);
        else
            finish_get(o, 0, why);
        o->round++; /* replies still on their way are stragglers now */
    }
    op_leave(o);
}

static void arm_deadline(op *o)
{
    dht_transport *t = o->c->t;
    if (t->ops->after_cancelable == NULL)
        return;
    o->refs++;
    o->deadline_timer = t->ops->after_cancelable(t, o->deadline - dht_transport_now(t),
                                                 on_op_deadline, o);
    if (o->deadline_timer == NULL)
        o->refs--;
}

/* The starter's reference must not deliver the result from inside the
 * caller's stack (the callback contract), so if the op somehow completed
 * synchronously we defer delivery to a zero timer. */
static void on_deferred_leave(void *arg)
{
    rpc_ctx *x = arg;
    op *o = x->o;
    pthread_mutex_lock(&o->mu);
    free(x);
    op_leave(o);
}

static void op_start_leave(op *o)
{
    if (o->ph == PH_DONE && !o->notified && op_timer(o, -1, 0, on_deferred_leave) == 0) {
        op_unref_locked_release(o);
        return;
    }
    op_leave(o);
}

int dht_coord_put(dht_coord *c, int64_t key, int64_t value, dht_put_cb cb, void *arg)
{
    return dht_coord_put_by(c, key, value, INT64_MAX, cb, arg);
}

int dht_coord_get(dht_coord *c, int64_t key, dht_get_cb cb, void *arg)
{
    return dht_coord_get_by(c, key, INT64_MAX, cb, arg);
}

int dht_coord_put_by(dht_coord *c, int64_t key, int64_t value, int64_t deadline_ns,
                     dht_put_cb cb, void *arg)
{
    op *o = op_new(c, true, key, value, deadline_ns, arg);
    if (o == NULL)
        return -1;
    o->put_cb = cb;
    pthread_mutex_lock(&o->mu);
    arm_deadline(o);
    start_lock_round(o);
    op_start_leave(o);
    return 0;
}

int dht_coord_get_by(dht_coord *c, int64_t key, int64_t deadline_ns, dht_get_cb cb, void *arg)
{
    op *o = op_new(c, false, key, 0, deadline_ns, arg);
    if (o == NULL)
        return -1;
    o->get_cb = cb;
    pthread_mutex_lock(&o->mu);
    arm_deadline(o);
    start_read_round(o);
    op_start_leave(o);
    return 0;
}

/* ---- blocking wrappers ----------------------------------------------------- */

typedef struct {
    dht_latch latch;
    dht_put_outcome outcome;
    int ok;
    int64_t value;
    char reason[400];
} waiter;

static void waiter_wake(waiter *w, const char *reason)
{
    snprintf(w->reason, sizeof w->reason, "%s", reason ? reason : "");
    dht_latch_open(&w->latch);
}

static void put_sync_cb(void *arg, dht_put_outcome outcome, const char *reason)
{
    waiter *w = arg;
    w->outcome = outcome;
    waiter_wake(w, reason);
}

static void get_sync_cb(void *arg, int ok, int64_t value, const char *reason)
{
    waiter *w = arg;
    w->ok = ok;
    w->value = value;
    waiter_wake(w, reason);
}

dht_put_outcome dht_coord_put_blocking(dht_coord *c, int64_t key, int64_t value, char *reason,
                                   size_t reason_len)
{
    waiter w = {.outcome = DHT_PUT_NOT_APPLIED};
    dht_latch_init(&w.latch);
    if (dht_coord_put(c, key, value, put_sync_cb, &w) != 0) {
        dht_latch_destroy(&w.latch);
        if (reason)
            snprintf(reason, reason_len, "out of memory");
        return DHT_PUT_NOT_APPLIED;
    }
    dht_latch_wait(&w.latch);
    dht_latch_destroy(&w.latch);
    if (reason)
        snprintf(reason, reason_len, "%s", w.reason);
    return w.outcome;
}

int dht_coord_get_blocking(dht_coord *c, int64_t key, int64_t *value, char *reason,
                       size_t reason_len)
{
    waiter w = {.ok = 0};
    dht_latch_init(&w.latch);
    if (dht_coord_get(c, key, get_sync_cb, &w) != 0) {
        dht_latch_destroy(&w.latch);
        if (reason)
            snprintf(reason, reason_len, "out of memory");
        return 0;
    }
    dht_latch_wait(&w.latch);
    dht_latch_destroy(&w.latch);
    if (reason)
        snprintf(reason, reason_len, "%s", w.reason);
    *value = w.value;
    return w.ok;
}
