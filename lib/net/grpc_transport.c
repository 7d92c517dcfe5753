/* gRPC C-core transport: this file owns starting and stopping an instance
 * and the dht_transport vtable it hands out; the other files of the
 * transport are listed at the end of this comment, which is the overview
 * of the whole.
 *
 * Threads: `workers` threads, each blocking in grpc_completion_queue_next on
 * its own queue, plus one timer thread.  Outgoing calls are created on the
 * calling worker's queue when a worker makes them (so a coordinator's
 * fan-out usually completes on the thread that started it) and round-robin
 * otherwise.  Server calls are requested on every queue, a few at a time per
 * method, and re-requested as soon as one arrives.
 *
 * Replica requests to other nodes do not use a call each: they are batched
 * per peer and kind and sent as messages of a long-lived bidirectional
 * stream (cstream here, sstream at the peer).  The unary Batch method stays
 * for tools and for the local replica's fallback.
 *
 * Every completion-queue tag is a pointer to a struct whose first member is
 * a tag_kind, so one switch dispatches all events.
 *
 * Ownership: a ccall (outgoing call) and an scall (incoming call) are
 * malloc'd when started and freed by the worker that sees their final
 * event.  Byte buffers, slices and metadata arrays inside them are released
 * there too.  Streams (cstream, sstream) are reference-counted: each
 * operation started on the call holds one, and whoever drops the last
 * frees the stream.  A sent batch (sbatch) and its items belong to the
 * stream until its reply, its deadline or the stream's end takes it out.
 *
 * Shutdown (dht_grpc_stop): refuse new sends, cancel the streams to peers,
 * shut the server down and cancel its calls, wait until no call, stream,
 * public request or timer is in flight (each is bounded by a deadline or
 * ended by the cancel), then shut down the queues and join the workers.
 *
 * Files (one concern each; transport_internal.h and grpc_internal.h hold
 * what they share):
 *   grpc_transport.c      start and stop, the dht_transport vtable
 *   grpc_worker.c         the worker threads and their dispatch of events
 *   cork.c                corking of a worker's flushes and local batches
 *   replica_queues.c      the per-peer queues of replica requests
 *   grpc_stream_client.c  batch streams to remote peers (cstream)
 *   grpc_stream_server.c  batch streams from peers (sstream)
 *   grpc_client_calls.c   the unary calls we make (ccall)
 *   grpc_server_calls.c   the server and the calls we serve (scall)
 *   grpc_health.c         grpc.health.v1 answers
 *   grpc_deadlines.c      clock conversions, expiry and the sweep
 *   grpc_peers.c          keepalive, reconnect and peer up/down
 *   grpc_buffers.c        byte buffers <-> our messages
 *   grpc_status.c         status names and the last error
 *   local_replica.c       the in-process path to the local replica (no gRPC)
 *   grpc_abseil.c         abseil's deadlock detector off (no gRPC)
 *   grpc_tls.c            TLS credentials and each served call's auth check
 *   grpc_config.c         the configuration fingerprint check, Admin/Stats
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/grpc_internal.h"

static int64_t grpc_now(dht_transport *t)
{
    (void)t;
    return dht_now_ns();
}

static int grpc_after(dht_transport *t, int64_t delay_ns, dht_timer_cb cb, void *arg)
{
    return dht_timers_add(((dht_grpc *)t)->timers, delay_ns, cb, arg);
}

static void *grpc_after_cancelable(dht_transport *t, int64_t delay_ns, dht_timer_cb cb,
                                   void *arg)
{
    return dht_timers_add_cancelable(((dht_grpc *)t)->timers, delay_ns, cb, arg);
}

static int grpc_cancel(dht_transport *t, void *handle)
{
    return dht_timers_cancel(((dht_grpc *)t)->timers, handle);
}

static const char *grpc_last_error(dht_transport *t)
{
    (void)t;
    return dht_grpc_tl_last_error;
}

static const dht_transport_ops grpc_ops = {
    .send = dht_grpc_send,
    .after = grpc_after,
    .now = grpc_now,
    .after_cancelable = grpc_after_cancelable,
    .cancel = grpc_cancel,
    .last_error = grpc_last_error,
    .add_peer = dht_grpc_add_peer,
    .control = dht_grpc_control,
};

static void free_queues(dht_grpc *g)
{
    for (int i = 0; g->queues != NULL && i < 2 * DHT_MAX_MEMBERS; i++) {
        pthread_mutex_destroy(&g->queues[i].mu);
        free(g->queues[i].items);
    }
    free(g->queues);
}

/* The last step of every way out (a failed start, a stop): the memory g
 * owns (its channels, completion queues and threads are gone by then),
 * then g itself and this start's reference on gRPC. */
static void free_instance(dht_grpc *g)
{
    for (int i = 0; g->norms != NULL && i < DHT_MAX_MEMBERS; i++)
        free(g->norms[i]);
    free(g->norms);
    free(g->addrs);
    free(g->channels);
    free((void *)g->peer_up);
    free_queues(g);
    free(g->workers);
    free(g->config_line);
    dht_grpc_tls_drop(g);
    pthread_mutex_destroy(&g->lmu);
    pthread_mutex_destroy(&g->raw_mu);
    pthread_mutex_destroy(&g->peers_mu);
    pthread_cond_destroy(&g->lcv);
    free(g);
    grpc_shutdown();
}

int dht_grpc_start(const dht_grpc_config *cfg, dht_grpc **out, char *err, size_t errlen)
{
    if (getenv("GRPC_VERBOSITY") == NULL)
        gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR);
    if (cfg->npeers < 0 || cfg->npeers > DHT_MAX_MEMBERS) {
        snprintf(err, errlen, "%d peers: the limit is %d", cfg->npeers, DHT_MAX_MEMBERS);
        return -1;
    }
    dht_grpc_abseil_deadlock_checks_off();
    grpc_init();

    dht_grpc *g = calloc(1, sizeof *g);
    if (g == NULL) {
        snprintf(err, errlen, "out of memory");
        grpc_shutdown();
        return -1;
    }
    g->base.ops = &grpc_ops;
    g->base.npeers = cfg->npeers;
    g->nworkers = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (g->nworkers < 1)
        g->nworkers = 1;
    if (cfg->service)
        g->svc = *cfg->service;
    g->self = cfg->service && cfg->service->replica_batch && cfg->self >= 0 &&
                      cfg->self < cfg->npeers
                  ? cfg->self
                  : -1;
    pthread_mutex_init(&g->lmu, NULL);
    pthread_mutex_init(&g->raw_mu, NULL);
    pthread_mutex_init(&g->peers_mu, NULL);
    pthread_cond_init(&g->lcv, NULL);
    g->serving = cfg->serving;
    g->serving_arg = cfg->serving_arg;
    g->on_peer_state = cfg->on_peer_state;
    g->peer_state_arg = cfg->peer_state_arg;
    g->fingerprint = cfg->fingerprint;
    atomic_init(&g->stopping, false);
    atomic_init(&g->inflight, 0);
    atomic_init(&g->rr, 0);
    g->shutdown_tag.kind = TAG_SHUTDOWN;

    /* Room for every peer add_peer may add (see struct dht_grpc): a few
     * kilobytes, against moving arrays under concurrent senders. */
    g->addrs = calloc(DHT_MAX_MEMBERS, sizeof *g->addrs);
    g->norms = calloc(DHT_MAX_MEMBERS, sizeof *g->norms);
    g->channels = calloc(DHT_MAX_MEMBERS, sizeof *g->channels);
    g->peer_up = calloc(DHT_MAX_MEMBERS, sizeof *g->peer_up);
    g->queues = calloc(2 * DHT_MAX_MEMBERS, sizeof *g->queues);
    for (int i = 0; g->queues != NULL && i < 2 * DHT_MAX_MEMBERS; i++)
        pthread_mutex_init(&g->queues[i].mu, NULL);
    g->workers = calloc((size_t)g->nworkers, sizeof *g->workers);
    g->config_line = cfg->config_line ? strdup(cfg->config_line) : NULL;
    if (g->addrs == NULL || g->norms == NULL || g->channels == NULL || g->peer_up == NULL ||
        g->queues == NULL ||
        g->workers == NULL || (cfg->config_line && g->config_line == NULL) ||
        dht_grpc_tls_keep(g, cfg->tls) != 0) {
        snprintf(err, errlen, "out of memory");
        free_instance(g);
        return -1;
    }
    grpc_channel_credentials *creds = dht_grpc_channel_creds(cfg->tls);
    for (int i = 0; i < cfg->npeers; i++) {
        g->addrs[i] = strdup(cfg->peers[i]);
        g->norms[i] = dht_grpc_peer_norm(cfg->peers[i]);
        g->channels[i] = grpc_channel_create(cfg->peers[i], creds, dht_grpc_channel_args());
        atomic_init(&g->peer_up[i], 1);
    }
    grpc_channel_credentials_release(creds);
    for (int i = 0; i < g->nworkers; i++) {
        g->workers[i].g = g;
        g->workers[i].index = i;
        g->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
    }
    g->timers = dht_timers_start();
    if (g->timers == NULL)
        snprintf(err, errlen, "cannot start the timer thread");
    if (g->timers == NULL ||
        (cfg->listen_addr && dht_grpc_server_start(g, cfg->listen_addr, err, errlen) != 0)) {
        dht_timers_stop(g->timers);
        for (int i = 0; i < g->nworkers; i++) {
            grpc_completion_queue_shutdown(g->workers[i].cq);
            while (grpc_completion_queue_next(g->workers[i].cq,
                                              gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
                       .type != GRPC_QUEUE_SHUTDOWN) {
            }
            grpc_completion_queue_destroy(g->workers[i].cq);
        }
        for (int i = 0; i < cfg->npeers; i++) {
            grpc_channel_destroy(g->channels[i]);
            free(g->addrs[i]);
        }
        free_instance(g);
        return -1;
    }
    for (int i = 0; i < g->nworkers; i++)
        pthread_create(&g->workers[i].thread, NULL, dht_grpc_worker_main, &g->workers[i]);
    /* Also without peers yet: add_peer may bring some. */
    dht_timers_add(g->timers, SWEEP_NS, dht_grpc_sweep_queues, g);
    if (g->self >= 0 && dht_grpc_local_start(g) != 0)
        g->self = -1; /* no thread: the local replica is reached over gRPC */
    *out = g;
    return 0;
}

dht_transport *dht_grpc_transport(dht_grpc *g)
{
    return &g->base;
}

void dht_grpc_stop(dht_grpc *g)
{
    if (g == NULL)
        return;
    atomic_store(&g->stopping, true);
    dht_grpc_cs_cancel_all(g);
    if (g->server) {
        grpc_server_shutdown_and_notify(g->server, g->workers[0].cq, &g->shutdown_tag);
        grpc_server_cancel_all_calls(g->server);
        for (int i = 0; i < 3000 && !atomic_load(&g->shutdown_tag.done); i++)
            usleep(1000);
    }
    /* In-flight calls and public requests end by their deadlines; wait for
     * them (bounded) so their callbacks never touch freed memory. */
    for (int i = 0; i < 10000; i++) {
        if (atomic_load(&g->inflight) == 0 && dht_timers_pending(g->timers) == 0)
            break;
        usleep(1000);
    }
    if (g->self >= 0)
        dht_grpc_local_stop(g);
    dht_timers_stop(g->timers);
    if (g->server)
        grpc_server_destroy(g->server);
    /* Final once read under the lock: add_peer refuses once stopping. */
    pthread_mutex_lock(&g->peers_mu);
    int npeers = g->base.npeers;
    pthread_mutex_unlock(&g->peers_mu);
    for (int i = 0; i < npeers; i++) {
        grpc_channel_destroy(g->channels[i]);
        free(g->addrs[i]);
    }
    for (int i = 0; i < g->nworkers; i++)
        grpc_completion_queue_shutdown(g->workers[i].cq);
    for (int i = 0; i < g->nworkers; i++) {
        pthread_join(g->workers[i].thread, NULL);
        grpc_completion_queue_destroy(g->workers[i].cq);
    }
    free_instance(g);
}
