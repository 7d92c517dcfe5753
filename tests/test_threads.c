/* Concurrency tests for ThreadSanitizer: the real coordinator and replicas
 * with callbacks arriving on several threads at once, as they do over gRPC,
 * but through a small threaded in-memory transport so the sanitizer sees
 * every synchronisation (gRPC's own is not instrumented).
 *
 * The transport: `send` queues the request; a pool of delivery threads
 * serves it on the target replica and runs the callback; a replica marked
 * down answers UNAVAILABLE.  Timers come from the shared timer service. */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "storage/group_commit.h"
#include "protocol/coordinator.h"
#include "protocol/membership.h"
#include "lincheck.h"
#include "protocol/replica.h"
#include "protocol/recovery.h"
#include "test.h"
#include "base/timers.h"
#include "base/util.h"

#define REPLICAS 3
#define POOL 4

typedef struct job {
    struct job *next;
    int peer;
    dht_msg req;
    dht_reply_cb cb;
    void *arg;
} job;

typedef struct {
    dht_transport base; /* first */
    /* 127.0.0.1:1..:REPLICAS, as seen by a client (members, no self) and by
     * each replica (self[i]) */
    dht_membership *members, *self[REPLICAS];
    dht_replica *replicas[REPLICAS];
    /* Each peer's recovery, if one runs: its Scan answers carry what a
     * node's do (cluster id, incarnation = index + 1, founder). */
    dht_recovery *_Atomic rec[REPLICAS];
    /* each replica's group commit: recovery installs through it, so its
     * completions run on another thread, as in a server */
    dht_group_commit *commit[REPLICAS];
    atomic_bool down[REPLICAS];
    dht_timers *timers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    bool stop;
    pthread_t pool[POOL];
    atomic_long served;
} tnet;

static int t_send(dht_transport *t, int peer, const dht_msg *req, int64_t deadline,
                  dht_reply_cb cb, void *arg)
{
    (void)deadline;
    tnet *n = (tnet *)t;
    job *j = malloc(sizeof *j);
    if (j == NULL)
        return -1;
    *j = (job){NULL, peer, *req, cb, arg};
    pthread_mutex_lock(&n->mu);
    if (n->tail)
        n->tail->next = j;
    else
        n->head = j;
    n->tail = j;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    return 0;
}

static int t_after(dht_transport *t, int64_t delay, dht_timer_cb cb, void *arg)
{
    return dht_timers_add(((tnet *)t)->timers, delay, cb, arg);
}

static int64_t t_now(dht_transport *t)
{
    (void)t;
    return dht_now_ns();
}

static const dht_transport_ops tnet_ops = {.send = t_send, .after = t_after, .now = t_now};

static void *pool_main(void *arg)
{
    tnet *n = arg;
    for (;;) {
        pthread_mutex_lock(&n->mu);
        while (n->head == NULL && !n->stop)
            pthread_cond_wait(&n->cv, &n->mu);
        job *j = n->head;
        if (j == NULL) {
            pthread_mutex_unlock(&n->mu);
            return NULL;
        }
        n->head = j->next;
        if (n->head == NULL)
            n->tail = NULL;
        pthread_mutex_unlock(&n->mu);
        if (atomic_load(&n->down[j->peer])) {
            j->cb(j->arg, DHT_ERR_UNAVAILABLE, NULL);
        } else {
            dht_msg rep;
            dht_replica_handle(n->replicas[j->peer], dht_now_ns(), &j->req, &rep);
            dht_recovery *rec = atomic_load(&n->rec[j->peer]);
            if (j->req.type == DHT_MSG_SCAN) {
                rep.incarnation = (uint64_t)j->peer + 1;
                rep.cluster_id = rec ? dht_recovery_cluster_id(rec) : 0;
                rep.founder = rec != NULL && dht_recovery_founder(rec, j->req.incarnation);
            }
            j->cb(j->arg, DHT_OK, &rep);
        }
        atomic_fetch_add(&n->served, 1);
        free(j);
    }
}

static tnet *tnet_new(void)
{
    tnet *n = calloc(1, sizeof *n);
    CHECK(n != NULL);
    n->base.ops = &tnet_ops;
    n->base.npeers = REPLICAS;
    char list[REPLICAS * 16] = "", err[256];
    for (int i = 0; i < REPLICAS; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s127.0.0.1:%d",
                 i ? "," : "", i + 1);
    CHECK(dht_membership_new(list, NULL, 0, &n->members, err, sizeof err) == 0);
    for (int i = 0; i < REPLICAS; i++) {
        char self[32];
        snprintf(self, sizeof self, "127.0.0.1:%d", i + 1);
        CHECK(dht_membership_new(list, self, 0, &n->self[i], err, sizeof err) == 0);
        CHECK_EQ(dht_membership_self(n->self[i]), i);
        n->replicas[i] = dht_replica_new();
        n->commit[i] = dht_group_commit_start(n->replicas[i]);
        CHECK(n->commit[i] != NULL);
    }
    n->timers = dht_timers_start();
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    for (int i = 0; i < POOL; i++)
        pthread_create(&n->pool[i], NULL, pool_main, n);
    return n;
}

/* Callers make sure every operation completed first. */
static void tnet_free(tnet *n)
{
    dht_timers_stop(n->timers); /* runs what is pending: late unlocks */
    pthread_mutex_lock(&n->mu);
    n->stop = true;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    for (int i = 0; i < POOL; i++)
        pthread_join(n->pool[i], NULL);
    for (int i = 0; i < REPLICAS; i++) {
        dht_recovery_stop(atomic_load(&n->rec[i])); /* halted by the test */
        dht_group_commit_stop(n->commit[i]);
        dht_replica_free(n->replicas[i]);
        dht_membership_free(n->self[i]);
    }
    dht_membership_free(n->members);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n);
}

typedef struct {
    tnet *n;
    dht_coord *c;
    int id, ops;
    int64_t keys;
    dht_history_op *hist;
    int nhist;
    int failures;
} client_arg;

static void *client_main(void *arg)
{
    client_arg *a = arg;
    dht_rng rng;
    dht_rng_seed(&rng, (uint64_t)a->id + 1);
    for (int i = 0; i < a->ops; i++) {
        int64_t key = (int64_t)dht_rng_below(&rng, (uint64_t)a->keys), value = 0;
        bool put = dht_rng_below(&rng, 2) == 0;
        int64_t call = dht_now_ns();
        int ok;
        if (put) {
            value = (int64_t)(a->id + 1) * 1000000 + i;
            dht_put_outcome o = dht_coord_put_blocking(a->c, key, value, NULL, 0);
            ok = o == DHT_PUT_APPLIED ? 1 : o == DHT_PUT_NOT_APPLIED ? 0 : -1;
        } else {
            ok = dht_coord_get_blocking(a->c, key, &value, NULL, 0);
        }
        a->failures += ok != 1;
        a->hist[a->nhist++] = (dht_history_op){a->id, put, key, value, call,
                                            ok < 0 ? DHT_HISTORY_RET_UNKNOWN : dht_now_ns(), ok};
    }
    return NULL;
}

static void run_clients(tnet *n, int nclients, int ops, int64_t keys, bool kill_one)
{
    client_arg args[16];
    pthread_t th[16];
    dht_coord_config cfg;
    dht_coord_config_default(&cfg);
    cfg.members = n->members;
    dht_coord *shared = dht_coord_new(&n->base, &cfg); /* one coordinator, many threads */
    for (int i = 0; i < nclients; i++) {
        args[i] = (client_arg){.n = n, .id = i, .ops = ops, .keys = keys};
        args[i].c = i % 2 ? shared : dht_coord_new(&n->base, &cfg);
        args[i].hist = calloc((size_t)ops, sizeof(dht_history_op));
        pthread_create(&th[i], NULL, client_main, &args[i]);
    }
    if (kill_one) {
        while (atomic_load(&n->served) < 2000)
            usleep(1000);
        atomic_store(&n->down[1], true);
    }
    size_t total = 0;
    for (int i = 0; i < nclients; i++) {
        pthread_join(th[i], NULL);
        total += (size_t)args[i].nhist;
        CHECK_EQ(args[i].failures, 0);
    }
    dht_history_op *all = malloc(total * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < nclients; i++) {
        memcpy(all + k, args[i].hist, (size_t)args[i].nhist * sizeof *all);
        k += (size_t)args[i].nhist;
        free(args[i].hist);
        if (args[i].c != shared)
            dht_coord_free(args[i].c);
    }
    dht_lincheck_result res;
    int v = dht_lincheck(all, total, &res);
    if (v != DHT_LIN_OK && res.sub)
        dht_history_print(stderr, all, res.sub, res.nsub);
    dht_lincheck_result_free(&res);
    CHECK_EQ(v, DHT_LIN_OK);
    free(all);
    dht_coord_free(shared); /* waits for late unlocks and retries */
}

static void test_concurrent_clients(void)
{
    tnet *n = tnet_new();
    run_clients(n, 8, 400, 4, false);
    tnet_free(n);
}

static void test_concurrent_clients_replica_dies(void)
{
    tnet *n = tnet_new();
    run_clients(n, 8, 400, 4, true);
    tnet_free(n);
}

typedef struct {
    dht_replica *r;
    int id;
} writer_arg;

static void *replica_writer(void *arg)
{
    writer_arg *a = arg;
    for (uint64_t c = 1; c <= 2000; c++) {
        dht_msg req = {.type = DHT_MSG_WRITE, .key = (int64_t)(c % 8), .value = (int64_t)c,
                       .version = {c, (uint64_t)a->id}}, rep;
        dht_replica_handle(a->r, 0, &req, &rep);
        CHECK(rep.ok);
        dht_msg rd = {.type = DHT_MSG_READ, .key = (int64_t)(c % 8)};
        dht_replica_handle(a->r, 0, &rd, &rep);
        CHECK(rep.version.counter >= c); /* never goes back */
    }
    return NULL;
}

static void test_replica_parallel_writes_keep_max(void)
{
    dht_replica *r = dht_replica_new();
    pthread_t th[6];
    writer_arg a[6];
    for (int i = 0; i < 6; i++) {
        a[i] = (writer_arg){r, i + 1};
        pthread_create(&th[i], NULL, replica_writer, &a[i]);
    }
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    for (int k = 0; k < 8; k++) {
        int64_t v;
        dht_version ver;
        dht_replica_lookup(r, k, &v, &ver);
        CHECK_EQ(ver.writer, 6); /* highest writer id at the highest counter */
        CHECK(ver.counter >= 1993);
    }
    dht_replica_free(r);
}

/* ---- recovery ------------------------------------------------------------ */

static atomic_int ready_calls;

static void count_ready(void *arg, const char *why)
{
    (void)arg;
    (void)why;
    atomic_fetch_add(&ready_calls, 1);
}

/* Recovery's write path: the replica's group commit, whose thread runs
 * the completion (and so the next step of the chain). */
static int install_via_commit(void *arg, const dht_msg *reqs, dht_msg *reps, size_t n,
                              void (*done)(void *), void *done_arg)
{
    return dht_group_commit_submit(arg, reqs, reps, n, done, done_arg);
}

static dht_recovery *sync_for(tnet *n, int self, int64_t ae_ms)
{
    dht_recovery_config cfg;
    dht_recovery_config_default(&cfg);
    cfg.members = n->self[self];
    cfg.install = install_via_commit;
    cfg.arg = n->commit[self];
    cfg.page = 7; /* many pages */
    cfg.ae_interval_ns = ae_ms * DHT_NS_PER_MS;
    cfg.page_pause_ns = 0;
    cfg.retry_ns = 20 * DHT_NS_PER_MS;
    cfg.on_ready = count_ready;
    cfg.incarnation = (uint64_t)self + 1;
    dht_recovery *s = dht_recovery_start(&n->base, n->replicas[self], &cfg);
    CHECK(s != NULL);
    atomic_store(&n->rec[self], s);
    return s;
}

static bool wait_serving(dht_replica *r, int ms)
{
    for (int i = 0; i < ms && dht_replica_recovering(r); i++)
        usleep(1000);
    return !dht_replica_recovering(r);
}

static void test_sync_empty_node_recovers_from_peers(void)
{
    tnet *n = tnet_new();
    for (int64_t k = 0; k < 100; k++) {
        /* replica 0 and 1 each hold the newest version of half the keys */
        dht_replica_apply(n->replicas[0], k, k, (dht_version){k % 2 ? 2u : 1u, 1});
        dht_replica_apply(n->replicas[1], k, -k, (dht_version){k % 2 ? 1u : 2u, 1});
    }
    dht_replica_set_recovering(n->replicas[2], true);
    dht_recovery *s = sync_for(n, 2, 1000);
    CHECK(wait_serving(n->replicas[2], 5000));
    CHECK_EQ(atomic_load(&ready_calls), 1);
    for (int64_t k = 0; k < 100; k++) {
        int64_t v;
        dht_version ver;
        dht_replica_lookup(n->replicas[2], k, &v, &ver);
        CHECK_EQ(ver.counter, 2);
        CHECK_EQ(v, k % 2 ? k : -k);
    }
    dht_recovery_halt(s); /* freed by tnet_free: peers may still ask */
    tnet_free(n);
}

static void test_sync_waits_for_enough_peers(void)
{
    tnet *n = tnet_new();
    dht_replica_apply(n->replicas[0], 1, 10, (dht_version){1, 1});
    atomic_store(&n->down[1], true);
    dht_replica_set_recovering(n->replicas[2], true);
    dht_recovery *s = sync_for(n, 2, 1000);
    usleep(300000);
    /* one peer with data is not enough: it may lack a write that only the
     * other peer and our lost disk had */
    CHECK(dht_replica_recovering(n->replicas[2]));
    atomic_store(&n->down[1], false);
    CHECK(wait_serving(n->replicas[2], 5000));
    int64_t v;
    dht_version ver;
    dht_replica_lookup(n->replicas[2], 1, &v, &ver);
    CHECK_EQ(v, 10);
    dht_recovery_halt(s); /* freed by tnet_free: peers may still ask */
    tnet_free(n);
}

static void test_sync_new_cluster_when_all_peers_empty(void)
{
    tnet *n = tnet_new();
    dht_recovery *s[REPLICAS];
    for (int i = 0; i < REPLICAS; i++) /* all empty before anyone asks */
        dht_replica_set_recovering(n->replicas[i], true);
    for (int i = 0; i < REPLICAS; i++)
        s[i] = sync_for(n, i, 1000);
    for (int i = 0; i < REPLICAS; i++)
        CHECK(wait_serving(n->replicas[i], 5000));
    CHECK_EQ(atomic_load(&ready_calls), REPLICAS);
    for (int i = 0; i < REPLICAS; i++)
        dht_recovery_halt(s[i]);
    tnet_free(n);
}

static void test_sync_alone_keeps_waiting(void)
{
    tnet *n = tnet_new();
    atomic_store(&n->down[0], true);
    atomic_store(&n->down[1], true);
    dht_replica_set_recovering(n->replicas[2], true);
    dht_recovery *s = sync_for(n, 2, 1000);
    usleep(300000);
    CHECK(dht_replica_recovering(n->replicas[2])); /* new cluster or lost disk? unknown */
    dht_recovery_halt(s); /* freed by tnet_free: peers may still ask */
    tnet_free(n);
}

static void test_anti_entropy_catches_up(void)
{
    tnet *n = tnet_new();
    for (int64_t k = 0; k < 50; k++) {
        dht_replica_apply(n->replicas[0], k, k + 1000, (dht_version){5, 9});
        dht_replica_apply(n->replicas[2], k, k, (dht_version){4, 9});
    }
    dht_recovery *s = sync_for(n, 2, 20);
    bool done = false;
    for (int t = 0; t < 3000 && !done; t++) { /* a pass visits keys in no set order */
        usleep(1000);
        done = true;
        for (int64_t k = 0; k < 50 && done; k++) {
            int64_t v;
            dht_version ver;
            dht_replica_lookup(n->replicas[2], k, &v, &ver);
            done = v == k + 1000;
        }
    }
    CHECK(done);
    for (int64_t k = 0; k < 50; k++) {
        int64_t v;
        dht_version ver;
        dht_replica_lookup(n->replicas[2], k, &v, &ver);
        CHECK_EQ(v, k + 1000);
    }
    dht_recovery_halt(s); /* freed by tnet_free: peers may still ask */
    tnet_free(n);
}

static atomic_int timer_runs;

static void count_timer(void *arg)
{
    (void)arg;
    atomic_fetch_add(&timer_runs, 1);
}

static void test_timers_cancel(void)
{
    dht_timers *t = dht_timers_start();
    void *far = dht_timers_add_cancelable(t, 60 * DHT_NS_PER_SEC, count_timer, NULL);
    CHECK(far != NULL);
    CHECK_EQ(dht_timers_add(t, 0, count_timer, NULL), 0);
    while (atomic_load(&timer_runs) == 0)
        usleep(1000);
    CHECK_EQ(dht_timers_cancel(t, far), 1); /* revoked: it never runs */
    /* A revoked timer is not pending, and stop does not wait for its time
     * (it did: every client command lingered for its 2 s deadline). */
    CHECK_EQ(dht_timers_pending(t), 0);
    dht_timers_stop(t);
    CHECK_EQ(atomic_load(&timer_runs), 1);
}


/* Timers run in deadline order whatever is cancelled around them, and a
 * cancelled one never runs: the heap entries move as others leave. */
enum { MANY = 200 };

typedef struct {
    pthread_mutex_t mu;
    int order[MANY];
    int n;
} run_log;

typedef struct {
    run_log *log;
    int id;
} order_arg;

static void record_order(void *arg)
{
    order_arg *a = arg;
    pthread_mutex_lock(&a->log->mu);
    a->log->order[a->log->n++] = a->id;
    pthread_mutex_unlock(&a->log->mu);
}

static void wait_latch(void *arg)
{
    dht_latch_wait(arg);
}

static void test_timers_cancel_many(void)
{
    static order_arg args[MANY];
    static void *handles[MANY];
    run_log log = {.n = 0};
    pthread_mutex_init(&log.mu, NULL);
    dht_latch gate;
    dht_latch_init(&gate);
    dht_timers *t = dht_timers_start();
    /* The timer thread waits in this callback while the test adds and
     * cancels, so adds see no contention and their times are exact. */
    CHECK_EQ(dht_timers_add(t, 0, wait_latch, &gate), 0);
    usleep(20000);
    /* timer i is due at start + 100 ms + (i * 37 % MANY) * 2 ms: a shuffled
     * order, on one time base */
    int64_t start = dht_now_ns();
    for (int i = 0; i < MANY; i++) {
        args[i] = (order_arg){&log, i};
        int64_t due = start + 100 * DHT_NS_PER_MS + (int64_t)((i * 37) % MANY) * 2 * DHT_NS_PER_MS;
        handles[i] = dht_timers_add_cancelable(t, due - dht_now_ns(), record_order, &args[i]);
        CHECK(handles[i] != NULL);
    }
    dht_rng rng;
    dht_rng_seed(&rng, 42);
    int kept = 0;
    for (int i = 0; i < MANY; i++) { /* cancel about half, in a random order */
        int j = (int)dht_rng_below(&rng, MANY);
        if (handles[j] != NULL) {
            CHECK_EQ(dht_timers_cancel(t, handles[j]), 1);
            handles[j] = NULL;
        }
    }
    for (int i = 0; i < MANY; i++)
        kept += handles[i] != NULL;
    CHECK_EQ((int)dht_timers_pending(t), kept);
    dht_latch_open(&gate);
    dht_timers_stop(t); /* runs every kept timer when due */
    CHECK_EQ(log.n, kept);
    for (int k = 0; k < log.n; k++) {
        int id = log.order[k];
        CHECK(handles[id] != NULL); /* never a cancelled one */
        if (k > 0)
            CHECK((log.order[k - 1] * 37) % MANY < (id * 37) % MANY); /* due order */
    }
    dht_latch_destroy(&gate);
    pthread_mutex_destroy(&log.mu);
}

/* ---- group commit ---------------------------------------------------------- */

enum { SUBMITTERS = 4, BATCHES = 150, PER_BATCH = 3 };

typedef struct {
    dht_msg reqs[PER_BATCH], reps[PER_BATCH];
    atomic_int *done, *bad;
} commit_job;

static void commit_done(void *arg)
{
    commit_job *j = arg;
    for (int i = 0; i < PER_BATCH; i++)
        if (!j->reps[i].ok || j->reps[i].type != DHT_MSG_WRITE)
            atomic_fetch_add(j->bad, 1);
    atomic_fetch_add(j->done, 1);
    free(j);
}

typedef struct {
    dht_group_commit *a;
    int id;
    atomic_int *done, *bad, *refused;
} submitter_arg;

static void *submitter(void *arg)
{
    submitter_arg *s = arg;
    for (int b = 0; b < BATCHES; b++) {
        commit_job *j = calloc(1, sizeof *j);
        CHECK(j != NULL);
        j->done = s->done;
        j->bad = s->bad;
        for (int i = 0; i < PER_BATCH; i++)
            j->reqs[i] = (dht_msg){.type = DHT_MSG_WRITE, .key = s->id * PER_BATCH + i,
                                   .value = b, .version = {(uint64_t)b + 1, (uint64_t)s->id + 1}};
        if (dht_group_commit_submit(s->a, j->reqs, j->reps, PER_BATCH, commit_done, j) != 0) {
            atomic_fetch_add(s->refused, 1);
            free(j);
        }
    }
    return NULL;
}

/* The scheduling policy of this process's thread named `name`, or -1. */
static int policy_of_thread(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return -1;
    int policy = -1;
    struct dirent *e;
    while (policy < 0 && (e = readdir(d)) != NULL) {
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(comm, sizeof comm, f) != NULL && strncmp(comm, name, strlen(name)) == 0 &&
            comm[strlen(name)] == '\n')
            policy = sched_getscheduler(atoi(e->d_name));
        fclose(f);
    }
    closedir(d);
    return policy;
}

/* Batches submitted from several threads at once are each applied and
 * answered exactly once, and the group-commit thread runs under SCHED_BATCH so
 * its wake-ups do not preempt transport threads. */
static void test_group_commit_answers_every_batch_under_sched_batch(void)
{
    dht_replica *r = dht_replica_new();
    dht_group_commit *a = dht_group_commit_start(r);
    CHECK(a != NULL);
    atomic_int done = 0, bad = 0, refused = 0;
    pthread_t th[SUBMITTERS];
    submitter_arg args[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        args[i] = (submitter_arg){a, i, &done, &bad, &refused};
        pthread_create(&th[i], NULL, submitter, &args[i]);
    }
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(th[i], NULL);
    /* By the first answer the thread has set its policy. */
    for (int i = 0; i < 5000 && atomic_load(&done) == 0; i++)
        usleep(1000);
    CHECK_EQ(policy_of_thread("dht-commit"), SCHED_BATCH);
    dht_group_commit_stop(a); /* finishes what is queued */
    CHECK_EQ(atomic_load(&refused), 0);
    CHECK_EQ(atomic_load(&done), SUBMITTERS * BATCHES);
    CHECK_EQ(atomic_load(&bad), 0);
    for (int k = 0; k < SUBMITTERS * PER_BATCH; k++) {
        int64_t v;
        dht_version ver;
        dht_replica_lookup(r, k, &v, &ver);
        CHECK_EQ(v, BATCHES - 1);
        CHECK_EQ(ver.counter, BATCHES);
    }
    dht_replica_free(r);
}

static const test_case tests[] = {
    {"concurrent_clients", test_concurrent_clients},
    {"concurrent_clients_replica_dies", test_concurrent_clients_replica_dies},
    {"replica_parallel_writes_keep_max", test_replica_parallel_writes_keep_max},
    {"sync_empty_node_recovers_from_peers", test_sync_empty_node_recovers_from_peers},
    {"sync_waits_for_enough_peers", test_sync_waits_for_enough_peers},
    {"sync_new_cluster_when_all_peers_empty", test_sync_new_cluster_when_all_peers_empty},
    {"sync_alone_keeps_waiting", test_sync_alone_keeps_waiting},
    {"anti_entropy_catches_up", test_anti_entropy_catches_up},
    {"timers_cancel", test_timers_cancel},
    {"timers_cancel_many", test_timers_cancel_many},
    {"group_commit_answers_every_batch_under_sched_batch",
     test_group_commit_answers_every_batch_under_sched_batch},
    {0, 0},
};

int main(int argc, char **argv)
{
    return test_main(argc, argv, tests);
}
