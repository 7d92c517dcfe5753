/* Whole nodes in the simulator: the node assembly (public service,
 * coordinator, replica, group commit, recovery) over the in-memory
 * network with simulated storage, all driven from one seed.  Clients call
 * the nodes' public entry points, as gRPC clients of KeyValue do; nodes
 * crash (losing what they had not synced), restart, lose their disks and
 * stall.  Every history goes through the linearizability checker, and a
 * seed run twice must give the same trace byte for byte.  SIM_SEED
 * replays one seed. */
#include <inttypes.h>

#include "base/log.h"
#include "base/util.h"
#include "lincheck.h"
#include "sim/sim_cluster.h"
#include "test.h"

#define MS DHT_NS_PER_MS
#define SEC DHT_NS_PER_SEC

static uint64_t base_seed(void)
{
    const char *s = getenv("SIM_SEED");
    return s ? strtoull(s, NULL, 10) : 20261204;
}

/* ---- clients: random puts and gets through random live nodes --------------- */

typedef struct run run;

typedef struct {
    run *r;
    int id, left;
    int64_t seq;
    bool is_put;
    int64_t key, value, call;
} client;

struct run {
    sim_cluster *c;
    sim_world *w;
    int nodes;
    client cl[16];
    int nclients;
    int64_t keys;
    dht_history_op *history;
    size_t nhist, cap;
    int applied, not_applied, unknown, gets_ok, gets_failed;
};

static void record(run *r, client *c, int ok)
{
    if (r->nhist == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 1024;
        r->history = realloc(r->history, r->cap * sizeof *r->history);
        CHECK(r->history != NULL);
    }
    r->history[r->nhist++] = (dht_history_op){
        .client = c->id, .is_put = c->is_put, .key = c->key, .value = c->value,
        .call = c->call, .ret = ok < 0 ? DHT_HISTORY_RET_UNKNOWN : sim_now(r->w), .ok = ok};
    sim_tracef(r->w, "%lld client %d %s(%lld, %lld) -> %d", (long long)sim_now(r->w), c->id,
               c->is_put ? "put" : "get", (long long)c->key, (long long)c->value, ok);
}

static void next_op(void *arg);

static void schedule_next(client *c)
{
    if (--c->left <= 0)
        return;
    sim_at(c->r->w, sim_now(c->r->w) + (int64_t)sim_rand(c->r->w, 5 * MS), next_op, c);
}

static void on_put(void *arg, int ok)
{
    client *c = arg;
    run *r = c->r;
    r->applied += ok == 1;
    r->not_applied += ok == 0;
    r->unknown += ok < 0;
    record(r, c, ok);
    schedule_next(c);
}

static void on_get(void *arg, int ok, int64_t value)
{
    client *c = arg;
    c->value = value;
    c->r->gets_ok += ok;
    c->r->gets_failed += !ok;
    record(c->r, c, ok);
    schedule_next(c);
}

static void next_op(void *arg)
{
    client *c = arg;
    run *r = c->r;
    /* A client talks to a node that is up, as one that was refused would
     * move on to the next address. */
    int node = (int)sim_rand(r->w, (uint64_t)r->nodes);
    for (int i = 0; i < r->nodes && !sim_cluster_up(r->c, node); i++)
        node = (node + 1) % r->nodes;
    c->key = (int64_t)sim_rand(r->w, (uint64_t)r->keys);
    c->is_put = sim_rand(r->w, 2) == 0;
    c->call = sim_now(r->w);
    if (c->is_put) {
        c->value = (int64_t)(c->id + 1) * 1000000 + ++c->seq;
        sim_cluster_put(r->c, node, c->key, c->value, 2 * SEC, on_put, c);
    } else {
        sim_cluster_get(r->c, node, c->key, 2 * SEC, on_get, c);
    }
}

static void run_init(run *r, const sim_cluster_config *cfg, int nclients, int ops_each,
                     int64_t keys)
{
    memset(r, 0, sizeof *r);
    r->c = sim_cluster_new(cfg);
    CHECK(r->c != NULL);
    r->w = sim_cluster_world(r->c);
    r->nodes = cfg->nodes;
    r->keys = keys;
    r->nclients = nclients;
    /* A new cluster: every node starts empty and decides so with its peers
     * (a lost question costs its deadline, 2 s). */
    int64_t until = sim_now(r->w) + 10 * SEC;
    for (bool all = false; !all && sim_now(r->w) < until;) {
        sim_run_until(r->w, sim_now(r->w) + 100 * MS);
        all = true;
        for (int i = 0; i < cfg->nodes; i++)
            all = all && sim_cluster_serving(r->c, i);
    }
    for (int i = 0; i < cfg->nodes; i++)
        CHECK(sim_cluster_serving(r->c, i));
    for (int i = 0; i < nclients; i++) {
        r->cl[i] = (client){.r = r, .id = i, .left = ops_each};
        sim_at(r->w, sim_now(r->w) + (int64_t)sim_rand(r->w, 10 * MS), next_op, &r->cl[i]);
    }
}

static void check_linearizable(run *r, uint64_t seed)
{
    dht_lincheck_result res;
    int v = dht_lincheck(r->history, r->nhist, &res);
    if (v != DHT_LIN_OK) {
        fprintf(stderr, "seed %" PRIu64 ": %s (%s), key %lld\n", seed,
                dht_lincheck_verdict_str(v), res.reason ? res.reason : "", (long long)res.key);
        if (res.sub)
            dht_history_print(stderr, r->history, res.sub, res.nsub);
    }
    dht_lincheck_result_free(&res);
    CHECK_EQ(v, DHT_LIN_OK);
}

/* Nodes a and b (or -1) lost their disks together: keys both stored have
 * one complete replica left of three and are not checked. */
static bool both_lost(run *r, int a, int b, int64_t key)
{
    return a >= 0 && b >= 0 && sim_cluster_stores(r->c, a, key) &&
           sim_cluster_stores(r->c, b, key);
}

/* Every live replica of a key holds the same (value, version) for it, and
 * no other node holds it at all. */
static void check_converged_except(run *r, int a, int b)
{
    for (int64_t k = 0; k < r->keys; k++) {
        if (both_lost(r, a, b, k))
            continue;
        dht_replica *first = NULL;
        int first_node = -1;
        for (int i = 0; i < r->nodes; i++) {
            dht_replica *rep = sim_cluster_replica(r->c, i);
            if (rep == NULL)
                continue;
            int64_t v1, v2;
            dht_version x, y;
            dht_replica_lookup(rep, k, &v2, &y);
            if (!sim_cluster_stores(r->c, i, k)) {
                CHECK_EQ(y.counter, 0); /* placement: not a replica, holds nothing */
                continue;
            }
            if (first == NULL) {
                first = rep;
                first_node = i;
                continue;
            }
            dht_replica_lookup(first, k, &v1, &x);
            if (v1 != v2 || dht_version_cmp(x, y) != 0)
                fprintf(stderr, "key %lld: node %d has %lld, node %d has %lld\n", (long long)k,
                        first_node + 1, (long long)v1, i + 1, (long long)v2);
            CHECK_EQ(v1, v2);
            CHECK(dht_version_cmp(x, y) == 0);
        }
    }
}

static void check_converged(run *r)
{
    check_converged_except(r, -1, -1);
}

static void run_free(run *r)
{
    sim_cluster_free(r->c);
    free(r->history);
}

/* ---- scenarios ---------------------------------------------------------------- */

typedef struct {
    sim_cluster *c;
    int node;
    bool wipe;
} fault;

static void do_crash(void *arg)
{
    fault *f = arg;
    sim_cluster_crash(f->c, f->node);
}

static void do_restart(void *arg)
{
    fault *f = arg;
    sim_cluster_restart(f->c, f->node, f->wipe);
}

/* Puts and gets through the public entry points of three nodes while one
 * of them crashes (with writes waiting for its group commit) and comes
 * back: linearizable, and afterwards every replica agrees. */
static void crash_and_restart(uint64_t seed, bool wipe, char **trace_out)
{
    sim_cluster_config cfg = {.seed = seed, .nodes = 3, .trace = trace_out != NULL};
    run r;
    run_init(&r, &cfg, 6, 120, 8);
    int64_t t0 = sim_now(r.w);
    fault f = {r.c, 2, wipe};
    sim_at(r.w, t0 + 150 * MS, do_crash, &f);
    sim_at(r.w, t0 + 400 * MS, do_restart, &f);
    sim_run_until(r.w, t0 + 3 * SEC);
    /* Anti-entropy (and, after a wipe, recovery) catches the node up. */
    sim_run_until(r.w, sim_now(r.w) + 3 * SEC);
    CHECK(sim_cluster_serving(r.c, 2));
    CHECK_EQ(r.applied + r.not_applied + r.unknown + r.gets_ok + r.gets_failed, 6 * 120);
    CHECK(r.applied > 100);
    CHECK(r.gets_ok > 100);
    check_linearizable(&r, seed);
    check_converged(&r);
    if (trace_out) {
        *trace_out = strdup(sim_trace_text(r.w));
        CHECK(*trace_out != NULL);
    }
    run_free(&r);
}

static void test_node_crash_restart(void)
{
    for (uint64_t i = 0; i < 4; i++)
        crash_and_restart(base_seed() + i, false, NULL);
}

static void test_node_wiped_recovers(void)
{
    for (uint64_t i = 0; i < 4; i++)
        crash_and_restart(base_seed() + 100 + i, true, NULL);
}

/* The same seed gives the same run, event for event; another seed does
 * not (so the trace is not trivially constant). */
static void test_node_same_seed_same_trace(void)
{
    char *a = NULL, *b = NULL, *c = NULL;
    crash_and_restart(base_seed(), false, &a);
    crash_and_restart(base_seed(), false, &b);
    crash_and_restart(base_seed() + 1, false, &c);
    CHECK(strlen(a) > 100000);
    CHECK(strcmp(a, b) == 0);
    CHECK(strcmp(a, c) != 0);
    free(a);
    free(b);
    free(c);
}

typedef struct {
    sim_cluster *c;
    size_t synced_at_crash, unsynced_at_crash;
} crash_probe;

static void crash_with_unsynced(void *arg)
{
    crash_probe *p = arg;
    p->synced_at_crash = sim_cluster_synced(p->c, 1);
    p->unsynced_at_crash = sim_cluster_unsynced(p->c, 1);
    sim_cluster_crash(p->c, 1);
}

typedef struct {
    int64_t key, value;
    int ok;
    bool done;
} one_put;

static void one_put_done(void *arg, int ok)
{
    one_put *p = arg;
    p->ok = ok;
    p->done = true;
}

/* A crash loses exactly what the node had not synced: its stable log keeps
 * what it had when it died, the restarted replica holds that and nothing
 * else until anti-entropy runs, and no put acknowledged by the cluster is
 * lost. */
static void test_node_crash_loses_only_unsynced(void)
{
    sim_cluster_config cfg = {.seed = base_seed() + 7, .nodes = 3,
                              .fsync_min_ns = 20 * MS, .fsync_max_ns = 30 * MS};
    sim_cluster *c = sim_cluster_new(&cfg);
    CHECK(c != NULL);
    sim_world *w = sim_cluster_world(c);
    sim_run_until(w, sim_now(w) + SEC);
    one_put puts[20];
    /* Ten puts that every node syncs... */
    for (int i = 0; i < 10; i++) {
        puts[i] = (one_put){.key = i, .value = 100 + i};
        sim_cluster_put(c, 0, i, 100 + i, 2 * SEC, one_put_done, &puts[i]);
    }
    sim_run_until(w, sim_now(w) + 500 * MS);
    CHECK_EQ(sim_cluster_synced(c, 1), 10);
    /* ...then ten more, which reach node 2's group commit within a few ms;
     * its fsync takes 20-30 ms, so a crash at 10 ms finds them queued. */
    for (int i = 10; i < 20; i++) {
        puts[i] = (one_put){.key = i, .value = 100 + i};
        sim_cluster_put(c, 0, i, 100 + i, 2 * SEC, one_put_done, &puts[i]);
    }
    crash_probe p = {.c = c};
    sim_at(w, sim_now(w) + 10 * MS, crash_with_unsynced, &p);
    sim_run_until(w, sim_now(w) + 3 * SEC);
    CHECK_EQ(p.synced_at_crash, 10);
    CHECK_EQ(p.unsynced_at_crash, 10);
    CHECK_EQ(sim_cluster_synced(c, 1), 10); /* the queue died with the node */
    for (int i = 0; i < 20; i++) {
        CHECK(puts[i].done);
        CHECK_EQ(puts[i].ok, 1); /* nodes 1 and 3 are a quorum */
    }
    /* The restarted replica holds what its log had, and nothing else... */
    sim_cluster_restart(c, 1, false);
    dht_replica *rep = sim_cluster_replica(c, 1);
    CHECK_EQ(dht_replica_size(rep), 10);
    for (int i = 0; i < 20; i++) {
        int64_t v;
        dht_version ver;
        dht_replica_lookup(rep, i, &v, &ver);
        CHECK_EQ(v, i < 10 ? 100 + i : 0);
    }
    /* ...until anti-entropy brings the rest. */
    sim_run_until(w, sim_now(w) + 3 * SEC);
    CHECK_EQ(dht_replica_size(sim_cluster_replica(c, 1)), 20);
    for (int i = 0; i < 20; i++) {
        int64_t v;
        dht_version ver;
        dht_replica_lookup(sim_cluster_replica(c, 1), i, &v, &ver);
        CHECK_EQ(v, 100 + i);
    }
    sim_cluster_free(c);
}

typedef struct {
    int ok;
    int64_t value;
    bool done;
} one_get;

static void one_get_done(void *arg, int ok, int64_t value)
{
    one_get *g = arg;
    g->ok = ok;
    g->value = value;
    g->done = true;
}

/* The case recovery exists for: a put acknowledged by nodes 1 and 3 while
 * node 2 was down; node 2 comes back without it and node 3 loses its disk.
 * Nodes 2 and 3 are a quorum that lacks the value, so node 3 may serve
 * only after copying from R-Q+1 = 2 peers; every read sees the put. */
static void test_node_wiped_node_copies_before_serving(void)
{
    for (uint64_t i = 0; i < 5; i++) {
        sim_cluster_config cfg = {.seed = base_seed() + 200 + i, .nodes = 3};
        sim_cluster *c = sim_cluster_new(&cfg);
        CHECK(c != NULL);
        sim_world *w = sim_cluster_world(c);
        sim_run_until(w, sim_now(w) + SEC);
        sim_cluster_crash(c, 1);
        one_put p = {0};
        sim_cluster_put(c, 0, 5, 55, 2 * SEC, one_put_done, &p);
        /* Long enough for the put's write retries to node 2 to end. */
        sim_run_until(w, sim_now(w) + 3 * SEC);
        CHECK(p.done);
        CHECK_EQ(p.ok, 1);
        sim_cluster_restart(c, 1, false);
        sim_cluster_restart(c, 2, true);
        CHECK(!sim_cluster_serving(c, 2));
        for (int k = 0; k < 10; k++) {
            one_get g = {0};
            sim_cluster_get(c, 1 + k % 2, 5, 2 * SEC, one_get_done, &g);
            sim_run_until(w, sim_now(w) + 20 * MS);
            CHECK(g.done);
            if (g.ok)
                CHECK_EQ(g.value, 55);
        }
        sim_run_until(w, sim_now(w) + SEC);
        CHECK(sim_cluster_serving(c, 2));
        int64_t v;
        dht_version ver;
        dht_replica_lookup(sim_cluster_replica(c, 2), 5, &v, &ver);
        CHECK_EQ(v, 55);
        sim_cluster_free(c);
    }
}

/* Nine nodes, two of them crashing and one stalling, under load. */
static void test_node_nine_nodes_faults(void)
{
    uint64_t seed = base_seed() + 9;
    sim_cluster_config cfg = {.seed = seed, .nodes = 9, .loss = 0.01};
    run r;
    run_init(&r, &cfg, 8, 60, 6);
    int64_t t0 = sim_now(r.w);
    fault f1 = {r.c, 3, false}, f2 = {r.c, 7, true};
    sim_at(r.w, t0 + 100 * MS, do_crash, &f1);
    sim_at(r.w, t0 + 120 * MS, do_crash, &f2);
    sim_cluster_pause(r.c, 5);
    sim_run_until(r.w, t0 + 300 * MS);
    sim_cluster_resume(r.c, 5);
    sim_at(r.w, sim_now(r.w) + 200 * MS, do_restart, &f1);
    sim_at(r.w, sim_now(r.w) + 250 * MS, do_restart, &f2);
    sim_run_until(r.w, t0 + 4 * SEC);
    sim_run_until(r.w, sim_now(r.w) + 4 * SEC);
    CHECK_EQ(r.applied + r.not_applied + r.unknown + r.gets_ok + r.gets_failed, 8 * 60);
    CHECK(r.applied > 50);
    check_linearizable(&r, seed);
    for (int i = 0; i < 9; i++)
        CHECK(sim_cluster_serving(r.c, i));
    check_converged(&r);
    run_free(&r);
}

/* ---- a partitioned key space: N = 6, R = 3 --------------------------------------- */

/* Under load, node `crashed` crashes and restarts with its data and node
 * `wiped` with none: linearizable, every node serves again, every key's
 * replicas agree and the other nodes hold none of it. */
static void crash_and_wipe_under_load(const sim_cluster_config *cfg, int clients, int ops,
                                      int64_t keys, int crashed, int wiped)
{
    run r;
    run_init(&r, cfg, clients, ops, keys);
    int64_t t0 = sim_now(r.w);
    fault f1 = {r.c, crashed, false}, f2 = {r.c, wiped, true};
    sim_at(r.w, t0 + 100 * MS, do_crash, &f1);
    sim_at(r.w, t0 + 150 * MS, do_crash, &f2);
    sim_at(r.w, t0 + 400 * MS, do_restart, &f1);
    sim_at(r.w, t0 + 450 * MS, do_restart, &f2);
    sim_run_until(r.w, t0 + 4 * SEC);
    sim_run_until(r.w, sim_now(r.w) + 4 * SEC);
    CHECK_EQ(r.applied + r.not_applied + r.unknown + r.gets_ok + r.gets_failed, clients * ops);
    CHECK(r.applied > 100);
    check_linearizable(&r, cfg->seed);
    for (int i = 0; i < cfg->nodes; i++)
        CHECK(sim_cluster_serving(r.c, i));
    check_converged(&r);
    run_free(&r);
}

/* Six nodes, three replicas per key, with message loss. */
static void test_node_partitioned_six_nodes(void)
{
    sim_cluster_config cfg = {.seed = base_seed() + 60, .nodes = 6, .replicas = 3,
                              .loss = 0.005};
    crash_and_wipe_under_load(&cfg, 10, 80, 40, 1, 4);
}

/* Runs w in 10 ms steps until *done or the time limit. */
static void run_until_done(sim_world *w, const bool *done, int64_t limit)
{
    while (!*done && sim_now(w) < limit)
        sim_run_until(w, sim_now(w) + 10 * MS);
}

/* With two of six nodes down, the keys they both store (two of their
 * three replicas) refuse within the deadline; every other key works. */
static void test_node_two_down_only_shared_keys_refuse(void)
{
    sim_cluster_config cfg = {.seed = base_seed() + 61, .nodes = 6, .replicas = 3};
    sim_cluster *c = sim_cluster_new(&cfg);
    sim_world *w = sim_cluster_world(c);
    sim_run_until(w, sim_now(w) + SEC);
    sim_cluster_crash(c, 0);
    sim_cluster_crash(c, 3);
    int shared = 0, other = 0;
    for (int64_t k = 0; k < 120; k++) {
        bool both = sim_cluster_stores(c, 0, k) && sim_cluster_stores(c, 3, k);
        one_put p = {.key = k, .value = 1000 + k};
        int64_t start = sim_now(w);
        sim_cluster_put(c, 1 + (int)(k % 2), k, p.value,
                        SEC, one_put_done, &p);
        run_until_done(w, &p.done, start + 2 * SEC);
        CHECK(p.done && sim_now(w) - start <= SEC + 20 * MS); /* within the deadline */
        one_get g = {0};
        sim_cluster_get(c, 5, k, SEC, one_get_done, &g);
        run_until_done(w, &g.done, sim_now(w) + 2 * SEC);
        CHECK(g.done);
        if (both) {
            shared++;
            CHECK(p.ok != 1); /* not acknowledged */
            CHECK(!g.ok);
        } else {
            other++;
            CHECK_EQ(p.ok, 1);
            CHECK(g.ok && g.value == 1000 + k);
        }
    }
    CHECK(shared > 0 && other > shared);
    sim_cluster_free(c);
}

/* Two of six nodes lose their disks at once, under load.  They must not
 * take each other's emptiness for a new cluster: they keep the cluster's
 * id and recover, each partition from two complete replicas, and serve
 * the partitions they could recover; the keys both stored (one complete
 * replica left) refuse rather than lose acknowledged puts. */
static void test_node_two_wiped_at_once_lose_nothing(void)
{
    uint64_t seed = base_seed() + 62;
    sim_cluster_config cfg = {.seed = seed, .nodes = 6, .replicas = 3};
    run r;
    run_init(&r, &cfg, 10, 120, 60);
    uint64_t id = sim_cluster_id(r.c, 2);
    CHECK(id != 0);
    int64_t t0 = sim_now(r.w);
    fault f1 = {r.c, 0, true}, f2 = {r.c, 1, true};
    sim_at(r.w, t0 + 300 * MS, do_restart, &f1);
    sim_at(r.w, t0 + 300 * MS, do_restart, &f2);
    /* Operations on the keys both stored take their whole deadline. */
    while (r.applied + r.not_applied + r.unknown + r.gets_ok + r.gets_failed < 10 * 120 &&
           sim_now(r.w) < t0 + 300 * SEC)
        sim_run_until(r.w, sim_now(r.w) + SEC);
    sim_run_until(r.w, sim_now(r.w) + 3 * SEC);
    CHECK_EQ(r.applied + r.not_applied + r.unknown + r.gets_ok + r.gets_failed, 10 * 120);
    check_linearizable(&r, seed);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(sim_cluster_id(r.c, i), id); /* no second cluster formed */
    /* Every partition of theirs that has two other complete replicas
     * serves; the ones they share wait. */
    for (int64_t k = 0; k < r.keys; k++) {
        bool lost = both_lost(&r, 0, 1, k);
        for (int i = 0; i < 2; i++)
            if (sim_cluster_stores(r.c, i, k))
                CHECK_EQ(dht_replica_partition_recovering(sim_cluster_replica(r.c, i),
                                                          dht_partition_of(k)),
                         lost);
        one_get g = {0};
        sim_cluster_get(r.c, 4, k, SEC, one_get_done, &g);
        sim_run_until(r.w, sim_now(r.w) + 1100 * MS);
        CHECK(g.done);
        CHECK_EQ(g.ok, !lost);
    }
    check_converged_except(&r, 0, 1);
    run_free(&r);
}

/* At the member limit of the tests (64 nodes, R = 3). */
static void test_node_sixty_four_nodes(void)
{
    sim_cluster_config cfg = {.seed = base_seed() + 64, .nodes = 64, .replicas = 3};
    crash_and_wipe_under_load(&cfg, 16, 40, 200, 10, 50);
}

static const test_case tests[] = {
    {"node_crash_restart", test_node_crash_restart},
    {"node_wiped_recovers", test_node_wiped_recovers},
    {"node_same_seed_same_trace", test_node_same_seed_same_trace},
    {"node_crash_loses_only_unsynced", test_node_crash_loses_only_unsynced},
    {"node_wiped_node_copies_before_serving", test_node_wiped_node_copies_before_serving},
    {"node_nine_nodes_faults", test_node_nine_nodes_faults},
    {"node_partitioned_six_nodes", test_node_partitioned_six_nodes},
    {"node_two_down_only_shared_keys_refuse", test_node_two_down_only_shared_keys_refuse},
    {"node_two_wiped_at_once_lose_nothing", test_node_two_wiped_at_once_lose_nothing},
    {"node_sixty_four_nodes", test_node_sixty_four_nodes},
    {0},
};

int main(int argc, char **argv)
{
    /* The nodes' recovery messages would drown the test's own output. */
    dht_log_init("sim", getenv("SIM_LOG") ? DHT_LOG_DEBUG : DHT_LOG_WARN, stderr);
    return test_main(argc, argv, tests);
}
