/* State sync thread: see sync.h for the protocol and why it is safe.
 *
 * The thread blocks on its own calls (a condition variable per call), never
 * on a transport thread.  Every wait is bounded by an RPC deadline or by
 * the stop flag, so dht_recovery_stop returns promptly. */
#include "protocol/recovery.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/blocking_call.h"
#include "base/log.h"
#include "base/util.h"

struct dht_recovery {
    dht_transport *t;
    dht_replica *r;
    dht_recovery_config cfg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

void dht_recovery_config_default(dht_recovery_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->self = -1;
    cfg->page = 512;
    cfg->rpc_timeout_ns = 2 * DHT_NS_PER_SEC;
    cfg->ae_interval_ns = DHT_NS_PER_SEC;
    cfg->page_pause_ns = 5 * DHT_NS_PER_MS;
    cfg->retry_ns = 200 * DHT_NS_PER_MS;
}

/* Sleeps up to ns; returns true if asked to stop. */
static bool nap(dht_recovery *s, int64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t abs = (int64_t)ts.tv_sec * DHT_NS_PER_SEC + ts.tv_nsec + ns;
    ts.tv_sec = abs / DHT_NS_PER_SEC;
    ts.tv_nsec = abs % DHT_NS_PER_SEC;
    pthread_mutex_lock(&s->mu);
    while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0) {
    }
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static bool stopping(dht_recovery *s)
{
    pthread_mutex_lock(&s->mu);
    bool stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* Scans one page of peer from cur; on DHT_OK *rep holds entries the caller
 * frees and the next page's cursor. */
static dht_status scan_page(dht_recovery *s, int peer, const dht_scan_cursor *cur, uint32_t limit,
                            dht_msg *rep)
{
    dht_msg req = {.type = DHT_MSG_SCAN, .key = cur->after, .from_start = cur->from_start,
                   .stripe = cur->stripe, .limit = limit};
    int64_t deadline = dht_transport_now(s->t) + s->cfg.rpc_timeout_ns;
    return dht_call_blocking(s->t, peer, &req, deadline, rep, NULL, 0);
}

/* Installs one entry through the write path (so it is logged); returns 1
 * if it was newer than ours, 0 if not, -1 if it could not be stored. */
static int install(dht_recovery *s, const dht_entry *e)
{
    int64_t v;
    dht_version cur;
    dht_replica_lookup(s->r, e->key, &v, &cur);
    if (dht_version_cmp(e->version, cur) <= 0)
        return 0;
    dht_msg w = {.type = DHT_MSG_WRITE, .key = e->key, .value = e->value, .version = e->version};
    dht_msg rep;
    dht_replica_handle(s->r, dht_transport_now(s->t), &w, &rep);
    return rep.ok ? 1 : -1;
}

/* Pulls every entry of peer; returns the number installed, or -1 if the
 * pass did not complete (peer unreachable, local write failure, stop). */
static long pull_all(dht_recovery *s, int peer, bool pace)
{
    long installed = 0;
    dht_scan_cursor cur = {0, 0, true};
    for (;;) {
        if (stopping(s))
            return -1;
        dht_msg rep;
        if (scan_page(s, peer, &cur, s->cfg.page, &rep) != DHT_OK || !rep.ok) {
            free(rep.entries);
            return -1;
        }
        for (uint32_t i = 0; i < rep.nentries; i++) {
            int rc = install(s, &rep.entries[i]);
            if (rc < 0) {
                free(rep.entries);
                return -1;
            }
            installed += rc;
        }
        free(rep.entries);
        if (!rep.more)
            return installed;
        cur = (dht_scan_cursor){rep.stripe, rep.key, rep.from_start};
        if (pace && nap(s, s->cfg.page_pause_ns))
            return -1;
    }
}

/* ---- start-up decision and recovery --------------------------------------- */

typedef enum { PEER_SILENT, PEER_RECOVERING, PEER_READY } peer_state;

static peer_state ask(dht_recovery *s, int peer)
{
    dht_msg rep;
    dht_scan_cursor start = {0, 0, true};
    dht_status st = scan_page(s, peer, &start, 0, &rep);
    free(rep.entries);
    if (st != DHT_OK || !rep.ok)
        return PEER_SILENT;
    return rep.recovering ? PEER_RECOVERING : PEER_READY;
}

/* Returns true once the replica may serve. */
static bool try_recover(dht_recovery *s, bool *announced)
{
    int n = s->t->npeers, q = n / 2 + 1;
    int need = n - q + 1; /* peers besides us whose union covers every quorum */
    if (s->cfg.self < 0 || n == 1) {
        s->cfg.on_ready(s->cfg.arg, "single-node cluster");
        return true;
    }
    peer_state st[64];
    int ready = 0, recovering = 0;
    for (int p = 0; p < n; p++) {
        st[p] = p == s->cfg.self ? PEER_SILENT : ask(s, p);
        ready += st[p] == PEER_READY;
        recovering += st[p] == PEER_RECOVERING;
    }
    if (recovering > 0) {
        /* Two empty nodes at once would be two failures, beyond the model:
         * the cluster is new.  Peers that already decided so hold only
         * writes made since, each also acknowledged by a node that kept
         * it, so nothing is missing here.  (Requiring them to be copied
         * would deadlock three new nodes once the first one decided.) */
        DHT_INFO("%d peer(s) are new too: this is a new cluster", recovering);
        s->cfg.on_ready(s->cfg.arg, "new cluster");
        return true;
    }
    if (ready == 0) {
        if (!*announced)
            DHT_INFO("empty data directory: waiting for peers to tell a new cluster from "
                     "a lost disk (not serving reads meanwhile)");
        *announced = true;
        return false;
    }
    if (ready < need) {
        if (!*announced)
            DHT_WARN("lost or new data directory: recovery needs %d peers with data, %d answer; "
                     "waiting (not serving reads meanwhile)", need, ready);
        *announced = true;
        return false;
    }
    DHT_INFO("joining a cluster that holds data (this node is new or lost its disk): "
             "copying every key from %d peers", need);
    int done = 0;
    long total = 0;
    for (int p = 0; p < n && done < need; p++) {
        if (st[p] != PEER_READY)
            continue;
        long got = pull_all(s, p, false);
        if (got < 0) {
            DHT_WARN("recovery from peer %d interrupted; will retry", p + 1);
            continue;
        }
        total += got;
        done++;
    }
    if (done < need)
        return false;
    DHT_INFO("recovery complete: %ld entries installed, %zu keys held", total,
             dht_replica_size(s->r));
    s->cfg.on_ready(s->cfg.arg, "recovered from peers");
    return true;
}

static void *sync_main(void *arg)
{
    dht_recovery *s = arg;
    bool announced = false;
    while (dht_replica_recovering(s->r)) {
        if (try_recover(s, &announced)) {
            dht_replica_set_recovering(s->r, false);
            break;
        }
        if (nap(s, s->cfg.retry_ns))
            return NULL;
    }
    while (!nap(s, s->cfg.ae_interval_ns)) {
        for (int p = 0; p < s->t->npeers && !stopping(s); p++) {
            if (p == s->cfg.self)
                continue;
            long got = pull_all(s, p, true);
            if (got > 0)
                DHT_INFO("anti-entropy: %ld newer entries from peer %d", got, p + 1);
        }
    }
    return NULL;
}

dht_recovery *dht_recovery_start(dht_transport *t, dht_replica *r, const dht_recovery_config *cfg)
{
    dht_recovery *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->t = t;
    s->r = r;
    s->cfg = *cfg;
    if (s->cfg.page == 0)
        s->cfg.page = 512;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, sync_main, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return NULL;
    }
    return s;
}

void dht_recovery_stop(dht_recovery *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
