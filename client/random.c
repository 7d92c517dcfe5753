/* Random load: `concurrency` logical clients, each a sequential client of
 * the history (its id is pid*1000 + index), so its operations never overlap
 * each other and the checker can rely on per-client order.  Put values are
 * unique per (process, client, sequence), which lets the checker tell every
 * write apart.
 *
 * The clients are not threads: each is a small state machine whose next
 * operation starts from the callback of its last one, on the transport's
 * worker threads.  A thread per client would pay two thread switches per
 * operation (wake the caller, then wait for the next reply); at 64 clients
 * that was most of the load generator's CPU, which the benchmark's two
 * systems share with it. */
#include "random.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "latency.h"
#include "history.h"
#include "base/log.h"
#include "base/util.h"

typedef struct {
    const random_opts *o;
    history *history;
    volatile sig_atomic_t *stop;
    int64_t end_ns; /* 0: none */
    atomic_llong issued;
    atomic_llong done;
    atomic_int running; /* clients that have not stopped yet */
    dht_latch all_stopped;
} shared;

typedef struct {
    shared *sh;
    kvclient kv; /* this client's own handle: its node moves on after a failure */
    dht_rng rng;
    int64_t id, seq;
    /* the operation in flight */
    bool is_put;
    int64_t key, value, call;
    dht_latency lat;
    int64_t puts_ok, puts_false, puts_unknown, gets_ok, gets_failed;
    char first_error[160]; /* reason of this client's first failed operation */
} lclient;

static bool should_stop(shared *sh)
{
    if (*sh->stop)
        return true;
    if (sh->end_ns && dht_now_ns() >= sh->end_ns)
        return true;
    if (sh->o->ops && atomic_fetch_add(&sh->issued, 1) >= sh->o->ops)
        return true;
    return false;
}

static void print_op(const random_opts *o, const char *what, const char *result, int64_t ns,
                     const char *reason)
{
    char ts[40];
    dht_log_timestamp(ts, sizeof ts);
    flockfile(stdout);
    printf("%s [%s] %s -> %s (%.2f ms)%s%s\n", ts, o->name, what, result, (double)ns / 1e6,
           reason ? ": " : "", reason ? reason : "");
    fflush(stdout);
    funlockfile(stdout);
}

static void on_result(void *arg, const kv_result *r);

/* Records and prints one finished operation. */
static void record(lclient *l, const kv_result *r, int64_t ret)
{
    shared *sh = l->sh;
    const random_opts *o = sh->o;
    char what[96];
    bool failed;
    if (l->is_put) {
        dht_put_outcome out = r->outcome;
        history_record(sh->history, l->id, true, l->key, l->value, l->call, ret,
                       out == DHT_PUT_APPLIED ? 1 : out == DHT_PUT_NOT_APPLIED ? 0 : -1);
        l->puts_ok += out == DHT_PUT_APPLIED;
        l->puts_false += out == DHT_PUT_NOT_APPLIED;
        l->puts_unknown += out == DHT_PUT_UNKNOWN;
        failed = out != DHT_PUT_APPLIED;
        if (!o->quiet) {
            snprintf(what, sizeof what, "put(%lld, %lld)", (long long)l->key,
                     (long long)l->value);
            print_op(o, what, failed ? "false" : "true", ret - l->call,
                     failed ? r->reason : NULL);
        }
    } else {
        history_record(sh->history, l->id, false, l->key, r->ok ? r->value : 0, l->call, ret,
                       r->ok ? 1 : 0);
        l->gets_ok += r->ok;
        l->gets_failed += !r->ok;
        failed = !r->ok;
        if (!o->quiet) {
            char res[32];
            snprintf(res, sizeof res, "%lld", (long long)r->value);
            snprintf(what, sizeof what, "get(%lld)", (long long)l->key);
            print_op(o, what, failed ? "error" : res, ret - l->call, failed ? r->reason : NULL);
        }
    }
    if (failed && !l->first_error[0])
        snprintf(l->first_error, sizeof l->first_error, "%s: %.140s", l->is_put ? "put" : "get",
                 r->reason);
    dht_latency_add(&l->lat, ret - l->call);
    atomic_fetch_add(&sh->done, 1);
}

/* Starts this client's next operation, or stops it.  An operation that
 * cannot even start counts as failed, and the next one is tried. */
static void next_op(lclient *l)
{
    shared *sh = l->sh;
    while (!should_stop(sh)) {
        l->key = (int64_t)dht_rng_below(&l->rng, (uint64_t)sh->o->keys);
        l->is_put = dht_rng_double(&l->rng) < sh->o->put_ratio;
        l->value = l->is_put ? l->id * 1000000 + ++l->seq : 0;
        l->call = dht_now_ns();
        int rc = l->is_put ? kv_put_async(&l->kv, l->key, l->value, on_result, l)
                           : kv_get_async(&l->kv, l->key, on_result, l);
        if (rc == 0)
            return;
        kv_result r = {.is_put = l->is_put, .outcome = DHT_PUT_NOT_APPLIED,
                       .reason = "call could not start (out of memory or shutting down)"};
        record(l, &r, dht_now_ns());
    }
    if (atomic_fetch_sub(&sh->running, 1) == 1)
        dht_latch_open(&sh->all_stopped);
}

static void on_interval_done(void *arg)
{
    next_op(arg);
}

static void on_result(void *arg, const kv_result *r)
{
    lclient *l = arg;
    record(l, r, dht_now_ns());
    int64_t pause = l->sh->o->interval_ms * DHT_NS_PER_MS;
    if (pause > 0 && dht_transport_after(l->kv.t, pause, on_interval_done, l) == 0)
        return;
    next_op(l);
}

int run_random(kvclient *c, const random_opts *o, volatile sig_atomic_t *stop)
{
    shared sh = {.o = o, .stop = stop};
    atomic_init(&sh.issued, 0);
    atomic_init(&sh.done, 0);
    atomic_init(&sh.running, (int)o->concurrency);
    if (o->history_path) {
        sh.history = history_open(o->history_path);
        if (sh.history == NULL) {
            perror(o->history_path);
            return 1;
        }
    }
    lclient *ws = calloc((size_t)o->concurrency, sizeof *ws);
    if (ws == NULL) {
        history_close(sh.history);
        fprintf(stderr, "client: out of memory\n");
        return 1;
    }
    dht_latch_init(&sh.all_stopped);
    int64_t start = dht_now_ns();
    if (o->duration_s > 0)
        sh.end_ns = start + (int64_t)(o->duration_s * 1e9);
    uint64_t seed = o->seed ? o->seed : dht_random_seed();
    for (int i = 0; i < o->concurrency; i++) {
        lclient *l = &ws[i];
        l->sh = &sh;
        l->id = (int64_t)getpid() * 1000 + i;
        dht_rng_seed(&l->rng, seed + (uint64_t)i * 7919);
        dht_latency_init(&l->lat);
        /* With --via/--etcd client i starts on node i % n. */
        l->kv = *c;
        kv_set_slot(&l->kv, i);
    }
    for (int i = 0; i < o->concurrency; i++)
        next_op(&ws[i]);
    if (o->progress) {
        long long last = 0;
        int64_t next = start + DHT_NS_PER_SEC;
        /* Poll the completion count until every client has stopped. */
        while (atomic_load(&sh.running) > 0) {
            int64_t now = dht_now_ns();
            if (now >= next) {
                long long d = atomic_load(&sh.done);
                fprintf(stderr, "progress: %.0fs %lld ops, %lld ops/s\n",
                        (double)(now - start) / 1e9, d, d - last);
                last = d;
                next += DHT_NS_PER_SEC;
            }
            usleep(20000);
        }
    }
    dht_latch_wait(&sh.all_stopped);
    dht_latch_destroy(&sh.all_stopped);
    dht_latency lat;
    dht_latency_init(&lat);
    int64_t puts_ok = 0, puts_false = 0, puts_unknown = 0, gets_ok = 0, gets_failed = 0;
    char first_error[160] = "";
    for (int i = 0; i < o->concurrency; i++) {
        dht_latency_merge(&lat, &ws[i].lat);
        puts_ok += ws[i].puts_ok;
        puts_false += ws[i].puts_false;
        puts_unknown += ws[i].puts_unknown;
        gets_ok += ws[i].gets_ok;
        gets_failed += ws[i].gets_failed;
        if (!first_error[0] && ws[i].first_error[0])
            memcpy(first_error, ws[i].first_error, sizeof first_error);
    }
    free(ws);
    double secs = (double)(dht_now_ns() - start) / 1e9;
    int64_t total = puts_ok + puts_false + puts_unknown + gets_ok + gets_failed;
    int64_t errors = puts_false + puts_unknown + gets_failed;
    double p50 = (double)dht_latency_quantile(&lat, 0.50) / 1e6;
    double p99 = (double)dht_latency_quantile(&lat, 0.99) / 1e6;
    double p90 = (double)dht_latency_quantile(&lat, 0.90) / 1e6;
    double p999 = (double)dht_latency_quantile(&lat, 0.999) / 1e6;
    double maxms = (double)lat.max_ns / 1e6;
    /* A JSON string needs no more escaping than this: reasons are ASCII. */
    for (char *p = first_error; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '\'';
    if (o->json)
        printf("{\"ops\":%lld,\"errors\":%lld,\"puts_ok\":%lld,\"puts_false\":%lld,"
               "\"puts_unknown\":%lld,\"gets_ok\":%lld,\"gets_failed\":%lld,"
               "\"seconds\":%.3f,\"ops_per_sec\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"max_ms\":%.3f,\"p90_ms\":%.3f,\"p999_ms\":%.3f,\"first_error\":\"%s\"}\n",
               (long long)total, (long long)errors, (long long)puts_ok, (long long)puts_false,
               (long long)puts_unknown, (long long)gets_ok, (long long)gets_failed, secs,
               secs > 0 ? (double)total / secs : 0, p50, p99, maxms, p90, p999, first_error);
    else
        printf("summary: ops=%lld errors=%lld (puts ok=%lld false=%lld unknown=%lld; gets "
               "ok=%lld failed=%lld) seconds=%.2f ops/s=%.1f p50=%.2fms p99=%.2fms max=%.2fms\n",
               (long long)total, (long long)errors, (long long)puts_ok, (long long)puts_false,
               (long long)puts_unknown, (long long)gets_ok, (long long)gets_failed, secs,
               secs > 0 ? (double)total / secs : 0, p50, p99, maxms);
    fflush(stdout);
    if (history_close(sh.history) != 0) {
        fprintf(stderr, "client: writing history %s failed\n", o->history_path);
        return 1;
    }
    return 0;
}
