/* Random load: each thread is one sequential logical client of the history
 * (its id is pid*1000 + thread), so its operations never overlap each other
 * and the checker can rely on per-client order.  Put values are unique per
 * (process, thread, sequence), which lets the checker tell every write
 * apart. */
#include "random.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "history.h"
#include "log.h"
#include "util.h"

typedef struct {
    const random_opts *o;
    kvclient *kv;
    history *hist;
    volatile sig_atomic_t *stop;
    int64_t end_ns; /* 0: none */
    atomic_llong issued;
    atomic_llong done;
} shared;

typedef struct {
    shared *sh;
    int index;
    pthread_t thread;
    dht_hist lat;
    int64_t puts_ok, puts_false, puts_unknown, gets_ok, gets_failed;
    char first_error[160]; /* reason of this thread's first failed operation */
} worker;

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

static void *worker_main(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    const random_opts *o = sh->o;
    dht_rng rng;
    dht_rng_seed(&rng, (o->seed ? o->seed : dht_random_seed()) + (uint64_t)w->index * 7919);
    int64_t client = (int64_t)getpid() * 1000 + w->index;
    int64_t seq = 0;
    char reason[200], what[96];
    /* This thread's own handle: with --via/--etcd it starts on node
     * index % n and moves on by itself after a failed call. */
    kvclient kv = *sh->kv;
    kv.peer = w->index % (kv.t->npeers > 0 ? kv.t->npeers : 1);

    while (!should_stop(sh)) {
        int64_t key = (int64_t)dht_rng_below(&rng, (uint64_t)o->keys);
        bool is_put = dht_rng_double(&rng) < o->put_ratio;
        int64_t call = dht_now_ns(), ret;
        if (is_put) {
            int64_t value = client * 1000000 + ++seq;
            reason[0] = '\0';
            dht_put_outcome out = kv_put(&kv, key, value, reason, sizeof reason);
            ret = dht_now_ns();
            history_record(sh->hist, client, true, key, value, call, ret,
                           out == DHT_PUT_APPLIED ? 1 : out == DHT_PUT_NOT_APPLIED ? 0 : -1);
            w->puts_ok += out == DHT_PUT_APPLIED;
            w->puts_false += out == DHT_PUT_NOT_APPLIED;
            w->puts_unknown += out == DHT_PUT_UNKNOWN;
            if (out != DHT_PUT_APPLIED && !w->first_error[0])
                snprintf(w->first_error, sizeof w->first_error, "put: %.140s", reason);
            if (!o->quiet) {
                snprintf(what, sizeof what, "put(%lld, %lld)", (long long)key, (long long)value);
                print_op(o, what, out == DHT_PUT_APPLIED ? "true" : "false", ret - call,
                         out == DHT_PUT_APPLIED ? NULL : reason);
            }
        } else {
            int64_t value = 0;
            reason[0] = '\0';
            int ok = kv_get(&kv, key, &value, reason, sizeof reason);
            ret = dht_now_ns();
            history_record(sh->hist, client, false, key, value, call, ret, ok ? 1 : 0);
            w->gets_ok += ok;
            w->gets_failed += !ok;
            if (!ok && !w->first_error[0])
                snprintf(w->first_error, sizeof w->first_error, "get: %.140s", reason);
            if (!o->quiet) {
                char res[32];
                snprintf(res, sizeof res, "%lld", (long long)value);
                snprintf(what, sizeof what, "get(%lld)", (long long)key);
                print_op(o, what, ok ? res : "error", ret - call, ok ? NULL : reason);
            }
        }
        dht_hist_add(&w->lat, ret - call);
        atomic_fetch_add(&sh->done, 1);
        if (o->interval_ms > 0) {
            struct timespec ts = {o->interval_ms / 1000, (o->interval_ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int run_random(kvclient *c, const random_opts *o, volatile sig_atomic_t *stop)
{
    shared sh = {.o = o, .kv = c, .stop = stop};
    atomic_init(&sh.issued, 0);
    atomic_init(&sh.done, 0);
    if (o->history_path) {
        sh.hist = history_open(o->history_path);
        if (sh.hist == NULL) {
            perror(o->history_path);
            return 1;
        }
    }
    int64_t start = dht_now_ns();
    if (o->duration_s > 0)
        sh.end_ns = start + (int64_t)(o->duration_s * 1e9);
    worker *ws = calloc((size_t)o->concurrency, sizeof *ws);
    if (ws == NULL) {
        history_close(sh.hist);
        fprintf(stderr, "client: out of memory\n");
        return 1;
    }
    for (int i = 0; i < o->concurrency; i++) {
        ws[i].sh = &sh;
        ws[i].index = i;
        dht_hist_init(&ws[i].lat);
        pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
    }
    if (o->progress) {
        long long last = 0;
        int64_t next = start + DHT_NS_PER_SEC;
        /* Poll the workers' completion count until they all stop. */
        for (;;) {
            int64_t now = dht_now_ns();
            if (now >= next) {
                long long d = atomic_load(&sh.done);
                fprintf(stderr, "progress: %.0fs %lld ops, %lld ops/s\n",
                        (double)(now - start) / 1e9, d, d - last);
                last = d;
                next += DHT_NS_PER_SEC;
            }
            if ((o->ops && atomic_load(&sh.done) >= o->ops) || *stop ||
                (sh.end_ns && now >= sh.end_ns))
                break;
            usleep(20000);
        }
    }
    dht_hist lat;
    dht_hist_init(&lat);
    int64_t puts_ok = 0, puts_false = 0, puts_unknown = 0, gets_ok = 0, gets_failed = 0;
    char first_error[160] = "";
    for (int i = 0; i < o->concurrency; i++) {
        pthread_join(ws[i].thread, NULL);
        dht_hist_merge(&lat, &ws[i].lat);
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
    double p50 = (double)dht_hist_quantile(&lat, 0.50) / 1e6;
    double p99 = (double)dht_hist_quantile(&lat, 0.99) / 1e6;
    double p90 = (double)dht_hist_quantile(&lat, 0.90) / 1e6;
    double p999 = (double)dht_hist_quantile(&lat, 0.999) / 1e6;
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
    if (history_close(sh.hist) != 0) {
        fprintf(stderr, "client: writing history %s failed\n", o->history_path);
        return 1;
    }
    return 0;
}
