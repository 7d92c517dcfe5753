/* In-memory transport: an event heap ordered by (virtual time, sequence).
 *
 * A call is planned when sent: its request is delivered after a random
 * delay unless lost/cut/refused; the replica's state changes at delivery
 * time (so a reply lost afterwards leaves the write applied, the case that
 * makes put outcomes "unknown"); the reply travels back with its own delay
 * and loss.  Whatever happens, exactly one of reply/error reaches the
 * caller, at or before its deadline: a call record with a `done` flag and a
 * count of events still referring to it guarantees both.  Control calls
 * (opaque bytes for a bound node's control service) travel the same way;
 * so do refusals (a bound node's check_config, no control service): an
 * error that comes back over the network like a reply.
 */
#include "sim/sim_transport.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "protocol/membership.h"

#define MAX_REPLICAS DHT_MAX_MEMBERS
#define MAX_ENDPOINTS 256

typedef struct call {
    sim_world *w;
    int endpoint, replica;
    uint64_t incarnation; /* of the replica slot when a bound service took it */
    dht_msg reply;        /* a bound service fills it */
    dht_msg req;
    int64_t deadline;
    dht_reply_cb cb;
    void *arg;
    bool done;
    int refs; /* scheduled events pointing here */
    /* Control calls: the request's and the reply's bytes instead of req and
     * reply (both owned, freed with the call), and their callback. */
    bool control;
    uint8_t *creq, *crep;
    size_t creq_len, crep_len;
    dht_control_cb ccb;
    char *why; /* a refusal's last_error text, owned */
} call;

typedef enum { EV_DELIVER, EV_REPLY, EV_FAIL, EV_TIMER } ev_kind;

typedef struct {
    int64_t at;
    uint64_t seq;
    ev_kind kind;
    call *c;          /* DELIVER, REPLY, FAIL */
    dht_msg reply;    /* REPLY */
    dht_status status; /* FAIL */
    void (*fn)(void *); /* TIMER */
    void *arg;
} event;

typedef struct {
    dht_transport base; /* first */
    sim_world *w;
    int index;
    bool dead; /* its process crashed: it hears nothing any more */
} endpoint;

typedef struct {
    dht_replica *r;
    const dht_service *svc; /* bound node: requests go to it instead of r */
    uint64_t incarnation;   /* bumped by each crash of a bound slot */
    bool crashed, paused;
    call **queue; /* requests waiting for a paused replica; owned */
    size_t qlen, qcap;
} replica_slot;

struct sim_world {
    sim_config cfg;
    char last_error[256]; /* during a refused call's callback */
    int64_t now;
    uint64_t seq;
    dht_rng rng;
    event *heap;
    size_t hlen, hcap;
    int nendpoints;
    replica_slot rs[MAX_REPLICAS];
    endpoint eps[MAX_ENDPOINTS];
    bool cut[MAX_ENDPOINTS][MAX_REPLICAS];
    bool tracing;
    char *trace;
    size_t tlen, tcap;
};

static bool ev_less(const event *a, const event *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void push(sim_world *w, event e)
{
    if (w->hlen == w->hcap) {
        w->hcap = w->hcap ? w->hcap * 2 : 256;
        w->heap = realloc(w->heap, w->hcap * sizeof *w->heap);
        if (w->heap == NULL)
            abort();
    }
    e.seq = w->seq++;
    size_t i = w->hlen++;
    while (i > 0 && ev_less(&e, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = e;
    if (e.c)
        e.c->refs++;
}

static event pop(sim_world *w)
{
    event top = w->heap[0], last = w->heap[--w->hlen];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->hlen)
            break;
        if (c + 1 < w->hlen && ev_less(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!ev_less(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->hlen)
        w->heap[i] = last;
    return top;
}

int64_t sim_rand_between(sim_world *w, int64_t lo, int64_t hi)
{
    return lo + (hi > lo ? (int64_t)dht_rng_below(&w->rng, (uint64_t)(hi - lo)) : 0);
}

static int64_t delay(sim_world *w)
{
    return sim_rand_between(w, w->cfg.delay_min_ns, w->cfg.delay_max_ns);
}

static bool lost(sim_world *w)
{
    return w->cfg.loss > 0 && dht_rng_double(&w->rng) < w->cfg.loss;
}

static void fail_at(sim_world *w, call *c, int64_t at, dht_status st)
{
    if (at > c->deadline)
        at = c->deadline;
    if (at < w->now)
        at = w->now;
    push(w, (event){.at = at, .kind = EV_FAIL, .c = c, .status = st});
}

static void timeout(sim_world *w, call *c)
{
    fail_at(w, c, c->deadline, DHT_ERR_TIMEOUT);
}

/* ---- transport vtable ----------------------------------------------------- */

/* Plans c's request from endpoint ep: delivered after a random delay, or
 * failed as the network would fail it.  Every branch schedules an event. */
static void plan(sim_world *w, const endpoint *ep, call *c)
{
    int peer = c->replica;
    replica_slot *rs = &w->rs[peer];
    if (ep->dead)
        fail_at(w, c, w->now, DHT_ERR_SHUTDOWN);
    else if (w->cut[ep->index][peer] || lost(w))
        timeout(w, c);
    else if (rs->crashed)
        fail_at(w, c, w->now + delay(w), DHT_ERR_UNAVAILABLE); /* connection refused */
    else {
        int64_t at = w->now + delay(w);
        push(w, (event){.at = at, .kind = EV_DELIVER, .c = c});
        /* The caller gives up at its deadline even if the request is still
         * on its way; the replica may act on it later all the same. */
        if (at > c->deadline)
            timeout(w, c);
    }
    if (c->refs == 0) /* cannot happen: every branch schedules */
        abort();
}

static int sim_send(dht_transport *t, int peer, const dht_msg *req, int64_t deadline_ns,
                    dht_reply_cb cb, void *arg)
{
    endpoint *ep = (endpoint *)t;
    sim_world *w = ep->w;
    if (peer < 0 || peer >= w->cfg.replicas)
        return -1;
    call *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    *c = (call){.w = w, .endpoint = ep->index, .replica = peer, .req = *req,
                .deadline = deadline_ns, .cb = cb, .arg = arg};
    plan(w, ep, c);
    return 0;
}

static int sim_control(dht_transport *t, int peer, const uint8_t *req, size_t len,
                       int64_t deadline_ns, dht_control_cb cb, void *arg)
{
    endpoint *ep = (endpoint *)t;
    sim_world *w = ep->w;
    if (peer < 0 || peer >= w->cfg.replicas || len > DHT_CONTROL_MAX || (req == NULL && len > 0))
        return -1;
    call *c = calloc(1, sizeof *c);
    uint8_t *copy = malloc(len ? len : 1);
    if (c == NULL || copy == NULL) {
        free(c);
        free(copy);
        return -1;
    }
    if (len > 0)
        memcpy(copy, req, len);
    *c = (call){.w = w, .endpoint = ep->index, .replica = peer, .deadline = deadline_ns,
                .arg = arg, .control = true, .creq = copy, .creq_len = len, .ccb = cb};
    plan(w, ep, c);
    return 0;
}

/* Slot r's synthetic address is 127.0.0.1:(first_port + r) (sim_config). */
static int sim_add_peer(dht_transport *t, const char *addr)
{
    endpoint *ep = (endpoint *)t;
    sim_world *w = ep->w;
    char norm[DHT_ADDR_MAX], err[128], tail;
    int port;
    if (addr == NULL || dht_member_addr_normalise(addr, norm, sizeof norm, err, sizeof err) != 0 ||
        sscanf(norm, "127.0.0.1:%d%c", &port, &tail) != 1)
        return -1;
    int slot = port - w->cfg.first_port;
    if (slot < 0 || slot >= w->cfg.replicas)
        return -1;
    if (ep->base.npeers < slot + 1)
        ep->base.npeers = slot + 1;
    return slot;
}

static const char *sim_last_error(dht_transport *t)
{
    return ((endpoint *)t)->w->last_error;
}

static int sim_after(dht_transport *t, int64_t delay_ns, dht_timer_cb cb, void *arg)
{
    sim_world *w = ((endpoint *)t)->w;
    push(w, (event){.at = w->now + (delay_ns > 0 ? delay_ns : 0), .kind = EV_TIMER, .fn = cb,
                    .arg = arg});
    return 0;
}

static int64_t sim_now_ep(dht_transport *t)
{
    return ((endpoint *)t)->w->now;
}

static const dht_transport_ops sim_ops = {
    .send = sim_send,
    .after = sim_after,
    .now = sim_now_ep,
    .last_error = sim_last_error,
    .add_peer = sim_add_peer,
    .control = sim_control,
};

/* ---- event processing ------------------------------------------------------- */

/* Sends the reply to c back over the network (or loses it). */
static void reply_to(sim_world *w, call *c, const dht_msg *reply)
{
    if (w->cut[c->endpoint][c->replica] || lost(w)) {
        free(reply->entries);
        timeout(w, c);
        return;
    }
    int64_t at = w->now + delay(w);
    if (at > c->deadline) {
        free(reply->entries);
        timeout(w, c);
    } else {
        push(w, (event){.at = at, .kind = EV_REPLY, .c = c, .reply = *reply});
    }
}

static void release(call *c);

/* Answers c with an error status and text (last_error during its
 * callback), over the network like a reply: it may be lost or cut, and
 * never arrives after the deadline. */
static void refuse(sim_world *w, call *c, const char *text)
{
    free(c->why);
    c->why = strdup(text);
    if (c->why == NULL)
        abort();
    if (w->cut[c->endpoint][c->replica] || lost(w)) {
        timeout(w, c);
        return;
    }
    int64_t at = w->now + delay(w);
    if (at > c->deadline)
        timeout(w, c);
    else
        push(w, (event){.at = at, .kind = EV_FAIL, .c = c, .status = DHT_ERR_REMOTE});
}

/* A bound service answered control call c (from inside its control or
 * later). */
static void control_served(void *arg, const uint8_t *rep, size_t len, const char *error)
{
    call *c = arg;
    sim_world *w = c->w;
    replica_slot *rs = &w->rs[c->replica];
    char text[512];
    if (rs->crashed || rs->incarnation != c->incarnation) {
        timeout(w, c); /* the node died with the request: no answer leaves */
    } else if (error != NULL) {
        snprintf(text, sizeof text, "FAILED_PRECONDITION: %s", error);
        refuse(w, c, text);
    } else if (len > DHT_CONTROL_MAX) {
        refuse(w, c, "INTERNAL: control reply over 1 MiB");
    } else {
        c->crep = malloc(len ? len : 1);
        if (c->crep == NULL)
            abort();
        if (len > 0)
            memcpy(c->crep, rep, len);
        c->crep_len = len;
        if (w->cut[c->endpoint][c->replica] || lost(w)) {
            timeout(w, c);
        } else {
            int64_t at = w->now + delay(w);
            if (at > c->deadline)
                timeout(w, c);
            else
                push(w, (event){.at = at, .kind = EV_REPLY, .c = c});
        }
    }
    release(c);
}

/* The bound node's control service takes c now. */
static void serve_control(sim_world *w, call *c)
{
    replica_slot *rs = &w->rs[c->replica];
    if (rs->svc == NULL || rs->svc->control == NULL) {
        refuse(w, c, "UNIMPLEMENTED: this node has no control service");
        return;
    }
    c->incarnation = rs->incarnation;
    c->refs++; /* the service's, until control_served() */
    rs->svc->control(rs->svc->arg, c->creq, c->creq_len, control_served, c);
}

/* A bound service finished c (from inside its replica_batch or later). */
static void served(void *arg)
{
    call *c = arg;
    sim_world *w = c->w;
    replica_slot *rs = &w->rs[c->replica];
    if (rs->crashed || rs->incarnation != c->incarnation) {
        /* The node died with the request: no reply ever leaves. */
        free(c->reply.entries);
        timeout(w, c);
    } else {
        reply_to(w, c, &c->reply);
    }
    c->reply = (dht_msg){0};
    release(c);
}

/* The replica serves c now. */
static void serve(sim_world *w, call *c)
{
    replica_slot *rs = &w->rs[c->replica];
    if (c->control) {
        serve_control(w, c);
        return;
    }
    if (rs->svc != NULL && rs->svc->check_config != NULL) {
        /* What a gRPC node does before anything else of a request (the
         * simulator has no static fingerprint: the stamp is the sender's,
         * 0s when it set none). */
        char why[512], text[600];
        why[0] = '\0';
        if (rs->svc->check_config(rs->svc->arg, c->req.config, c->req.view, why, sizeof why) !=
            0) {
            why[sizeof why - 1] = '\0';
            snprintf(text, sizeof text, "FAILED_PRECONDITION: %s",
                     why[0] ? why : "configuration refused");
            refuse(w, c, text);
            return;
        }
    }
    if (rs->svc != NULL) {
        c->incarnation = rs->incarnation;
        c->reply = (dht_msg){0};
        c->refs++; /* the service's, until served() */
        rs->svc->replica_batch(rs->svc->arg, &c->req, &c->reply, 1, served, c);
        return;
    }
    dht_msg reply;
    dht_replica_handle(rs->r, w->now, &c->req, &reply);
    reply_to(w, c, &reply);
}

static void finish(call *c, dht_status st, const dht_msg *reply)
{
    if (c->done)
        return;
    c->done = true;
    sim_world *w = c->w;
    if (w->eps[c->endpoint].dead) {
        st = DHT_ERR_SHUTDOWN; /* its process is gone: tell its state machines */
        reply = NULL;
    }
    if (st == DHT_ERR_REMOTE && c->why != NULL)
        snprintf(w->last_error, sizeof w->last_error, "%s", c->why);
    if (c->control) {
        static const uint8_t none[1];
        bool ok = st == DHT_OK;
        c->ccb(c->arg, st, ok ? (c->crep ? c->crep : none) : NULL, ok ? c->crep_len : 0);
    } else {
        c->cb(c->arg, st, reply);
    }
    w->last_error[0] = '\0';
}

static void trace_event(sim_world *w, const event *e)
{
    static const char *const kinds[] = {"deliver", "reply", "fail", "timer"};
    if (e->kind == EV_TIMER) {
        sim_tracef(w, "%lld timer", (long long)e->at);
        return;
    }
    if (e->c->control) {
        sim_tracef(w, "%lld %s e%d r%d control n=%zu st=%d", (long long)e->at, kinds[e->kind],
                   e->c->endpoint, e->c->replica,
                   e->kind == EV_REPLY ? e->c->crep_len : e->c->creq_len, (int)e->status);
        return;
    }
    const dht_msg *m = e->kind == EV_REPLY ? &e->reply : &e->c->req;
    sim_tracef(w, "%lld %s e%d r%d %s k=%lld v=%lld ver=%llu.%llu ok=%d st=%d n=%u",
               (long long)e->at, kinds[e->kind], e->c->endpoint, e->c->replica,
               dht_msg_type_name(e->c->req.type), (long long)m->key, (long long)m->value,
               (unsigned long long)m->version.counter, (unsigned long long)m->version.writer,
               (int)m->ok, (int)e->status, m->nentries);
}

static void release(call *c)
{
    if (--c->refs == 0 && c->done) {
        free(c->creq);
        free(c->crep);
        free(c->why);
        free(c);
    }
}

static void process(sim_world *w, event *e)
{
    w->now = e->at;
    if (w->tracing)
        trace_event(w, e);
    switch (e->kind) {
    case EV_TIMER:
        e->fn(e->arg);
        return;
    case EV_DELIVER: {
        replica_slot *rs = &w->rs[e->c->replica];
        if (rs->crashed) {
            timeout(w, e->c); /* died with the request in flight */
        } else if (rs->paused) {
            if (rs->qlen == rs->qcap) {
                rs->qcap = rs->qcap ? rs->qcap * 2 : 16;
                rs->queue = realloc(rs->queue, rs->qcap * sizeof *rs->queue);
                if (rs->queue == NULL)
                    abort();
            }
            rs->queue[rs->qlen++] = e->c;
            e->c->refs++; /* the queue's */
            timeout(w, e->c);
        } else {
            serve(w, e->c);
        }
        break;
    }
    case EV_REPLY:
        finish(e->c, DHT_OK, &e->reply);
        free(e->reply.entries); /* the replier's; the callback has read it */
        break;
    case EV_FAIL:
        finish(e->c, e->status, NULL);
        break;
    }
    release(e->c);
}

long sim_run_until(sim_world *w, int64_t t)
{
    long n = 0;
    while (w->hlen > 0 && w->heap[0].at <= t) {
        event e = pop(w);
        process(w, &e);
        n++;
    }
    if (t > w->now && t != INT64_MAX)
        w->now = t;
    return n;
}

long sim_run(sim_world *w)
{
    return sim_run_until(w, INT64_MAX);
}

/* ---- world -------------------------------------------------------------------- */

sim_world *sim_new(const sim_config *cfg)
{
    if (cfg->replicas < 1 || cfg->replicas > MAX_REPLICAS || cfg->endpoints < 0 ||
        cfg->endpoints > MAX_ENDPOINTS)
        return NULL;
    sim_world *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->cfg = *cfg;
    if (w->cfg.first_port <= 0)
        w->cfg.first_port = 1;
    if (w->cfg.delay_max_ns == 0) {
        w->cfg.delay_min_ns = 100 * 1000;
        w->cfg.delay_max_ns = 2 * DHT_NS_PER_MS;
    }
    w->now = DHT_NS_PER_SEC; /* leave room below for "before the start" */
    dht_rng_seed(&w->rng, cfg->seed);
    for (int r = 0; r < cfg->replicas; r++)
        w->rs[r].r = dht_replica_new();
    for (int e = 0; e < cfg->endpoints; e++)
        sim_endpoint_add(w);
    return w;
}

int sim_endpoint_add(sim_world *w)
{
    if (w->nendpoints == MAX_ENDPOINTS)
        return -1;
    int e = w->nendpoints++;
    w->eps[e] = (endpoint){.base = {.ops = &sim_ops, .npeers = w->cfg.replicas}, .w = w,
                           .index = e};
    return e;
}

void sim_endpoint_kill(sim_world *w, int e)
{
    w->eps[e].dead = true;
}

void sim_bind(sim_world *w, int r, const dht_service *svc)
{
    w->rs[r].svc = svc;
}

void sim_trace_enable(sim_world *w, bool on)
{
    w->tracing = on;
}

const char *sim_trace_text(sim_world *w)
{
    return w->trace ? w->trace : "";
}

void sim_tracef(sim_world *w, const char *fmt, ...)
{
    if (!w->tracing)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = w->tcap - w->tlen;
        int k = w->trace ? vsnprintf(w->trace + w->tlen, room, fmt, ap) : -1;
        va_end(ap);
        if (k >= 0 && (size_t)k + 1 < room) {
            w->tlen += (size_t)k;
            w->trace[w->tlen++] = '\n';
            w->trace[w->tlen] = '\0';
            return;
        }
        w->tcap = w->tcap ? w->tcap * 2 : 1 << 16;
        w->trace = realloc(w->trace, w->tcap);
        if (w->trace == NULL)
            abort();
    }
}

void sim_free(sim_world *w)
{
    if (w == NULL)
        return;
    while (w->hlen > 0) { /* undelivered events: drop without callbacks */
        event e = pop(w);
        if (e.kind == EV_REPLY)
            free(e.reply.entries);
        if (e.c) {
            e.c->done = true;
            release(e.c);
        }
    }
    for (int r = 0; r < w->cfg.replicas; r++) {
        for (size_t i = 0; i < w->rs[r].qlen; i++) {
            w->rs[r].queue[i]->done = true;
            release(w->rs[r].queue[i]);
        }
        free(w->rs[r].queue);
        dht_replica_free(w->rs[r].r);
    }
    free(w->heap);
    free(w->trace);
    free(w);
}

dht_transport *sim_endpoint(sim_world *w, int e)
{
    return &w->eps[e].base;
}

dht_replica *sim_replica(sim_world *w, int r)
{
    return w->rs[r].r;
}

int64_t sim_now(sim_world *w)
{
    return w->now;
}

uint64_t sim_rand(sim_world *w, uint64_t n)
{
    return dht_rng_below(&w->rng, n);
}

void sim_set_loss(sim_world *w, double loss)
{
    w->cfg.loss = loss;
}

void sim_crash(sim_world *w, int r)
{
    w->rs[r].crashed = true;
    w->rs[r].incarnation++;
    if (w->rs[r].svc != NULL) {
        /* Requests that waited for a paused node die with it. */
        for (size_t i = 0; i < w->rs[r].qlen; i++)
            release(w->rs[r].queue[i]);
        w->rs[r].qlen = 0;
        w->rs[r].paused = false;
    }
}

static void copy_entry(void *arg, int64_t key, int64_t value, dht_version ver)
{
    dht_replica_apply(arg, key, value, ver);
}

void sim_restart_bound(sim_world *w, int r, const dht_service *svc)
{
    w->rs[r].svc = svc;
    w->rs[r].crashed = false;
}

void sim_restart(sim_world *w, int r, bool wipe)
{
    dht_replica *fresh = dht_replica_new();
    if (!wipe)
        dht_replica_foreach(w->rs[r].r, copy_entry, fresh);
    dht_replica_free(w->rs[r].r);
    w->rs[r].r = fresh;
    w->rs[r].crashed = false;
}

void sim_pause(sim_world *w, int r)
{
    w->rs[r].paused = true;
}

void sim_resume(sim_world *w, int r)
{
    replica_slot *rs = &w->rs[r];
    rs->paused = false;
    /* Serve what queued up, in arrival order; the callers have long timed
     * out, but the state changes still happen, as on a real stalled node. */
    for (size_t i = 0; i < rs->qlen; i++) {
        call *c = rs->queue[i];
        if (rs->svc != NULL) {
            serve(w, c); /* the reply finds the call timed out, and is dropped */
        } else if (!c->control) { /* a bare replica has no control service */
            dht_msg reply;
            dht_replica_handle(rs->r, w->now, &c->req, &reply);
            free(reply.entries);
        }
        release(c);
    }
    rs->qlen = 0;
}

void sim_cut(sim_world *w, int e, int r, bool cut)
{
    w->cut[e][r] = cut;
}

void sim_heal_all(sim_world *w)
{
    memset(w->cut, 0, sizeof w->cut);
    for (int r = 0; r < w->cfg.replicas; r++) {
        if (w->rs[r].paused)
            sim_resume(w, r);
    }
}

void sim_at(sim_world *w, int64_t at, void (*fn)(void *), void *arg)
{
    push(w, (event){.at = at < w->now ? w->now : at, .kind = EV_TIMER, .fn = fn, .arg = arg});
}
