/* Corking: on a worker thread, the queues its event handlers add to are
 * flushed, and the local replica's batches run, only once the worker runs
 * out of events (or after DRAIN_EVERY of them), so requests that arrive
 * together leave together.  grpc_worker.c decides when to drain; this file
 * owns what is corked and how it is let go.  No gRPC header needed. */
#include <stdbool.h>
#include <stdint.h>

#include "net/transport_internal.h"

/* Flushes queue qi at this worker's drain when called on a worker (the
 * corking of dht_grpc_worker_drain), at once otherwise. */
void dht_grpc_flush_soon(dht_grpc *g, int qi)
{
    worker *w = dht_grpc_own_worker(g);
    if (w != NULL)
        w->dirty[qi >> 6] |= UINT64_C(1) << (qi & 63);
    else
        dht_grpc_flush_queue(g, qi);
}

/* Runs once the worker finds no completion-queue event waiting (or after
 * DRAIN_EVERY events in a row): sends the batches the handlers corked and
 * runs the local replica's batches, repeatedly, since their replies may
 * queue more.  Twenty public calls that arrive together thus cost one batch
 * call per peer instead of twenty, with no added delay: the worker was busy
 * with those events anyway, and it drains before it would sleep. */
void dht_grpc_worker_drain(worker *w)
{
    dht_grpc *g = w->g;
    /* Every word, not just those of the peers known at the start: add_peer
     * may add one whose queue a handler marks meanwhile. */
    const int words = (int)(sizeof w->dirty / sizeof w->dirty[0]);
    while (dht_grpc_worker_corked(w)) {
        for (int i = 0; i < words; i++) {
            while (w->dirty[i] != 0) {
                int qi = i * 64 + __builtin_ctzll(w->dirty[i]);
                w->dirty[i] &= w->dirty[i] - 1;
                dht_grpc_flush_queue(g, qi);
            }
        }
        dht_grpc_local_run_next(w);
    }
}

/* Whether the worker holds corked work (then it only polls for events). */
bool dht_grpc_worker_corked(const worker *w)
{
    if (w->lhead != NULL)
        return true;
    for (size_t i = 0; i < sizeof w->dirty / sizeof w->dirty[0]; i++) {
        if (w->dirty[i] != 0)
            return true;
    }
    return false;
}
