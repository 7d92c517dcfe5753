/* The in-process path to the local replica: replica batches addressed to
 * this process's own peer index go straight to the service, on the sending
 * worker's drain or on the local thread, instead of a loopback gRPC call.
 * It has nothing to do with gRPC and includes no gRPC header. */
#include <pthread.h>
#include <stdlib.h>

#include "net/transport_internal.h"

/* ---- the local replica ------------------------------------------------------
 * A server's coordinator sends a third of its replica requests to itself.
 * Over loopback gRPC that costs two calls' worth of CPU for nothing; here
 * the batch goes straight to the service.  send() must never call back
 * into its caller, so the batch runs later: on the sending worker's own
 * thread once its current event is handled (dht_grpc_worker_drain), or, when a
 * non-worker thread sent it, on the local thread. */

typedef struct local_job {
    struct local_job *next;
    dht_grpc *g;
    int qi;
    qitem *items;
    size_t n;
    dht_msg *reqs, *reps;
} local_job;

static void local_done(void *arg)
{
    local_job *j = arg;
    dht_grpc *g = j->g;
    dht_grpc_answer_items(j->items, j->n, DHT_OK, j->reps);
    int qi = j->qi;
    free(j->items);
    free(j->reqs);
    free(j->reps);
    free(j);
    dht_grpc_batch_slot_done(g, qi);
    atomic_fetch_sub(&g->inflight, 1);
}

/* Hands j to the service, unless the service refuses its stamp (the one
 * check a remote peer's batch passes too, so that the local replica judges
 * its own coordinator's requests like anyone's): then its items fail with
 * the reason, on this thread, which is outside any send(). */
static void local_run(dht_grpc *g, local_job *j)
{
    if (g->svc.check_config != NULL && j->n > 0) {
        char why[512];
        why[0] = '\0';
        if (g->svc.check_config(g->svc.arg, j->reqs[0].config, j->reqs[0].view, why,
                                sizeof why) != 0) {
            why[sizeof why - 1] = '\0';
            dht_grpc_refuse_items_now(j->items, j->n, why[0] ? why : "configuration refused");
            int qi = j->qi;
            free(j->items);
            free(j->reqs);
            free(j->reps);
            free(j);
            dht_grpc_batch_slot_done(g, qi);
            atomic_fetch_sub(&g->inflight, 1);
            return;
        }
    }
    g->svc.replica_batch(g->svc.arg, j->reqs, j->reps, j->n, local_done, j);
}

static void *local_main(void *arg)
{
    dht_grpc *g = arg;
    pthread_setname_np(pthread_self(), "dht-local");
    pthread_mutex_lock(&g->lmu);
    for (;;) {
        while (g->lhead == NULL && !g->lstop)
            pthread_cond_wait(&g->lcv, &g->lmu);
        local_job *j = g->lhead;
        if (j == NULL)
            break;
        g->lhead = j->next;
        if (g->lhead == NULL)
            g->ltail = NULL;
        pthread_mutex_unlock(&g->lmu);
        local_run(g, j);
        pthread_mutex_lock(&g->lmu);
    }
    pthread_mutex_unlock(&g->lmu);
    return NULL;
}

/* Queues items for this worker's drain or the local thread; false if it
 * cannot (then the caller uses gRPC as for any peer). */
bool dht_grpc_send_local(dht_grpc *g, int qi, qitem *items, size_t n)
{
    local_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return false;
    j->reqs = malloc(n * sizeof *j->reqs);
    j->reps = calloc(n, sizeof *j->reps);
    if (j->reqs == NULL || j->reps == NULL) {
        free(j->reqs);
        free(j->reps);
        free(j);
        return false;
    }
    /* The stamp as a remote replica would receive it (the items share one:
     * take_batch). */
    wire_stamp st = dht_grpc_stamp_of(g, &items[0].req);
    for (size_t i = 0; i < n; i++) {
        j->reqs[i] = items[i].req;
        j->reqs[i].config = st.config;
        j->reqs[i].view = st.view;
    }
    j->g = g;
    j->qi = qi;
    j->items = items;
    j->n = n;
    atomic_fetch_add(&g->inflight, 1);
    worker *w = dht_grpc_own_worker(g);
    if (w != NULL) {
        if (w->ltail)
            w->ltail->next = j;
        else
            w->lhead = j;
        w->ltail = j;
        return true;
    }
    pthread_mutex_lock(&g->lmu);
    if (g->ltail)
        g->ltail->next = j;
    else
        g->lhead = j;
    g->ltail = j;
    pthread_cond_signal(&g->lcv);
    pthread_mutex_unlock(&g->lmu);
    return true;
}

/* Runs the next batch for the local replica that this worker's handlers
 * queued, if any (dht_grpc_worker_drain). */
void dht_grpc_local_run_next(worker *w)
{
    dht_grpc *g = w->g;
    local_job *j = w->lhead;
    if (j != NULL) {
        w->lhead = j->next;
        if (w->lhead == NULL)
            w->ltail = NULL;
        local_run(g, j);
    }
}

/* Starts the local thread (dht_grpc_start); pthread_create's result. */
int dht_grpc_local_start(dht_grpc *g)
{
    return pthread_create(&g->lthread, NULL, local_main, g);
}

/* Stops and joins the local thread once nothing is in flight (dht_grpc_stop). */
void dht_grpc_local_stop(dht_grpc *g)
{
    pthread_mutex_lock(&g->lmu);
    g->lstop = true;
    pthread_cond_signal(&g->lcv);
    pthread_mutex_unlock(&g->lmu);
    pthread_join(g->lthread, NULL);
}
