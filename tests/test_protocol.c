/* Protocol tests: the real coordinator and replicas over the deterministic
 * in-memory network, with loss, delay/reordering, crashes, stalls and
 * partitions.  Every workload's history goes through the linearizability
 * checker.  All randomness comes from the seed printed on failure; set
 * SIM_SEED to replay one. */
#include "protocol/coordinator.h"
#include "protocol/replica.h"
#include "protocol/membership.h"
#include "lincheck.h"
#include "sim/sim_transport.h"
#include "test.h"
#include "base/util.h"

#define MS DHT_NS_PER_MS
#define SEC DHT_NS_PER_SEC

static uint64_t base_seed(void)
{
    const char *s = getenv("SIM_SEED");
    return s ? strtoull(s, NULL, 10) : 20261121;
}

/* ---- workload driver ------------------------------------------------------ */

typedef struct workload workload;

typedef struct {
    workload *wl;
    int client;
    int left;
    int64_t seq;
    /* the op in flight */
    bool is_put;
    int64_t key, value, call;
} client_state;

struct workload {
    sim_world *w;
    int nclients;
    dht_coord *coords[32];
    client_state cs[32];
    int64_t keys;
    double put_ratio;
    int64_t think_max_ns;
    dht_history_op *hist;
    size_t nhist, cap;
    int applied, not_applied, unknown, gets_ok, gets_failed;
    int64_t max_latency;
    int64_t last_return;
};

static void record(workload *wl, client_state *c, int ok)
{
    if (wl->nhist == wl->cap) {
        wl->cap = wl->cap ? wl->cap * 2 : 1024;
        wl->hist = realloc(wl->hist, wl->cap * sizeof *wl->hist);
        CHECK(wl->hist != NULL);
    }
    int64_t now = sim_now(wl->w);
    wl->hist[wl->nhist++] = (dht_history_op){.client = c->client, .is_put = c->is_put,
                                          .key = c->key, .value = c->value, .call = c->call,
                                          .ret = ok < 0 ? DHT_HISTORY_RET_UNKNOWN : now, .ok = ok};
    if (now - c->call > wl->max_latency)
        wl->max_latency = now - c->call;
    wl->last_return = now;
}

static void next_op(void *arg);

static void schedule_next(client_state *c)
{
    workload *wl = c->wl;
    if (--c->left <= 0)
        return;
    int64_t think = wl->think_max_ns ? (int64_t)sim_rand(wl->w, (uint64_t)wl->think_max_ns) : 0;
    sim_at(wl->w, sim_now(wl->w) + think, next_op, c);
}

static void on_put(void *arg, dht_put_outcome o, const char *reason)
{
    (void)reason;
    client_state *c = arg;
    workload *wl = c->wl;
    wl->applied += o == DHT_PUT_APPLIED;
    wl->not_applied += o == DHT_PUT_NOT_APPLIED;
    wl->unknown += o == DHT_PUT_UNKNOWN;
    record(wl, c, o == DHT_PUT_APPLIED ? 1 : o == DHT_PUT_NOT_APPLIED ? 0 : -1);
    schedule_next(c);
}

static void on_get(void *arg, int ok, int64_t value, const char *reason)
{
    (void)reason;
    client_state *c = arg;
    workload *wl = c->wl;
    c->value = value;
    wl->gets_ok += ok;
    wl->gets_failed += !ok;
    record(wl, c, ok ? 1 : 0);
    schedule_next(c);
}

static void next_op(void *arg)
{
    client_state *c = arg;
    workload *wl = c->wl;
    c->key = (int64_t)sim_rand(wl->w, (uint64_t)wl->keys);
    c->is_put = sim_rand(wl->w, 1000) < (uint64_t)(wl->put_ratio * 1000);
    c->call = sim_now(wl->w);
    dht_coord *co = wl->coords[c->client];
    if (c->is_put) {
        c->value = (int64_t)(c->client + 1) * 1000000 + ++c->seq;
        CHECK(dht_coord_put(co, c->key, c->value, on_put, c) == 0);
    } else {
        CHECK(dht_coord_get(co, c->key, on_get, c) == 0);
    }
}

/* A list of n members 127.0.0.1:1..:n, into buf. */
static void numbered_list(char *buf, size_t len, int n)
{
    buf[0] = '\0';
    for (int i = 0; i < n; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s127.0.0.1:%d", i ? "," : "", i + 1);
}

/* The synthetic list of n members, 127.0.0.1:1..:n, as member `self`
 * sees it (-1: as a client).  Made once per (n, self) and kept for the
 * process, so it outlives every coordinator given it. */
static const dht_membership *sim_members(int n, int self)
{
    typedef struct {
        int n, self;
        dht_membership *m;
    } entry;
    static entry cache[16];
    static int ncache;
    for (int i = 0; i < ncache; i++)
        if (cache[i].n == n && cache[i].self == self)
            return cache[i].m;
    CHECK(ncache < (int)(sizeof cache / sizeof cache[0]));
    char list[DHT_MAX_MEMBERS * 16], me[32], err[256];
    numbered_list(list, sizeof list, n);
    snprintf(me, sizeof me, "127.0.0.1:%d", self + 1);
    dht_membership *m;
    /* Every member stores every key (R = N): these tests are about the
     * protocol among one key's replicas; placement has its own below. */
    if (dht_membership_new(list, self >= 0 ? me : NULL, n, &m, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        CHECK(0);
    }
    cache[ncache++] = (entry){n, self, m};
    return m;
}

static dht_coord *make_coord(sim_world *w, int endpoint, uint64_t seed)
{
    dht_transport *t = sim_endpoint(w, endpoint);
    dht_coord_config cfg;
    dht_coord_config_default(&cfg);
    cfg.members = sim_members(t->npeers, -1);
    cfg.seed = seed;
    cfg.id = (uint32_t)endpoint + 1;
    dht_coord *c = dht_coord_new(t, &cfg);
    CHECK(c != NULL);
    return c;
}

static void workload_init(workload *wl, sim_world *w, int nclients, int ops_each, int64_t keys,
                          uint64_t seed)
{
    memset(wl, 0, sizeof *wl);
    wl->w = w;
    wl->nclients = nclients;
    wl->keys = keys;
    wl->put_ratio = 0.5;
    wl->think_max_ns = 5 * MS;
    for (int i = 0; i < nclients; i++) {
        wl->coords[i] = make_coord(w, i, seed + (uint64_t)i);
        wl->cs[i] = (client_state){.wl = wl, .client = i, .left = ops_each};
        sim_at(w, sim_now(w) + (int64_t)sim_rand(w, 10 * MS), next_op, &wl->cs[i]);
    }
}

static void workload_free(workload *wl)
{
    for (int i = 0; i < wl->nclients; i++)
        dht_coord_free(wl->coords[i]);
    free(wl->hist);
}

static void check_linearizable(workload *wl, uint64_t seed)
{
    dht_lincheck_result res;
    int v = dht_lincheck(wl->hist, wl->nhist, &res);
    if (v != DHT_LIN_OK) {
        fprintf(stderr, "seed %llu: %s (%s), key %lld\n", (unsigned long long)seed,
                dht_lincheck_verdict_str(v), res.reason ? res.reason : "", (long long)res.key);
        if (res.sub)
            dht_history_print(stderr, wl->hist, res.sub, res.nsub);
    }
    dht_lincheck_result_free(&res);
    CHECK_EQ(v, DHT_LIN_OK);
}

static void expect_total(workload *wl, int total)
{
    CHECK_EQ(wl->applied + wl->not_applied + wl->unknown + wl->gets_ok + wl->gets_failed, total);
    /* every call returned within its deadline (plus one in-flight reply) */
    if (wl->max_latency > 2 * SEC + 10 * MS)
        fprintf(stderr, "max latency %.3f ms\n", (double)wl->max_latency / 1e6);
    CHECK(wl->max_latency <= 2 * SEC + 10 * MS);
}

/* ---- scenarios -------------------------------------------------------------- */

typedef struct {
    int64_t result;
    int ok;
    dht_put_outcome outcome;
    bool done;
    int64_t at;
    sim_world *w;
} one_result;

static void one_put_cb(void *arg, dht_put_outcome o, const char *reason)
{
    (void)reason;
    one_result *r = arg;
    r->outcome = o;
    r->done = true;
    r->at = sim_now(r->w);
}

static void one_get_cb(void *arg, int ok, int64_t value, const char *reason)
{
    (void)reason;
    one_result *r = arg;
    r->ok = ok;
    r->result = value;
    r->done = true;
    r->at = sim_now(r->w);
}

static dht_put_outcome put1(sim_world *w, dht_coord *c, int64_t k, int64_t v)
{
    one_result r = {.w = w};
    CHECK(dht_coord_put(c, k, v, one_put_cb, &r) == 0);
    CHECK(!r.done); /* never completes inside the call */
    sim_run(w);
    CHECK(r.done);
    return r.outcome;
}

static int get1(sim_world *w, dht_coord *c, int64_t k, int64_t *v)
{
    one_result r = {.w = w};
    CHECK(dht_coord_get(c, k, one_get_cb, &r) == 0);
    CHECK(!r.done);
    sim_run(w);
    CHECK(r.done);
    *v = r.result;
    return r.ok;
}

static sim_world *world_of(int replicas, uint64_t seed, double loss, int endpoints)
{
    sim_config cfg = {.seed = seed, .replicas = replicas, .endpoints = endpoints, .loss = loss};
    sim_world *w = sim_new(&cfg);
    CHECK(w != NULL);
    return w;
}

static sim_world *world(uint64_t seed, double loss, int endpoints)
{
    return world_of(3, seed, loss, endpoints);
}

static void test_put_then_get(void)
{
    sim_world *w = world(base_seed(), 0, 1);
    dht_coord *c = make_coord(w, 0, 1);
    int64_t v = -1;
    CHECK(get1(w, c, 5, &v) && v == 0); /* P2: never written reads 0 */
    CHECK_EQ(put1(w, c, 5, 42), DHT_PUT_APPLIED);
    CHECK(get1(w, c, 5, &v) && v == 42);
    CHECK(get1(w, c, 5, &v) && v == 42); /* P1: repeatable */
    CHECK_EQ(put1(w, c, 5, -7), DHT_PUT_APPLIED);
    CHECK(get1(w, c, 5, &v) && v == -7);
    CHECK(get1(w, c, INT64_MAX, &v) && v == 0);
    /* every replica holds the value (all three acked or got the write) */
    for (int r = 0; r < 3; r++) {
        dht_version ver;
        dht_replica_lookup(sim_replica(w, r), 5, &v, &ver);
        CHECK_EQ(v, -7);
        CHECK_EQ(ver.counter, 2);
    }
    dht_coord_free(c);
    sim_free(w);
}

/* A key whose counter reached the ceiling (only a broken or hostile member
 * can write one) gets no put: the coordinator answers false instead of
 * writing a version that would wrap or be refused, and leaves no lock. */
static void test_put_at_counter_ceiling_not_applied(void)
{
    sim_world *w = world(base_seed(), 0, 1);
    dht_coord *c = make_coord(w, 0, 1);
    for (int r = 0; r < 3; r++)
        dht_replica_apply(sim_replica(w, r), 5, 66, (dht_version){DHT_COUNTER_MAX, 1});
    CHECK_EQ(put1(w, c, 5, 7), DHT_PUT_NOT_APPLIED);
    int64_t v = -1;
    CHECK(get1(w, c, 5, &v) && v == 66);
    for (int r = 0; r < 3; r++) {
        dht_version ver;
        dht_replica_lookup(sim_replica(w, r), 5, &v, &ver);
        CHECK_EQ(ver.counter, DHT_COUNTER_MAX);
        /* unlocked: another owner is granted the key at once */
        dht_msg rep, req = {.type = DHT_MSG_LOCK, .key = 5, .owner = 99, .lease_ms = 500};
        dht_replica_handle(sim_replica(w, r), sim_now(w), &req, &rep);
        CHECK(rep.ok);
    }
    /* one below the ceiling still has room for exactly one more put */
    for (int r = 0; r < 3; r++)
        dht_replica_apply(sim_replica(w, r), 6, 66, (dht_version){DHT_COUNTER_MAX - 1, 1});
    CHECK_EQ(put1(w, c, 6, 7), DHT_PUT_APPLIED);
    CHECK(get1(w, c, 6, &v) && v == 7);
    CHECK_EQ(put1(w, c, 6, 8), DHT_PUT_NOT_APPLIED);
    dht_coord_free(c);
    sim_free(w);
}

static void run_scenario_of(int replicas, const char *name, uint64_t seed, double loss,
                            int clients, int ops, int64_t keys,
                            void (*faults)(sim_world *, void *), void *fault_arg,
                            bool expect_no_failures)
{
    sim_world *w = world_of(replicas, seed, loss, clients);
    workload wl;
    workload_init(&wl, w, clients, ops, keys, seed * 31);
    if (faults)
        faults(w, fault_arg);
    sim_run(w);
    if (getenv("SIM_VERBOSE"))
        fprintf(stderr,
                "%s seed %llu: applied %d not-applied %d unknown %d gets %d failed %d max %.1f ms\n",
                name, (unsigned long long)seed, wl.applied, wl.not_applied, wl.unknown,
                wl.gets_ok, wl.gets_failed, (double)wl.max_latency / 1e6);
    expect_total(&wl, clients * ops);
    if (expect_no_failures)
        CHECK_EQ(wl.not_applied + wl.unknown + wl.gets_failed, 0);
    check_linearizable(&wl, seed);
    workload_free(&wl);
    sim_free(w);
}

static void run_scenario(const char *name, uint64_t seed, double loss, int clients, int ops,
                         int64_t keys, void (*faults)(sim_world *, void *), void *fault_arg,
                         bool expect_no_failures)
{
    run_scenario_of(3, name, seed, loss, clients, ops, keys, faults, fault_arg,
                    expect_no_failures);
}

static void test_random_no_faults(void)
{
    run_scenario("clean", base_seed(), 0, 8, 300, 5, NULL, NULL, true);
}

static void test_message_loss(void)
{
    for (uint64_t s = 0; s < 3; s++)
        run_scenario("loss", base_seed() + s, 0.10, 6, 200, 4, NULL, NULL, false);
}

static void test_delay_and_reordering(void)
{
    /* delays from 10 us to 80 ms: replies overtake each other constantly */
    for (uint64_t s = 0; s < 3; s++) {
        sim_config cfg = {.seed = base_seed() + s, .replicas = 3, .endpoints = 6,
                          .delay_min_ns = 10000, .delay_max_ns = 80 * MS};
        sim_world *w = sim_new(&cfg);
        workload wl;
        workload_init(&wl, w, 6, 150, 3, cfg.seed);
        sim_run(w);
        expect_total(&wl, 6 * 150);
        check_linearizable(&wl, cfg.seed);
        workload_free(&wl);
        sim_free(w);
    }
}

static void crash_replica_2(sim_world *w, void *arg)
{
    (void)arg;
    sim_crash(w, 2);
}

static void test_one_replica_crashed(void)
{
    /* P5 at protocol level: with one of three down nothing fails */
    run_scenario("one-down", base_seed(), 0, 8, 250, 5, crash_replica_2, NULL, true);
}

typedef struct {
    sim_world *w;
    int r;
} fault_ctx;

static void do_crash(void *arg)
{
    fault_ctx *f = arg;
    sim_crash(f->w, f->r);
}

static void do_restart(void *arg)
{
    fault_ctx *f = arg;
    sim_restart(f->w, f->r, false);
}

static void do_pause(void *arg)
{
    fault_ctx *f = arg;
    sim_pause(f->w, f->r);
}

static void do_resume(void *arg)
{
    fault_ctx *f = arg;
    sim_resume(f->w, f->r);
}

static fault_ctx fc[4];

static void crash_then_restart(sim_world *w, void *arg)
{
    (void)arg;
    int64_t t = sim_now(w);
    for (int i = 0; i < 3; i++) {
        fc[i] = (fault_ctx){w, i};
        sim_at(w, t + (int64_t)(200 + 600 * i) * MS, do_crash, &fc[i]);
        sim_at(w, t + (int64_t)(500 + 600 * i) * MS, do_restart, &fc[i]);
    }
}

static void test_crash_restart_each_replica_in_turn(void)
{
    /* kill -9 mid-load, one replica at a time: no failed operation */
    run_scenario("crash-cycle", base_seed(), 0, 8, 400, 5, crash_then_restart, NULL, true);
}

static void pause_replica_1(sim_world *w, void *arg)
{
    (void)arg;
    fc[0] = (fault_ctx){w, 1};
    sim_at(w, sim_now(w) + 100 * MS, do_pause, &fc[0]);
    sim_at(w, sim_now(w) + 3100 * MS, do_resume, &fc[0]);
}

static void test_paused_replica_serves_stale_requests_later(void)
{
    /* a stalled node (longer than the deadline) then replays old locks and
     * writes: nothing fails meanwhile and the history stays linearizable */
    run_scenario("pause", base_seed(), 0, 8, 300, 4, pause_replica_1, NULL, true);
}

static void test_two_replicas_down_fails_fast_then_retry_succeeds(void)
{
    sim_world *w = world(base_seed(), 0, 1);
    dht_coord *c = make_coord(w, 0, 7);
    CHECK_EQ(put1(w, c, 1, 10), DHT_PUT_APPLIED);
    sim_crash(w, 0);
    sim_crash(w, 1);
    int64_t t0 = sim_now(w), v;
    /* no quorum: the put is definitely not applied (no Write was sent),
     * the get fails, and both return within the deadline */
    one_result r = {.w = w};
    CHECK(dht_coord_put(c, 1, 11, one_put_cb, &r) == 0);
    sim_run(w);
    CHECK(r.done);
    CHECK_EQ(r.outcome, DHT_PUT_NOT_APPLIED);
    CHECK(r.at - t0 <= 2 * SEC);
    CHECK(!get1(w, c, 1, &v));
    int64_t r2v;
    dht_version ver;
    dht_replica_lookup(sim_replica(w, 2), 1, &r2v, &ver);
    CHECK_EQ(r2v, 10); /* the lone live replica never saw value 11 */
    sim_restart(w, 0, false);
    /* P4: the put that returned false succeeds when retried */
    CHECK_EQ(put1(w, c, 1, 11), DHT_PUT_APPLIED);
    CHECK(get1(w, c, 1, &v) && v == 11);
    dht_coord_free(c);
    sim_free(w);
}

static void ignore_reply(void *arg, dht_status st, const dht_msg *rep)
{
    (void)arg;
    (void)st;
    (void)rep;
}

static void test_dead_lock_holder_frees_key_after_lease(void)
{
    sim_world *w = world(base_seed(), 0, 2);
    /* endpoint 1 plays a coordinator that locks every replica and dies */
    dht_transport *t = sim_endpoint(w, 1);
    dht_msg lock = {.type = DHT_MSG_LOCK, .key = 9, .owner = 0xdead00000001ULL, .lease_ms = 500};
    int64_t t0 = sim_now(w);
    for (int r = 0; r < 3; r++)
        CHECK(dht_transport_send(t, r, &lock, t0 + SEC, ignore_reply, NULL) == 0);
    sim_run(w);
    dht_coord *c = make_coord(w, 0, 3);
    one_result res = {.w = w};
    int64_t start = sim_now(w);
    CHECK(dht_coord_put(c, 9, 99, one_put_cb, &res) == 0);
    sim_run(w);
    CHECK(res.done);
    CHECK_EQ(res.outcome, DHT_PUT_APPLIED);
    CHECK(res.at >= t0 + 500 * MS); /* waited for the lease, not longer than the deadline */
    CHECK(res.at - start <= 2 * SEC);
    int64_t v;
    CHECK(get1(w, c, 9, &v) && v == 99);
    dht_coord_free(c);
    sim_free(w);
}

static void test_two_writers_race_on_one_key(void)
{
    for (uint64_t s = 0; s < 200; s++) {
        sim_world *w = world(base_seed() + s, 0, 2);
        dht_coord *a = make_coord(w, 0, s * 2 + 1), *b = make_coord(w, 1, s * 2 + 2);
        one_result ra = {.w = w}, rb = {.w = w};
        int64_t t0 = sim_now(w);
        CHECK(dht_coord_put(a, 1, 100, one_put_cb, &ra) == 0);
        CHECK(dht_coord_put(b, 1, 200, one_put_cb, &rb) == 0);
        sim_run(w);
        CHECK(ra.done && rb.done);
        /* contention costs time, not correctness: both land within the
         * deadline (randomised backoff breaks the tie) */
        CHECK_EQ(ra.outcome, DHT_PUT_APPLIED);
        CHECK_EQ(rb.outcome, DHT_PUT_APPLIED);
        int64_t v1, v2;
        CHECK(get1(w, a, 1, &v1));
        CHECK(get1(w, b, 1, &v2));
        CHECK_EQ(v1, v2);
        /* the later-finishing put wins unless they overlapped */
        CHECK(v1 == 100 || v1 == 200);
        if (ra.at < t0 || rb.at < t0)
            CHECK(0);
        dht_coord_free(a);
        dht_coord_free(b);
        sim_free(w);
    }
}

static void test_many_writers_one_key_linearizable(void)
{
    /* 12 clients, one key, all puts: heavy lock contention */
    sim_world *w = world(base_seed(), 0.02, 12);
    workload wl;
    workload_init(&wl, w, 12, 80, 1, base_seed());
    wl.put_ratio = 0.7;
    sim_run(w);
    expect_total(&wl, 12 * 80);
    CHECK(wl.applied > 0);
    check_linearizable(&wl, base_seed());
    workload_free(&wl);
    sim_free(w);
}

static void test_minority_partition_fails_within_deadline(void)
{
    sim_world *w = world(base_seed(), 0, 2);
    dht_coord *cut_off = make_coord(w, 0, 1), *fine = make_coord(w, 1, 2);
    sim_cut(w, 0, 1, true);
    sim_cut(w, 0, 2, true);
    int64_t t0 = sim_now(w), v;
    one_result r = {.w = w};
    CHECK(dht_coord_put(cut_off, 3, 30, one_put_cb, &r) == 0);
    sim_run(w); /* also runs the clean-up unlocks, which may outlive the put */
    CHECK(r.done);
    CHECK_EQ(r.outcome, DHT_PUT_NOT_APPLIED);
    CHECK(r.at - t0 <= 2 * SEC);
    CHECK(!get1(w, cut_off, 3, &v));
    CHECK_EQ(put1(w, fine, 3, 31), DHT_PUT_APPLIED); /* majority side keeps going */
    CHECK(get1(w, fine, 3, &v) && v == 31);
    sim_heal_all(w);
    CHECK(get1(w, cut_off, 3, &v) && v == 31);
    dht_coord_free(cut_off);
    dht_coord_free(fine);
    sim_free(w);
}

static void test_read_writes_back_newest_to_quorum(void)
{
    sim_world *w = world(base_seed(), 0, 1);
    dht_coord *c = make_coord(w, 0, 1);
    /* a put that reached only replica 0 (its writer died mid-write) */
    dht_replica_apply(sim_replica(w, 0), 4, 44, (dht_version){7, 1});
    dht_replica_apply(sim_replica(w, 1), 4, 40, (dht_version){6, 1});
    int64_t v;
    /* whichever quorum answers first, a reader that saw 44 must leave it
     * on a quorum before returning; run until it does see it */
    for (int i = 0; i < 50 && !(get1(w, c, 4, &v) && v == 44); i++) {
    }
    CHECK_EQ(v, 44);
    int holders = 0;
    for (int r = 0; r < 3; r++) {
        int64_t rv;
        dht_version ver;
        dht_replica_lookup(sim_replica(w, r), 4, &rv, &ver);
        holders += rv == 44;
    }
    CHECK(holders >= 2);
    /* and from now on every read returns it */
    for (int i = 0; i < 20; i++)
        CHECK(get1(w, c, 4, &v) && v == 44);
    dht_coord_free(c);
    sim_free(w);
}

typedef struct {
    sim_world *w;
    int step;
} chaos_ctx;

/* Every 150 ms: one random fault, healed within a second; never more than
 * one replica affected at a time, as the failure model promises. */
static void chaos_tick(void *arg)
{
    chaos_ctx *cx = arg;
    sim_world *w = cx->w;
    static fault_ctx f;
    if (cx->step >= 40)
        return;
    if (cx->step % 2 == 0) {
        f = (fault_ctx){w, (int)sim_rand(w, 3)};
        switch (sim_rand(w, 3)) {
        case 0:
            sim_crash(w, f.r);
            break;
        case 1:
            sim_pause(w, f.r);
            break;
        default:
            for (int e = 0; e < 8; e++)
                sim_cut(w, e, f.r, true);
        }
    } else {
        sim_restart(w, f.r, false);
        sim_heal_all(w);
    }
    cx->step++;
    sim_at(w, sim_now(w) + (int64_t)(100 + sim_rand(w, 400)) * MS, chaos_tick, cx);
}

static void test_thousands_of_random_ops_with_faults(void)
{
    for (uint64_t s = 0; s < 4; s++) {
        uint64_t seed = base_seed() + 1000 + s;
        sim_world *w = world(seed, 0.03, 8);
        workload wl;
        workload_init(&wl, w, 8, 500, 6, seed);
        chaos_ctx cx = {w, 0};
        sim_at(w, sim_now(w) + 50 * MS, chaos_tick, &cx);
        sim_run(w);
        expect_total(&wl, 8 * 500);
        check_linearizable(&wl, seed);
        workload_free(&wl);
        sim_free(w);
    }
}

static void test_same_seed_same_history(void)
{
    dht_history_op *h[2];
    size_t n[2];
    for (int i = 0; i < 2; i++) {
        sim_world *w = world(777, 0.05, 4);
        workload wl;
        workload_init(&wl, w, 4, 100, 3, 777);
        sim_run(w);
        h[i] = wl.hist;
        n[i] = wl.nhist;
        wl.hist = NULL;
        workload_free(&wl);
        sim_free(w);
    }
    CHECK_EQ(n[0], n[1]);
    for (size_t i = 0; i < n[0]; i++) { /* field by field: padding differs */
        CHECK_EQ(h[0][i].client, h[1][i].client);
        CHECK_EQ(h[0][i].is_put, h[1][i].is_put);
        CHECK_EQ(h[0][i].key, h[1][i].key);
        CHECK_EQ(h[0][i].value, h[1][i].value);
        CHECK_EQ(h[0][i].call, h[1][i].call);
        CHECK_EQ(h[0][i].ret, h[1][i].ret);
        CHECK_EQ(h[0][i].ok, h[1][i].ok);
    }
    free(h[0]);
    free(h[1]);
}


/* ---- quorum first, then the rest ------------------------------------------ */

/* A transport that counts what the coordinator sends to each peer, by
 * message type, and passes everything on to a sim endpoint. */
typedef struct {
    dht_transport base; /* first */
    dht_transport_ops ops;
    dht_transport *inner;
    int sent[DHT_MAX_MEMBERS][DHT_MSG_TYPE_MAX];
} counting;

static int counting_send(dht_transport *t, int peer, const dht_msg *req, int64_t deadline_ns,
                         dht_reply_cb cb, void *arg)
{
    counting *c = (counting *)t;
    c->sent[peer][req->type]++;
    return dht_transport_send(c->inner, peer, req, deadline_ns, cb, arg);
}

static int counting_after(dht_transport *t, int64_t d, dht_timer_cb cb, void *arg)
{
    return dht_transport_after(((counting *)t)->inner, d, cb, arg);
}

static int64_t counting_now(dht_transport *t)
{
    return dht_transport_now(((counting *)t)->inner);
}

static void *counting_after_cancelable(dht_transport *t, int64_t d, dht_timer_cb cb, void *arg)
{
    dht_transport *in = ((counting *)t)->inner;
    return in->ops->after_cancelable(in, d, cb, arg);
}

static int counting_cancel(dht_transport *t, void *h)
{
    dht_transport *in = ((counting *)t)->inner;
    return in->ops->cancel(in, h);
}

static void counting_init(counting *c, dht_transport *inner)
{
    memset(c, 0, sizeof *c);
    c->inner = inner;
    c->ops = (dht_transport_ops){
        .send = counting_send, .after = counting_after, .now = counting_now,
        .after_cancelable = inner->ops->after_cancelable ? counting_after_cancelable : NULL,
        .cancel = inner->ops->cancel ? counting_cancel : NULL};
    c->base.ops = &c->ops;
    c->base.npeers = inner->npeers;
}

/* A coordinator whose own replica is `self` (as in a server). */
static dht_coord *make_coord_self(dht_transport *t, int self)
{
    dht_coord_config cfg;
    dht_coord_config_default(&cfg);
    cfg.members = sim_members(t->npeers, self);
    cfg.seed = 5;
    cfg.id = 9;
    dht_coord *c = dht_coord_new(t, &cfg);
    CHECK(c != NULL);
    return c;
}

static void test_healthy_round_asks_only_a_quorum(void)
{
    /* Locks and reads go to our own replica and the next one; writes go to
     * all three, so every replica still holds every value. */
    sim_world *w = world(base_seed(), 0, 1);
    counting ct;
    counting_init(&ct, sim_endpoint(w, 0));
    dht_coord *c = make_coord_self(&ct.base, 2);
    int64_t v;
    for (int i = 0; i < 10; i++) {
        CHECK_EQ(put1(w, c, i, 100 + i), DHT_PUT_APPLIED);
        CHECK(get1(w, c, i, &v) && v == 100 + i);
    }
    CHECK_EQ(ct.sent[2][DHT_MSG_LOCK], 10);
    CHECK_EQ(ct.sent[0][DHT_MSG_LOCK], 10); /* the ring's next after 2 */
    CHECK_EQ(ct.sent[1][DHT_MSG_LOCK], 0);
    CHECK_EQ(ct.sent[2][DHT_MSG_READ], 10);
    CHECK_EQ(ct.sent[0][DHT_MSG_READ], 10);
    CHECK_EQ(ct.sent[1][DHT_MSG_READ], 0);
    for (int r = 0; r < 3; r++) {
        CHECK_EQ(ct.sent[r][DHT_MSG_WRITE], 10);
        CHECK_EQ(ct.sent[r][DHT_MSG_UNLOCK], 0); /* the Write releases the lock */
        dht_version ver;
        dht_replica_lookup(sim_replica(w, r), 9, &v, &ver);
        CHECK_EQ(v, 109);
    }
    dht_coord_free(c);
    sim_free(w);
}

static void test_stalled_first_choice_costs_one_hedge(void)
{
    /* Replica 1 is paused: it neither answers nor refuses.  The first
     * operation of a coordinator that asks it first waits the hedge time,
     * not the RPC timeout (500 ms), then asks replica 2 and completes; the
     * ones after it, within a second, do not ask replica 1 first, so they
     * wait for nothing (after that one operation probes it again). */
    sim_world *w = world(base_seed(), 0, 1);
    dht_coord *c = make_coord_self(sim_endpoint(w, 0), 0);
    CHECK_EQ(put1(w, c, 1, 1), DHT_PUT_APPLIED);
    sim_pause(w, 1);
    for (int i = 0; i < 5; i++) {
        one_result r = {.w = w};
        int64_t t0 = sim_now(w);
        CHECK(dht_coord_put(c, 1, 10 + i, one_put_cb, &r) == 0);
        sim_run_until(w, t0 + 80 * MS);
        CHECK(r.done);
        CHECK_EQ(r.outcome, DHT_PUT_APPLIED);
        CHECK(r.at - t0 < (i == 0 ? 60 : 15) * MS);
        one_result g = {.w = w};
        t0 = sim_now(w);
        CHECK(dht_coord_get(c, 1, one_get_cb, &g) == 0);
        sim_run_until(w, t0 + 80 * MS);
        CHECK(g.done && g.ok);
        CHECK_EQ(g.result, 10 + i);
        CHECK(g.at - t0 < 15 * MS);
    }
    sim_resume(w, 1);
    sim_run(w);
    dht_coord_free(c);
    sim_free(w);
}

static void test_failed_peer_is_not_asked_first(void)
{
    /* Replica 1 is down: the first operation finds out (UNAVAILABLE) and
     * asks replica 2 at once; later ones skip replica 1 for locks and
     * reads until it has been quiet for a while. */
    sim_world *w = world(base_seed(), 0, 1);
    counting ct;
    counting_init(&ct, sim_endpoint(w, 0));
    dht_coord *c = make_coord_self(&ct.base, 0);
    sim_crash(w, 1);
    int64_t v;
    for (int i = 0; i < 10; i++) {
        CHECK_EQ(put1(w, c, i, i + 1), DHT_PUT_APPLIED);
        CHECK(get1(w, c, i, &v) && v == i + 1);
    }
    CHECK_EQ(ct.sent[1][DHT_MSG_LOCK] + ct.sent[1][DHT_MSG_READ], 1);
    CHECK_EQ(ct.sent[2][DHT_MSG_LOCK], 10);
    CHECK_EQ(ct.sent[2][DHT_MSG_READ], 10);
    dht_coord_free(c);
    sim_free(w);
}

/* ---- membership ------------------------------------------------------------- */

/* dht_membership_new that must fail, with a message containing `want`. */
static void refused(const char *list, const char *self, const char *want)
{
    dht_membership *m = (dht_membership *)&m; /* must come back NULL */
    char err[512] = "";
    CHECK_EQ(dht_membership_new(list, self, 0, &m, err, sizeof err), -1);
    CHECK(m == NULL);
    if (strstr(err, want) == NULL) {
        fprintf(stderr, "'%s': message '%s' lacks '%s'\n", list ? list : "(null)", err, want);
        CHECK(0);
    }
}

static void test_membership_parse_and_normalise(void)
{
    char err[256], a[DHT_ADDR_MAX], b[DHT_ADDR_MAX], c[DHT_ADDR_MAX];
    CHECK_EQ(dht_member_addr_normalise("localhost:5", a, sizeof a, err, sizeof err), 0);
    CHECK_EQ(dht_member_addr_normalise("127.0.0.1:5", b, sizeof b, err, sizeof err), 0);
    CHECK_EQ(dht_member_addr_normalise("LOCALHOST:5", c, sizeof c, err, sizeof err), 0);
    CHECK(strcmp(a, "127.0.0.1:5") == 0 && strcmp(b, a) == 0 && strcmp(c, a) == 0);
    CHECK_EQ(dht_member_addr_normalise("0.0.0.0:5", a, sizeof a, err, sizeof err), 0);
    CHECK(strcmp(a, "127.0.0.1:5") == 0);
    CHECK_EQ(dht_member_addr_normalise("Node-A.Example:050", a, sizeof a, err, sizeof err), 0);
    CHECK(strcmp(a, "node-a.example:50") == 0);
    CHECK_EQ(dht_member_addr_normalise("[FE80::1]:7", a, sizeof a, err, sizeof err), 0);
    CHECK(strcmp(a, "[FE80::1]:7") == 0); /* bracketed IPv6 stays as written */
    const char *bad[] = {"nonsense", ":5", "a:0", "a:65536", "a b:5", "::1:5", "[::1:5", "[]:5",
                         "a]:5", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(dht_member_addr_normalise(bad[i], a, sizeof a, err, sizeof err), -1);

    dht_membership *m;
    CHECK_EQ(dht_membership_new("localhost:5,Node-B:6,[::1]:7", NULL, 0, &m, err, sizeof err), 0);
    CHECK_EQ(dht_membership_size(m), 3);
    CHECK_EQ(dht_membership_self(m), -1);
    CHECK(strcmp(dht_membership_addr(m, 0), "localhost:5") == 0); /* as listed */
    CHECK(strcmp(dht_membership_addr(m, 1), "Node-B:6") == 0);
    CHECK(dht_membership_addr(m, 3) == NULL);
    CHECK_EQ(dht_membership_find(m, "localhost:5"), 0);
    CHECK_EQ(dht_membership_find(m, "127.0.0.1:5"), 0);
    CHECK_EQ(dht_membership_find(m, "LOCALHOST:5"), 0);
    CHECK_EQ(dht_membership_find(m, "node-b:6"), 1);
    CHECK_EQ(dht_membership_find(m, "[::1]:7"), 2);
    CHECK_EQ(dht_membership_find(m, "127.0.0.1:6"), -1);
    CHECK_EQ(dht_membership_find(m, "garbage"), -1);
    dht_membership_free(m);

    refused(NULL, NULL, "empty member list");
    refused("", NULL, "empty member list");
    refused("a:1,,b:2", NULL, "empty entry 2");
    refused("a:1,nonsense", NULL, "'nonsense' is not HOST:PORT");
    refused("127.0.0.1:0,127.0.0.1:2", NULL, "port must be a number");
    refused("a:1,a:1", NULL, "a:1 appears twice");
    refused("localhost:5,127.0.0.1:5", NULL, "appears twice");
    refused("a:1,LOCALHOST:5,b:2,0.0.0.0:5", NULL, "LOCALHOST:5 and 0.0.0.0:5 are the same member");
    refused("node:1,NODE:1", NULL, "appears twice");
}

static void test_membership_limit(void)
{
    static char list[(DHT_MAX_MEMBERS + 1) * 16];
    char err[256], want[64];
    dht_membership *m;
    numbered_list(list, sizeof list, DHT_MAX_MEMBERS);
    CHECK_EQ(dht_membership_new(list, "127.0.0.1:128", DHT_MAX_MEMBERS, &m, err, sizeof err), 0);
    CHECK_EQ(dht_membership_size(m), DHT_MAX_MEMBERS);
    CHECK_EQ(dht_membership_self(m), DHT_MAX_MEMBERS - 1);
    CHECK_EQ(dht_membership_quorum(m), DHT_MAX_MEMBERS / 2 + 1);
    dht_peerset all = dht_membership_replicas(m, 42);
    CHECK_EQ(dht_peerset_count(&all), DHT_MAX_MEMBERS);
    CHECK(dht_peerset_has(&all, DHT_MAX_MEMBERS - 1));
    dht_membership_free(m);
    numbered_list(list, sizeof list, DHT_MAX_MEMBERS + 1);
    snprintf(want, sizeof want, "limit of %d members", DHT_MAX_MEMBERS);
    refused(list, NULL, want);
}

static void test_membership_self_by_address(void)
{
    const char *list = "198.18.0.1:5,localhost:6,198.18.0.3:7";
    char err[256];
    dht_membership *m;
    CHECK_EQ(dht_membership_new(list, "127.0.0.1:6", 0, &m, err, sizeof err), 0);
    CHECK_EQ(dht_membership_self(m), 1);
    dht_membership_free(m);
    CHECK_EQ(dht_membership_new(list, "0.0.0.0:6", 0, &m, err, sizeof err), 0);
    CHECK_EQ(dht_membership_self(m), 1);
    dht_membership_free(m);
    CHECK_EQ(dht_membership_new(list, "198.18.0.3:7", 0, &m, err, sizeof err), 0);
    CHECK_EQ(dht_membership_self(m), 2);
    dht_membership_free(m);
    refused(list, "198.18.0.9:5", "is not in the member list");
    refused(list, "127.0.0.1:5", "is not in the member list"); /* the port matters */
    refused(list, "nonsense", "this node's address");
}

static void test_membership_quorum_arithmetic(void)
{
    /* n:                      1  2  3  4  5  6  7  8  9 */
    static const int q[] = {0, 1, 2, 2, 3, 3, 4, 4, 5, 5};
    static const int rs[] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 5};
    for (int n = 1; n <= 9; n++) {
        char list[9 * 16], err[256];
        numbered_list(list, sizeof list, n);
        dht_membership *m;
        CHECK_EQ(dht_membership_new(list, NULL, n, &m, err, sizeof err), 0);
        CHECK_EQ(dht_membership_replica_count(m), n);
        CHECK_EQ(dht_membership_quorum(m), q[n]);
        CHECK_EQ(dht_membership_recovery_sources(m), rs[n]);
        /* two quorums always meet; the sources meet every quorum missing one */
        CHECK(2 * q[n] > n);
        dht_peerset r = dht_membership_replicas(m, -7);
        CHECK_EQ(dht_peerset_count(&r), n);
        dht_membership_free(m);
    }
}

/* ---- placement ------------------------------------------------------------------ */

static dht_membership *placed(const char *list, int replicas)
{
    char err[256];
    dht_membership *m = NULL;
    if (dht_membership_new(list, NULL, replicas, &m, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", list, err);
        CHECK(0);
    }
    return m;
}

static void test_placement_replicas_default_and_bounds(void)
{
    static const int want[] = {0, 1, 2, 3, 3, 3, 3, 3, 3, 3};
    for (int n = 1; n <= 9; n++) {
        char list[9 * 16];
        numbered_list(list, sizeof list, n);
        dht_membership *m = placed(list, 0);
        CHECK_EQ(dht_membership_replica_count(m), want[n]);
        CHECK_EQ(dht_membership_quorum(m), want[n] / 2 + 1);
        for (int64_t k = -50; k < 50; k++) {
            dht_peerset r = dht_membership_replicas(m, k * 977);
            CHECK_EQ(dht_peerset_count(&r), want[n]);
        }
        dht_membership_free(m);
    }
    char err[256];
    dht_membership *m;
    CHECK_EQ(dht_membership_new("a:1,b:2,c:3", NULL, 4, &m, err, sizeof err), -1);
    CHECK(strstr(err, "4 replicas per key") != NULL && strstr(err, "3 members") != NULL);
    CHECK_EQ(dht_membership_new("a:1,b:2,c:3", NULL, -1, &m, err, sizeof err), -1);
}

/* Same members in another order and spelling, same R: same placement and
 * fingerprint; another R or member: another fingerprint. */
static void test_placement_independent_of_order_and_spelling(void)
{
    dht_membership *a = placed("localhost:5,node-b:6,198.18.0.7:7,node-d:8,node-e:9", 3);
    dht_membership *b = placed("NODE-E:9,node-d:8,198.18.0.7:7,127.0.0.1:5,Node-B:6", 3);
    dht_membership *c = placed("localhost:5,node-b:6,198.18.0.7:7,node-d:8,node-e:9", 2);
    dht_membership *d = placed("localhost:5,node-b:6,198.18.0.7:7,node-d:8,node-f:9", 3);
    CHECK_EQ(dht_membership_fingerprint(a), dht_membership_fingerprint(b));
    CHECK(dht_membership_fingerprint(a) != dht_membership_fingerprint(c));
    CHECK(dht_membership_fingerprint(a) != dht_membership_fingerprint(d));
    char la[512], lb[512];
    dht_membership_describe(a, la, sizeof la);
    dht_membership_describe(b, lb, sizeof lb);
    CHECK(strcmp(la, lb) == 0);
    CHECK(strstr(la, "replicas=3 ") == la && strstr(la, "127.0.0.1:5,198.18.0.7:7") != NULL);
    for (int64_t k = 0; k < 20000; k++) {
        int64_t key = k * 1000003 - 7;
        for (int p = 0; p < 5; p++) {
            int q = dht_membership_find(b, dht_membership_norm(a, p));
            CHECK(q >= 0);
            CHECK_EQ(dht_membership_stores(a, p, key), dht_membership_stores(b, q, key));
        }
    }
    dht_membership_free(a);
    dht_membership_free(b);
    dht_membership_free(c);
    dht_membership_free(d);
}

static void member_list(char *buf, size_t len, int n, int skip)
{
    size_t off = 0;
    for (int i = 0; i < n; i++)
        if (i != skip)
            off += (size_t)snprintf(buf + off, len - off, "%s198.18.%d.%d:7000", off ? "," : "",
                                    i / 200, i % 200 + 1);
}

/* With 100,000 keys every member holds R/N of them within 10 %. */
static void test_placement_balanced(void)
{
    static const int sizes[] = {4, 5, 6, 7, 9, 16, 32, 64};
    static char list[64 * 24];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int n = sizes[i], held[64] = {0};
        member_list(list, sizeof list, n, -1);
        dht_membership *m = placed(list, 3);
        uint64_t x = base_seed() + (uint64_t)n;
        for (int k = 0; k < 100000; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL; /* any keys */
            dht_peerset r = dht_membership_replicas(m, (int64_t)x);
            for (int p = 0; p < n; p++)
                held[p] += dht_peerset_has(&r, p);
        }
        double expect = 100000.0 * 3 / n;
        for (int p = 0; p < n; p++) {
            if (held[p] < 0.9 * expect || held[p] > 1.1 * expect)
                fprintf(stderr, "N=%d member %d holds %d keys, expected %.0f\n", n, p, held[p],
                        expect);
            CHECK(held[p] >= 0.9 * expect && held[p] <= 1.1 * expect);
        }
        dht_membership_free(m);
    }
}

/* Between `small` and `big` (one more member, `extra`), each partition
 * keeps its replica set or swaps exactly one replica for `extra`; returns
 * how many changed. */
static int changed_partitions(const dht_membership *small, const dht_membership *big,
                              int extra)
{
    int changed = 0, r = dht_membership_replica_count(small);
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
        const dht_peerset *s = dht_membership_partition_replicas(small, part);
        const dht_peerset *b = dht_membership_partition_replicas(big, part);
        int kept = 0;
        for (int p = 0; p < dht_membership_size(small); p++)
            if (dht_peerset_has(s, p) &&
                dht_peerset_has(b, dht_membership_find(big, dht_membership_norm(small, p))))
                kept++;
        if (kept == r)
            continue;
        CHECK_EQ(kept, r - 1);                /* one replica changed... */
        CHECK(dht_peerset_has(b, extra));    /* ...for the new member */
        changed++;
    }
    return changed;
}

/* Adding or removing one member changes one replica of at most 1.25 R/N of
 * the keys and nothing else. */
static void test_placement_stable(void)
{
    static const int sizes[] = {4, 5, 6, 7, 8, 9, 16, 64};
    static char list[65 * 24];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int n = sizes[i];
        member_list(list, sizeof list, n + 1, -1);
        dht_membership *big = placed(list, 3);
        for (int gone = 0; gone <= n; gone += n) { /* the first or the last one */
            member_list(list, sizeof list, n + 1, gone);
            dht_membership *small = placed(list, 3);
            int extra = dht_membership_find(big, dht_membership_norm(big, gone));
            int changed = changed_partitions(small, big, extra);
            /* Adding to n members: about R/(n+1); removing from n+1 the same. */
            double bound = 1.25 * 3.0 / (n + 1) * DHT_PARTITIONS;
            CHECK(changed > 0 && changed <= bound);
            dht_membership_free(small);
        }
        dht_membership_free(big);
    }
}

static void test_coordinator_takes_its_numbers_from_the_membership(void)
{
    sim_world *w = world_of(5, base_seed(), 0, 1);
    dht_transport *t = sim_endpoint(w, 0);
    dht_coord_config cfg;
    dht_coord_config_default(&cfg);
    cfg.members = sim_members(6, -1); /* more positions than the transport's five peers */
    CHECK(dht_coord_new(t, &cfg) == NULL);
    cfg.members = NULL; /* nothing to coordinate over */
    CHECK(dht_coord_new(t, &cfg) == NULL);
    cfg.members = sim_members(5, 4);
    dht_coord *c = dht_coord_new(t, &cfg);
    CHECK(c != NULL);
    CHECK_EQ(dht_coord_quorum(c), 3);
    dht_coord_free(c);
    sim_free(w);
}

/* ---- at the member limit ------------------------------------------------------ */

static void test_at_member_limit_rounds_start_at_self(void)
{
    /* The last member coordinates: locks and reads go to it and the ring
     * after it (0..Q-2), i.e. across every 64-bit word of a peer set;
     * writes go to every member. */
    enum { N = DHT_MAX_MEMBERS, Q = N / 2 + 1 };
    sim_world *w = world_of(N, base_seed(), 0, 1);
    static counting ct;
    counting_init(&ct, sim_endpoint(w, 0));
    dht_coord *c = make_coord_self(&ct.base, N - 1);
    CHECK_EQ(dht_coord_quorum(c), Q);
    int64_t v;
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(put1(w, c, i, 100 + i), DHT_PUT_APPLIED);
        CHECK(get1(w, c, i, &v) && v == 100 + i);
    }
    for (int r = 0; r < N; r++) {
        bool first = r == N - 1 || r < Q - 1;
        CHECK_EQ(ct.sent[r][DHT_MSG_LOCK], first ? 5 : 0);
        CHECK_EQ(ct.sent[r][DHT_MSG_READ], first ? 5 : 0);
        CHECK_EQ(ct.sent[r][DHT_MSG_WRITE], 5);
        dht_version ver;
        dht_replica_lookup(sim_replica(w, r), 4, &v, &ver);
        CHECK_EQ(v, 104);
    }
    dht_coord_free(c);
    sim_free(w);
}

static void crash_last_replica_later(sim_world *w, void *arg)
{
    (void)arg;
    fc[0] = (fault_ctx){w, DHT_MAX_MEMBERS - 1};
    sim_at(w, sim_now(w) + 150 * MS, do_crash, &fc[0]);
}

static void test_at_member_limit_linearizable_with_a_crash(void)
{
    /* DHT_MAX_MEMBERS replicas, concurrent puts and gets on few keys, the
     * last replica (the top bit of every peer set) crashing mid-run: no
     * operation fails and the history is linearizable. */
    run_scenario_of(DHT_MAX_MEMBERS, "at-limit", base_seed() + 5000, 0, 6, 80, 3,
                    crash_last_replica_later, NULL, true);
}


/* ---- membership change: the joint view ----------------------------------------- */

/* Three members 127.0.0.1:1..3 (positions 0-2) replaced by 1, 2 and 4
 * (position 3, an empty replica): epoch 1 is A, the joint view runs on
 * both.  Phase one (0-300 ms) cuts every coordinator from replica 1, so
 * A's writes land on replicas 0 and 2 only; then each coordinator moves to
 * the joint view at its own moment (as nodes hear of a change at different
 * times) while replica 0 is cut off instead.  B's quorums now include
 * {1, 3}, which hold none of phase one's writes: only the old quorum that
 * a joint operation also needs ({1, 2}) carries them forward. */
typedef struct {
    dht_coord *c;
    dht_view *joint;
} view_switch;

static void do_switch(void *arg)
{
    view_switch *vs = arg;
    CHECK_EQ(dht_coord_set_view(vs->c, vs->joint), 0);
}

static void cut_all(sim_world *w, int clients, int r, bool cut)
{
    for (int e = 0; e < clients; e++)
        sim_cut(w, e, r, cut);
}

typedef struct {
    sim_world *w;
    int clients;
} cut_ctx;

static void second_phase_cuts(void *arg)
{
    cut_ctx *cc = arg;
    cut_all(cc->w, cc->clients, 1, false);
    cut_all(cc->w, cc->clients, 0, true);
}

/* Returns the checker's verdict for one seed. */
static int joint_run(uint64_t seed, bool new_quorum_only)
{
    enum { CLIENTS = 6 };
    sim_world *w = world_of(4, seed, 0.01, CLIENTS);
    char err[256];
    dht_membership *a, *b;
    CHECK_EQ(dht_membership_new("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", NULL, 3, &a, err,
                                sizeof err), 0);
    CHECK_EQ(dht_membership_derive(a, "127.0.0.1:4,127.0.0.1:2,127.0.0.1:1", 3, &b, err,
                                   sizeof err), 0);
    CHECK_EQ(dht_membership_size(b), 4);
    CHECK_EQ(dht_membership_find(b, "127.0.0.1:4"), 3);
    CHECK_EQ(dht_membership_find(b, "127.0.0.1:3"), -1);
    CHECK_EQ(dht_membership_find_slot(b, "127.0.0.1:3"), 2);
    dht_view *old = dht_view_new(1, a, NULL, false);
    dht_view *joint = dht_view_new(1, a, b, false);
    CHECK(old != NULL && joint != NULL);
    CHECK_EQ(dht_view_number(old), 2);
    CHECK_EQ(dht_view_number(joint), 3);
    workload wl;
    memset(&wl, 0, sizeof wl);
    wl.w = w;
    wl.nclients = CLIENTS;
    wl.keys = 50; /* enough that many keys' last write is phase one's */
    wl.put_ratio = 0.5;
    wl.think_max_ns = 5 * MS;
    view_switch vs[CLIENTS];
    int64_t t0 = sim_now(w);
    for (int i = 0; i < CLIENTS; i++) {
        dht_coord_config cfg;
        dht_coord_config_default(&cfg);
        cfg.view = old;
        cfg.seed = seed * 7 + (uint64_t)i;
        cfg.id = (uint32_t)i + 1;
        cfg.test_new_quorum_only = new_quorum_only;
        wl.coords[i] = dht_coord_new(sim_endpoint(w, i), &cfg);
        CHECK(wl.coords[i] != NULL);
        wl.cs[i] = (client_state){.wl = &wl, .client = i, .left = 150};
        sim_at(w, sim_now(w) + (int64_t)sim_rand(w, 10 * MS), next_op, &wl.cs[i]);
        vs[i] = (view_switch){wl.coords[i], joint};
        sim_at(w, t0 + 300 * MS + (int64_t)sim_rand(w, 10 * MS), do_switch, &vs[i]);
    }
    cut_all(w, CLIENTS, 1, true);
    cut_ctx cc = {w, CLIENTS};
    sim_at(w, t0 + 300 * MS, second_phase_cuts, &cc);
    sim_run(w);
    expect_total(&wl, CLIENTS * 150);
    if (getenv("SIM_VERBOSE"))
        fprintf(stderr, "joint seed %llu knob %d: applied %d not-applied %d unknown %d gets %d "
                "failed %d\n", (unsigned long long)seed, new_quorum_only, wl.applied,
                wl.not_applied, wl.unknown, wl.gets_ok, wl.gets_failed);
    if (getenv("SIM_VERBOSE")) {
        int phase2_gets = 0, first_after = 0;
        for (size_t i = 0; i < wl.nhist; i++) {
            dht_history_op *g = &wl.hist[i];
            if (g->is_put || g->call < t0 + 320 * MS || g->ok != 1)
                continue;
            phase2_gets++;
            bool earlier = false;
            for (size_t j = 0; j < wl.nhist; j++)
                if (wl.hist[j].key == g->key && wl.hist[j].call >= t0 + 300 * MS &&
                    wl.hist[j].call < g->call && j != i)
                    earlier = true;
            first_after += !earlier;
        }
        fprintf(stderr, "phase-2 gets %d, first op on their key since 300 ms: %d\n",
                phase2_gets, first_after);
    }
    dht_lincheck_result res;
    int v = dht_lincheck(wl.hist, wl.nhist, &res);
    dht_lincheck_result_free(&res);
    if (!new_quorum_only && v != DHT_LIN_OK)
        check_linearizable(&wl, seed); /* prints the history, then fails */
    workload_free(&wl);
    dht_view_unref(old);
    dht_view_unref(joint);
    dht_membership_free(a);
    dht_membership_free(b);
    sim_free(w);
    return v;
}

static void test_joint_view_keeps_old_writes_visible(void)
{
    for (uint64_t s = 0; s < 5; s++)
        CHECK_EQ(joint_run(base_seed() + 500 + s, false), DHT_LIN_OK);
}

static void test_joint_view_without_old_quorum_is_caught(void)
{
    /* The test knob drops the old configuration's quorum: the checker must
     * find stale reads, or the test above proves nothing. */
    int broken = 0;
    for (uint64_t s = 0; s < 5; s++)
        broken += joint_run(base_seed() + 500 + s, true) != DHT_LIN_OK;
    if (getenv("SIM_VERBOSE"))
        fprintf(stderr, "knob: %d of 5 histories not linearizable\n", broken);
    CHECK(broken > 0);
}

static void test_view_groups(void)
{
    char err[256];
    dht_membership *a, *b;
    CHECK_EQ(dht_membership_new("h:1,h:2,h:3,h:4,h:5", NULL, 3, &a, err, sizeof err), 0);
    CHECK_EQ(dht_membership_derive(a, "h:1,h:2,h:3,h:4,h:5,h:6", 3, &b, err, sizeof err), 0);
    dht_view *v = dht_view_new(4, a, b, true);
    CHECK_EQ(dht_view_number(v), 9);
    CHECK_EQ(dht_view_size(v), 6);
    int moved = 0;
    for (uint32_t part = 0; part < DHT_PARTITIONS; part++) {
        dht_key_replicas kr;
        dht_view_partition_replicas(v, part, &kr);
        if (kr.ngroups == 1)
            continue;
        moved++;
        /* Adding a member changes one replica: the union has four, and a
         * quorum of each group is needed, not two of the four. */
        CHECK_EQ(dht_peerset_count(&kr.all), 4);
        CHECK(dht_peerset_has(&kr.group[1], 5));
        dht_peerset two = {{0}};
        int k = 0;
        for (int p = 0; p < 6 && k < 2; p++)
            if (dht_peerset_has(&kr.group[0], p) && !dht_peerset_has(&kr.group[1], p)) {
                dht_peerset_add(&two, p);
                k++;
            }
        for (int p = 0; p < 6 && k < 2; p++)
            if (dht_peerset_has(&kr.group[1], p) && !dht_peerset_has(&kr.group[0], p)) {
                dht_peerset_add(&two, p);
                k++;
            }
        CHECK(!dht_key_replicas_quorum(&kr, &two));
        CHECK(dht_key_replicas_quorum(&kr, &kr.all));
    }
    CHECK(moved > 0 && moved <= 1.25 * 3.0 / 6 * DHT_PARTITIONS);
    /* A position outside the new configuration stores nothing under it. */
    dht_membership *c;
    CHECK_EQ(dht_membership_derive(b, "h:1,h:2,h:4,h:5,h:6", 3, &c, err, sizeof err), 0);
    CHECK_EQ(dht_membership_partition_count(c, 2), 0);
    CHECK(!dht_membership_is_member(c, 2));
    CHECK_EQ(dht_membership_members(c), 5);
    CHECK_EQ(dht_membership_size(c), 6);
    /* The same member set describes alike whatever positions it has. */
    dht_membership *d;
    CHECK_EQ(dht_membership_new("h:6,h:5,h:4,h:2,h:1", NULL, 3, &d, err, sizeof err), 0);
    CHECK_EQ(dht_membership_fingerprint(c), dht_membership_fingerprint(d));
    for (uint32_t part = 0; part < DHT_PARTITIONS; part += 97) {
        const dht_peerset *pc = dht_membership_partition_replicas(c, part);
        const dht_peerset *pd = dht_membership_partition_replicas(d, part);
        for (int p = 0; p < 6; p++)
            if (dht_peerset_has(pc, p))
                CHECK(dht_peerset_has(pd, dht_membership_find(d, dht_membership_addr(c, p))));
        CHECK_EQ(dht_peerset_count(pc), dht_peerset_count(pd));
    }
    dht_membership_free(d);
    CHECK_EQ(dht_membership_derive(c, "h:1", 3, &d, err, sizeof err), -1); /* R > members */
    CHECK(d == NULL && strstr(err, "replicas") != NULL);
    dht_membership_free(c);
    dht_view_unref(v);
}

static const test_case tests[] = {
    {"view_groups", test_view_groups},
    {"joint_view_keeps_old_writes_visible", test_joint_view_keeps_old_writes_visible},
    {"joint_view_without_old_quorum_is_caught", test_joint_view_without_old_quorum_is_caught},
    {"put_at_counter_ceiling_not_applied", test_put_at_counter_ceiling_not_applied},
    {"put_then_get", test_put_then_get},
    {"random_no_faults", test_random_no_faults},
    {"message_loss", test_message_loss},
    {"delay_and_reordering", test_delay_and_reordering},
    {"one_replica_crashed", test_one_replica_crashed},
    {"crash_restart_each_replica_in_turn", test_crash_restart_each_replica_in_turn},
    {"paused_replica_serves_stale_requests_later", test_paused_replica_serves_stale_requests_later},
    {"two_replicas_down_fails_fast_then_retry_succeeds",
     test_two_replicas_down_fails_fast_then_retry_succeeds},
    {"dead_lock_holder_frees_key_after_lease", test_dead_lock_holder_frees_key_after_lease},
    {"two_writers_race_on_one_key", test_two_writers_race_on_one_key},
    {"many_writers_one_key_linearizable", test_many_writers_one_key_linearizable},
    {"minority_partition_fails_within_deadline", test_minority_partition_fails_within_deadline},
    {"read_writes_back_newest_to_quorum", test_read_writes_back_newest_to_quorum},
    {"thousands_of_random_ops_with_faults", test_thousands_of_random_ops_with_faults},
    {"same_seed_same_history", test_same_seed_same_history},
    {"healthy_round_asks_only_a_quorum", test_healthy_round_asks_only_a_quorum},
    {"stalled_first_choice_costs_one_hedge", test_stalled_first_choice_costs_one_hedge},
    {"failed_peer_is_not_asked_first", test_failed_peer_is_not_asked_first},
    {"membership_parse_and_normalise", test_membership_parse_and_normalise},
    {"membership_limit", test_membership_limit},
    {"membership_self_by_address", test_membership_self_by_address},
    {"membership_quorum_arithmetic", test_membership_quorum_arithmetic},
    {"placement_replicas_default_and_bounds", test_placement_replicas_default_and_bounds},
    {"placement_independent_of_order_and_spelling",
     test_placement_independent_of_order_and_spelling},
    {"placement_balanced", test_placement_balanced},
    {"placement_stable", test_placement_stable},
    {"coordinator_takes_its_numbers_from_the_membership",
     test_coordinator_takes_its_numbers_from_the_membership},
    {"at_member_limit_rounds_start_at_self", test_at_member_limit_rounds_start_at_self},
    {"at_member_limit_linearizable_with_a_crash", test_at_member_limit_linearizable_with_a_crash},
    {0, 0},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
