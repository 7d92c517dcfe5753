/* Configuration agreement (protocol/config_agree.h): the acceptor's
 * handlers and encoding, and the proposer over a deterministic in-memory
 * network with delay, reordering, loss, duplication, refused sends,
 * acceptor crash/restart from the last persisted state and proposer
 * crashes.  An independent checker watches every acceptance: a value is
 * chosen when a quorum accepted the same ballot, and at most one value
 * may ever be chosen per epoch. */
#include "protocol/config_agree.h"

#include <stdio.h>

#include "base/util.h"
#include "protocol/membership.h"
#include "test.h"

#define MS DHT_NS_PER_MS
#define MAXA 7
#define MAXP 8

static const uint8_t *B(const char *s)
{
    return (const uint8_t *)s;
}

static uint64_t hash_bytes(const uint8_t *p, size_t len)
{
    uint64_t h = dht_mix64(len);
    for (size_t i = 0; i < len; i++)
        h = dht_mix64(h ^ p[i]);
    return h;
}

/* ---- The simulated network ---- */

typedef struct sim sim;

typedef struct {
    double loss, dup, refuse; /* per message, until calm */
    int64_t delay_max;        /* one-way delay: 0.1 ms .. delay_max */
    int64_t rpc_timeout;      /* a lost call fails after this */
    int crashes;              /* acceptor crashes, at random times before crash_until */
    int64_t crash_until, down_max;
    int64_t calm;             /* from then on: no loss, no refused sends */
    double learn;             /* chance each acceptor learns a reported decision */
    bool persist;             /* false: the amnesia mutation */
    /* Scripted loss for the scenarios: true drops a request (reply=false)
     * or a reply of that type. */
    bool (*drop)(sim *s, int prop, int acc, dht_agree_type type, bool reply);
} netcfg;

typedef struct {
    sim *s;
    int idx;
    uint8_t *value;
    size_t len;
    dht_agree_config cfg;
    int64_t start;
    bool crashed;
    int dones;
    dht_agree_outcome outcome;
    uint64_t res_epoch;
    uint8_t *res;
    size_t res_len;
    bool was_mine;
    int64_t done_at;
} prop;

typedef struct {
    dht_agree_acceptor st;
    bool up;
    uint8_t *disk; /* the last persisted encoding */
    size_t disk_len;
} acc;

enum { EV_START, EV_REQ, EV_REPLY, EV_TIMER, EV_CRASH, EV_RESTART, EV_LEARN, EV_PCRASH };

typedef struct {
    int64_t t;
    uint64_t seq;
    int kind, prop, acc;
    dht_agree_msg m;
    uint8_t *val; /* owned copy of m.value */
    dht_agree_reply_cb cb; /* NULL: a duplicate whose answer nobody awaits */
    void *cb_arg;
    dht_status st;
    void (*tcb)(void *);
} ev;

/* Every (epoch, ballot) some acceptor accepted, with who and what. */
typedef struct {
    uint64_t epoch;
    dht_agree_ballot b;
    uint64_t vh;
    dht_peerset who;
} acc_rec;

struct sim {
    netcfg cfg;
    dht_rng rng;
    int64_t now;
    uint64_t seq, trace;
    ev **heap;
    size_t nheap, capheap;
    int nacc, nprop;
    acc a[MAXA];
    prop p[MAXP];
    acc_rec *recs;
    size_t nrecs, caprecs;
    uint64_t chosen[16]; /* per epoch: hash of the chosen value, 0: none */
    uint64_t reported[16];
    int violations;
    long stat[6]; /* what the faults did, for the summary: see STATS */
    int scenario_mask, scenario_cut; /* for the scripted drops */
};

enum { ST_LOST, ST_DUP, ST_RESTART, ST_NACK, ST_DECIDED, ST_ADOPTED };
static const char *const STATS[] = {"lost", "duplicated", "restarts", "nacks",
                                    "decided answers", "adopted values"};

static int ev_less(const ev *x, const ev *y)
{
    return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

static ev *push(sim *s, int64_t t, int kind)
{
    ev *e = calloc(1, sizeof *e);
    CHECK(e != NULL);
    e->t = t;
    e->seq = s->seq++;
    e->kind = kind;
    if (s->nheap == s->capheap) {
        s->capheap = s->capheap ? 2 * s->capheap : 256;
        s->heap = realloc(s->heap, s->capheap * sizeof *s->heap);
        CHECK(s->heap != NULL);
    }
    size_t i = s->nheap++;
    for (; i > 0 && ev_less(e, s->heap[(i - 1) / 2]); i = (i - 1) / 2)
        s->heap[i] = s->heap[(i - 1) / 2];
    s->heap[i] = e;
    return e;
}

static ev *pop(sim *s)
{
    ev *top = s->heap[0], *last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && ev_less(s->heap[c + 1], s->heap[c]))
            c++;
        if (!ev_less(s->heap[c], last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

static void set_msg(ev *e, const dht_agree_msg *m)
{
    e->m = *m;
    e->val = NULL;
    if (m->len) {
        e->val = malloc(m->len);
        CHECK(e->val != NULL);
        memcpy(e->val, m->value, m->len);
    }
    e->m.value = e->val;
}

static int64_t delay(sim *s)
{
    return MS / 10 + (int64_t)dht_rng_below(&s->rng, (uint64_t)s->cfg.delay_max);
}

static bool chance(sim *s, double p)
{
    return p > 0 && s->now < s->cfg.calm && dht_rng_double(&s->rng) < p;
}

static void fail_later(sim *s, int prop, int acc, dht_agree_reply_cb cb, void *arg, dht_status st)
{
    ev *e = push(s, s->now + s->cfg.rpc_timeout, EV_REPLY);
    e->prop = prop;
    e->acc = acc;
    e->cb = cb;
    e->cb_arg = arg;
    e->st = st;
}

static int io_send(void *arg, int a, const dht_agree_msg *m, dht_agree_reply_cb cb, void *cb_arg)
{
    prop *p = arg;
    sim *s = p->s;
    CHECK(a >= 0 && a < s->nacc);
    if (chance(s, s->cfg.refuse))
        return 1;
    bool scripted = s->cfg.drop && s->cfg.drop(s, p->idx, a, m->type, false);
    if (p->crashed || scripted || chance(s, s->cfg.loss)) {
        s->stat[ST_LOST]++;
        fail_later(s, p->idx, a, cb, cb_arg, DHT_ERR_TIMEOUT);
        return 0;
    }
    int copies = chance(s, s->cfg.dup) ? 2 : 1;
    s->stat[ST_DUP] += copies - 1;
    int answered = (int)dht_rng_below(&s->rng, (uint64_t)copies);
    for (int i = 0; i < copies; i++) {
        ev *e = push(s, s->now + delay(s), EV_REQ);
        e->prop = p->idx;
        e->acc = a;
        set_msg(e, m);
        if (i == answered) {
            e->cb = cb;
            e->cb_arg = cb_arg;
        }
    }
    return 0;
}

static int io_after(void *arg, int64_t d, void (*cb)(void *), void *cb_arg)
{
    prop *p = arg;
    CHECK(d >= 0);
    /* Timers are never refused: a real transport refuses them only when
     * shutting down, and then ERR_IO is the right outcome. */
    ev *e = push(p->s, p->s->now + d, EV_TIMER);
    e->prop = p->idx;
    e->tcb = cb;
    e->cb_arg = cb_arg;
    return 0;
}

static int64_t io_now(void *arg)
{
    return ((prop *)arg)->s->now;
}

static void persist(sim *s, int i)
{
    acc *a = &s->a[i];
    size_t need = dht_agree_acceptor_encode(&a->st, NULL, 0);
    uint8_t *buf = malloc(need);
    CHECK(buf != NULL);
    CHECK(dht_agree_acceptor_encode(&a->st, buf, need) == need);
    free(a->disk);
    a->disk = buf;
    a->disk_len = need;
}

static void violation(sim *s, const char *what, uint64_t epoch)
{
    if (s->violations++ == 0 && getenv("AGREE_VERBOSE"))
        fprintf(stderr, "  safety violated (%s) in epoch %llu at t=%lld\n", what,
                (unsigned long long)epoch, (long long)s->now);
}

/* The checker's view of one acceptance. */
static void record(sim *s, int who, uint64_t epoch, dht_agree_ballot b, uint64_t vh)
{
    acc_rec *r = NULL;
    for (size_t i = 0; i < s->nrecs && r == NULL; i++)
        if (s->recs[i].epoch == epoch && dht_agree_ballot_cmp(s->recs[i].b, b) == 0)
            r = &s->recs[i];
    if (r == NULL) {
        if (s->nrecs == s->caprecs) {
            s->caprecs = s->caprecs ? 2 * s->caprecs : 64;
            s->recs = realloc(s->recs, s->caprecs * sizeof *s->recs);
            CHECK(s->recs != NULL);
        }
        r = &s->recs[s->nrecs++];
        *r = (acc_rec){.epoch = epoch, .b = b, .vh = vh};
    }
    if (r->vh != vh)
        violation(s, "one ballot, two values", epoch);
    dht_peerset_add(&r->who, who);
    if (dht_peerset_count(&r->who) >= s->nacc / 2 + 1 && epoch < 16) {
        if (s->chosen[epoch] == 0)
            s->chosen[epoch] = vh;
        else if (s->chosen[epoch] != vh)
            violation(s, "two values chosen by quorums", epoch);
    }
}

static void deliver_request(sim *s, ev *e)
{
    acc *a = &s->a[e->acc];
    prop *p = &s->p[e->prop];
    if (!a->up) {
        if (e->cb)
            fail_later(s, e->prop, e->acc, e->cb, e->cb_arg, DHT_ERR_UNAVAILABLE);
        return;
    }
    dht_agree_msg rep;
    int rc = dht_agree_acceptor_handle(&a->st, &e->m, &rep);
    CHECK(rc >= 0);
    s->stat[ST_NACK] += rep.type == DHT_AGREE_NACK;
    s->stat[ST_DECIDED] += rep.type == DHT_AGREE_DECIDED;
    if (rep.type == DHT_AGREE_ACCEPTED)
        record(s, e->acc, e->m.epoch, e->m.ballot, hash_bytes(e->m.value, e->m.len));
    /* The durability contract: persisted before the reply leaves. */
    if (rc == 1 && s->cfg.persist)
        persist(s, e->acc);
    if (e->cb == NULL)
        return;
    bool scripted = s->cfg.drop && s->cfg.drop(s, e->prop, e->acc, rep.type, true);
    if (p->crashed || scripted || chance(s, s->cfg.loss)) {
        s->stat[ST_LOST]++;
        fail_later(s, e->prop, e->acc, e->cb, e->cb_arg, DHT_ERR_TIMEOUT);
        return;
    }
    ev *r = push(s, s->now + delay(s), EV_REPLY);
    r->prop = e->prop;
    r->acc = e->acc;
    r->cb = e->cb;
    r->cb_arg = e->cb_arg;
    r->st = DHT_OK;
    set_msg(r, &rep);
}

static void on_done(void *arg, const dht_agree_result *r)
{
    prop *p = arg;
    sim *s = p->s;
    CHECK(++p->dones == 1);
    CHECK((r->reason == NULL) == (r->outcome == DHT_AGREE_CHOSEN));
    p->outcome = r->outcome;
    p->res_epoch = r->epoch;
    p->was_mine = r->was_mine;
    p->done_at = s->now;
    if (r->len) {
        p->res = malloc(r->len);
        CHECK(p->res != NULL);
        memcpy(p->res, r->value, r->len);
        p->res_len = r->len;
    }
    s->trace = dht_mix64(s->trace ^ (uint64_t)r->outcome ^ hash_bytes(r->value, r->len));
    if (r->outcome != DHT_AGREE_CHOSEN)
        return;
    s->stat[ST_ADOPTED] += !r->was_mine;
    CHECK(r->epoch == p->cfg.epoch);
    CHECK(r->was_mine == (r->len == p->len && memcmp(r->value, p->value, r->len) == 0));
    uint64_t vh = hash_bytes(r->value, r->len), e = r->epoch;
    if (e < 16) {
        if (s->reported[e] != 0 && s->reported[e] != vh)
            violation(s, "proposers report different values", e);
        s->reported[e] = vh;
        if (s->chosen[e] != 0 && s->chosen[e] != vh)
            violation(s, "a report differs from the quorum's value", e);
    }
    for (int i = 0; i < s->nacc; i++) {
        if (s->cfg.learn <= 0 || dht_rng_double(&s->rng) >= s->cfg.learn)
            continue;
        ev *l = push(s, s->now + delay(s), EV_LEARN);
        l->acc = i;
        set_msg(l, &(dht_agree_msg){.epoch = e, .value = r->value, .len = r->len});
    }
}

static void step(sim *s, ev *e)
{
    s->now = e->t;
    s->trace = dht_mix64(s->trace ^ (uint64_t)e->t);
    s->trace = dht_mix64(s->trace ^ ((uint64_t)e->kind << 48 | (uint64_t)e->prop << 40 |
                                     (uint64_t)e->acc << 32 | (uint64_t)e->m.type << 16 |
                                     (uint64_t)e->st));
    s->trace = dht_mix64(s->trace ^ e->m.ballot.round ^ dht_mix64(e->m.ballot.id) ^
                         hash_bytes(e->m.value, e->m.len));
    acc *a = &s->a[e->acc];
    switch (e->kind) {
    case EV_START: {
        prop *p = &s->p[e->prop];
        dht_agree_io io = {io_send, io_after, io_now, p};
        CHECK(dht_agree_propose(&io, &p->cfg, p->value, p->len, on_done, p) == 0);
        break;
    }
    case EV_REQ:
        deliver_request(s, e);
        break;
    case EV_REPLY:
        if (e->st == DHT_OK && s->p[e->prop].crashed)
            e->st = DHT_ERR_UNAVAILABLE;
        e->cb(e->cb_arg, e->st, e->st == DHT_OK ? &e->m : NULL);
        break;
    case EV_TIMER:
        e->tcb(e->cb_arg);
        break;
    case EV_CRASH:
        if (a->up) {
            dht_agree_acceptor_free(&a->st);
            a->up = false;
            int64_t down = 1 + (int64_t)dht_rng_below(&s->rng, (uint64_t)s->cfg.down_max);
            push(s, s->now + down, EV_RESTART)->acc = e->acc;
        }
        break;
    case EV_RESTART: {
        char err[128];
        CHECK(dht_agree_acceptor_decode(&a->st, a->disk, a->disk_len, err, sizeof err) == 0);
        a->up = true;
        s->stat[ST_RESTART]++;
        break;
    }
    case EV_LEARN:
        if (a->up && dht_agree_acceptor_decide(&a->st, e->m.epoch, e->m.value, e->m.len) == 1 &&
            s->cfg.persist)
            persist(s, e->acc);
        break;
    case EV_PCRASH:
        s->p[e->prop].crashed = true;
        break;
    }
    free(e->val);
    free(e);
}

static const char INITIAL[] = "replicas=3 partitions=65536 members=a:1,b:1,c:1";

static sim *sim_new(uint64_t seed, int nacc, const netcfg *cfg)
{
    sim *s = calloc(1, sizeof *s);
    CHECK(s != NULL && nacc <= MAXA);
    s->cfg = *cfg;
    s->nacc = nacc;
    dht_rng_seed(&s->rng, seed);
    for (int i = 0; i < nacc; i++) {
        CHECK(dht_agree_acceptor_init(&s->a[i].st, 1, B(INITIAL), sizeof INITIAL - 1) == 0);
        s->a[i].up = true;
        persist(s, i);
    }
    for (int i = 0; i < cfg->crashes; i++)
        push(s, (int64_t)dht_rng_below(&s->rng, (uint64_t)cfg->crash_until), EV_CRASH)->acc =
            (int)dht_rng_below(&s->rng, (uint64_t)nacc);
    return s;
}

static int sim_propose(sim *s, int64_t start, uint64_t epoch, const uint8_t *v, size_t len,
                       int64_t deadline)
{
    CHECK(s->nprop < MAXP);
    prop *p = &s->p[s->nprop];
    p->s = s;
    p->idx = s->nprop;
    p->value = malloc(len);
    CHECK(p->value != NULL);
    memcpy(p->value, v, len);
    p->len = len;
    dht_agree_config_default(&p->cfg);
    p->cfg.epoch = epoch;
    p->cfg.nacceptors = s->nacc;
    /* Unique low byte, random rest: ids order proposers arbitrarily. */
    p->cfg.id = (dht_rng_next(&s->rng) << 8) | (uint64_t)(p->idx + 1);
    p->cfg.seed = dht_rng_next(&s->rng);
    p->cfg.deadline_ns = deadline;
    p->cfg.phase_timeout_ns = 50 * MS;
    p->cfg.backoff_min_ns = 1 * MS;
    p->cfg.backoff_max_ns = 64 * MS;
    p->start = start;
    push(s, start, EV_START)->prop = p->idx;
    return s->nprop++;
}

static void sim_run(sim *s, int64_t until)
{
    while (s->nheap > 0 && s->heap[0]->t <= until)
        step(s, pop(s));
}

static void sim_free(sim *s)
{
    CHECK(s->nheap == 0); /* every callback owed was delivered */
    for (int i = 0; i < s->nacc; i++) {
        if (s->a[i].up)
            dht_agree_acceptor_free(&s->a[i].st);
        free(s->a[i].disk);
    }
    for (int i = 0; i < s->nprop; i++) {
        free(s->p[i].value);
        free(s->p[i].res);
    }
    free(s->heap);
    free(s->recs);
    free(s);
}

/* ---- Acceptor ---- */

/* One request of type t for epoch e at ballot (r, id), value v (NULL: none). */
static int call(dht_agree_acceptor *a, dht_agree_type t, uint64_t e, uint64_t r, uint64_t id,
                const char *v, dht_agree_msg *rep)
{
    dht_agree_msg m = {.type = t, .epoch = e, .ballot = {r, id}, .value = B(v),
                       .len = v ? strlen(v) : 0};
    return dht_agree_acceptor_handle(a, &m, rep);
}

static void test_acceptor(void)
{
    dht_agree_acceptor a;
    dht_agree_msg rep;
    CHECK(dht_agree_acceptor_init(&a, 1, NULL, 0) == -1);
    CHECK(dht_agree_acceptor_init(&a, 1, B("c1"), 2) == 0);

    /* Slot 2 is open. */
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, 5, 1, NULL, &rep), 1);
    CHECK(rep.type == DHT_AGREE_PROMISE && rep.ballot.round == 5 && rep.len == 0);
    /* The same ballot again (a duplicate): the same promise, no change. */
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, 5, 1, NULL, &rep), 0);
    CHECK(rep.type == DHT_AGREE_PROMISE);
    /* Lower ballots are refused with the promise. */
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, 5, 0, NULL, &rep), 0);
    CHECK(rep.type == DHT_AGREE_NACK && rep.ballot.round == 5 && rep.ballot.id == 1);
    CHECK_EQ(call(&a, DHT_AGREE_ACCEPT, 2, 4, 9, "x", &rep), 0);
    CHECK(rep.type == DHT_AGREE_NACK);
    /* Accept at the promised ballot; a duplicate changes nothing. */
    CHECK_EQ(call(&a, DHT_AGREE_ACCEPT, 2, 5, 1, "v5", &rep), 1);
    CHECK(rep.type == DHT_AGREE_ACCEPTED && rep.ballot.round == 5);
    CHECK_EQ(call(&a, DHT_AGREE_ACCEPT, 2, 5, 1, "v5", &rep), 0);
    /* A higher prepare learns what was accepted. */
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, 7, 2, NULL, &rep), 1);
    CHECK(rep.type == DHT_AGREE_PROMISE && rep.accepted.round == 5 && rep.accepted.id == 1 &&
          rep.len == 2 && memcmp(rep.value, "v5", 2) == 0);
    /* An accept above the promise is fine too (its prepare went elsewhere). */
    CHECK_EQ(call(&a, DHT_AGREE_ACCEPT, 2, 8, 3, "v8", &rep), 1);
    CHECK(a.promised.round == 8 && a.accepted.round == 8 && a.value_len == 2);
    /* Rounds no proposer could outbid are malformed, and change nothing:
     * beyond the ceiling, or too far above the promise in one step. */
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, UINT64_MAX, UINT64_MAX, NULL, &rep), -1);
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, DHT_AGREE_ROUND_MAX + 1, 1, NULL, &rep), -1);
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, 8 + DHT_AGREE_ROUND_STEP + 1, 1, NULL, &rep), -1);
    CHECK_EQ(call(&a, DHT_AGREE_ACCEPT, 2, 8 + DHT_AGREE_ROUND_STEP + 1, 1, "vx", &rep), -1);
    CHECK(a.promised.round == 8 && a.accepted.round == 8);
    /* The largest step is taken, and an honest proposer still outbids it. */
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, 8 + DHT_AGREE_ROUND_STEP, UINT64_MAX, NULL, &rep), 1);
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, 9 + DHT_AGREE_ROUND_STEP, 4, NULL, &rep), 1);
    CHECK(rep.type == DHT_AGREE_PROMISE && a.promised.round == 9 + DHT_AGREE_ROUND_STEP);

    /* Other epochs. */
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 1, 9, 1, NULL, &rep), 0);
    CHECK(rep.type == DHT_AGREE_DECIDED && rep.epoch == 1 && rep.len == 2 && !memcmp(rep.value, "c1", 2));
    CHECK_EQ(call(&a, DHT_AGREE_ACCEPT, 3, 9, 1, "z", &rep), 0);
    CHECK(rep.type == DHT_AGREE_BEHIND && rep.epoch == 1);

    /* Malformed requests: no reply, no change. */
    CHECK_EQ(call(&a, DHT_AGREE_ACCEPT, 2, 9, 1, "", &rep), -1);
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, 0, 0, NULL, &rep), -1);
    CHECK_EQ(call(&a, DHT_AGREE_PROMISE, 2, 9, 1, NULL, &rep), -1);
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 0, 9, 1, NULL, &rep), -1);

    /* Deciding epoch 2 opens slot 3 with a fresh promise. */
    CHECK_EQ(dht_agree_acceptor_decide(&a, 2, B("c2"), 2), 1);
    CHECK(a.decided_epoch == 2 && a.value_len == 0 && a.promised.round == 0 && a.accepted.round == 0);
    CHECK_EQ(dht_agree_acceptor_decide(&a, 2, B("other"), 5), 0);
    CHECK_EQ(dht_agree_acceptor_decide(&a, 1, B("c1"), 2), 0);
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 3, 1, 1, NULL, &rep), 1);
    CHECK(rep.type == DHT_AGREE_PROMISE);
    CHECK_EQ(call(&a, DHT_AGREE_PREPARE, 2, 9, 9, NULL, &rep), 0);
    CHECK(rep.type == DHT_AGREE_DECIDED && rep.epoch == 2 && !memcmp(rep.value, "c2", 2));
    CHECK_EQ(call(&a, DHT_AGREE_ACCEPT, 1, 9, 9, "q", &rep), 0);
    CHECK(rep.type == DHT_AGREE_STALE && rep.epoch == 2 && !memcmp(rep.value, "c2", 2));
    /* Decisions may skip epochs (caught up from a peer). */
    CHECK_EQ(dht_agree_acceptor_decide(&a, 5, B("c5"), 2), 1);
    CHECK_EQ(dht_agree_acceptor_decide(&a, 6, NULL, 0), -1);
    CHECK(a.decided_epoch == 5);
    dht_agree_acceptor_free(&a);
}

static void test_encoding(void)
{
    dht_rng r;
    dht_rng_seed(&r, 7);
    char err[128];
    for (int round = 0; round < 40; round++) {
        dht_agree_acceptor a, b;
        uint64_t e = round == 0 ? 0 : 1 + dht_rng_below(&r, 1000);
        size_t dl = e ? 1 + dht_rng_below(&r, round == 1 ? DHT_AGREE_VALUE_MAX : 300) : 0;
        uint8_t *dv = malloc(DHT_AGREE_VALUE_MAX);
        CHECK(dv != NULL);
        for (size_t i = 0; i < DHT_AGREE_VALUE_MAX; i++)
            dv[i] = (uint8_t)dht_rng_next(&r);
        CHECK(dht_agree_acceptor_init(&a, e, dv, dl) == 0);
        /* Thirds: promised and accepted (once the largest value), only
         * promised, nothing. */
        dht_agree_msg rep;
        uint64_t rr = 1 + dht_rng_below(&r, 50);
        dht_agree_msg m = {.type = DHT_AGREE_PREPARE, .epoch = e + 1, .ballot = {rr, 3}};
        if (round % 3 != 2)
            CHECK(dht_agree_acceptor_handle(&a, &m, &rep) == 1);
        if (round % 3 == 0) {
            m.type = DHT_AGREE_ACCEPT;
            m.value = dv + 1;
            m.len = round == 3 ? DHT_AGREE_VALUE_MAX - 1 : 1 + dht_rng_below(&r, 200);
            CHECK(dht_agree_acceptor_handle(&a, &m, &rep) == 1);
        }
        size_t n = dht_agree_acceptor_encode(&a, NULL, 0);
        uint8_t *buf = malloc(n + 1);
        CHECK(buf != NULL);
        CHECK(dht_agree_acceptor_encode(&a, buf, n) == n);
        CHECK(dht_agree_acceptor_decode(&b, buf, n, err, sizeof err) == 0);
        CHECK(b.decided_epoch == a.decided_epoch && b.decided_len == a.decided_len &&
              (a.decided_len == 0 || memcmp(a.decided, b.decided, a.decided_len) == 0));
        CHECK(dht_agree_ballot_cmp(a.promised, b.promised) == 0 &&
              dht_agree_ballot_cmp(a.accepted, b.accepted) == 0 && a.value_len == b.value_len &&
              (a.value_len == 0 || memcmp(a.value, b.value, a.value_len) == 0));
        dht_agree_acceptor_free(&b);
        /* Every truncation, one extra byte, and a flipped bit anywhere. */
        size_t step_ = n > 4096 ? 97 : 1;
        for (size_t len = 0; len < n; len += step_)
            CHECK(dht_agree_acceptor_decode(&b, buf, len, err, sizeof err) == -1);
        buf[n] = 0;
        CHECK(dht_agree_acceptor_decode(&b, buf, n + 1, err, sizeof err) == -1);
        for (size_t i = 0; i < n; i += step_) {
            uint8_t bit = (uint8_t)(1u << dht_rng_below(&r, 8));
            buf[i] ^= bit;
            CHECK(dht_agree_acceptor_decode(&b, buf, n, err, sizeof err) == -1);
            buf[i] ^= bit;
        }
        CHECK(dht_agree_acceptor_decode(&b, buf, n, err, sizeof err) == 0);
        dht_agree_acceptor_free(&b);
        free(buf);
        dht_agree_acceptor_free(&a);
        free(dv);
    }
    /* Random garbage of every small length, and garbage after a valid magic. */
    uint8_t g[512];
    for (int i = 0; i < 20000; i++) {
        size_t len = dht_rng_below(&r, sizeof g);
        for (size_t j = 0; j < len; j++)
            g[j] = (uint8_t)dht_rng_next(&r);
        if (i & 1 && len >= 8)
            memcpy(g, "DHTAGRE1", 8);
        dht_agree_acceptor b;
        CHECK(dht_agree_acceptor_decode(&b, g, len, err, sizeof err) == -1);
    }
    dht_agree_acceptor b;
    CHECK(dht_agree_acceptor_decode(&b, NULL, 0, err, sizeof err) == -1);
    CHECK(strstr(err, "short") != NULL);
}

/* ---- Proposer over the network ---- */

static const netcfg QUIET = {.delay_max = MS, .rpc_timeout = 20 * MS, .calm = INT64_MAX,
                             .persist = true, .learn = 0};

static bool done_with(const prop *p, dht_agree_outcome o, const char *v)
{
    return p->dones == 1 && p->outcome == o &&
           (v == NULL || (p->res_len == strlen(v) && memcmp(p->res, v, p->res_len) == 0));
}

static void no_done(void *arg, const dht_agree_result *r)
{
    (void)arg;
    (void)r;
    CHECK(!"done ran for a proposal that was refused");
}

static void test_answers(void)
{
    /* Refused proposals: bad config or value, and done never runs. */
    sim *s = sim_new(1, 3, &QUIET);
    prop *p0 = &s->p[0];
    p0->s = s;
    dht_agree_io io = {io_send, io_after, io_now, p0};
    dht_agree_config cfg;
    dht_agree_config_default(&cfg);
    cfg.epoch = 2;
    cfg.nacceptors = 3;
    cfg.id = 1;
    cfg.deadline_ns = 1000 * MS;
    CHECK(dht_agree_propose(&io, &cfg, B("v"), 0, no_done, NULL) == -1);
    CHECK(dht_agree_propose(&io, &cfg, B("v"), DHT_AGREE_VALUE_MAX + 1, no_done, NULL) == -1);
    dht_agree_config bad = cfg;
    bad.epoch = 0;
    CHECK(dht_agree_propose(&io, &bad, B("v"), 1, no_done, NULL) == -1);
    bad = cfg;
    bad.id = 0;
    CHECK(dht_agree_propose(&io, &bad, B("v"), 1, no_done, NULL) == -1);
    bad = cfg;
    bad.nacceptors = DHT_MAX_MEMBERS + 1;
    CHECK(dht_agree_propose(&io, &bad, B("v"), 1, no_done, NULL) == -1);
    CHECK(s->nheap == 0);
    sim_free(s);

    /* Every acceptor holds epoch 3. */
    s = sim_new(1, 3, &QUIET);
    for (int i = 0; i < 3; i++)
        CHECK(dht_agree_acceptor_decide(&s->a[i].st, 3, B("c3"), 2) == 1);
    int decided = sim_propose(s, 0, 3, B("mine"), 4, 1000 * MS);
    int stale = sim_propose(s, 0, 2, B("mine"), 4, 1000 * MS);
    int behind = sim_propose(s, 0, 6, B("mine"), 4, 1000 * MS);
    sim_run(s, INT64_MAX);
    CHECK(done_with(&s->p[decided], DHT_AGREE_CHOSEN, "c3") && !s->p[decided].was_mine);
    CHECK(s->p[decided].done_at < 5 * MS); /* one answer was enough */
    CHECK(done_with(&s->p[stale], DHT_AGREE_ERR_STALE, "c3") && s->p[stale].res_epoch == 3);
    CHECK(done_with(&s->p[behind], DHT_AGREE_ERR_BEHIND, NULL) && s->p[behind].res_epoch == 3);
    sim_free(s);

    /* One acceptor lags (epoch 2): a quorum of the others still decides
     * epoch 4; then everyone installs it and slot 5 opens. */
    s = sim_new(2, 3, &QUIET);
    CHECK(dht_agree_acceptor_decide(&s->a[0].st, 2, B("c2"), 2) == 1);
    for (int i = 1; i < 3; i++)
        CHECK(dht_agree_acceptor_decide(&s->a[i].st, 3, B("c3"), 2) == 1);
    int p4 = sim_propose(s, 0, 4, B("c4"), 2, 1000 * MS);
    sim_run(s, INT64_MAX);
    CHECK(done_with(&s->p[p4], DHT_AGREE_CHOSEN, "c4") && s->p[p4].was_mine);
    CHECK(s->chosen[4] == hash_bytes(B("c4"), 2));
    for (int i = 0; i < 3; i++)
        CHECK(dht_agree_acceptor_decide(&s->a[i].st, 4, B("c4"), 2) == 1);
    int again = sim_propose(s, s->now, 4, B("late"), 4, s->now + 1000 * MS);
    int next = sim_propose(s, s->now, 5, B("c5"), 2, s->now + 1000 * MS);
    sim_run(s, INT64_MAX);
    CHECK(done_with(&s->p[again], DHT_AGREE_CHOSEN, "c4") && !s->p[again].was_mine);
    CHECK(done_with(&s->p[next], DHT_AGREE_CHOSEN, "c5") && s->p[next].was_mine);
    CHECK_EQ(s->violations, 0);
    sim_free(s);

    /* Acceptors that are all down: the deadline ends it. */
    s = sim_new(3, 3, &QUIET);
    for (int i = 0; i < 3; i++) {
        dht_agree_acceptor_free(&s->a[i].st);
        s->a[i].up = false;
    }
    int lonely = sim_propose(s, 0, 2, B("v"), 1, 300 * MS);
    sim_run(s, INT64_MAX);
    CHECK(done_with(&s->p[lonely], DHT_AGREE_ERR_TIMEOUT, NULL));
    CHECK(s->p[lonely].done_at >= 300 * MS && s->p[lonely].done_at < 400 * MS);
    sim_free(s);
}

/* Scripted losses: proposer 0's ACCEPT reaches the acceptors in
 * scenario_mask only and its ACCEPTED replies never come back (it crashes
 * right after); proposer 1 cannot reach acceptor scenario_cut. */
static bool scenario_drop(sim *s, int prop, int acc, dht_agree_type type, bool reply)
{
    if (prop == 0)
        return reply ? type == DHT_AGREE_ACCEPTED
                     : type == DHT_AGREE_ACCEPT && !(s->scenario_mask >> acc & 1);
    return prop == 1 && acc == s->scenario_cut;
}

static sim *crashed_proposer(int mask, int cut, uint64_t seed)
{
    netcfg cfg = QUIET;
    cfg.drop = scenario_drop;
    sim *s = sim_new(seed, 3, &cfg);
    s->scenario_mask = mask;
    s->scenario_cut = cut;
    sim_propose(s, 0, 2, B("A"), 1, 2000 * MS);
    push(s, 20 * MS, EV_PCRASH)->prop = 0;
    sim_run(s, 30 * MS);
    sim_propose(s, 30 * MS, 2, B("B"), 1, 2000 * MS);
    sim_run(s, INT64_MAX);
    CHECK(done_with(&s->p[0], DHT_AGREE_ERR_TIMEOUT, NULL));
    return s;
}

static void test_crashed_proposer(void)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        /* A was chosen by {0,1}; B's quorum {1,2} must find and keep it. */
        sim *s = crashed_proposer(0x3, 0, seed);
        CHECK(s->chosen[2] == hash_bytes(B("A"), 1));
        CHECK(done_with(&s->p[1], DHT_AGREE_CHOSEN, "A") && !s->p[1].was_mine);
        CHECK_EQ(s->violations, 0);
        sim_free(s);

        /* A reached acceptor 0 only (not chosen) and B's quorum {0,1} sees
         * it: B must still adopt the highest accepted value. */
        s = crashed_proposer(0x1, 2, seed);
        CHECK(s->chosen[2] == hash_bytes(B("A"), 1));
        CHECK(done_with(&s->p[1], DHT_AGREE_CHOSEN, "A") && !s->p[1].was_mine);
        sim_free(s);

        /* A reached acceptor 0 only and B's quorum {1,2} never sees it: B
         * chooses its own, and a third proposer finds B's, not A's. */
        s = crashed_proposer(0x1, 0, seed);
        CHECK(done_with(&s->p[1], DHT_AGREE_CHOSEN, "B") && s->p[1].was_mine);
        int c = sim_propose(s, s->now, 2, B("C"), 1, s->now + 2000 * MS);
        sim_run(s, INT64_MAX);
        CHECK(done_with(&s->p[c], DHT_AGREE_CHOSEN, "B") && !s->p[c].was_mine);
        CHECK(s->chosen[2] == hash_bytes(B("B"), 1));
        CHECK_EQ(s->violations, 0);
        sim_free(s);
    }
}

typedef struct {
    int violations, chosen, timeouts, finished, proposers;
    uint64_t trace;
    long stat[6];
} outcome;

/* One contended epoch with random faults, from seed alone. */
static outcome contend(uint64_t seed, int nacc, bool persist, bool calm)
{
    dht_rng r;
    dht_rng_seed(&r, dht_mix64(seed) ^ (uint64_t)nacc);
    netcfg cfg = {
        .loss = dht_rng_double(&r) * 0.3,
        .dup = dht_rng_double(&r) * 0.3,
        .refuse = 0.02,
        .delay_max = MS + (int64_t)dht_rng_below(&r, 10 * MS),
        .rpc_timeout = 20 * MS,
        .crashes = (int)dht_rng_below(&r, 7),
        .crash_until = 300 * MS,
        .down_max = 100 * MS,
        .calm = calm ? 400 * MS : INT64_MAX,
        .learn = calm || dht_rng_below(&r, 2) ? 0 : 0.6,
        .persist = persist,
    };
    if (!persist) { /* amnesia only bites when acceptors crash mid-contention */
        cfg.crashes = 20;
        cfg.down_max = 5 * MS;
    }
    sim *s = sim_new(dht_rng_next(&r), nacc, &cfg);
    int nprop = 2 + (int)dht_rng_below(&r, 3);
    for (int i = 0; i < nprop; i++) {
        char v[4096];
        int pad = (int)dht_rng_below(&r, 3000);
        int n = snprintf(v, sizeof v, "replicas=3 members=p%d:%llu;%*s", i,
                         (unsigned long long)seed, pad, "");
        int64_t start = (int64_t)dht_rng_below(&r, 30 * MS);
        sim_propose(s, start, 2, B(v), (size_t)n,
                    start + (calm ? 10000 : 1000 + (int64_t)dht_rng_below(&r, 2000)) * MS);
        /* Proposer 0 always survives, so that liveness has someone to ask. */
        if (i > 0 && dht_rng_below(&r, 4) == 0)
            push(s, (int64_t)dht_rng_below(&r, 200 * MS), EV_PCRASH)->prop = i;
    }
    sim_run(s, INT64_MAX);
    outcome o = {.violations = s->violations, .trace = s->trace, .proposers = nprop};
    memcpy(o.stat, s->stat, sizeof o.stat);
    for (int i = 0; i < nprop; i++) {
        const prop *p = &s->p[i];
        CHECK_EQ(p->dones, 1); /* done runs exactly once, whatever happened */
        o.finished++;
        o.chosen += p->outcome == DHT_AGREE_CHOSEN;
        o.timeouts += p->outcome == DHT_AGREE_ERR_TIMEOUT;
        CHECK(p->outcome == DHT_AGREE_CHOSEN || p->outcome == DHT_AGREE_ERR_TIMEOUT);
        if (calm && !p->crashed)
            CHECK(p->outcome == DHT_AGREE_CHOSEN && p->done_at < p->cfg.deadline_ns);
    }
    sim_free(s);
    return o;
}

static void test_safety(void)
{
    int runs = 0, chosen = 0, timeouts = 0, props = 0;
    long stat[6] = {0};
    for (int nacc = 3; nacc <= 5; nacc += 2) {
        for (uint64_t seed = 1; seed <= 8000; seed++) {
            outcome o = contend(seed, nacc, true, false);
            if (o.violations)
                fprintf(stderr, "seed %llu, %d acceptors: %d violations\n",
                        (unsigned long long)seed, nacc, o.violations);
            CHECK_EQ(o.violations, 0);
            runs++;
            chosen += o.chosen;
            timeouts += o.timeouts;
            props += o.proposers;
            for (int i = 0; i < 6; i++)
                stat[i] += o.stat[i];
        }
    }
    printf("  safety: %d runs, %d proposers: %d chose, %d timed out\n ", runs, props, chosen,
           timeouts);
    for (int i = 0; i < 6; i++)
        printf(" %s %ld%s", STATS[i], stat[i], i < 5 ? "," : "\n");
    CHECK(chosen > props / 2); /* the faults leave room for progress */
}

static void test_liveness(void)
{
    int props = 0;
    for (int nacc = 3; nacc <= 5; nacc += 2)
        for (uint64_t seed = 1; seed <= 500; seed++) {
            outcome o = contend(seed, nacc, true, true);
            CHECK_EQ(o.violations, 0);
            props += o.proposers;
        }
    printf("  liveness: 1000 runs, %d proposers, every surviving one chose in time\n", props);
}

/* The checker must have teeth: without persistence, crashes make
 * acceptors forget promises and acceptances, and two values get chosen. */
static void test_checker_catches_amnesia(void)
{
    int bad = 0, runs = 0;
    for (uint64_t seed = 1; seed <= 3000 && bad < 5; seed++, runs++)
        bad += contend(seed, 3, false, false).violations > 0;
    printf("  amnesia (no persistence): safety broken in %d of %d runs\n", bad, runs);
    CHECK(bad > 0);
}

static void test_deterministic(void)
{
    outcome a = contend(42, 5, true, false), b = contend(42, 5, true, false);
    outcome c = contend(43, 5, true, false);
    CHECK(a.trace == b.trace && a.chosen == b.chosen);
    CHECK(a.trace != c.trace);
}

static const test_case tests[] = {
    {"acceptor", test_acceptor},
    {"encoding", test_encoding},
    {"answers", test_answers},
    {"crashed_proposer", test_crashed_proposer},
    {"safety", test_safety},
    {"liveness", test_liveness},
    {"checker_catches_amnesia", test_checker_catches_amnesia},
    {"deterministic", test_deterministic},
    {0},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
