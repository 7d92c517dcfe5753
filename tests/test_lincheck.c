/*
 * test_lincheck.c - unit tests for the linearizability checker.
 *
 * Hand-made histories (good and bad), parser/loader errors, randomized
 * histories from a simulated atomic register (must pass) with mutations
 * (must fail), a cross-check against a naive definition-level checker on
 * small random histories, and a larger performance-style run.
 * Prints "N passed, M failed"; exits nonzero on any failure.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkstemp, open_memstream, clock_gettime */
#endif

#include "lincheck.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define U DHT_HISTORY_RET_UNKNOWN

static int n_pass, n_fail;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (cond) {                                                          \
            n_pass++;                                                        \
        } else {                                                             \
            n_fail++;                                                        \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                      \
            printf(__VA_ARGS__);                                             \
            printf("\n");                                                    \
        }                                                                    \
    } while (0)

/* ---------------------------------------------------------------------
 * History building
 * --------------------------------------------------------------------- */

typedef struct {
    dht_history_op *v;
    size_t n, cap;
} history;

static void h_add(history *h, int64_t client, int is_put, int64_t key,
                  int64_t value, int64_t call, int64_t ret, int ok)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->v = realloc(h->v, h->cap * sizeof *h->v);
        if (h->v == NULL) {
            perror("realloc");
            exit(2);
        }
    }
    h->v[h->n++] = (dht_history_op){client, is_put, key, value, call, ret, ok};
}

static void put(history *h, int64_t c, int64_t k, int64_t v, int64_t call,
                int64_t ret, int ok)
{
    h_add(h, c, 1, k, v, call, ret, ok);
}

static void get(history *h, int64_t c, int64_t k, int64_t v, int64_t call,
                int64_t ret, int ok)
{
    h_add(h, c, 0, k, v, call, ret, ok);
}

static void h_free(history *h)
{
    free(h->v);
    memset(h, 0, sizeof *h);
}

/* Verdict of a history; also returns the result when res != NULL (the
 * caller then frees it). */
static int verdict_of(const history *h, uint64_t budget, dht_lincheck_result *res)
{
    dht_lincheck_result local;
    int v;

    if (res == NULL)
        res = &local;
    v = dht_lincheck_budget(h->v, h->n, budget, res);
    if (res == &local)
        dht_lincheck_result_free(&local);
    return v;
}

#define EXPECT(h, want, name)                                                \
    do {                                                                     \
        int got_ = verdict_of((h), 0, NULL);                                 \
        CHECK(got_ == (want), "%s: got %s, want %s", (name),                 \
              dht_lincheck_verdict_str(got_),                                \
              dht_lincheck_verdict_str(want));                               \
    } while (0)

/* ---------------------------------------------------------------------
 * Naive reference checker: the definition, by brute force (small only).
 * --------------------------------------------------------------------- */

static int is_definite(const dht_history_op *o)
{
    if (!o->is_put)
        return o->ok == 1;
    return o->ok == 1 && o->ret != U;
}

static int is_present(const dht_history_op *o)
{
    if (!o->is_put)
        return o->ok == 1;
    return o->ok != 0; /* definite or unknown (optional) put */
}

/* Failed states of the brute-force search, for register values 0..15
 * (the small tests use no others); plain memoization of the definition. */
#define NAIVE_MAX 12
static unsigned char naive_failed[1u << NAIVE_MAX][16];

static int naive_rec(const dht_history_op *o, int n, unsigned used, int64_t v)
{
    int64_t m = INT64_MAX;
    int done = 1, memo = v >= 0 && v < 16;

    if (memo && naive_failed[used][v])
        return 0;
    for (int i = 0; i < n; i++)
        if (is_definite(&o[i]) && !(used & (1u << i))) {
            done = 0;
            if (o[i].ret < m)
                m = o[i].ret;
        }
    if (done)
        return 1;
    for (int i = 0; i < n; i++) {
        if ((used & (1u << i)) || !is_present(&o[i]) || o[i].call > m)
            continue;
        if (o[i].is_put) {
            if (naive_rec(o, n, used | (1u << i), o[i].value))
                return 1;
        } else if (o[i].value == v &&
                   naive_rec(o, n, used | (1u << i), v)) {
            return 1;
        }
    }
    if (memo)
        naive_failed[used][v] = 1;
    return 0;
}

/* Single-key histories of at most NAIVE_MAX ops only. */
static int naive_check(const history *h)
{
    if (h->n > NAIVE_MAX) {
        printf("naive_check: history too long\n");
        exit(2);
    }
    memset(naive_failed, 0, sizeof naive_failed);
    return naive_rec(h->v, (int)h->n, 0, 0) ? DHT_LIN_OK : DHT_LIN_VIOLATION;
}

/* ---------------------------------------------------------------------
 * Random numbers (deterministic)
 * --------------------------------------------------------------------- */

typedef struct {
    uint64_t s;
} rng;

static uint64_t rnd(rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

static int64_t rrange(rng *r, int64_t lo, int64_t hi) /* inclusive */
{
    return lo + (int64_t)(rnd(r) % (uint64_t)(hi - lo + 1));
}

/* ---------------------------------------------------------------------
 * Simulated atomic register: produces linearizable histories.
 * --------------------------------------------------------------------- */

typedef struct {
    int nclients, nops, nunknown, nfailed, nfailed_gets;
    int value_domain; /* 0: every put writes a fresh value */
    int64_t max_dur;
} gen_params;

typedef struct {
    int64_t lin; /* linearization point, INT64_MAX = never */
    size_t idx;
} lin_ent;

static int cmp_lin(const void *a, const void *b)
{
    const lin_ent *x = a, *y = b;

    if (x->lin != y->lin)
        return x->lin < y->lin ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Append a linearizable history of one key to h. */
static void gen_history(history *h, rng *r, int64_t key, const gen_params *gp)
{
    size_t base = h->n;
    int64_t *cursor = calloc((size_t)gp->nclients, sizeof *cursor);
    lin_ent *le = calloc((size_t)gp->nops, sizeof *le);
    int64_t next_value = 1, v = 0;

    for (int c = 0; c < gp->nclients; c++)
        cursor[c] = rrange(r, 0, 50);
    for (int i = 0; i < gp->nops; i++) {
        int c = i % gp->nclients;
        int64_t call = cursor[c] + rrange(r, 0, 20);
        int64_t dur = rrange(r, 0, gp->max_dur);
        int is_put = (int)(rnd(r) % 2);
        int64_t value = 0;

        if (rnd(r) % 50 == 0)
            dur *= 5; /* the occasional slow op */
        if (is_put)
            value = gp->value_domain ? rrange(r, 1, gp->value_domain)
                                     : next_value++;
        h_add(h, c, is_put, key, value, call, call + dur, 1);
        le[i].lin = call + rrange(r, 0, dur);
        le[i].idx = base + (size_t)i;
        cursor[c] = call + dur + 1;
    }
    /* Unknown puts: the client never learnt the outcome.  Half of them
     * never take effect, the others take effect at some point after the
     * call, possibly long after. */
    for (int k = 0; k < gp->nunknown; k++) {
        int i = (int)(rnd(r) % (uint64_t)gp->nops);
        dht_history_op *o = &h->v[base + (size_t)i];

        if (!o->is_put || o->ok != 1)
            continue;
        switch (rnd(r) % 3) {
        case 0: o->ok = -1; o->ret = U; break;
        case 1: o->ok = -1; break;         /* answered, but ambiguously */
        default: o->ret = U; break;        /* ok, but no return time */
        }
        le[i].lin = rnd(r) % 2 ? INT64_MAX : o->call + rrange(r, 0, 3000);
    }
    for (int k = 0; k < gp->nfailed; k++) {
        int i = (int)(rnd(r) % (uint64_t)gp->nops);
        dht_history_op *o = &h->v[base + (size_t)i];

        if (o->is_put && o->ok == 1 && o->ret != U) {
            o->ok = 0;
            le[i].lin = INT64_MAX;
        }
    }
    for (int k = 0; k < gp->nfailed_gets; k++) {
        int i = (int)(rnd(r) % (uint64_t)gp->nops);
        dht_history_op *o = &h->v[base + (size_t)i];

        if (!o->is_put)
            o->ok = rnd(r) % 2 ? 0 : -1; /* its value will be garbage */
    }
    qsort(le, (size_t)gp->nops, sizeof *le, cmp_lin);
    for (int i = 0; i < gp->nops; i++) {
        dht_history_op *o = &h->v[le[i].idx];

        if (le[i].lin == INT64_MAX)
            continue;
        if (o->is_put)
            v = o->value;
        else
            o->value = o->ok == 1 ? v : 987654321;
    }
    free(cursor);
    free(le);
}

/* ---------------------------------------------------------------------
 * Hand-made histories
 * --------------------------------------------------------------------- */

static void test_basic(void)
{
    history h = {0};

    put(&h, 1, 1, 1, 0, 10, 1);
    get(&h, 1, 1, 1, 20, 30, 1);
    put(&h, 1, 1, 2, 40, 50, 1);
    get(&h, 2, 1, 2, 60, 70, 1);
    EXPECT(&h, DHT_LIN_OK, "sequential");
    h_free(&h);

    EXPECT(&h, DHT_LIN_OK, "empty history");

    get(&h, 1, 1, 0, 0, 10, 1);
    put(&h, 2, 1, 5, 20, 30, 1);
    EXPECT(&h, DHT_LIN_OK, "read 0 before any put");
    h_free(&h);

    put(&h, 2, 1, 5, 0, 30, 1);
    get(&h, 1, 1, 0, 10, 20, 1);
    EXPECT(&h, DHT_LIN_OK, "read 0 concurrent with a put");
    h_free(&h);

    put(&h, 2, 1, 5, 0, 10, 1);
    get(&h, 1, 1, 0, 20, 30, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "read 0 after a completed put");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 10, 1);
    put(&h, 1, 1, 2, 20, 30, 1);
    get(&h, 2, 1, 1, 40, 50, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "stale read after a completed put");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 10, 1);
    get(&h, 2, 1, 7, 20, 30, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "read of a value never written");
    h_free(&h);

    get(&h, 2, 1, 7, 0, 10, 1);
    put(&h, 1, 1, 7, 20, 30, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "read of a value written later");
    h_free(&h);
}

static void test_concurrent_puts(void)
{
    history h = {0};

    for (int seen = 1; seen <= 2; seen++) {
        put(&h, 1, 1, 1, 0, 100, 1);
        put(&h, 2, 1, 2, 0, 100, 1);
        get(&h, 3, 1, seen, 200, 210, 1);
        get(&h, 3, 1, seen, 300, 310, 1);
        EXPECT(&h, DHT_LIN_OK, "concurrent puts, reads see either");
        h_free(&h);
    }
    put(&h, 1, 1, 1, 0, 100, 1);
    put(&h, 2, 1, 2, 0, 100, 1);
    get(&h, 3, 1, 1, 200, 210, 1);
    get(&h, 3, 1, 2, 300, 310, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "reads disagree after both puts done");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 100, 1);
    put(&h, 2, 1, 2, 0, 100, 1);
    get(&h, 3, 1, 1, 10, 20, 1);
    get(&h, 4, 1, 2, 30, 40, 1);
    get(&h, 3, 1, 2, 150, 160, 1);
    EXPECT(&h, DHT_LIN_OK, "reads during concurrent puts see 1 then 2");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 100, 1);
    get(&h, 2, 1, 0, 10, 20, 1);
    get(&h, 3, 1, 1, 30, 40, 1);
    EXPECT(&h, DHT_LIN_OK, "old then new during a put");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 100, 1);
    get(&h, 2, 1, 1, 10, 20, 1);
    get(&h, 3, 1, 0, 30, 40, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "new then old in real-time order");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 100, 1);
    get(&h, 2, 1, 1, 10, 40, 1);
    get(&h, 3, 1, 0, 30, 50, 1);
    EXPECT(&h, DHT_LIN_OK, "new and old from overlapping reads");
    h_free(&h);
}

static void test_unknown_and_failed(void)
{
    history h = {0};

    put(&h, 1, 1, 5, 0, U, -1);
    get(&h, 2, 1, 5, 100, 110, 1);
    EXPECT(&h, DHT_LIN_OK, "unknown put read later");
    h_free(&h);

    put(&h, 1, 1, 5, 0, 20, -1);
    get(&h, 2, 1, 0, 30, 40, 1);
    get(&h, 2, 1, 5, 100, 110, 1);
    EXPECT(&h, DHT_LIN_OK, "unknown put (with return) takes effect late");
    h_free(&h);

    put(&h, 1, 1, 5, 0, U, 1);
    get(&h, 2, 1, 0, 100, 110, 1);
    EXPECT(&h, DHT_LIN_OK, "ok put without return time may be late");
    h_free(&h);

    put(&h, 1, 1, 5, 0, U, -1);
    get(&h, 2, 1, 0, 100, 110, 1);
    EXPECT(&h, DHT_LIN_OK, "unknown put never takes effect");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 10, 1);
    put(&h, 2, 1, 2, 20, U, -1);
    get(&h, 3, 1, 2, 30, 40, 1);
    get(&h, 3, 1, 1, 50, 60, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "flip-flop through an unknown put");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 10, 1);
    put(&h, 2, 1, 2, 20, U, -1);
    get(&h, 3, 1, 1, 30, 40, 1);
    get(&h, 3, 1, 2, 50, 60, 1);
    get(&h, 3, 1, 2, 70, 80, 1);
    EXPECT(&h, DHT_LIN_OK, "unknown put applied between reads");
    h_free(&h);

    put(&h, 1, 1, 7, 0, 10, 0);
    get(&h, 2, 1, 7, 20, 30, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "ok=false put whose value is read");
    h_free(&h);

    put(&h, 1, 1, 7, 0, 10, 0);
    get(&h, 2, 1, 0, 20, 30, 1);
    get(&h, 2, 1, 99, 40, 50, 0);  /* failed get: no information */
    get(&h, 2, 1, 98, 60, U, -1);  /* unknown get: no information */
    EXPECT(&h, DHT_LIN_OK, "failed put and failed gets are ignored");
    h_free(&h);

    put(&h, 1, 1, 3, 0, 10, 1);
    get(&h, 2, 1, 3, 20, U, 1);
    EXPECT(&h, DHT_LIN_OK, "ok get without a return time");
    h_free(&h);

    put(&h, 1, 1, 3, 0, 10, 1);
    put(&h, 1, 1, 4, 20, 30, 1);
    get(&h, 2, 1, 3, 40, U, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "ok get without return time, stale");
    h_free(&h);

    /* Two unknown puts of the same value: either can serve the read. */
    put(&h, 1, 1, 8, 0, U, -1);
    put(&h, 2, 1, 8, 5, U, -1);
    put(&h, 3, 1, 1, 10, 20, 1);
    get(&h, 4, 1, 8, 30, 40, 1);
    put(&h, 3, 1, 2, 50, 60, 1);
    get(&h, 4, 1, 2, 70, 80, 1);
    get(&h, 4, 1, 8, 90, 100, 1);
    EXPECT(&h, DHT_LIN_OK, "two unknown puts of one value, both used");
    h_free(&h);

    put(&h, 1, 1, 8, 0, U, -1);
    put(&h, 3, 1, 1, 10, 20, 1);
    get(&h, 4, 1, 8, 30, 40, 1);
    put(&h, 3, 1, 2, 50, 60, 1);
    get(&h, 4, 1, 2, 70, 80, 1);
    get(&h, 4, 1, 8, 90, 100, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "one unknown put cannot be used twice");
    h_free(&h);
}

static void test_unread_puts(void)
{
    history h = {0};

    /* Needs the closure of absorbed unread puts: p1 and p2 must both come
     * before the put of 5 (p1 precedes p2, p2 precedes the read). */
    put(&h, 1, 1, 100, 0, 1, 1);
    put(&h, 2, 1, 101, 2, 3, 1);
    put(&h, 3, 1, 5, 0, 10, 1);
    get(&h, 4, 1, 5, 4, 5, 1);
    EXPECT(&h, DHT_LIN_OK, "chain of unread puts before a read put");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 10, 1);
    put(&h, 2, 1, 99, 20, 30, 1);
    get(&h, 3, 1, 1, 40, 50, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "unread put completed before the read");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 10, 1);
    put(&h, 2, 1, 99, 20, 60, 1);
    get(&h, 3, 1, 1, 40, 50, 1);
    EXPECT(&h, DHT_LIN_OK, "unread put concurrent with the read");
    h_free(&h);

    /* The read of 7 needs the unknown put even though the register
     * already holds 7: the unread put p must come first. */
    put(&h, 1, 1, 7, -10, -5, 1);
    put(&h, 2, 1, 50, 0, 1, 1);
    get(&h, 3, 1, 7, 2, 3, 1);
    put(&h, 4, 1, 7, -20, U, -1);
    EXPECT(&h, DHT_LIN_OK, "unknown put re-establishes a value");
    h_free(&h);

    put(&h, 1, 1, 7, -10, -5, 1);
    put(&h, 2, 1, 50, 0, 1, 1);
    get(&h, 3, 1, 7, 2, 3, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "same without the unknown put");
    h_free(&h);

    /* Equal timestamps count as concurrent. */
    put(&h, 1, 1, 1, 0, 10, 1);
    get(&h, 2, 1, 0, 10, 20, 1);
    EXPECT(&h, DHT_LIN_OK, "touching intervals are concurrent");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 10, 1);
    get(&h, 2, 1, 0, 11, 20, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "disjoint intervals are ordered");
    h_free(&h);

    /* Repeated values. */
    put(&h, 1, 1, 1, 0, 10, 1);
    put(&h, 1, 1, 2, 20, 30, 1);
    put(&h, 1, 1, 1, 40, 50, 1);
    get(&h, 2, 1, 1, 60, 70, 1);
    EXPECT(&h, DHT_LIN_OK, "value written twice, read after the second");
    h_free(&h);

    put(&h, 1, 1, 1, 0, 10, 1);
    put(&h, 1, 1, 2, 20, 30, 1);
    put(&h, 1, 1, 1, 40, 50, 1);
    get(&h, 2, 1, 1, 32, 38, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "value written twice, read in between");
    h_free(&h);

    /* Negative keys, values and times. */
    put(&h, -1, -5, -42, -100, -90, 1);
    get(&h, -2, -5, -42, -80, -70, 1);
    EXPECT(&h, DHT_LIN_OK, "negative numbers");
    h_free(&h);
}

static void test_multi_key(void)
{
    history h = {0};
    dht_lincheck_result res;
    int v;

    put(&h, 1, 10, 1, 0, 10, 1);
    get(&h, 2, 10, 1, 20, 30, 1);
    put(&h, 1, 20, 1, 0, 10, 1);
    put(&h, 1, 20, 2, 20, 30, 1);
    get(&h, 2, 20, 1, 40, 50, 1); /* stale: key 20 is bad */
    put(&h, 1, 30, 3, 0, 10, 1);
    get(&h, 2, 30, 3, 20, 30, 1);
    get(&h, 2, 10, 0, 5, 8, 1);
    v = verdict_of(&h, 0, &res);
    CHECK(v == DHT_LIN_VIOLATION, "multi-key: got %d", v);
    CHECK(res.key == 20, "multi-key: failing key %" PRId64, res.key);
    CHECK(res.keys_checked == 3 && res.keys_failed == 1,
          "multi-key: keys %zu failed %zu", res.keys_checked,
          res.keys_failed);
    CHECK(res.nsub == 3 && res.sub != NULL, "multi-key: sub %zu", res.nsub);
    for (size_t i = 0; res.sub && i < res.nsub; i++)
        CHECK(h.v[res.sub[i]].key == 20, "multi-key: sub op of wrong key");
    CHECK(res.sub && h.v[res.sub[0]].call <= h.v[res.sub[1]].call &&
              h.v[res.sub[1]].call <= h.v[res.sub[2]].call,
          "multi-key: sub not sorted by call");
    CHECK(res.reason != NULL, "multi-key: no reason");
    dht_lincheck_result_free(&res);
    dht_lincheck_result_free(&res); /* idempotent */

    /* A second, smaller bad key (2 ops) is the one reported. */
    put(&h, 1, 40, 1, 0, 10, 1);
    get(&h, 2, 40, 0, 20, 30, 1);
    v = verdict_of(&h, 0, &res);
    CHECK(v == DHT_LIN_VIOLATION && res.key == 40 && res.key_ops == 2 &&
              res.keys_failed == 2,
          "multi-key smallest: key %" PRId64 " ops %zu failed %zu", res.key,
          res.key_ops, res.keys_failed);
    CHECK(res.bad_op == h.n - 1, "multi-key: bad_op %zu", res.bad_op);
    dht_lincheck_result_free(&res);

    /* Equal size: the smaller key wins. */
    put(&h, 1, 5, 1, 0, 10, 1);
    get(&h, 2, 5, 0, 20, 30, 1);
    v = verdict_of(&h, 0, &res);
    CHECK(v == DHT_LIN_VIOLATION && res.key == 5,
          "multi-key tie: key %" PRId64, res.key);
    dht_lincheck_result_free(&res);
    h_free(&h);

    put(&h, 1, 1, 1, 0, 10, 1);
    put(&h, 1, 2, 2, 0, 10, 1);
    get(&h, 2, 1, 1, 20, 30, 1);
    get(&h, 2, 2, 2, 20, 30, 1);
    v = verdict_of(&h, 0, &res);
    CHECK(v == DHT_LIN_OK && res.keys_checked == 2 && res.ops_checked == 4 &&
              res.sub == NULL,
          "multi-key ok: v %d keys %zu ops %zu", v, res.keys_checked,
          res.ops_checked);
    dht_lincheck_result_free(&res);
    h_free(&h);
}

/* The reason names the right kind of problem and points at the read. */
static void expect_reason(history *h, const char *needle, size_t bad_op,
                          const char *name)
{
    dht_lincheck_result res;
    int v = verdict_of(h, 0, &res);

    CHECK(v == DHT_LIN_VIOLATION && res.reason != NULL &&
              strstr(res.reason, needle) != NULL && res.bad_op == bad_op,
          "%s: verdict %d reason <%s> bad_op %zu (want <%s> at %zu)", name,
          v, res.reason ? res.reason : "", res.bad_op, needle, bad_op);
    dht_lincheck_result_free(&res);
    h_free(h);
}

static void test_reasons(void)
{
    history h = {0};
    dht_lincheck_result res;
    int v;

    put(&h, 1, 1, 1, 0, 10, 1);
    get(&h, 2, 1, 7, 20, 30, 1);
    expect_reason(&h, "never written", 1, "reason never written");

    put(&h, 1, 1, 7, 0, 10, 0);
    get(&h, 2, 1, 7, 20, 30, 1);
    expect_reason(&h, "only writes failed", 1, "reason failed write");

    get(&h, 2, 1, 7, 0, 10, 1);
    put(&h, 1, 1, 7, 20, 30, 1);
    expect_reason(&h, "only after the read", 0, "reason future write");

    put(&h, 1, 1, 1, 0, 10, 1);
    put(&h, 1, 1, 2, 20, 30, 1);
    get(&h, 2, 1, 1, 40, 50, 1);
    expect_reason(&h, "stale read", 2, "reason stale read");

    put(&h, 1, 1, 5, 0, 10, 1);
    get(&h, 2, 1, 0, 20, 30, 1);
    expect_reason(&h, "initial value 0", 1, "reason initial value");

    /* Found by the search, not the prechecks: it reports how far it got
     * and the op it could not place. */
    put(&h, 1, 1, 1, 0, 100, 1);
    put(&h, 2, 1, 2, 0, 100, 1);
    get(&h, 3, 1, 1, 200, 210, 1);
    get(&h, 3, 1, 2, 300, 310, 1);
    v = verdict_of(&h, 0, &res);
    CHECK(v == DHT_LIN_VIOLATION && res.lin_need == 4 &&
              res.lin_best >= 1 && res.lin_best < 4 && res.bad_op < h.n &&
              strstr(res.reason, "no linearization") != NULL,
          "search violation details: verdict %d need %zu best %zu bad %zu",
          v, res.lin_need, res.lin_best, res.bad_op);
    dht_lincheck_result_free(&res);
    h_free(&h);
}

static void test_budget(void)
{
    history h = {0};
    dht_lincheck_result res;
    int v;

    /* Budget 1 holds only the initial state, so any history that needs a
     * single search step is inconclusive. */
    put(&h, 1, 1, 1, 0, 10, 1);
    get(&h, 2, 1, 1, 20, 30, 1);
    put(&h, 1, 1, 2, 40, 50, 1);
    get(&h, 2, 1, 2, 60, 70, 1);
    put(&h, 1, 2, 1, 0, 10, 1); /* key 2 needs no search at all */
    v = verdict_of(&h, 1, &res);
    CHECK(v == DHT_LIN_INCONCLUSIVE && res.keys_inconclusive == 1 &&
              res.key == 1 && res.sub == NULL && res.reason != NULL,
          "budget 1: verdict %d", v);
    dht_lincheck_result_free(&res);
    EXPECT(&h, DHT_LIN_OK, "same history, default budget");

    /* A violation elsewhere wins over an inconclusive key. */
    put(&h, 1, 3, 1, 0, 10, 1);
    get(&h, 2, 3, 0, 20, 30, 1);
    v = verdict_of(&h, 1, &res);
    CHECK(v == DHT_LIN_VIOLATION && res.key == 3 &&
              res.keys_inconclusive == 1,
          "budget 1 + bad key: verdict %d key %" PRId64, v, res.key);
    dht_lincheck_result_free(&res);
    h_free(&h);

    /* Six concurrent puts read back in reverse order after all complete:
     * every order of the puts is tried before the search gives up. */
    for (int i = 0; i < 6; i++)
        put(&h, i, 1, i + 1, 0, 100, 1);
    for (int i = 0; i < 6; i++)
        get(&h, 10 + i, 1, 6 - i, 110 + 20 * i, 120 + 20 * i, 1);
    EXPECT(&h, DHT_LIN_VIOLATION, "6 puts, reads 6..1 after all done");
    h_free(&h);
}

static void test_print(void)
{
    history h = {0};
    size_t idx[3] = {0, 1, 2};
    char *buf = NULL;
    size_t len = 0;
    FILE *f;

    put(&h, 1, 1, 42, 1000000000, 1001500000, 1);
    put(&h, 2, 1, 43, 1000250000, U, -1);
    get(&h, 3, 1, 42, 1002000000, 1003000000, 1);
    f = open_memstream(&buf, &len);
    if (f == NULL) {
        CHECK(0, "open_memstream");
        h_free(&h);
        return;
    }
    dht_history_print(f, h.v, idx, 3);
    fclose(f);
    CHECK(strstr(buf, "1.500") != NULL, "print: no 1.500 in\n%s", buf);
    CHECK(strstr(buf, "0.250") != NULL, "print: no 0.250 in\n%s", buf);
    CHECK(strstr(buf, "UNKNOWN") != NULL, "print: no UNKNOWN in\n%s", buf);
    CHECK(strstr(buf, " ? ") != NULL, "print: no ? in\n%s", buf);
    free(buf);
    h_free(&h);
}

/* ---------------------------------------------------------------------
 * Parser and loader
 * --------------------------------------------------------------------- */

static void test_parse_good(void)
{
    dht_history_op o;
    char err[256];
    int r;

    r = dht_history_parse_line("{\"client\":3,\"op\":\"put\",\"key\":17,"
                               "\"value\":42,\"call\":123456789,"
                               "\"return\":123459999,\"ok\":true}\n",
                               &o, err, sizeof err);
    CHECK(r == 0 && o.client == 3 && o.is_put && o.key == 17 &&
              o.value == 42 && o.call == 123456789 && o.ret == 123459999 &&
              o.ok == 1,
          "parse canonical line: r=%d %s", r, err);

    r = dht_history_parse_line(
        "  { \"ok\" : null ,\"return\":null, \"call\" : -5, \"value\": -7,"
        " \"key\":-9223372036854775808 , \"op\":\"get\",\"client\":0 } \r\n",
        &o, err, sizeof err);
    CHECK(r == 0 && !o.is_put && o.key == INT64_MIN && o.value == -7 &&
              o.call == -5 && o.ret == U && o.ok == -1,
          "parse reordered/whitespace/null: r=%d %s", r, err);

    r = dht_history_parse_line(
        "{\"client\":1,\"op\":\"get\",\"key\":1,\"value\":null,\"call\":1,"
        "\"return\":2,\"ok\":false,\"note\":\"a \\\"q\\\" \\u00e9\","
        "\"meta\":{\"a\":[1,2.5e3,null,true,{}],\"b\":[]}}",
        &o, err, sizeof err);
    CHECK(r == 0 && o.ok == 0 && o.value == 0,
          "parse extra fields, null value of a failed get: r=%d %s", r, err);

    r = dht_history_parse_line("{\"client\":9223372036854775807,\"op\":\"put\""
                               ",\"key\":0,\"value\":0,\"call\":0,\"return\":"
                               "0,\"ok\":true}",
                               &o, err, sizeof err);
    CHECK(r == 0 && o.client == INT64_MAX, "parse INT64_MAX: r=%d %s", r,
          err);

    CHECK(dht_history_parse_line("", &o, err, sizeof err) == 1, "blank 1");
    CHECK(dht_history_parse_line(" \t \r\n", &o, err, sizeof err) == 1,
          "blank 2");
}

static void expect_parse_error(const char *line, const char *needle)
{
    dht_history_op o;
    char err[256] = "";
    int r = dht_history_parse_line(line, &o, err, sizeof err);

    CHECK(r == -1 && strstr(err, needle) != NULL &&
              strstr(err, "column") != NULL,
          "parse error for <%s>: r=%d err=<%s>, want <%s>", line, r, err,
          needle);
}

static void test_parse_bad(void)
{
    const char *good_tail = ",\"key\":1,\"value\":1,\"call\":1,"
                            "\"return\":2,\"ok\":true}";
    char line[512];

    expect_parse_error("{\"client\":1", "expected");
    expect_parse_error("[1,2]", "expected '{'");
    expect_parse_error("not json", "expected '{'");
    expect_parse_error("{\"client\":1,\"op\":\"put\",\"key\":1,\"value\":1,"
                       "\"return\":2,\"ok\":true}",
                       "missing field \"call\"");
    snprintf(line, sizeof line, "{\"client\":1,\"op\":\"cas\"%s", good_tail);
    expect_parse_error(line, "\"op\" must be");
    snprintf(line, sizeof line, "{\"client\":1.5,\"op\":\"put\"%s",
             good_tail);
    expect_parse_error(line, "integer");
    snprintf(line, sizeof line,
             "{\"client\":99999999999999999999,\"op\":\"put\"%s", good_tail);
    expect_parse_error(line, "does not fit");
    snprintf(line, sizeof line, "{\"client\":1,\"client\":2,\"op\":\"put\"%s",
             good_tail);
    expect_parse_error(line, "duplicate field");
    snprintf(line, sizeof line, "{\"client\":1,\"op\":\"put\"%s x",
             good_tail);
    expect_parse_error(line, "after the object");
    snprintf(line, sizeof line, "{\"client\":1,\"op\":\"put\"%s,", good_tail);
    expect_parse_error(line, "after the object");
    expect_parse_error("{\"client\":1,\"op\":\"put\",\"key\":1,\"value\":1,"
                       "\"call\":5,\"return\":2,\"ok\":true}",
                       "before \"call\"");
    expect_parse_error("{\"client\":1,\"op\":\"put\",\"key\":1,\"value\":null,"
                       "\"call\":1,\"return\":2,\"ok\":true}",
                       "may be null only");
    expect_parse_error("{\"client\":1,\"op\":\"put\",\"key\":1,\"value\":1,"
                       "\"call\":1,\"return\":2,\"ok\":\"yes\"}",
                       "\"ok\" must be");
    expect_parse_error("{\"client\":1,\"op\":\"put\",\"key\":1,\"value\":1,"
                       "\"call\":null,\"return\":2,\"ok\":true}",
                       "must not be null");
    expect_parse_error("{\"client\":1,\"op\":\"put\",\"key\":1,\"value\":1,"
                       "\"call\":1,\"return\":2,\"ok\":nul}",
                       "\"ok\" must be");
    expect_parse_error("{\"client\":1,\"op\":\"put\",\"key\":01,\"value\":1,"
                       "\"call\":1,\"return\":2,\"ok\":true}",
                       "leading zeros");
    expect_parse_error("{\"client\":1,\"op\":\"pu", "unterminated string");
    expect_parse_error("{\"client\" 1}", "expected ':'");
    expect_parse_error("{\"client\":1 \"op\":\"put\"}", "expected ','");
    expect_parse_error("{\"client\":1,\"x\":[1,}", "expected a value");
    expect_parse_error("{}", "missing field");
}

static void test_long_line(void)
{
    size_t pad = 200000;
    char *line = malloc(pad + 256);
    dht_history_op o;
    char err[256];
    int n, r;

    n = sprintf(line, "{\"client\":1,\"op\":\"put\",\"key\":1,\"pad\":\"");
    memset(line + n, 'x', pad);
    sprintf(line + (size_t)n + pad,
            "\",\"value\":1,\"call\":1,\"return\":2,\"ok\":true}");
    r = dht_history_parse_line(line, &o, err, sizeof err);
    CHECK(r == 0 && o.value == 1, "long line: r=%d %s", r, err);
    free(line);
}

static char *write_temp(const char *content)
{
    char *path = strdup("/tmp/test_lincheck_XXXXXX");
    int fd = mkstemp(path);
    FILE *f;

    if (fd < 0) {
        perror("mkstemp");
        exit(2);
    }
    f = fdopen(fd, "w");
    fputs(content, f);
    fclose(f);
    return path;
}

static void test_load(void)
{
    const char *l1 = "{\"client\":1,\"op\":\"put\",\"key\":1,\"value\":1,"
                     "\"call\":0,\"return\":10,\"ok\":true}\n";
    const char *l2 = "{\"client\":2,\"op\":\"get\",\"key\":1,\"value\":1,"
                     "\"call\":20,\"return\":30,\"ok\":true}\n";
    char good[1024], bad[1024], err[512] = "";
    char *p1, *p2, *p3;
    dht_history_op *ops = NULL;
    size_t n = 0;
    int r;

    snprintf(good, sizeof good, "%s\n   \n%s", l1, l2);
    snprintf(bad, sizeof bad, "%s\n{\"client\":1,\"op\":\"put\"}\n%s", l1,
             l2);
    p1 = write_temp(good);
    p2 = write_temp(bad);
    p3 = write_temp("");

    r = dht_history_load(p1, &ops, &n, err, sizeof err);
    CHECK(r == 0 && n == 2 && ops[1].call == 20, "load good: r=%d n=%zu %s",
          r, n, err);
    r = dht_history_load(p1, &ops, &n, err, sizeof err);
    CHECK(r == 0 && n == 4 && ops[3].call == 20, "load merge: r=%d n=%zu", r,
          n);
    r = dht_history_load(p3, &ops, &n, err, sizeof err);
    CHECK(r == 0 && n == 4, "load empty file: r=%d n=%zu", r, n);
    r = dht_history_load(p2, &ops, &n, err, sizeof err);
    {
        char want[256];

        snprintf(want, sizeof want, "%s:3:", p2);
        CHECK(r == -1 && strstr(err, want) != NULL &&
                  strstr(err, "missing field") != NULL && n == 4,
              "load bad: r=%d n=%zu err=<%s>", r, n, err);
    }
    r = dht_history_load("/nonexistent/x.jsonl", &ops, &n, err, sizeof err);
    CHECK(r == -1 && strstr(err, "/nonexistent/x.jsonl") != NULL && n == 4,
          "load missing: r=%d err=<%s>", r, err);
    CHECK(dht_lincheck(ops, n, &(dht_lincheck_result){0}) == DHT_LIN_OK,
          "loaded history is linearizable");
    free(ops);
    unlink(p1);
    unlink(p2);
    unlink(p3);
    free(p1);
    free(p2);
    free(p3);
}

/* ---------------------------------------------------------------------
 * Randomized tests
 * --------------------------------------------------------------------- */

/* Small random single-key histories: the checker must agree with the
 * brute-force definition, whatever the verdict. */
static void test_cross_check(void)
{
    rng r = {0x1234567ull};
    int trials = 30000, disagree = 0, n_ok = 0, n_bad = 0;

    for (int t = 0; t < trials; t++) {
        history h = {0};
        int n = (int)rrange(&r, 1, t % 4 == 0 ? NAIVE_MAX : 8);
        int vmax = (int)rrange(&r, 1, 3);
        int want, got;

        for (int i = 0; i < n; i++) {
            int is_put = (int)(rnd(&r) % 2);
            int64_t call = rrange(&r, 0, 15), ret = call + rrange(&r, 0, 8);
            int ok = 1;
            unsigned x = (unsigned)(rnd(&r) % 20);

            if (x < 2)
                ok = 0;
            else if (x < 4)
                ok = -1;
            else if (x < 5)
                ret = U;
            else if (x < 6 && is_put)
                ok = -1, ret = U;
            h_add(&h, (int64_t)i, is_put, 1, rrange(&r, 0, vmax), call, ret,
                  ok);
        }
        want = naive_check(&h);
        got = verdict_of(&h, 0, NULL);
        if (got != want) {
            if (disagree++ < 5) {
                size_t idx[NAIVE_MAX];

                printf("cross-check disagreement: naive %d, checker %d\n",
                       want, got);
                for (size_t i = 0; i < h.n; i++)
                    idx[i] = i;
                dht_history_print(stdout, h.v, idx, h.n);
            }
        }
        if (want == DHT_LIN_OK)
            n_ok++;
        else
            n_bad++;
        h_free(&h);
    }
    CHECK(disagree == 0, "cross-check: %d of %d disagree", disagree, trials);
    CHECK(n_ok > trials / 10 && n_bad > trials / 10,
          "cross-check coverage: %d ok, %d bad", n_ok, n_bad);
}

/* Small simulated histories with a mutated read, cross-checked too (these
 * are mostly "almost linearizable", the hard cases). */
static void test_cross_check_sim(void)
{
    rng r = {0xabcdefull};
    int trials = 20000, disagree = 0;
    gen_params gp = {3, 7, 2, 1, 1, 3, 10};

    for (int t = 0; t < trials; t++) {
        history h = {0};
        int want, got;

        gp.nclients = (int)rrange(&r, 1, 5);
        gp.nops = (int)rrange(&r, 4, NAIVE_MAX);
        gp.nunknown = (int)rrange(&r, 0, 4);
        gp.value_domain = (int)rrange(&r, 1, 4);
        gp.max_dur = rrange(&r, 5, 40);
        gen_history(&h, &r, 1, &gp);
        if (rnd(&r) % 2) {
            size_t i = (size_t)(rnd(&r) % h.n);

            if (!h.v[i].is_put)
                h.v[i].value = rrange(&r, 0, 3);
        }
        want = naive_check(&h);
        got = verdict_of(&h, 0, NULL);
        if (got != want && disagree++ < 5) {
            size_t idx[NAIVE_MAX];

            printf("sim cross-check disagreement: naive %d, checker %d\n",
                   want, got);
            for (size_t i = 0; i < h.n; i++)
                idx[i] = i;
            dht_history_print(stdout, h.v, idx, h.n);
        }
        h_free(&h);
    }
    CHECK(disagree == 0, "sim cross-check: %d of %d disagree", disagree,
          trials);
}

/* Index of an ok get whose value is unique-valued put p_x, such that some
 * other definite put p_y completed before p_x was called; sets *stale to
 * p_y's value.  Returns SIZE_MAX if none. */
static size_t find_stale_candidate(const history *h, size_t start,
                                   int64_t *stale)
{
    for (size_t g = start; g < h->n; g++) {
        const dht_history_op *og = &h->v[g];

        if (og->is_put || og->ok != 1 || og->value == 0)
            continue;
        for (size_t x = start; x < h->n; x++) {
            const dht_history_op *px = &h->v[x];

            if (!px->is_put || px->key != og->key ||
                px->value != og->value || !is_definite(px) ||
                px->ret >= og->call)
                continue;
            for (size_t y = start; y < h->n; y++) {
                const dht_history_op *py = &h->v[y];

                if (py->is_put && is_definite(py) && py->ret < px->call &&
                    py->key == og->key) {
                    *stale = py->value;
                    return g;
                }
            }
        }
    }
    return SIZE_MAX;
}

static void test_random_register(void)
{
    rng r = {0x5eed5eedull};
    int rounds = 40;

    for (int t = 0; t < rounds; t++) {
        history h = {0};
        gen_params gp = {(int)rrange(&r, 2, 12), (int)rrange(&r, 50, 400),
                         (int)rrange(&r, 0, 10), (int)rrange(&r, 0, 5),
                         (int)rrange(&r, 0, 5),
                         t % 3 == 0 ? (int)rrange(&r, 2, 6) : 0,
                         (int64_t)rrange(&r, 10, 200)};
        dht_lincheck_result res;
        int v;
        size_t g;
        int64_t stale;

        gen_history(&h, &r, t, &gp);
        gen_history(&h, &r, t + 1000, &gp); /* a second key */
        v = verdict_of(&h, 0, &res);
        CHECK(v == DHT_LIN_OK, "random register round %d: %s (key %" PRId64
              ", %s)", t, dht_lincheck_verdict_str(v), res.key,
              res.reason ? res.reason : "-");
        dht_lincheck_result_free(&res);

        /* A read of a value nobody wrote must fail. */
        for (g = 0; g < h.n; g++)
            if (!h.v[g].is_put && h.v[g].ok == 1)
                break;
        if (g < h.n) {
            int64_t old = h.v[g].value;

            h.v[g].value = 777777777777;
            v = verdict_of(&h, 0, &res);
            CHECK(v == DHT_LIN_VIOLATION && res.key == h.v[g].key &&
                      res.bad_op == g,
                  "impossible read round %d: %s bad_op %zu want %zu", t,
                  dht_lincheck_verdict_str(v), res.bad_op, g);
            dht_lincheck_result_free(&res);
            h.v[g].value = old;
        }
        /* With unique values, reading the value of a put that was
         * overwritten before the read began must fail. */
        if (gp.value_domain == 0 &&
            (g = find_stale_candidate(&h, 0, &stale)) != SIZE_MAX) {
            h.v[g].value = stale;
            v = verdict_of(&h, 0, &res);
            CHECK(v == DHT_LIN_VIOLATION, "stale read round %d: %s", t,
                  dht_lincheck_verdict_str(v));
            dht_lincheck_result_free(&res);
        }
        h_free(&h);
    }
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void perf_run(const char *name, const gen_params *gp, uint64_t seed,
                     int mutate_stale)
{
    rng r = {seed};
    history h = {0};
    dht_lincheck_result res;
    double t0;
    int v, want = DHT_LIN_OK;
    int64_t stale;
    size_t g;

    gen_history(&h, &r, 1, gp);
    if (mutate_stale) {
        /* Mutate a read near the end: the search has to get there. */
        g = find_stale_candidate(&h, h.n - h.n / 10, &stale);
        if (g == SIZE_MAX)
            g = find_stale_candidate(&h, 0, &stale);
        if (g != SIZE_MAX) {
            h.v[g].value = stale;
            want = DHT_LIN_VIOLATION;
        }
    }
    t0 = now_s();
    v = verdict_of(&h, 0, &res);
    printf("  perf %-34s %5zu ops: %-16s %9" PRIu64 " states %7.3f s\n",
           name, h.n, dht_lincheck_verdict_str(v), res.states_explored,
           now_s() - t0);
    CHECK(v == want, "perf %s: %s, want %s", name,
          dht_lincheck_verdict_str(v), dht_lincheck_verdict_str(want));
    dht_lincheck_result_free(&res);
    h_free(&h);
}

static void test_perf(void)
{
    gen_params a = {16, 4000, 20, 10, 10, 0, 100};
    gen_params b = {32, 6000, 60, 10, 10, 0, 300};
    gen_params c = {16, 4000, 20, 10, 10, 5, 100};

    perf_run("16 clients, 20 unknown puts", &a, 42, 0);
    perf_run("16 clients, stale read near end", &a, 43, 1);
    perf_run("32 clients, 60 unknown, long ops", &b, 44, 0);
    perf_run("16 clients, only 5 distinct values", &c, 45, 0);
}

int main(void)
{
    test_basic();
    test_concurrent_puts();
    test_unknown_and_failed();
    test_unread_puts();
    test_multi_key();
    test_reasons();
    test_budget();
    test_print();
    test_parse_good();
    test_parse_bad();
    test_long_line();
    test_load();
    test_cross_check();
    test_cross_check_sim();
    test_random_register();
    test_perf();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail == 0 ? 0 : 1;
}
