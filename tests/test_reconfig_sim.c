/* Membership changes with whole nodes in the simulator: add, remove and
 * replace under load, with message loss, a crashed driver, a joining node
 * that crashes, and two changes at once.  Clients call the current
 * members' public entry points; every history goes through the
 * linearizability checker, and after each run every key reads the same
 * through every member.  SIM_SEED replays one seed. */
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
    return s ? strtoull(s, NULL, 10) : 20261205;
}

/* ---- clients ------------------------------------------------------------------ */

typedef struct run run;

typedef struct {
    run *r;
    int id;
    int64_t seq;
    bool is_put;
    int64_t key, value, call;
} client;

struct run {
    sim_cluster *c;
    sim_world *w;
    int nodes;
    bool target[DHT_MAX_MEMBERS]; /* hosts clients call (members) */
    client cl[8];
    int nclients;
    int64_t keys;
    int64_t stop_at;
    dht_history_op *history;
    size_t nhist, cap;
    int applied, not_applied, unknown, gets_ok, gets_failed;
    char first_failure[300];
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
}

static void next_op(void *arg);

static void schedule_next(client *c)
{
    if (sim_now(c->r->w) >= c->r->stop_at)
        return;
    sim_at(c->r->w, sim_now(c->r->w) + (int64_t)sim_rand(c->r->w, 5 * MS), next_op, c);
}

static void note_failure(run *r, client *c, const char *what)
{
    if (r->first_failure[0] == '\0')
        snprintf(r->first_failure, sizeof r->first_failure, "%s of key %lld at %.3f s", what,
                 (long long)c->key, (double)sim_now(r->w) / 1e9);
}

static void on_put(void *arg, int ok)
{
    client *c = arg;
    run *r = c->r;
    r->applied += ok == 1;
    r->not_applied += ok == 0;
    r->unknown += ok < 0;
    if (ok != 1)
        note_failure(r, c, ok == 0 ? "put not applied" : "put unknown");
    record(r, c, ok);
    schedule_next(c);
}

static void on_get(void *arg, int ok, int64_t value)
{
    client *c = arg;
    c->value = value;
    c->r->gets_ok += ok;
    c->r->gets_failed += !ok;
    if (!ok)
        note_failure(c->r, c, "get failed");
    record(c->r, c, ok);
    schedule_next(c);
}

static void next_op(void *arg)
{
    client *c = arg;
    run *r = c->r;
    int node = (int)sim_rand(r->w, (uint64_t)r->nodes);
    for (int i = 0; i < r->nodes && !(r->target[node] && sim_cluster_up(r->c, node)); i++)
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

static void wait_serving(run *r, int node, int64_t limit)
{
    int64_t until = sim_now(r->w) + limit;
    while (!sim_cluster_serving(r->c, node) && sim_now(r->w) < until)
        sim_run_until(r->w, sim_now(r->w) + 50 * MS);
    CHECK(sim_cluster_serving(r->c, node));
}

static void run_init(run *r, uint64_t seed, int nodes, int members, double loss, int nclients)
{
    memset(r, 0, sizeof *r);
    sim_cluster_config cfg = {.seed = seed, .nodes = nodes, .members = members, .replicas = 3,
                              .loss = loss};
    r->c = sim_cluster_new(&cfg);
    CHECK(r->c != NULL);
    r->w = sim_cluster_world(r->c);
    r->nodes = nodes;
    r->keys = 40;
    r->nclients = nclients;
    r->stop_at = INT64_MAX;
    for (int i = 0; i < members; i++) {
        wait_serving(r, i, 20 * SEC);
        r->target[i] = true;
    }
    for (int i = 0; i < nclients; i++) {
        r->cl[i] = (client){.r = r, .id = i};
        sim_at(r->w, sim_now(r->w) + (int64_t)sim_rand(r->w, 10 * MS), next_op, &r->cl[i]);
    }
}

/* Stops the clients, lets everything settle, checks the history and that
 * every member reads every key alike; frees the run. */
static void run_finish(run *r, uint64_t seed, bool expect_no_failures)
{
    if (r->stop_at == INT64_MAX)
        r->stop_at = sim_now(r->w);
    sim_run_until(r->w, sim_now(r->w) + 5 * SEC);
    if (getenv("SIM_VERBOSE") || (expect_no_failures &&
                                  r->not_applied + r->unknown + r->gets_failed > 0))
        fprintf(stderr,
                "seed %llu: applied %d not-applied %d unknown %d gets %d failed %d%s%s\n",
                (unsigned long long)seed, r->applied, r->not_applied, r->unknown, r->gets_ok,
                r->gets_failed, r->first_failure[0] ? "; first: " : "", r->first_failure);
    dht_lincheck_result res;
    int v = dht_lincheck(r->history, r->nhist, &res);
    if (v != DHT_LIN_OK) {
        fprintf(stderr, "seed %llu: %s (%s), key %lld\n", (unsigned long long)seed,
                dht_lincheck_verdict_str(v), res.reason ? res.reason : "", (long long)res.key);
        if (res.sub)
            dht_history_print(stderr, r->history, res.sub, res.nsub);
    }
    dht_lincheck_result_free(&res);
    CHECK_EQ(v, DHT_LIN_OK);
    if (expect_no_failures)
        CHECK_EQ(r->not_applied + r->unknown + r->gets_failed, 0);
    free(r->history);
    sim_cluster_free(r->c);
}

/* Every key reads the same through every member (quorum reads). */
typedef struct {
    int ok;
    int64_t value;
    bool done;
} one_get;

static void one_get_cb(void *arg, int ok, int64_t value)
{
    one_get *g = arg;
    g->ok = ok;
    g->value = value;
    g->done = true;
}

static void check_reads_agree(run *r)
{
    /* The clients stop first, and what they started ends. */
    r->stop_at = sim_now(r->w);
    sim_run_until(r->w, sim_now(r->w) + 3 * SEC);
    for (int64_t k = 0; k < r->keys; k++) {
        int64_t first = 0;
        bool have = false;
        for (int n = 0; n < r->nodes; n++) {
            if (!r->target[n] || !sim_cluster_up(r->c, n))
                continue;
            one_get g = {0};
            sim_cluster_get(r->c, n, k, 2 * SEC, one_get_cb, &g);
            while (!g.done)
                sim_run_until(r->w, sim_now(r->w) + 10 * MS);
            CHECK_EQ(g.ok, 1);
            if (have && g.value != first) {
                fprintf(stderr, "key %lld: node %d reads %lld, an earlier node %lld\n",
                        (long long)k, n + 1, (long long)g.value, (long long)first);
                for (int m = 0; m < r->nodes; m++) {
                    dht_replica *rep = sim_cluster_replica(r->c, m);
                    if (rep == NULL)
                        continue;
                    int64_t v;
                    dht_version ver;
                    dht_replica_lookup(rep, k, &v, &ver);
                    fprintf(stderr, "  node %d: stores %d value %lld version %llu/%llx\n",
                            m + 1, sim_cluster_stores_now(r->c, m, k), (long long)v,
                            (unsigned long long)ver.counter, (unsigned long long)ver.writer);
                }
            }
            if (have)
                CHECK_EQ(g.value, first);
            first = g.value;
            have = true;
        }
    }
}

/* ---- changes -------------------------------------------------------------------- */

typedef struct {
    bool done, ok;
    char text[400];
} change_result;

static void change_cb(void *arg, bool ok, const char *text)
{
    change_result *c = arg;
    c->done = true;
    c->ok = ok;
    snprintf(c->text, sizeof c->text, "%s", text);
}

/* As an operator would: a command whose answer was lost (the network
 * failed, not the node) is issued again. */
static bool change(run *r, int via, bool add, int target, change_result *res)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        *res = (change_result){0};
        sim_cluster_change(r->c, via, add, target, 120 * SEC, change_cb, res);
        int64_t until = sim_now(r->w) + 130 * SEC;
        while (!res->done && sim_now(r->w) < until)
            sim_run_until(r->w, sim_now(r->w) + 50 * MS);
        CHECK(res->done);
        /* A retry that finds the change made: the lost answer was a yes. */
        if (attempt > 0 && !res->ok &&
            strstr(res->text, add ? "is already a member" : "is not a member") != NULL)
            res->ok = true;
        if (res->ok || strstr(res->text, "timeout") == NULL)
            break;
    }
    if (getenv("SIM_VERBOSE"))
        fprintf(stderr, "%s %d via %d: %s %s\n", add ? "add" : "remove", target + 1, via + 1,
                res->ok ? "ok" : "FAILED", res->text);
    return res->ok;
}

static void test_grow_and_shrink_under_load(void)
{
    for (uint64_t s = 0; s < 3; s++) {
        uint64_t seed = base_seed() + s;
        run r;
        run_init(&r, seed, 5, 3, 0, 6);
        change_result res;
        sim_cluster_start_joiner(r.c, 3);
        sim_cluster_start_joiner(r.c, 4);
        sim_run_until(r.w, sim_now(r.w) + 200 * MS);
        CHECK(!sim_cluster_serving(r.c, 3)); /* waits to be added */
        CHECK(change(&r, 0, true, 3, &res));
        r.target[3] = true;
        CHECK(sim_cluster_serving(r.c, 3));
        CHECK(change(&r, 3, true, 4, &res)); /* the new member drives the next */
        r.target[4] = true;
        sim_run_until(r.w, sim_now(r.w) + 300 * MS);
        /* Clients stop calling a node before it goes (a removed node
         * refuses everything, calls in flight to it included). */
        r.target[1] = false;
        sim_run_until(r.w, sim_now(r.w) + 100 * MS);
        CHECK(change(&r, 2, false, 1, &res));
        r.target[0] = false;
        sim_run_until(r.w, sim_now(r.w) + 100 * MS);
        CHECK(change(&r, 4, false, 0, &res));
        sim_run_until(r.w, sim_now(r.w) + 500 * MS);
        CHECK(sim_cluster_removed(r.c, 0) && sim_cluster_removed(r.c, 1));
        for (int n = 2; n < 5; n++)
            CHECK_EQ(sim_cluster_view_number(r.c, n), 2 * 5);
        check_reads_agree(&r);
        run_finish(&r, seed, true);
    }
}

static void test_change_refusals(void)
{
    run r;
    run_init(&r, base_seed() + 40, 4, 3, 0, 2);
    change_result res;
    CHECK(!change(&r, 0, true, 1, &res)); /* already a member */
    CHECK(strstr(res.text, "already a member") != NULL);
    CHECK(!change(&r, 0, false, 3, &res)); /* not a member */
    CHECK(strstr(res.text, "not a member") != NULL);
    CHECK(!change(&r, 1, false, 2, &res)); /* 2 members left for R = 3 */
    CHECK(strstr(res.text, "fewer than") != NULL);
    CHECK_EQ(sim_cluster_view_number(r.c, 0), 2);
    run_finish(&r, base_seed() + 40, true);
}

static void test_replace_a_dead_node(void)
{
    for (uint64_t s = 0; s < 3; s++) {
        uint64_t seed = base_seed() + 100 + s;
        run r;
        run_init(&r, seed, 4, 3, 0.01, 6);
        change_result res;
        sim_run_until(r.w, sim_now(r.w) + 300 * MS);
        sim_cluster_crash(r.c, 2);
        r.target[2] = false;
        sim_cluster_start_joiner(r.c, 3);
        CHECK(change(&r, 0, true, 3, &res));
        r.target[3] = true;
        CHECK(change(&r, 1, false, 2, &res));
        /* The dead node comes back: it learns it was removed. */
        sim_cluster_restart(r.c, 2, false);
        sim_run_until(r.w, sim_now(r.w) + 5 * SEC);
        CHECK(sim_cluster_removed(r.c, 2));
        CHECK(!sim_cluster_serving(r.c, 2));
        check_reads_agree(&r);
        run_finish(&r, seed, false);
    }
}

static void test_two_changes_at_once_one_wins(void)
{
    for (uint64_t s = 0; s < 4; s++) {
        uint64_t seed = base_seed() + 200 + s;
        run r;
        run_init(&r, seed, 5, 3, 0, 4);
        sim_cluster_start_joiner(r.c, 3);
        sim_cluster_start_joiner(r.c, 4);
        change_result a = {0}, b = {0};
        sim_cluster_change(r.c, 0, true, 3, 120 * SEC, change_cb, &a);
        sim_cluster_change(r.c, 1, true, 4, 120 * SEC, change_cb, &b);
        while (!a.done || !b.done)
            sim_run_until(r.w, sim_now(r.w) + 50 * MS);
        if (getenv("SIM_VERBOSE"))
            fprintf(stderr, "a: %d %s\nb: %d %s\n", a.ok, a.text, b.ok, b.text);
        CHECK(a.ok != b.ok); /* exactly one wins */
        const char *loser = a.ok ? b.text : a.text;
        CHECK(strstr(loser, "another change") != NULL);
        CHECK_EQ(sim_cluster_view_number(r.c, 0), 2 * 2);
        r.target[a.ok ? 3 : 4] = true;
        check_reads_agree(&r);
        run_finish(&r, seed, true);
    }
}

/* The driving node crashes at a random moment of the change; the next
 * command, on another node, completes it. */
static void test_driver_crash_then_next_command_completes(void)
{
    for (uint64_t s = 0; s < 16; s++) {
        uint64_t seed = base_seed() + 300 + s;
        run r;
        run_init(&r, seed, 4, 3, 0.01, 4);
        sim_cluster_start_joiner(r.c, 3);
        change_result a = {0}, b;
        sim_cluster_change(r.c, 0, true, 3, 120 * SEC, change_cb, &a);
        r.target[0] = false;
        /* A change takes tens of milliseconds here: crash times spread over
         * and after it hit every step (agreement, joint, copy, settle). */
        sim_run_until(r.w, sim_now(r.w) + (int64_t)sim_rand(r.w, 400 * 1000) * 1000);
        bool finished = a.done;
        sim_cluster_crash(r.c, 0);
        if (getenv("SIM_VERBOSE"))
            fprintf(stderr, "driver crashed %s, view %llu\n",
                    finished ? "after the change" : "during the change",
                    (unsigned long long)sim_cluster_view_number(r.c, 1));
        sim_run_until(r.w, sim_now(r.w) + 500 * MS);
        /* Whatever step it reached, adding 3 again ends with 3 a member. */
        CHECK(change(&r, 1, true, 3, &b) || strstr(b.text, "already a member") != NULL);
        sim_cluster_restart(r.c, 0, false);
        sim_run_until(r.w, sim_now(r.w) + 3 * SEC);
        r.target[0] = r.target[3] = true;
        for (int n = 0; n < 4; n++)
            CHECK_EQ(sim_cluster_view_number(r.c, n), 2 * 2);
        check_reads_agree(&r);
        run_finish(&r, seed, false);
    }
}

/* Removing node 4: the driver crashes mid-change and the command is run
 * again through node 4 itself, which completes the interrupted change and
 * is removed by it: that is the change asked for, so it succeeded. */
static void test_remove_completed_by_the_removed_node(void)
{
    for (uint64_t s = 0; s < 6; s++) {
        uint64_t seed = base_seed() + 500 + s;
        run r;
        run_init(&r, seed, 4, 4, 0, 3);
        r.target[3] = false;
        sim_run_until(r.w, sim_now(r.w) + 50 * MS);
        change_result a = {0}, b;
        sim_cluster_change(r.c, 0, false, 3, 120 * SEC, change_cb, &a);
        r.target[0] = false;
        sim_run_until(r.w, sim_now(r.w) + (int64_t)sim_rand(r.w, 60 * 1000) * 1000);
        bool finished = a.done;
        sim_cluster_crash(r.c, 0);
        CHECK(change(&r, 3, false, 3, &b));
        if (getenv("SIM_VERBOSE"))
            fprintf(stderr, "driver crashed %s: %s\n", finished ? "after" : "during", b.text);
        sim_cluster_restart(r.c, 0, false);
        sim_run_until(r.w, sim_now(r.w) + 3 * SEC);
        r.target[0] = true;
        CHECK(sim_cluster_removed(r.c, 3));
        for (int n = 0; n < 3; n++)
            CHECK_EQ(sim_cluster_view_number(r.c, n), 2 * 2);
        check_reads_agree(&r);
        run_finish(&r, seed, false);
    }
}

/* The joining node crashes during its copy and restarts: the change
 * completes once it is back. */
static void test_joiner_crash_during_copy(void)
{
    for (uint64_t s = 0; s < 4; s++) {
        uint64_t seed = base_seed() + 400 + s;
        run r;
        run_init(&r, seed, 4, 3, 0, 4);
        sim_cluster_start_joiner(r.c, 3);
        change_result a = {0};
        sim_cluster_change(r.c, 1, true, 3, 120 * SEC, change_cb, &a);
        sim_run_until(r.w, sim_now(r.w) + (int64_t)sim_rand(r.w, 300) * MS);
        sim_cluster_crash(r.c, 3);
        sim_run_until(r.w, sim_now(r.w) + 1 * SEC);
        sim_cluster_restart(r.c, 3, false);
        while (!a.done)
            sim_run_until(r.w, sim_now(r.w) + 50 * MS);
        if (!a.ok) { /* e.g. it crashed before the agreement: do it again */
            change_result b;
            CHECK(change(&r, 2, true, 3, &b) || strstr(b.text, "already a member") != NULL);
        }
        r.target[3] = true;
        sim_run_until(r.w, sim_now(r.w) + 2 * SEC);
        CHECK(sim_cluster_serving(r.c, 3));
        check_reads_agree(&r);
        run_finish(&r, seed, false);
    }
}

static const test_case tests[] = {
    {"change_refusals", test_change_refusals},
    {"grow_and_shrink_under_load", test_grow_and_shrink_under_load},
    {"replace_a_dead_node", test_replace_a_dead_node},
    {"two_changes_at_once_one_wins", test_two_changes_at_once_one_wins},
    {"driver_crash_then_next_command_completes", test_driver_crash_then_next_command_completes},
    {"joiner_crash_during_copy", test_joiner_crash_during_copy},
    {"remove_completed_by_the_removed_node", test_remove_completed_by_the_removed_node},
    {0}};

int main(int argc, char **argv)
{
    dht_log_init("sim", getenv("SIM_LOG") ? (dht_log_level)atoi(getenv("SIM_LOG")) : DHT_LOG_ERROR,
                 stderr);
    return test_main(argc, argv, tests);
}
